"""Your own training loop, watched and steered from tui-trainer: a run folder opened from any PyTorch loop.

A few lines added to a loop (nanoGPT's ``train.py``, the lecture's loop, a research script)::

    from tui_trainer.run import track

    run = track.init("fmnist-mlp", config={"lr": 1e-3, "batch_size": 64}, model=model, optimizer=optimizer,
                     epochs=10, steps_per_epoch=len(train_loader))
    for epoch in range(1, 11):
        for x, y in train_loader:
            ...                                   # forward, backward, optimizer.step()
            step += 1
            run.log(step, loss=loss)              # a tensor is read (.item()) only at the log interval
            if run.should_stop:                   # s in the app, tui-trainer stop
                break
        run.epoch(epoch, train_loss=train_loss, val_loss=val_loss, train_acc=train_acc, val_acc=val_acc)
        if run.should_stop:
            break
    run.finish()                                  # or: with track.init(...) as run: ...

``tui-trainer attach`` (the app, or ``--plain``) then shows the loop live, and its keys act in it: ``s`` stops
(``run.should_stop``), ``c`` saves, ``l`` sets the learning rate, ``p`` pauses and ``n`` takes one step. The run
folder is the tool's own (``folder.py``): config.toml (the loop's config under ``[config]``, ``source = "track"``),
events.jsonl through the tool's ``RunRecorder``, metrics.jsonl, status.json with this process's pid (a loop that is
killed reads as crashed), and the same control endpoint (``endpoint.py``) with the same commands and
acknowledgements, so ``runs``, ``attach``, ``stop``, ``compare`` and ``export`` read it as they read the tool's runs.

What the loop hands over decides what the tool does on its own. With the model: per-layer gradient norms at each
log interval, a checkpoint on ``c`` and when stopped (``{"model": state_dict, "optimizer": ..., "config": ...}``,
written atomically and loadable with ``torch.load(weights_only=True)``, as the tool's own). With the optimizer:
``l`` sets the learning rate of every parameter group (logged, marked on the loss chart). Without them the loop
is asked: ``run.should_stop``; ``on_save(path)``, a callback that saves the loop's own way (it also takes over
from the model's checkpoint when both are given); the learning rate is then the loop's to set.

Cost (benchmarks/track_cost.py, RESULTS.md): no host sync of its own. ``log`` writes at most one point per
``log_every`` steps and otherwise costs a comparison and one look at the command queue; a tensor handed to it is
read with ``.item()`` only on the steps it writes, which is the one sync the loop chooses by logging a tensor (the
gradient norms, with the model handed over, are read in the same interval). Commands are acted on where the loop
calls ``log``, ``check`` or ``epoch``; a paused loop waits there, and ``n`` lets it take one step.

The end: ``finish()``, the ``with`` block, or the script's exit (an uncaught exception: failed, with its first
line; otherwise finished). Ctrl+C (KeyboardInterrupt) ends it as stopped. Bad input raises ``TrackError`` (one
line); a value that is not finite is left out with a warning. events.jsonl is written by this process alone
(the folder is locked; a child process that inherited the run cannot write it).

Data parallel (torchrun, or the Lightning callback in ``lightning.py``): rank 0 writes the folder and serves the
endpoint; every rank calls ``log`` at the same steps, and the commands reach every rank through a collective at
the log interval, so all ranks stop, save, pause or change the rate at the same step (the engine's own rule).

Stdlib only at import: torch is imported lazily, from the model and optimizer handed over.
"""

from __future__ import annotations

import atexit
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tui_trainer.errors import first_line
from tui_trainer.run import track_torch
from tui_trainer.run.controls import Command, Controls, Hold
from tui_trainer.run.events import (
    ROW_KEYS,
    CheckpointSaved,
    EpochEnded,
    Event,
    LayerHealth,
    LogMessage,
    LrChanged,
    Paused,
    Reason,
    RunFinished,
    RunStarted,
    StepLogged,
)
from tui_trainer.run.folder import RunDir
from tui_trainer.run.history import position, shown_epoch
from tui_trainer.run.track_record import SOURCE, UNCAUGHT, Record, TrackError, TrackWarning, plain_config, script_path

__all__ = ["Run", "TrackError", "TrackWarning", "init"]

MONITORS = ("val_loss", "val_acc")
TASKS = ("classification", "regression")

SaveHook = Callable[[str], Any]
"""``on_save(path)``: save the loop's own way to ``path`` (or elsewhere: return the path written)."""


def init(name: str, config: Mapping[str, Any] | Any = None, *, runs_dir: str | Path = "runs", model: Any = None,
         optimizer: Any = None, epochs: int | None = None, steps_per_epoch: int | None = None,
         batch_size: int | None = None, log_every: int = 50, on_save: SaveHook | None = None,
         monitor: str = "val_loss", task: str = "classification", folder: str | Path | None = None) -> Run:
    """Open a run of your own loop: a new folder ``<runs_dir>/<date-time>-<name>`` (or ``folder``), its endpoint up.

    ``config``: the loop's settings (a dict, an argparse Namespace or a dataclass), kept in config.toml for
    ``compare``. ``model``/``optimizer`` (several optimizers: a list): hand them over and the tool does gradient
    norms, checkpoints and set-lr itself (see the module docstring). ``epochs`` and ``steps_per_epoch`` (e.g.
    ``len(train_loader)``) place the step curve on the epoch axis and give the progress line its total and ETA;
    without ``steps_per_epoch`` it is learnt from the first epoch. ``batch_size`` gives samples/s. ``log_every``:
    steps between written points. ``on_save(path)``: the loop's own way to save on ``c`` and when stopped.
    ``monitor`` picks the best epoch (val_loss or val_acc); ``task``: classification or regression (``compare``
    compares runs of one task). TrackError (one line) if an argument is wrong or the folder cannot be written."""
    return Run(name, config, runs_dir=runs_dir, model=model, optimizer=optimizer, epochs=epochs,
               steps_per_epoch=steps_per_epoch, batch_size=batch_size, log_every=log_every, on_save=on_save,
               monitor=monitor, task=task, folder=folder)


# ---------------------------------------------------------------------------
# the run


class Run:
    """One run of your own loop (``init`` makes it): ``log``, ``epoch``, ``check``, ``should_stop``, ``finish``,
    and ``with``. ``path`` is its folder (None on a rank other than 0, which writes nothing)."""

    def __init__(self, name: str, config: Any = None, *, runs_dir: str | Path = "runs", model: Any = None,
                 optimizer: Any = None, epochs: int | None = None, steps_per_epoch: int | None = None,
                 batch_size: int | None = None, log_every: int = 50, on_save: SaveHook | None = None,
                 monitor: str = "val_loss", task: str = "classification", folder: str | Path | None = None,
                 rank: int | None = None) -> None:
        _check_init(name, epochs, steps_per_epoch, batch_size, log_every, on_save, monitor, task)
        self.name, self.config = name, plain_config(config)
        try:
            self.model, self.optimizers = model, track_torch.optimizers_of(optimizer)
        except ValueError as exc:
            raise TrackError(f"track.init: {exc}") from None
        self.epochs, self.log_every, self.batch_size, self.monitor = epochs, log_every, batch_size, monitor
        self.on_save = on_save
        self.rank = int(os.environ.get("RANK", "0")) if rank is None else rank
        self._share: Callable[[list[dict]], list[dict]] | None = track_torch.torch_share if _world_size() > 1 else None
        self._controls = Controls()
        self._stop = False
        self._hold = Hold()  # pause, resume and step: the engine's rule (run/controls.py)
        self._step = 0  # the last step the loop gave
        self._next = 0  # the first step of the next log interval: log writes from here on
        self._epochs_done = 0
        self._epoch_base = 0  # the step at the end of the last epoch
        self._steps_per_epoch = steps_per_epoch
        self._rows: list[dict] = []  # metrics rows, for checkpoints
        self._best: float | None = None
        self._lr = math.nan  # the last learning rate known (the optimizer's, or one the loop logged)
        self._warned: set[str] = set()
        self._numbers: set[str] = set()  # names logged as numbers so far (a name keeps one type)
        self._t0 = self._t_point = self._t_epoch = time.perf_counter()
        self._paused_s = 0.0
        self._step_point = 0  # the step of the last point written (samples/s over the interval)
        self._layers: track_torch.Layers | None = None  # built at the first point written, with a model
        self._last_checkpoint: str | None = None
        self._finished = False
        self._pid = os.getpid()
        self._record = self._open(runs_dir, folder, task) if self.rank == 0 else None
        self.path: Path | None = self._record.run.path if self._record is not None else None

    def _open(self, runs_dir: str | Path, folder: str | Path | None, task: str) -> Record:
        """Rank 0: the run's folder, its endpoint, its start (RunStarted), and an exit hook that ends it."""
        label = Path(script_path()).name or "your loop"
        record = Record.open(self.name, self.config, self._controls, runs_dir, folder, preset=label,
                             epochs=self.epochs or 0, monitor=self.monitor)
        model = track_torch.unwrap(self.model) if self.model is not None else None
        record.emit(RunStarted(
            run_dir=str(record.run.path), device=track_torch.device_words(model),
            n_params=track_torch.count_params(model, False), n_trainable=track_torch.count_params(model, True),
            epochs=self.epochs or 0, start_epoch=0, steps_per_epoch=self._steps_per_epoch or 0, train_samples=0,
            val_samples=0, task=task, summary=track_torch.model_summary(model), preset=label, monitor=self.monitor,
            world_size=_world_size(), source=SOURCE))
        atexit.register(self._at_exit)
        return record

    # -- what a loop calls -------------------------------------------------------------------------

    @property
    def should_stop(self) -> bool:
        """A stop was asked for (``s`` in the app, ``tui-trainer stop``, a stop sent to the endpoint): end the loop
        here and ``finish()`` (the model handed over is then saved as last.pt)."""
        return self._stop

    def log(self, step: int, **metrics: Any) -> None:
        """The loop's numbers at ``step`` (the optimizer steps done: it counts on across epochs): ``loss`` (the
        training loss: the step curve), ``lr`` (when no optimizer was handed over), any other named scalar.
        Call it every step or only when you like: at most one point per ``log_every`` steps is written (every
        step while stepping with ``n``), the others cost a comparison; numbers are floats or one-element
        tensors, read only when written. Then the commands sent since the last call are acted on (a paused loop
        waits here). TrackError if ``step`` goes back or a value is not a number."""
        if step < self._step:
            raise TrackError(f"run.log: step {step} after step {self._step}: steps only go forward (count them on "
                             "across epochs; a loop that starts again is a new run)")
        self._step = step
        due = self.due(step)
        if due:
            self._write_point(step, metrics)
        if self._share is None:
            commands = self._controls.poll()  # one truth test when nothing was sent
            if commands or self._hold.stepping:
                self._poll(commands)
        elif due:  # under DDP the ranks meet only at the log interval, where every rank calls log
            self._poll(self._commands())

    def due(self, step: int) -> bool:
        """Whether ``log(step, ...)`` writes a point: the first call of a log interval (every call while stepping
        with ``n``). A loop whose numbers cost something to gather (a framework's metrics) asks first."""
        return step >= self._next or self._hold.stepping

    def check(self) -> bool:
        """Act on the commands sent since the last call (a paused loop waits here until resumed, or for one step
        on ``n``); returns ``should_stop``. ``log`` and ``epoch`` do this too: call it where the loop logs
        nothing. Under DDP commands are taken only at the log interval, so here it only answers."""
        if self._share is None:
            commands = self._controls.poll()
            if commands or self._hold.stepping:
                self._poll(commands)
        return self._stop

    def epoch(self, epoch: int, *, train_loss: Any, val_loss: Any, train_acc: Any = None, val_acc: Any = None,
              lr: Any = None, **scalars: Any) -> None:
        """One epoch's results (an epoch may also be an evaluation every N steps): ``epoch`` counts from 1 and goes
        up. ``train_loss``/``val_loss`` (and accuracies, 0..1) are the curves the app and ``compare`` draw; other
        named scalars become columns of its metrics row. A loss that is not finite leaves the epoch out (with a
        warning); then commands are acted on, as in ``log``."""
        where = f"run.epoch({epoch})"
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch <= self._epochs_done:
            raise TrackError(f"{where}: epochs count 1, 2, 3, ... and go up (the last one was {self._epochs_done})")
        clash = sorted(set(scalars) & ROW_KEYS)
        if clash:
            raise TrackError(f"{where}: {', '.join(clash)} is the run's own column; give your scalar another name")
        numbers = {k: self._number(where, k, v) for k, v in
                   (("train_loss", train_loss), ("val_loss", val_loss), ("train_acc", train_acc), ("val_acc", val_acc),
                    ("lr", lr), *scalars.items()) if v is not None}
        if self._steps_per_epoch is None and self._step > self._epoch_base and not self._epochs_done:
            self._steps_per_epoch = self._step - self._epoch_base  # the first epoch's length places later points
        losses = (numbers.get("train_loss"), numbers.get("val_loss"))
        steps = self._step - self._epoch_base
        self._epochs_done, self._epoch_base = epoch, self._step
        now = time.perf_counter()
        seconds, self._t_epoch = now - self._t_epoch, now
        if None in losses:  # not finite (_number warned) or not given: the epoch is counted, not recorded
            self._tell("warning", f"epoch {epoch}: its train_loss or val_loss is missing or not finite, so the epoch "
                                  "is not recorded")
        else:
            self._record_epoch(epoch, numbers, seconds, steps)
        if self._share is None:
            self._poll(self._controls.poll())
        else:
            self._poll(self._commands())

    def finish(self) -> None:
        """End the run: stopped (a stop was asked for; last.pt saved) or finished. Called again, or on a rank
        other than 0, it does nothing more."""
        if self._stop:
            self._end(Reason.STOPPED, f"stopped {self._where()}")
        elif self.epochs and self._epochs_done >= self.epochs:
            self._end(Reason.COMPLETED, f"completed {self._epochs_done} epochs")
        else:
            self._end(Reason.COMPLETED, f"your loop ended {self._where()}")

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.finish()
        else:
            self._end_by(exc)

    # -- numbers ---------------------------------------------------------------------------------

    def _number(self, where: str, name: str, value: Any) -> float | None:
        """``value`` as a float; None (after a warning) when it is not finite; TrackError when it is not a number
        (naming the kind the name was logged as before: a name keeps one type). A tensor is read here: ``.item()``
        is a host sync, at the log interval (the loop's choice)."""
        kind = type(value).__name__
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, (bool, str, bytes)) or not hasattr(value, "item"):
            raise TrackError(self._not_a_number(where, name, kind))
        else:
            try:
                item = value.item()  # host sync: on the steps that are written, the loop's choice
            except (ValueError, RuntimeError):
                raise TrackError(f"{where}: {name} is a {kind} of shape {tuple(getattr(value, 'shape', ()))}: log one "
                                 "number (a 0-d tensor, or .mean() of it)") from None
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise TrackError(self._not_a_number(where, name, f"{kind} of {type(item).__name__}"))
            number = float(item)
        self._numbers.add(name)
        if not math.isfinite(number):
            self._warn_once(name, f"{where}: {name} is {number}: left out (later values of {name} are written)")
            return None
        return number

    def _not_a_number(self, where: str, name: str, kind: str) -> str:
        if name in self._numbers:
            return f"{where}: {name} was logged as a number before, now as a {kind}: a name keeps one type"
        return f"{where}: {name} must be a number or a one-element tensor, not a {kind}"

    def _warn_once(self, key: str, text: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(text, TrackWarning, stacklevel=4)
        self._tell("warning", text)

    # -- points and epochs -------------------------------------------------------------------

    def _position(self, step: int) -> tuple[int, int, int]:
        """(epochs done, steps into the epoch under way, steps per epoch) at ``step``: from the loop's epochs, and
        past an epoch's length (a loop that calls ``epoch`` seldom or never) from ``steps_per_epoch``."""
        done, batch, per = self._epochs_done, step - self._epoch_base, self._steps_per_epoch
        if per and batch > per:
            more, batch = divmod(batch - 1, per)
            done, batch = done + more, batch + 1
        return done, batch, per or max(batch, 1)

    def _where(self) -> str:
        done, batch, _per = self._position(self._step)
        return position(done, batch, self._step)

    def _write_point(self, step: int, metrics: dict[str, Any]) -> None:
        loss, extra = math.nan, []
        for name, value in metrics.items():
            number = self._number("run.log", name, value)
            if number is None:
                continue
            if name == "loss":
                loss = number
            elif name == "lr":
                self._lr = number
            else:
                extra.append((name, number))
        if "lr" not in metrics and self.optimizers:
            self._lr = track_torch.current_lr(self.optimizers)
        now = time.perf_counter()
        self._next = (step // self.log_every + 1) * self.log_every
        if self._record is None:  # another rank: it writes nothing (the gradient norms are rank 0's)
            return
        layers = self._layer_health() if self.model is not None else ()
        rate = (step - self._step_point) * self.batch_size / max(now - self._t_point, 1e-9) if self.batch_size else 0.0
        self._t_point, self._step_point = now, step
        done, batch, per = self._position(step)
        memory = self._layers.memory() if self._layers is not None else None
        self._emit(StepLogged(done + 1, step, batch, per, loss, self._lr, rate, self.elapsed(), layers, memory, (),
                              tuple(extra)))

    def _record_epoch(self, epoch: int, numbers: dict[str, float], seconds: float, steps: int) -> None:
        if self.optimizers and "lr" not in numbers:
            self._lr = track_torch.current_lr(self.optimizers)
        self._lr = numbers.pop("lr", self._lr)
        score = numbers.get(self.monitor)
        best = score is not None and (self._best is None or (score > self._best if self.monitor == "val_acc"
                                                             else score < self._best))
        if best:
            self._best = score
        samples = steps * (self.batch_size or 0)
        row = EpochEnded(epoch, self._step, numbers.pop("train_loss"), numbers.pop("val_loss"),
                         numbers.pop("train_acc", None), numbers.pop("val_acc", None), self._lr, seconds,
                         samples / max(seconds, 1e-9), best, extra=tuple(numbers.items()))
        self._rows.append(row.metrics())
        if self._record is not None:
            self._emit(row)

    def elapsed(self) -> float:
        """Seconds the loop has trained since ``init``, pauses left out."""
        return time.perf_counter() - self._t0 - self._paused_s

    # -- commands ------------------------------------------------------------------------------

    def _commands(self, wait: float = 0.0) -> list[Command]:
        """The commands to act on now: this process's, or under DDP rank 0's, shared with every rank (a
        collective: every rank calls this at the same point)."""
        if self._record is not None and wait > 0:
            self._controls.wait(wait)
        mine = self._controls.poll()
        if self._share is None:
            return mine
        shared = self._share([{"cmd": c.name, **c.args} for c in mine])
        return mine if self._record is not None else [Command(d["cmd"], {k: v for k, v in d.items() if k != "cmd"})
                                                      for d in shared]

    def _poll(self, commands: list[Command]) -> None:
        """Act on ``commands``, hold while paused, count a single step down: as the engine's
        ``Steering.before_step`` does, with the same ``Hold``."""
        self._act_all(commands)
        self._hold.wait(self._commands, self._act_all, self._said, self._held)
        self._hold.count_step()

    def _act_all(self, commands: list[Command]) -> None:
        for command in commands:
            self._act(command)

    def _held(self, seconds: float) -> None:
        self._paused_s += seconds

    def _act(self, command: Command) -> None:
        """One command, acknowledged with what happened (the engine's words)."""
        where = self._where()
        match command.name:
            case "stop":
                if self._hold.paused:
                    self._hold.pause(False, self._said)  # the loop goes on to where it checks should_stop
                self._stop = True
                self._hold.stepping, self._hold.steps_left = False, 0
                saves = " and saves last.pt" if self.on_save is not None or self.model is not None else ""
                command.ack(True, f"stopping {where}: the loop ends where it checks run.should_stop{saves}")
            case "save":
                path = self._save("manual")
                if path is None:
                    command.ack(False, self._cannot_save())
                else:
                    command.ack(True, f"saved {where}: {path}", path=path)
            case "set_lr":
                lr = command.args["lr"]
                if not self.optimizers:
                    command.ack(False, "no optimizer was handed to track.init: this loop sets its own learning rate")
                    return
                track_torch.set_lr(self.optimizers, lr)
                self._lr = lr
                done, batch, per = self._position(self._step)
                self._emit(LrChanged(done + 1, self._step, done + batch / max(per, 1), lr))
                command.ack(True, f"learning rate set to {lr:g} {where}")
            case _:
                self._hold.act(command, where, self._said, waits=": the loop waits in run.log/check/epoch")

    def _said(self, paused: bool) -> None:
        done, batch, _per = self._position(self._step)
        self._emit(Paused(paused, shown_epoch(done, batch), self._step))

    # -- checkpoints -----------------------------------------------------------------------------

    def _cannot_save(self) -> str:
        if self.model is None and self.on_save is None:
            return "no model and no on_save were handed to track.init: this loop saves its own way"
        return "the checkpoint could not be written (see the log)"

    def _save(self, kind: str) -> str | None:
        """A checkpoint (``kind``: manual or last): the loop's ``on_save`` (on every rank: a Lightning save meets the
        other ranks), else the model's weights (rank 0 alone). Its path, or None (the reason is in the log)."""
        if self.model is None and self.on_save is None:
            return None
        done, batch, _per = self._position(self._step)
        target = RunDir(self.path) if self.path is not None else None
        path = str(target.last if kind == "last" else target.manual(shown_epoch(done, batch), self._step)) \
            if target is not None else ""
        try:
            if self.on_save is not None:
                written = self.on_save(path)
                path = str(written) if isinstance(written, (str, os.PathLike)) else path
            elif self._record is not None:
                track_torch.save_weights(Path(path), self.model, self.optimizers, kind, source=SOURCE, name=self.name,
                                         script=script_path(), epoch=self._epochs_done, step=self._step,
                                         config=self.config, history=list(self._rows), run_dir=str(self.path),
                                         elapsed_s=self.elapsed())
        except Exception as exc:  # noqa: BLE001 - a failed save is reported; the loop goes on
            self._tell("error", f"checkpoint {Path(path).name} not written: {type(exc).__name__}: {first_line(exc)}")
            return None
        if self._record is None:
            return path
        if kind == "last":
            self._last_checkpoint = path
        self._emit(CheckpointSaved(path, kind, self._epochs_done, self._step))
        return path

    # -- the end -----------------------------------------------------------------------------------

    def _end_by(self, exc: BaseException) -> None:
        """The end an exception makes: Ctrl+C stops (and saves), anything else fails with its first line."""
        if isinstance(exc, KeyboardInterrupt):
            self._stop = True
            self._end(Reason.STOPPED, f"stopped by Ctrl+C {self._where()}")
        elif isinstance(exc, SystemExit) and exc.code in (0, None):
            self.finish()
        else:
            self._end(Reason.ERROR, f"{self._where()}: {type(exc).__name__}: {first_line(exc)}")

    def _end(self, reason: Reason, message: str) -> None:
        if self._finished or os.getpid() != self._pid:
            return
        self._finished = True
        if reason is Reason.STOPPED:
            self._save("last")
        record, self._record = self._record, None
        if record is None:
            return
        record.emit(RunFinished(reason.value, message, self._epochs_done, self._step, self._best, str(record.run.path),
                                self._last_checkpoint, self.elapsed()))
        record.close()
        atexit.unregister(self._at_exit)

    def _at_exit(self) -> None:
        """The script ends without ``finish()``: failed if an exception ended it, else finished."""
        if UNCAUGHT:
            self._end_by(UNCAUGHT[-1])
        else:
            self.finish()

    # -- what rank 0 writes ------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if self._record is None:
            return
        if os.getpid() != self._pid:
            raise TrackError(f"this run belongs to process {self._pid}: a child process (a DataLoader worker, "
                             "multiprocessing) cannot write it; log from the process that called track.init")
        self._record.emit(event)

    def _tell(self, level: str, text: str) -> None:
        """A line in the run's log (the app's Log tab, attach --plain)."""
        self._emit(LogMessage(level, text))

    def _layer_health(self) -> tuple[LayerHealth, ...]:
        """Per-layer gradient and weight norms of the model handed over (track_torch.Layers), read in one transfer;
        a failure is said once and the norms are left out from then on."""
        if "gradient norms" in self._warned:
            return ()
        try:
            if self._layers is None:
                self._layers = track_torch.Layers(self.model)
            return self._layers.health()
        except Exception as exc:  # noqa: BLE001 - a nicety: it never stops the loop
            self._warn_once("gradient norms", f"gradient norms left out: {type(exc).__name__}: {first_line(exc)}")
            return ()


def _check_init(name: Any, epochs: Any, steps_per_epoch: Any, batch_size: Any, log_every: Any, on_save: Any,
                monitor: str, task: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise TrackError(f"track.init: name must be a non-empty string (it names the run's folder), not {name!r}")
    for what, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch), ("batch_size", batch_size),
                        ("log_every", log_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise TrackError(f"track.init: {what} must be a whole number >= 1, not {value!r}")
    if on_save is not None and not callable(on_save):
        raise TrackError(f"track.init: on_save must be a function of the checkpoint's path, not {on_save!r}")
    if monitor not in MONITORS:
        raise TrackError(f"track.init: monitor {monitor!r}: allowed {', '.join(MONITORS)}")
    if task not in TASKS:
        raise TrackError(f"track.init: task {task!r}: allowed {', '.join(TASKS)}")


def _world_size() -> int:
    """Processes of a data-parallel job (torchrun's WORLD_SIZE), 1 without one."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1
