"""The training loop: ``fit(config, sink, controls, run_dir, resume_path) -> FitResult``.

THE LOOP READS TOP TO BOTTOM IN CALL ORDER: ``fit`` sets up, then ``Fit.run`` trains epochs;
an epoch is steps (controls polled before each, the interval flushed every ``log_every``), then
``end_epoch`` (validate, record, checkpoint). Everything else is below it. The engine reports
only through ``sink.emit(event)``, never prints, and never raises: every outcome, setup errors
included, ends in one ``RunFinished`` with a ``Reason``.

Speed rules kept here (benchmarks/RESULTS.md says what they buy):
* no ``loss.item()`` per batch: each step's loss and correct count go into small device buffers,
  read once per log interval (the only host syncs in the training steps, each commented);
* controls are polled between steps (one truth test when none is pending): Stop, Save, a new
  learning rate, pause and single steps act within one step;
* how a step runs (eager, compiled forward, captured CUDA graph) is one object chosen at setup.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tui_trainer.config import RunConfig
from tui_trainer.engine.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from tui_trainer.engine.device import describe_device, memory_in_use
from tui_trainer.engine.diagnostics import (
    GradientMonitor,
    curve_hints,
    dead_units,
    decision_grid,
    gradient_alarms,
    health_rows,
)
from tui_trainer.engine.dist import World
from tui_trainer.engine.models import count_params, format_summary, state_mismatch, summarize
from tui_trainer.engine.optim import build_optimizer, build_schedule, current_lr, load_optimizer_state, optimizer_state, set_lr
from tui_trainer.engine.parts import EarlyStopping, build_loss, epoch_seed, evaluate, prepare
from tui_trainer.engine.steps import EagerRunner, FaultyRunner, StepBody, capture_possible, choose_runner
from tui_trainer.errors import USER_ERRORS, CheckpointError, first_line
from tui_trainer.run.controls import Command, Controls, stopped_message
from tui_trainer.run.events import (
    Boundary,
    CheckpointSaved,
    ClassResults,
    EpochEnded,
    LogMessage,
    LrChanged,
    NullSink,
    ParamValues,
    Paused,
    Reason,
    RunFinished,
    RunStarted,
    Sink,
    StepLogged,
)
from tui_trainer.run.folder import RunDir, prepare_run
from tui_trainer.run.history import position, shown_epoch


@dataclass
class FitResult:
    """Why and where a run ended."""

    reason: Reason
    message: str
    epoch: int
    step: int
    best_metric: float | None
    run_dir: Path | None
    history: list[dict] = field(default_factory=list)
    last_checkpoint: Path | None = None
    model: nn.Module | None = field(default=None, repr=False)  # the trained model (best weights if restored)

    @property
    def ok(self) -> bool:
        """True when the run ended as asked (completed, early stop, or stopped by the user)."""
        return self.reason.as_asked


def _peer_lost(exc: BaseException) -> bool:
    """Whether a collective failed because another rank went away (gloo and nccl say it in their own words)."""
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection", "peer", "timed out"))


class _Stop(Exception):
    """Internal: leave the loop with a reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def fit(cfg: RunConfig, sink: Sink | None = None, controls: Controls | None = None, run_dir: RunDir | Path | None = None,
        resume_path: Path | str | None = None, runs_dir: Path | str = "runs", world: World | None = None) -> FitResult:
    """Train ``cfg`` (or continue the checkpoint at ``resume_path``) until done, stopped or failed.

    ``run_dir``: the run's folder, made beforehand (the run process's), else the checkpoint's own folder
    on resume, else a new one under ``runs_dir``. Never raises; the result and the last event say how
    it ended. ``world``: this process's rank in a data-parallel job (engine/dist.py); one process if None."""
    sink = sink or NullSink()
    controls = controls or Controls()
    rundir = RunDir(run_dir) if isinstance(run_dir, (str, Path)) else run_dir
    try:
        run = Fit(cfg, sink, controls, rundir, resume_path, runs_dir, world or World())
    except USER_ERRORS as exc:
        return failed_setup(sink, rundir, Reason.INVALID, str(exc))
    except torch.cuda.OutOfMemoryError:
        return failed_setup(sink, rundir, Reason.OUT_OF_MEMORY, "out of device memory while loading the data and "
                             "model: try a smaller data.batch_size or data.device_resident = \"never\"")
    except Exception as exc:  # noqa: BLE001 - a setup failure is an outcome with a reason, never a traceback
        return failed_setup(sink, rundir, Reason.ERROR, f"while setting up: {type(exc).__name__}: {first_line(exc)}")
    return run.run()


def failed_setup(sink: Sink, rundir: RunDir | None, reason: Reason, message: str) -> FitResult:
    """The end of a fit that never started: one RunFinished, and its result."""
    path = rundir.path if rundir is not None else None
    sink.emit(RunFinished(reason.value, message, 0, 0, None, str(path or "")))
    return FitResult(reason, message, 0, 0, None, path)


class Fit:
    """One fit: its state, the loop, and the pieces the loop calls."""

    def __init__(self, cfg: RunConfig, sink: Sink, controls: Controls, rundir: RunDir | None,
                 resume_path: Path | str | None, runs_dir: Path | str, world: World) -> None:
        self.cfg, self.sink, self.controls, self.world = cfg, sink, controls, world
        resume = load_checkpoint(resume_path) if resume_path is not None else None
        self.device, self.data, self.model = prepare(cfg)
        if world.distributed:
            self._shard()
        t, reg = cfg.train, cfg.regularization
        self.loss_fn = build_loss(self.data.task, reg.label_smoothing, cfg.model.head)
        self.optimizer = build_optimizer(self.model, cfg.optimizer, reg, self.device, capture=capture_possible(cfg, self.device))
        self.schedule = build_schedule(self.optimizer, cfg.optimizer, t.epochs, len(self.data.train))
        self.stopper = EarlyStopping(reg.monitor, reg.patience, reg.min_delta, reg.stop_rule)
        monitor = GradientMonitor(self.model) if t.diagnostics and any(p.requires_grad for p in self.model.parameters()) else None
        self.body = StepBody(cfg, self.model, self.loss_fn, self.optimizer, self.data.task, self.device, t.log_every, monitor)
        if world.distributed:
            self.body.forward = self._wrap_ddp()
            self.step_runner = EagerRunner(self.body, self.schedule, sink)
        else:
            self.step_runner = choose_runner(cfg, self.body, self.schedule, sink)
        if os.environ.get("TUI_TRAINER_FAULT"):  # test-only: see FaultyRunner
            self.step_runner = FaultyRunner(self.step_runner, os.environ["TUI_TRAINER_FAULT"])
        self.epoch, self.step, self.batch_in_epoch = 0, 0, 0
        self.history: list[dict] = []
        self.partial = {"loss_sum": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.last_checkpoint: Path | None = None
        self.layers: tuple = ()
        self.alarmed: set[str] = set()
        self._probe: torch.Tensor | None = None
        self.elapsed_before = 0.0  # training seconds of earlier processes (a resumed run)
        self.paused = False
        self._steps_allowed = -1  # while paused: steps left to take one at a time (-1: not stepping)
        self._pause_seconds = 0.0
        self._used = self._count = 0  # steps and samples in the open log interval
        self._pending: list[Command] = []  # rank 0 under DDP: commands waiting for the next log interval
        self._last_boundary, self._boundary_epoch = -1e9, 0
        if resume is not None:
            self._restore(resume)
            if rundir is None:  # in-process (no run process prepared it): the checkpoint's own folder, or a new one
                rundir = prepare_run(cfg, runs_dir, resume_path)
            if world.main:
                rundir.checkpoints.mkdir(parents=True, exist_ok=True)
                rundir.truncate_metrics(self.epoch)
        self.rundir = rundir or prepare_run(cfg, runs_dir)
        if world.distributed:
            self._seed_rank()

    # == the loop ==========================================================================

    def run(self) -> FitResult:
        """Train until the last epoch, an early stop, a stop request or a failure."""
        self._t_start = time.perf_counter()
        self._started()
        self.model.train()
        try:
            while self.epoch < self.cfg.train.epochs:
                self.train_epoch()
                if self.end_epoch():
                    return self._early_stop()
            return self._finish(Reason.COMPLETED, f"completed {self.epoch} epochs")
        except _Stop as stop:
            return self._stopped(stop)
        except torch.cuda.OutOfMemoryError:
            return self._finish(Reason.OUT_OF_MEMORY, self._oom_message())
        except Exception as exc:  # noqa: BLE001 - reported as a reason, never a traceback on the screen
            if self.world.distributed and _peer_lost(exc):
                return self._finish(Reason.ERROR, f"another rank of this data-parallel run failed or was killed "
                                                  f"{self.where()}, so every rank stops ({first_line(exc, 100)})")
            return self._finish(Reason.ERROR, f"{self.where()}: {type(exc).__name__}: {first_line(exc)}")

    def train_epoch(self) -> None:
        """One epoch of steps (from ``batch_in_epoch`` on a resume), flushing every log interval."""
        batches = len(self.data.train)
        t_epoch = time.perf_counter()
        self._t_interval, self._n_interval = t_epoch, 0
        for xb, yb in self.data.train.epoch(epoch_seed(self.cfg.train.seed, self.epoch + 1), self.batch_in_epoch):
            self.poll_controls()
            last_of_interval = self._used + 1 == self.cfg.train.log_every or self.batch_in_epoch + 1 == batches
            stepping = self._steps_allowed >= 0
            self.step_runner(xb, yb, self._used, last_of_interval or stepping)
            self._used += 1
            self._count += len(yb)
            self._n_interval += len(yb)
            self.step += 1
            self.batch_in_epoch += 1
            if last_of_interval or stepping:
                self.flush_interval()
        self.partial["seconds"] += time.perf_counter() - t_epoch

    def poll_controls(self) -> None:
        """Act on every command sent since the last step; hold here while paused. Under DDP rank 0 only
        collects them: every rank acts on them together at the next log interval."""
        if self.world.distributed:
            if self.world.main:
                self._pending += self.controls.poll()
        else:
            self._act_all(self.controls.poll())
            self._hold_while_paused()
        if self._steps_allowed > 0:
            self._steps_allowed -= 1

    def flush_interval(self) -> None:
        """Read the interval's buffers (one host sync) and report progress."""
        mean = self._flush()
        now = time.perf_counter()
        batches = len(self.data.train)
        memory = memory_in_use(self.device)  # host-side counters and cudaMemGetInfo, no stream sync
        memory_ranks = self.world.gather_memory(memory)
        self.sink.emit(StepLogged(
            epoch=self.epoch + 1, step=self.step, batch=self.batch_in_epoch, batches=batches, loss=mean,
            lr=current_lr(self.optimizer), samples_per_s=self._n_interval / max(now - self._t_interval, 1e-9),
            elapsed_s=self.elapsed(), layers=self.layers, memory=memory, memory_ranks=memory_ranks))
        self._t_interval, self._n_interval = now, 0
        if self.world.distributed:  # every rank acts on rank 0's commands here, at the same step
            self._act_all(self._next_commands(0.0))
            self._hold_while_paused()

    def end_epoch(self) -> bool:
        """Validate, record, checkpoint; True when early stopping says stop."""
        t_val = time.perf_counter()
        val_loss, val_acc = evaluate(self.model, self.data, self.loss_fn, self.body.amp, self.world)
        p = self.partial
        train_loss = p["loss_sum"] / max(p["count"], 1)
        train_acc = p["correct"] / max(p["count"], 1) if self.data.task == "classification" else None
        self.epoch += 1
        self.batch_in_epoch = 0
        if not math.isfinite(val_loss):
            raise _Stop(Reason.NON_FINITE_LOSS, f"validation loss became non-finite at epoch {self.epoch}: lower the "
                        "learning rate or set regularization.grad_clip")
        is_best = self.stopper.update(val_acc if self.stopper.monitor == "val_acc" else val_loss, self.epoch)
        self.schedule.step_epoch(val_loss)
        dead = self._dead_units()
        row = EpochEnded(epoch=self.epoch, step=self.step, train_loss=train_loss, val_loss=val_loss, train_acc=train_acc,
                         val_acc=val_acc, lr=current_lr(self.optimizer),
                         epoch_seconds=p["seconds"] + (time.perf_counter() - t_val),
                         samples_per_s=p["count"] / max(p["seconds"], 1e-9), is_best=is_best,
                         grad_norms=tuple((r.name, r.grad_norm) for r in self.layers), dead_units=tuple(dead.items()))
        self.partial = {"loss_sum": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
        self.history.append(row.metrics())
        try:
            if self.world.main:
                self.rundir.append_metrics(row.metrics())
        except OSError as exc:
            self.sink.emit(LogMessage("error", f"could not append to {self.rundir.metrics_path}: {exc.strerror}"))
        self.sink.emit(row)
        if self.body.monitor is not None:
            self._alarm(curve_hints(self.history), where=f"after epoch {self.epoch}")
            if self.data.input_shape == (2,) and self.data.task == "classification" and self._boundary_due():
                self._emit_boundary()
        self._save_epoch_checkpoints(is_best)
        reg = self.cfg.regularization
        return reg.early_stopping and self.stopper.should_stop

    # == what the loop calls ================================================================

    def elapsed(self) -> float:
        """Training seconds of the whole run: earlier processes' time plus this one's, pauses left out."""
        return self.elapsed_before + time.perf_counter() - self._t_start - self._pause_seconds

    def _act_all(self, commands: list[Command]) -> None:
        for i, command in enumerate(commands):
            try:
                self._act(command)
            except _Stop:
                for later in commands[i + 1:]:
                    later.ack(False, "the run is stopping")
                raise

    def where(self) -> str:
        """Where the run is, in the words every front end uses: "in epoch 214 (213 complete), step 42600"."""
        return position(self.epoch, self.batch_in_epoch, self.step)

    def _act(self, command: Command) -> None:
        """One command from the controls, acknowledged with what happened."""
        where = self.where()
        match command.name:
            case "stop":
                command.ack(True, f"stopping {where}; saving last.pt")
                raise _Stop(Reason.STOPPED, stopped_message(where, command.args.get("why")))
            case "save":
                self._sync_partial()
                path = self.save("manual")
                if path is None:
                    command.ack(False, "the checkpoint could not be written (see the log)")
                else:
                    command.ack(True, f"saved {where}: {path}", path=str(path))
            case "set_lr":
                lr = command.args["lr"]
                set_lr(self.optimizer, lr)
                batches = max(len(self.data.train), 1)
                self.sink.emit(LrChanged(self.epoch + 1, self.step, self.epoch + self.batch_in_epoch / batches, lr))
                command.ack(True, f"learning rate set to {lr:g} {where}")
            case "pause":
                if self.paused:
                    command.ack(True, f"already paused {where}")
                else:
                    self._pause(True)
                    command.ack(True, f"paused {where}")
            case "resume":
                stepping, self._steps_allowed = self._steps_allowed >= 0, -1
                if self.paused or stepping:
                    self._pause(False)
                    command.ack(True, f"resumed {where}")
                else:
                    command.ack(False, "not paused")
            case "step":
                if self._steps_allowed >= 0:  # a step is under way: this one follows it (n pressed twice: two)
                    self._steps_allowed += 1
                    command.ack(True, f"one more step after the one under way ({where})")
                elif not self.paused:
                    command.ack(False, "step works while paused: pause first")
                else:
                    self.paused, self._steps_allowed = False, 1
                    command.ack(True, f"one step ({where})")

    def _hold_while_paused(self) -> None:
        """Pause after a single step, and wait here (acting on commands) until resumed."""
        if self._steps_allowed == 0:
            self._steps_allowed = -1
            self._pause(True)
        while self.paused:
            t0 = time.perf_counter()
            self._act_all(self._next_commands(0.25))
            self._pause_seconds += time.perf_counter() - t0

    def _next_commands(self, wait: float) -> list[Command]:
        """Commands to act on now: this process's own, or under DDP rank 0's, broadcast to every rank
        (while paused rank 0 broadcasts every ``wait`` seconds, so the ranks keep meeting)."""
        if self.world.main and wait > 0:
            self.controls.wait(wait)
        if not self.world.distributed:
            return self.controls.poll()
        if self.world.main:
            self._pending += self.controls.poll()
        shared = self.world.share_commands(self._pending)
        if self.world.main:
            self._pending = self._pending[len(shared):]
        return shared

    def _pause(self, paused: bool) -> None:
        self.paused = paused
        self.sink.emit(Paused(paused, shown_epoch(self.epoch, self.batch_in_epoch), self.step))  # the progress line's

    def _flush(self) -> float:
        """Fold the open interval into the epoch's totals (host sync, once per log interval); its mean loss."""
        used, count, first_step = self._used, self._count, self.step - self._used + 1
        self._used = self._count = 0
        if used == 0:
            return float("nan")
        body = self.body
        losses = body.loss_buf[:used]
        finite = torch.isfinite(losses)
        totals = torch.stack([losses.sum().double(), body.correct_buf[:used].sum().double(),
                              (~finite).sum().double(), torch.tensor(float(count), device=losses.device).double()])
        parts = [self.world.all_reduce(totals)]  # under DDP: every rank's interval, one all-reduce
        health, body.health = body.health, None
        if health is not None:
            parts.append(health.double().flatten())
        table, body.param_table = body.param_table, None
        if table is not None:
            parts.append(table.double().flatten())
        # host sync: one transfer per log interval (three scalars, the layer health table, tiny nets' parameters)
        values = torch.cat(parts).tolist()
        loss_sum, correct, bad_steps, count = values[:4]
        if bad_steps:  # before any alarm from this interval: the loss going non-finite is the news
            where = f"step {first_step + int((~finite).nonzero()[0, 0])}" if not finite.all() else "another rank's step"
            raise _Stop(Reason.NON_FINITE_LOSS,
                        f"loss became non-finite at epoch {self.epoch + 1}, {where}: lower the learning rate "
                        f"(optimizer.lr = {current_lr(self.optimizer):g}) or set regularization.grad_clip")
        count = int(count)
        rest = values[4:]
        if health is not None:
            names = body.monitor.names
            self.layers = health_rows(names, [rest[3 * i: 3 * i + 3] for i in range(len(names))])
            rest = rest[3 * len(names):]
            self._alarm(gradient_alarms(self.layers, self.cfg.model.activation))
        if table is not None:
            n = len(rest) // 3
            names = body.param_names()
            self.sink.emit(ParamValues(self.step, tuple(
                (names[i], rest[i], rest[n + i], rest[2 * n + i]) for i in range(n))))
        self.partial["loss_sum"] += loss_sum
        self.partial["correct"] += int(correct)
        self.partial["count"] += count
        return loss_sum / max(count, 1)

    def _sync_partial(self) -> None:
        """Fold the open interval into the partial-epoch totals (before a mid-epoch checkpoint)."""
        if self._used:
            self._flush()

    def _alarm(self, alarms: list[tuple[str, str]], where: str | None = None) -> None:
        """Emit each kind of alarm or hint once per run."""
        for kind, text in alarms:
            if kind not in self.alarmed:
                self.alarmed.add(kind)
                self.sink.emit(LogMessage("warning", f"{where or f'epoch {self.epoch + 1}, step {self.step}'}: {text}"))

    def _dead_units(self) -> dict[str, float]:
        if self.body.monitor is None:
            return {}
        if self._probe is None:  # one validation batch, taken once and kept on the device
            self._probe = next(iter(self.data.val.epoch(0)))[0]
        return dead_units(self.model, self._probe)  # curve_hints reads them from the history and decides

    def _boundary_due(self) -> bool:
        """A decision boundary at most once a second of training, and after the last epoch: on a preset whose
        epochs take 20-70 ms, computing and writing one every epoch cost 3% of the run (RESULTS.md)."""
        now = time.perf_counter()
        if self.epoch >= self.cfg.train.epochs or now - self._last_boundary >= 1.0:
            self._last_boundary = now
            return True
        return False

    def _emit_boundary(self) -> None:
        val = self.data.val
        if not hasattr(val, "x"):
            return
        xr, yr, classes, points = decision_grid(self.model, val.x, val.y)
        self._boundary_epoch = self.epoch
        self.sink.emit(Boundary(self.epoch, xr, yr, 64, 24, tuple(classes), tuple(map(tuple, points))))

    def _save_epoch_checkpoints(self, is_best: bool) -> None:
        if not self.world.main:
            if is_best and self.cfg.regularization.restore_best and self.cfg.regularization.early_stopping:
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return
        payload = self.payload("last")
        if is_best:
            reg = self.cfg.regularization
            if reg.restore_best and reg.early_stopping:
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.save("best", payload=dict(payload, kind="best"))
        self.save("last", payload=payload)

    # -- how a fit ends ---------------------------------------------------------------

    def _early_stop(self) -> FitResult:
        msg = self.stopper.message(self.epoch)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
            msg += "; best weights restored"
        return self._finish(Reason.EARLY_STOPPED, msg)

    def _stopped(self, stop: _Stop) -> FitResult:
        if stop.reason is Reason.STOPPED:
            try:
                self._sync_partial()
            except _Stop as late:  # the open interval held a non-finite loss: do not save it
                return self._finish(late.reason, late.message)
            self.save("last")
        return self._finish(stop.reason, stop.message)

    def _finish(self, reason: Reason, message: str) -> FitResult:
        if (reason.as_asked and self.body.monitor is not None and self.data.input_shape == (2,)
                and self.data.task == "classification" and self.epoch and self._boundary_epoch != self.epoch):
            self._emit_boundary()  # the boundary the run ended with (early stopped, stopped)
        if reason.as_asked and self.data.task == "classification" and self.epoch:
            try:
                self._emit_class_results()
            except Exception as exc:  # noqa: BLE001 - a report must never turn a finished run into a failure
                self.sink.emit(LogMessage("warning", f"per-class results unavailable: {first_line(exc)}"))
        self.sink.emit(RunFinished(reason.value, message, self.epoch, self.step, self.stopper.best, str(self.rundir.path),
                                   str(self.last_checkpoint) if self.last_checkpoint else None, self.elapsed()))
        return FitResult(reason, message, self.epoch, self.step, self.stopper.best, self.rundir.path,
                         list(self.history), self.last_checkpoint, self.model)

    def _emit_class_results(self) -> None:
        from tui_trainer.engine.report import class_report, format_class_report

        report = class_report(self.model, self.data, self.world)
        self.sink.emit(ClassResults(report.class_names, report.confusion, format_class_report(report)))

    def _oom_message(self) -> str:
        self.optimizer.zero_grad(set_to_none=True)
        mem = ""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            used_free = memory_in_use(self.device)
            if used_free:
                mem = f" ({used_free[0] / 2**20:.0f} MiB in use, {used_free[1] / 2**20:.0f} MiB free after cleanup)"
        return (f"out of device memory at batch size {self.cfg.data.batch_size}{mem}: try a smaller "
                f"data.batch_size, e.g. --set data.batch_size={max(1, self.cfg.data.batch_size // 2)}")

    def _started(self) -> None:
        total, trainable = count_params(self.model)
        try:
            summary = format_summary(summarize(self.model, self.data.input_shape), self.model)
        except Exception as exc:  # noqa: BLE001 - a summary is a nicety; never let it stop a run
            summary = f"(summary unavailable: {first_line(exc)})"
        self.sink.emit(RunStarted(
            run_dir=str(self.rundir.path), device=describe_device(self.device).describe(), n_params=total,
            n_trainable=trainable, epochs=self.cfg.train.epochs, start_epoch=self.epoch, start_step=self.step,
            steps_per_epoch=len(self.data.train), train_samples=self.data.train.n_samples,
            val_samples=self.data.val.n_samples, task=self.data.task, summary=summary, preset=self.cfg.name,
            elapsed_s=self.elapsed_before, monitor=self.stopper.monitor, prior=tuple(self.history),
            world_size=self.world.size))
        for note in self.data.notes:
            self.sink.emit(LogMessage("warning", note))

    # -- data parallel --------------------------------------------------------------

    def _shard(self) -> None:
        """Each rank takes its part of every batch (see data.Sharding)."""
        w = self.world
        self.data.train.shard(w.rank, w.size, even=True)
        self.data.val.shard(w.rank, w.size, even=False)

    def _wrap_ddp(self) -> nn.Module:
        """The model in DistributedDataParallel (SyncBatchNorm first when asked); ``self.model`` stays the
        plain module, so checkpoints hold its state and resume on any number of ranks."""
        from torch.nn.parallel import DistributedDataParallel

        if self.cfg.train.sync_batch_norm:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.body.model = self.model
        if self.cfg.train.compile != "off" and self.device.type == "cuda":
            self.sink.emit(LogMessage("info", f"train.compile = {self.cfg.train.compile}: the captured step is off under "
                                              "data parallel (not yet shown to be exact there); eager steps"))
        ids = [self.world.local_rank] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _seed_rank(self) -> None:
        """Dropout and augmentation draw differently on each rank (the weights started equal: every rank
        seeded the same before building the model, and DDP broadcasts rank 0's anyway)."""
        torch.manual_seed(self.cfg.train.seed * 1_000_003 + self.step * 101 + self.world.rank + 1)

    # -- checkpoints ---------------------------------------------------------------

    def payload(self, kind: str) -> dict[str, Any]:
        """Everything needed to continue the run exactly (weights_only-loadable types only)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": FORMAT_VERSION, "kind": kind, "model": self.model.state_dict(),
            "optimizer": optimizer_state(self.optimizer), "scheduler": self.schedule.state_dict(),
            "epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch, "partial": dict(self.partial),
            "rng": rng, "early_stopping": self.stopper.state_dict(), "history": list(self.history),
            "config": self.cfg.to_dict(), "run_dir": str(self.rundir.path), "saved_at": time.time(),
            "elapsed_s": self.elapsed(),
        }

    def save(self, kind: str, payload: dict | None = None) -> Path | None:
        """Write a checkpoint (rank 0 only: every rank holds the same state); a failed write is reported and the
        run goes on."""
        if not self.world.main:
            return None
        path = ({"last": self.rundir.last, "best": self.rundir.best}.get(kind)
                or self.rundir.manual(shown_epoch(self.epoch, self.batch_in_epoch), self.step))  # the progress line's epoch
        try:
            save_checkpoint(payload or self.payload(kind), path)
        except CheckpointError as exc:
            self.sink.emit(LogMessage("error", f"{exc}; the previous {path.name} is intact"))
            return None
        if kind == "last":
            self.last_checkpoint = path
        self.sink.emit(CheckpointSaved(str(path), kind, self.epoch, self.step))
        return path

    def _restore(self, ck: dict[str, Any]) -> None:
        why = state_mismatch(self.model, ck["model"])
        if why:
            raise CheckpointError(f"checkpoint does not match the {self.cfg.model.arch} model of its config: {why}")
        try:
            self.model.load_state_dict(ck["model"])
            if ck.get("optimizer"):
                load_optimizer_state(self.optimizer, ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint does not match the {self.cfg.model.arch} model of its config: "
                                  f"{first_line(exc)}") from None
        self.schedule.load_state_dict(ck.get("scheduler") or {})
        self.epoch, self.step = int(ck["epoch"]), int(ck["step"])
        self.batch_in_epoch = int(ck.get("batch_in_epoch", 0))
        self.stopper.load_state_dict(ck.get("early_stopping") or {})
        self.history = list(ck.get("history") or [])
        self.partial = dict(ck.get("partial") or self.partial)
        self.elapsed_before = float(ck.get("elapsed_s") or 0.0)
        rng = ck.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
