"""The training loop: ``fit(config, sink, controls, run_dir, resume_path) -> FitResult``.

THE LOOP READS TOP TO BOTTOM IN CALL ORDER: ``fit`` sets up a ``Fit`` (data, model, optimizer, and the
collaborators below), then ``Fit.run`` trains epochs: an epoch is steps (``Steering.before_step`` first,
the interval flushed every ``log_every``), then ``end_epoch`` (validate, record, checkpoint). What the
loop calls is not in it:

* ``steps.choose_step``: how one step runs (eager, compiled forward, captured CUDA graph), chosen once;
* ``steering.Steering``: the commands (stop, save, set_lr, pause, resume, step) and the pause state;
* ``checkpoint.Checkpoints``: the payload, writing it, restoring a fit from it;
* ``dist.strategy``: the data-parallel rules (shard, wrap, seed each rank, share commands);
* ``watch.Watch``: layer health and its alarms, the curve's hints, dead units, the decision boundary,
  an image classifier's validation sample each epoch (samples.json), per-class results at the end;
* ``progress.Progress``: where the run is, the epoch's totals, its rows and clock.

The engine reports only through ``sink.emit(event)`` (the run process's recorder writes the folder;
the loop writes checkpoints, nothing else), never prints, and never raises: every outcome, setup
errors included, ends in one ``RunFinished`` with a ``Reason``.

Speed rules kept here (benchmarks/RESULTS.md says what they buy):
* no ``loss.item()`` per batch: each step's loss and correct count go into small device buffers,
  read once per log interval (the only host syncs in the training steps, each commented);
* controls are polled between steps (one truth test when none is pending): Stop, Save, a new
  learning rate, pause and single steps act within one step.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tui_trainer.config import RunConfig
from tui_trainer.config.factories import names_code
from tui_trainer.engine.checkpoint import Checkpoints, load_checkpoint
from tui_trainer.engine.device import describe_device, memory_in_use, shared_gpu_note
from tui_trainer.engine.diagnostics import GradientMonitor
from tui_trainer.engine.dist import World, strategy
from tui_trainer.engine.factories import first_batch
from tui_trainer.engine.models import count_params, format_summary, layer_summary
from tui_trainer.engine.optim import build_optimizer, build_schedule, current_lr
from tui_trainer.engine.parts import EarlyStopping, epoch_seed, evaluate, loss_for, prepare
from tui_trainer.engine.progress import EpochTotals, Progress, Startup, StopRun
from tui_trainer.engine.steering import Steering
from tui_trainer.engine.steps import StepBody, capture_possible
from tui_trainer.engine.watch import Watch
from tui_trainer.errors import USER_ERRORS, first_line
from tui_trainer.run.controls import Controls
from tui_trainer.run.events import (
    EpochEnded,
    Event,
    LogMessage,
    NullSink,
    ParamValues,
    Reason,
    RecordLost,
    RunFinished,
    RunStarted,
    Sink,
    StartupTimed,
    StepLogged,
)
from tui_trainer.run.folder import RunDir, prepare_run
from tui_trainer.run.threads import ThreadPlan, ThreadPolicy


@dataclass
class FitResult:
    """Why and where a run ended."""

    reason: Reason
    message: str
    epoch: int
    step: int
    best_metric: float | None
    run_dir: Path | None
    rows: list[dict] = field(default_factory=list)  # one metrics row per epoch complete, as in metrics.jsonl
    last_checkpoint: Path | None = None
    model: nn.Module | None = field(default=None, repr=False)  # the trained model (best weights if restored)

    @property
    def ok(self) -> bool:
        """True when the run ended as asked (completed, early stop, or stopped by the user)."""
        return self.reason.as_asked


def fit(cfg: RunConfig, sink: Sink | None = None, controls: Controls | None = None, run_dir: RunDir | Path | None = None,
        resume_path: Path | str | None = None, runs_dir: Path | str = "runs", world: World | None = None,
        threads: ThreadPolicy | None = None, process_start: float | None = None) -> FitResult:
    """Train ``cfg`` (or continue the checkpoint at ``resume_path``) until done, stopped or failed.

    ``run_dir``: the run's folder, prepared beforehand (the run process's, whose recorder is in ``sink``).
    Without one (a fit in the caller's process: tests, a dry run, benchmarks) fit asks ``run.folder.prepare_run``
    for one once the setup succeeded (the checkpoint's own folder on resume, else a new one under ``runs_dir``;
    a setup that fails leaves none) and records into it with a ``RunRecorder`` beside ``sink``, as a run process
    does. Never raises; the result and the last event say how it ended. ``world``: this process's rank in a
    data-parallel job (engine/dist.py); one process if None. ``threads``: the run process's thread policy
    (run/threads.py, started and applied by its owner): the device line says what it chose, and it is looked at
    again at log intervals; None (a fit in the caller's process) leaves torch's threads as the caller set them.
    ``process_start``: when this process began (``time.time()``), for the "start-up" phase of ``StartupTimed``."""
    sink = sink or NullSink()
    controls = controls or Controls()
    folder = RunDir(run_dir) if isinstance(run_dir, (str, Path)) else run_dir
    relay = _Relay(sink) if folder is None else None
    try:
        run = Fit(cfg, relay or sink, controls, resume_path, world or World(), threads, process_start)
        if folder is None:
            folder = prepare_run(cfg, runs_dir, resume_path)
    except USER_ERRORS as exc:
        return failed_setup(sink, folder, Reason.INVALID, str(exc))
    except torch.cuda.OutOfMemoryError:
        return failed_setup(sink, folder, Reason.OUT_OF_MEMORY, "out of device memory while loading the data and "
                            "model: try a smaller data.batch_size or data.device_resident = \"never\"")
    except Exception as exc:  # noqa: BLE001 - a setup failure is an outcome with a reason, never a traceback
        return failed_setup(sink, folder, Reason.ERROR, f"while setting up: {type(exc).__name__}: {first_line(exc)}")
    if relay is None:
        return run.run(folder)
    return _recorded(run, relay, folder, controls)


def _recorded(run: Fit, relay: _Relay, folder: RunDir, controls: Controls) -> FitResult:
    """``run`` trained in the folder fit made for it, recorded there as a run process records its own."""
    from tui_trainer.run.recorder import recording

    with recording(folder, controls) as recorder:
        relay.record_into(recorder)
        return run.run(folder)


class _Relay:
    """The sink a fit emits into: the caller's, and once ``fit`` has made the run's folder, that folder's recorder
    first (the setup's few events, said before the folder existed, are written to it then)."""

    def __init__(self, sink: Sink) -> None:
        self.sinks: list[Sink] = [sink]
        self.setup: list[Event] | None = []

    def emit(self, event: Event) -> None:
        if self.setup is not None:
            self.setup.append(event)
        for sink in self.sinks:
            sink.emit(event)

    def record_into(self, recorder: Sink) -> None:
        """Write the setup's events to ``recorder``, and every event from now on (to it first)."""
        for event in self.setup or ():
            recorder.emit(event)
        self.setup = None
        self.sinks.insert(0, recorder)


def apply_threads(plan: ThreadPlan) -> None:
    """torch's intra-op threads as ``plan`` says (on the calling thread: OpenMP's count is per thread)."""
    if torch.get_num_threads() != plan.threads:
        torch.set_num_threads(plan.threads)


def cap_workers(data: object, threads: int) -> None:
    """A streaming loader's worker processes (``data.num_workers``) at most ``threads``, before its workers start:
    they decode and augment on the cores the run's share allows (never 0 when some were asked: the work would
    move onto the training thread)."""
    for batches in (getattr(data, "train", None), getattr(data, "val", None)):
        workers = getattr(batches, "num_workers", 0)
        if workers > threads:
            batches.num_workers = max(1, threads)


def import_dynamo_meanwhile(cfg: RunConfig) -> threading.Thread | None:
    """Import ``torch._dynamo`` in a thread while the device, data and model are set up; the caller joins it before
    it makes the optimizer. Every torch optimizer's ``__init__`` imports it on its first call (torch/_compile.py
    ``_disable_dynamo``): ~1 s that otherwise waits for the data. Not beside the user's code (its imports run at
    the same time: a cycle through them could meet a half-imported module), nor when it is imported already (the
    torchvision presets import it). A failure is left to the optimizer's own import, which says it."""
    import sys

    if "torch._dynamo" in sys.modules or names_code(cfg):
        return None

    def load() -> None:
        try:
            __import__("torch._dynamo")
        except Exception:  # noqa: BLE001 - the optimizer's import, on the main thread, raises it where it is handled
            pass

    thread = threading.Thread(target=load, name="import torch._dynamo", daemon=True)
    thread.start()
    return thread


def failed_setup(sink: Sink, rundir: RunDir | None, reason: Reason, message: str) -> FitResult:
    """The end of a fit that never started: one RunFinished, and its result."""
    path = rundir.path if rundir is not None else None
    sink.emit(RunFinished(reason.value, message, 0, 0, None, str(path or "")))
    return FitResult(reason, message, 0, 0, None, path)


@dataclass
class Interval:
    """The open log interval: steps whose numbers wait in the device buffers and their samples (folded into the
    epoch's totals at the next flush), and the samples and start behind the next samples/s."""

    steps: int = 0
    samples: int = 0
    rate_samples: int = 0
    rate_since: float = 0.0


class Fit:
    """One fit: set up in ``__init__`` (nothing written), trained by ``run`` into the folder it is given."""

    def __init__(self, cfg: RunConfig, sink: Sink, controls: Controls, resume_path: Path | str | None = None,
                 world: World | None = None, threads: ThreadPolicy | None = None,
                 process_start: float | None = None) -> None:
        self.startup: Startup | None = Startup(process_start)  # None once said, after the first step
        dynamo = import_dynamo_meanwhile(cfg)
        self.cfg, self.sink, self.threads = cfg, sink, threads
        self.strategy = strategy(world or World(), cfg)
        self.world = self.strategy.world
        resume = load_checkpoint(resume_path) if resume_path is not None else None
        if resume is not None:
            self.startup.lap("checkpoint")
        self.device, self.data, model = prepare(cfg, self.startup.lap)
        self.strategy.shard(self.data)
        if threads is not None and threads.current is not None:  # a streaming loader's workers share the cores too
            cap_workers(self.data, threads.current.threads)
        t, reg = cfg.train, cfg.regularization
        self.loss_fn = loss_for(cfg, self.data.task)
        if dynamo is not None:
            dynamo.join()  # the optimizer imports it: never two threads in one import
        self.optimizer = build_optimizer(model, cfg.optimizer, reg, self.device, capture=capture_possible(cfg, self.device))
        self.schedule = build_schedule(self.optimizer, cfg.optimizer, t.epochs, len(self.data.train))
        self.stopper = EarlyStopping(reg.monitor, reg.patience, reg.min_delta, reg.stop_rule)
        monitor = GradientMonitor(model) if t.diagnostics and any(p.requires_grad for p in model.parameters()) else None
        self.body = StepBody(cfg, model, self.loss_fn, self.optimizer, self.data.task, self.device, t.log_every, monitor)
        self.model = self.strategy.wrap(self.body, sink)  # the plain module: what checkpoints hold
        self.train_step = self.strategy.train_step(self.body, self.schedule, sink)
        self.progress = Progress()
        self.interval = Interval()
        self.checkpoints = Checkpoints(cfg, self.model, self.optimizer, self.schedule, self.stopper, self.device,
                                       self.progress, sink, writes=self.world.main)
        self.steering = Steering(self.strategy.commands(controls), sink, self.progress, self.optimizer,
                                 len(self.data.train), save=self._save_now)
        self.watch = Watch(cfg, self.model, self.data, monitor, self.world, sink, self.progress)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.folder: RunDir | None = None
        if resume is not None:
            self.checkpoints.restore(resume, resume_path)
        self.strategy.seed(self.progress.step)
        self.startup.lap("model")  # its optimizer, schedule, step and restored state with it

    # == the loop ==========================================================================

    def run(self, folder: RunDir) -> FitResult:
        """Train until the last epoch, an early stop, a stop request or a failure; checkpoints go into ``folder``."""
        self.folder = self.checkpoints.folder = folder
        self.progress.clock.start()
        self.model.train()
        try:
            self._started()
            self.startup.lap("model")  # its summary (a forward pass through the user's model)
            while self.progress.epoch < self.cfg.train.epochs:
                self.train_epoch()
                if self.end_epoch():
                    return self._early_stop()
            return self._finish(Reason.COMPLETED, f"completed {self.progress.epoch} epochs")
        except StopRun as stop:
            return self._stopped(stop)
        except RecordLost as lost:
            return self._finish(Reason.ERROR, self._lost_message(lost))
        except torch.cuda.OutOfMemoryError:
            return self._finish(Reason.OUT_OF_MEMORY, self._oom_message())
        except Exception as exc:  # noqa: BLE001 - reported as a reason, never a traceback on the screen
            said = self.strategy.failure(exc, self.where())
            return self._finish(Reason.ERROR, said or f"{self.where()}: {type(exc).__name__}: {first_line(exc)}")

    def train_epoch(self) -> None:
        """One epoch of steps (from ``batch_in_epoch`` on a resume), flushing every log interval."""
        p, interval, steering = self.progress, self.interval, self.steering
        batches, log_every = len(self.data.train), self.cfg.train.log_every
        t_epoch = time.perf_counter()
        interval.rate_since, interval.rate_samples = t_epoch, 0
        for xb, yb in self.data.train.epoch(epoch_seed(self.cfg.train.seed, p.epoch + 1), p.batch_in_epoch):
            steering.before_step()
            last_of_interval = interval.steps + 1 == log_every or p.batch_in_epoch + 1 == batches
            flush = last_of_interval or steering.stepping
            self.train_step(xb, yb, interval.steps, flush)
            interval.steps += 1
            interval.samples += len(yb)
            interval.rate_samples += len(yb)
            p.step += 1
            p.batch_in_epoch += 1
            if self.startup is not None:
                self._startup_timed()
            if flush:
                self.flush_interval()
        p.totals.seconds += time.perf_counter() - t_epoch

    def flush_interval(self) -> None:
        """Read the interval's buffers (one host sync), report progress, and (under DDP) act on commands."""
        mean = self._flush()
        now = time.perf_counter()
        p, interval = self.progress, self.interval
        memory = memory_in_use(self.device)  # host-side counters and cudaMemGetInfo, no stream sync
        memory_ranks = self.world.gather_memory(memory)
        self.sink.emit(StepLogged(
            epoch=p.epoch + 1, step=p.step, batch=p.batch_in_epoch, batches=len(self.data.train), loss=mean,
            lr=current_lr(self.optimizer), samples_per_s=interval.rate_samples / max(now - interval.rate_since, 1e-9),
            elapsed_s=p.clock.elapsed(), layers=self.watch.layers, memory=memory, memory_ranks=memory_ranks))
        interval.rate_since, interval.rate_samples = now, 0
        if self.threads is not None and (changed := self.threads.rebalance()) is not None:  # every few seconds
            apply_threads(changed)
            self.sink.emit(LogMessage("info", f"threads now {changed.describe()}"))
        self.steering.at_interval()  # under DDP every rank acts on rank 0's commands here, at the same step

    def end_epoch(self) -> bool:
        """Validate, record, checkpoint; True when early stopping says stop."""
        t_val = time.perf_counter()
        collect = self.watch.sample_collector()  # the image views' per-example results, from the same pass
        val_loss, val_acc = evaluate(self.model, self.data, self.loss_fn, self.body.amp, self.world, collect)
        p, totals = self.progress, self.progress.totals
        train_acc = totals.train_acc if self.data.task == "classification" else None
        p.epoch += 1
        p.batch_in_epoch = 0
        if not math.isfinite(val_loss):
            raise StopRun(Reason.NON_FINITE_LOSS, f"validation loss became non-finite at epoch {p.epoch}: lower the "
                          "learning rate or set regularization.grad_clip")
        is_best = self.stopper.update(val_acc if self.stopper.monitor == "val_acc" else val_loss, p.epoch)
        self.schedule.step_epoch(val_loss)
        dead = self.watch.dead_units()
        row = EpochEnded(epoch=p.epoch, step=p.step, train_loss=totals.train_loss, val_loss=val_loss,
                         train_acc=train_acc, val_acc=val_acc, lr=current_lr(self.optimizer),
                         epoch_seconds=totals.seconds + (time.perf_counter() - t_val),
                         samples_per_s=totals.count / max(totals.seconds, 1e-9), is_best=is_best,
                         grad_norms=tuple((r.name, r.grad_norm) for r in self.watch.layers), dead_units=tuple(dead.items()))
        p.totals = EpochTotals()
        p.rows.append(row.metrics())
        self.watch.samples(collect)  # before the epoch's end is said: whoever sees it finds this epoch's sample
        self.sink.emit(row)  # the recorder writes it to events.jsonl and metrics.jsonl
        self.watch.after_epoch()
        self._save_epoch_checkpoints(is_best)
        reg = self.cfg.regularization
        return reg.early_stopping and self.stopper.should_stop

    # == what the loop calls ================================================================

    def where(self) -> str:
        """Where the run is, in the words every front end uses: "in epoch 214 (213 complete), step 42600"."""
        return self.progress.where()

    def _flush(self) -> float:
        """Fold the open interval into the epoch's totals (host sync, once per log interval); its mean loss."""
        interval, p = self.interval, self.progress
        used, count, first_step = interval.steps, interval.samples, p.step - interval.steps + 1
        interval.steps = interval.samples = 0
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
            raise StopRun(Reason.NON_FINITE_LOSS,
                          f"loss became non-finite at epoch {p.epoch + 1}, {where}: lower the learning rate "
                          f"(optimizer.lr = {current_lr(self.optimizer):g}) or set regularization.grad_clip")
        count = int(count)
        rest = values[4:]
        if health is not None:
            n_health = 3 * len(body.monitor.names)  # (layers, 3)
            self.watch.layer_health(rest[:n_health])
            rest = rest[n_health:]
        if table is not None:
            n = len(rest) // 3
            names = body.param_names()
            self.sink.emit(ParamValues(p.step, tuple(
                (names[i], rest[i], rest[n + i], rest[2 * n + i]) for i in range(n))))
        p.totals.loss_sum += loss_sum
        p.totals.correct += int(correct)
        p.totals.count += count
        return loss_sum / max(count, 1)

    def _sync_partial(self) -> None:
        """Fold the open interval into the partial-epoch totals (before a mid-epoch checkpoint)."""
        if self.interval.steps:
            self._flush()

    def _save_now(self) -> Path | None:
        """A checkpoint on request (the save command): the open interval folded in first."""
        self._sync_partial()
        return self.checkpoints.save("manual")

    def _save_epoch_checkpoints(self, is_best: bool) -> None:
        reg = self.cfg.regularization
        if is_best and reg.restore_best and reg.early_stopping:  # every rank: each restores its own copy
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if not self.checkpoints.writes:
            return
        payload = self.checkpoints.payload("last")
        if is_best:
            self.checkpoints.save("best", payload=dict(payload, kind="best"))
        self.checkpoints.save("last", payload=payload)

    # -- how a fit ends ---------------------------------------------------------------

    def _early_stop(self) -> FitResult:
        msg = self.stopper.message(self.progress.epoch)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
            msg += "; best weights restored"
        return self._finish(Reason.EARLY_STOPPED, msg)

    def _stopped(self, stop: StopRun) -> FitResult:
        if stop.reason is Reason.STOPPED:
            try:
                self._sync_partial()
                self.checkpoints.save("last")
            except StopRun as late:  # the open interval held a non-finite loss: do not save it
                return self._finish(late.reason, late.message)
            except RecordLost as lost:
                return self._finish(Reason.ERROR, self._lost_message(lost))
        return self._finish(stop.reason, stop.message)

    def _lost_message(self, lost: RecordLost) -> str:
        """A run that cannot write its record: where it stopped, why, and (if its folder is still there) what it
        kept."""
        kept = f"; {self.checkpoints.kept()}" if lost.folder_kept else ""
        return f"{self.where()}: {lost.message}{kept}"

    def _finish(self, reason: Reason, message: str) -> FitResult:
        p = self.progress
        try:
            self.watch.at_end(reason)
        except RecordLost as lost:
            reason, message = Reason.ERROR, self._lost_message(lost)
        self.sink.emit(RunFinished(reason.value, message, p.epoch, p.step, self.stopper.best, str(self.folder.path),
                                   str(self.checkpoints.last) if self.checkpoints.last else None, p.clock.elapsed()))
        return FitResult(reason, message, p.epoch, p.step, self.stopper.best, self.folder.path,
                         list(p.rows), self.checkpoints.last, self.model)

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

    def _startup_timed(self) -> None:
        """After this process's first step: where the seconds before it went (``StartupTimed``), once. The step is
        synchronised on a GPU (once per run) so its time is its kernels', and a pause before it is left out."""
        startup, self.startup = self.startup, None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        startup.lap("first step")
        startup.phases["first step"] = max(0.0, startup.phases["first step"] - self.progress.clock.paused)
        self.sink.emit(StartupTimed(tuple(startup.phases.items())))

    def _device_line(self) -> str:
        """``cpu: x86_64 · 1 thread: 2 runs share 2 cores``: the device, and the threads chosen and why."""
        plan = self.threads.current if self.threads is not None else None
        line = describe_device(self.device, threads=plan is None).describe()
        return f"{line} · {plan.describe()}" if plan is not None else line

    def _started(self) -> None:
        total, trainable = count_params(self.model)
        try:
            example = first_batch(self.data)[0] if self.data.checked else None  # the user's model: a real batch
            summary = format_summary(layer_summary(self.model, self.data.input_shape, example), self.model)
        except Exception as exc:  # noqa: BLE001 - a summary is a nicety; never let it stop a run
            summary = f"(summary unavailable: {first_line(exc)})"
        p = self.progress
        self.sink.emit(RunStarted(
            run_dir=str(self.folder.path), device=self._device_line(), n_params=total,
            n_trainable=trainable, epochs=self.cfg.train.epochs, start_epoch=p.epoch, start_step=p.step,
            steps_per_epoch=len(self.data.train), train_samples=self.data.train.n_samples,
            val_samples=self.data.val.n_samples, task=self.data.task, summary=summary, preset=self.cfg.name,
            elapsed_s=p.clock.before, monitor=self.stopper.monitor, prior=tuple(p.rows),
            world_size=self.world.size))
        for note in self.data.notes:
            self.sink.emit(LogMessage("warning", note))
        if self.device.type == "cuda":  # several runs on one GPU: each says what the others hold when it starts
            free, total = torch.cuda.mem_get_info(self.device)
            said = shared_gpu_note(total, free, torch.cuda.memory_reserved(self.device))
            if said is not None:
                self.sink.emit(LogMessage(*said))
        if self.data.checked:
            self.sink.emit(LogMessage("info", self.data.checked))
