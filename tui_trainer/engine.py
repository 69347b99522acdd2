"""The training engine: ``Trainer.fit(config, sink, controls) -> FitResult``.

A plain loop: for each epoch, training steps, then a ``torch.no_grad()`` validation pass in
``eval()`` mode. It reports only through ``sink.emit(event)`` and never prints.

Speed rules kept here (see benchmarks/RESULTS.md for what they buy):
* no ``loss.item()`` per batch: each step's loss and correct count are written into small
  device buffers, read once per log interval (the only host syncs in the training steps,
  each commented as one);
* controls are ``threading.Event``s polled between steps, so Stop and Save act within one step;
* ``train.compile`` on a GPU records the whole step as one CUDA graph (``capture.py``); on a
  CPU, or with an optimizer that cannot be captured, it compiles the forward pass.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tui_trainer.capture import WARM_UP_STEPS, CapturedStep
from tui_trainer.checkpoint import FORMAT_VERSION, CheckpointError, save_checkpoint
from tui_trainer.config import RunConfig, from_dict
from tui_trainer.data import DataBundle, load_data, peek_shape
from tui_trainer.device import describe_device, memory_in_use, pick_device
from tui_trainer.diagnostics import (
    GradientMonitor,
    curve_hints,
    dead_alarm,
    dead_units,
    decision_grid,
    gradient_alarms,
    health_rows,
)
from tui_trainer.events import (
    Boundary,
    CheckpointSaved,
    ClassResults,
    EpochEnded,
    LogMessage,
    NullSink,
    RunFinished,
    RunStarted,
    Sink,
    StepLogged,
)
from tui_trainer.models import build_model, count_params, format_summary, state_mismatch, summarize
from tui_trainer.optim import (
    CAPTURABLE,
    build_optimizer,
    build_schedule,
    current_lr,
    l1_penalty,
    load_optimizer_state,
    optimizer_state,
    set_lr,
)
from tui_trainer.runs import RunDir, create_run_dir


class Controls:
    """How another thread steers a running fit: all polled between steps."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.save_now = threading.Event()
        self._lr_lock = threading.Lock()
        self._pending_lr: float | None = None

    def request_lr(self, lr: float) -> None:
        """Ask the run to switch to learning rate ``lr`` before its next step."""
        with self._lr_lock:
            self._pending_lr = lr

    def take_lr(self) -> float | None:
        """The pending learning-rate change, if any (clears it). Polled every step: no lock unless one is pending."""
        if self._pending_lr is None:
            return None
        with self._lr_lock:
            lr, self._pending_lr = self._pending_lr, None
            return lr


@dataclass
class FitResult:
    """Why and where a run ended."""

    reason: str
    message: str
    epoch: int
    step: int
    best_metric: float | None
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    last_checkpoint: Path | None = None
    model: nn.Module | None = field(default=None, repr=False)  # the trained model (best weights if restored)

    @property
    def ok(self) -> bool:
        """True when the run ended as asked (completed, early stop, or stopped by the user)."""
        return self.reason in ("completed", "early_stopped", "stopped")


class EarlyStopping:
    """Tracks the best value of a metric and how many epochs passed without improvement."""

    def __init__(self, monitor: str, patience: int, min_delta: float) -> None:
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.sign = -1.0 if monitor == "val_acc" else 1.0  # compare as "lower is better"
        self.best: float | None = None
        self.bad_epochs = 0
        self.best_epoch = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; True when it is a new best."""
        v = self.sign * value
        if self.best is None or v < self.sign * self.best - self.min_delta:
            self.best, self.bad_epochs, self.best_epoch = value, 0, epoch
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """Patience exhausted."""
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        """For the checkpoint."""
        return {"best": self.best, "bad_epochs": self.bad_epochs, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        """From the checkpoint."""
        self.best, self.bad_epochs = state.get("best"), state.get("bad_epochs", 0)
        self.best_epoch = state.get("best_epoch", 0)


class _Stop(Exception):
    """Internal: leave the loop with a reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffling seed of one epoch: a resumed run replays exactly the same order."""
    return seed * 1_000_003 + epoch


def build_loss(task: str, label_smoothing: float = 0.0) -> nn.Module:
    """Cross-entropy (label smoothing applies) for classification, mean squared error for regression."""
    if task == "classification":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    return nn.MSELoss()


def describe_model(cfg: RunConfig) -> tuple[int, int, str]:
    """(total, trainable, layer table) of ``cfg``'s model, without loading the data.

    Built on the meta device: no memory, no weights, and no draw from the global RNG (the app
    asks from a worker thread while a run may be seeding that RNG on the training thread)."""
    shape, out = peek_shape(cfg)
    with torch.device("meta"):
        model = build_model(cfg.model, shape, out)
    total, trainable = count_params(model)
    return total, trainable, format_summary(summarize(model, shape), model)


@torch.no_grad()
def evaluate(model: nn.Module, data: DataBundle, loss_fn: nn.Module, amp: bool = False) -> tuple[float, float | None]:
    """Validation loss (summed over samples, divided by their count) and accuracy."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for xb, yb in data.val.epoch(0):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(xb)
        loss_sum += loss_fn(out.float(), yb) * len(yb)
        if data.task == "classification":
            correct += (out.argmax(1) == yb).sum()
        n += len(yb)
    model.train(was_training)
    # host sync: once per validation pass
    val_loss = loss_sum.item() / max(n, 1)
    return val_loss, (correct.item() / max(n, 1) if data.task == "classification" else None)


class Trainer:
    """Runs one fit at a time; everything it learns is reported through the sink."""

    def __init__(self, runs_dir: Path | str = "runs") -> None:
        self.runs_dir = Path(runs_dir)

    def prepare(self, cfg: RunConfig) -> tuple[torch.device, DataBundle, nn.Module]:
        """Device, data and model for ``cfg`` (seeded). Raises ConfigError/DataError on bad input."""
        device = pick_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        data = load_data(cfg, device)
        model = build_model(cfg.model, data.input_shape, data.out_features).to(device)
        if cfg.train.channels_last and len(data.input_shape) == 3:
            model = model.to(memory_format=torch.channels_last)
        if device.type == "cuda" and len(data.input_shape) == 3:
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
        return device, data, model

    def fit(self, cfg: RunConfig, sink: Sink | None = None, controls: Controls | None = None,
            resume: dict[str, Any] | None = None) -> FitResult:
        """Train ``cfg`` (or continue ``resume``, a loaded checkpoint) until done, stopped or failed."""
        sink = sink or NullSink()
        controls = controls or Controls()
        device, data, model = self.prepare(cfg)
        run = _Run(self, cfg, sink, controls, device, data, model, resume)
        return run.execute()


class _Run:
    """The state of one fit; methods are the loop's pieces."""

    def __init__(self, trainer: Trainer, cfg: RunConfig, sink: Sink, controls: Controls, device: torch.device,
                 data: DataBundle, model: nn.Module, resume: dict[str, Any] | None) -> None:
        self.cfg, self.sink, self.controls, self.device = cfg, sink, controls, device
        self.data, self.model = data, model
        self.amp = cfg.train.amp == "bf16"
        t = cfg.train
        self.loss_fn = build_loss(data.task, cfg.regularization.label_smoothing)
        capture = t.compile and device.type == "cuda" and cfg.optimizer.name in CAPTURABLE
        self.optimizer = build_optimizer(model, cfg.optimizer, cfg.regularization, device, capture=capture)
        self.schedule = build_schedule(self.optimizer, cfg.optimizer, t.epochs, len(data.train))
        reg = cfg.regularization
        self.stopper = EarlyStopping(reg.monitor, reg.patience, reg.min_delta)
        self.epoch, self.step, self.batch_in_epoch = 0, 0, 0
        self.history: list[dict] = []
        self.partial = {"loss_sum": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.last_checkpoint: Path | None = None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.forward: nn.Module = model
        self._compile_pending = False
        self.captured: CapturedStep | None = None
        self._capture_in = -1  # eager warm-up steps left before the step is captured; -1: no capture
        if capture:
            self._capture_in = WARM_UP_STEPS
            self._side_stream = torch.cuda.Stream(device)
        elif t.compile:
            if device.type == "cuda":
                self.sink.emit(LogMessage("info", f"train.compile: the whole step cannot be captured ({cfg.optimizer.name} "
                                                  "keeps its step count on the host); compiling the forward pass only"))
            try:  # fixed-shape steps (drop_last): CUDA graphs of the forward on GPU, inductor kernels on CPU
                self.forward = torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else "default",
                                             dynamic=False)
                self._compile_pending = True
            except Exception as exc:  # noqa: BLE001 - no compiler here: train eagerly
                self.sink.emit(LogMessage("warning", f"train.compile unavailable ({type(exc).__name__}); training eagerly"))
        self.monitor = GradientMonitor(model) if t.diagnostics and self.params else None
        self._health: torch.Tensor | None = None  # (layers, 3) on the device until the log-interval sync
        self.layers: tuple = ()
        self.alarmed: set[str] = set()
        self._probe: torch.Tensor | None = None
        if resume is not None:
            self._restore(resume)
            self.rundir = RunDir(Path(resume["run_dir"]))
            if not self.rundir.path.is_dir():
                self.rundir = create_run_dir(trainer.runs_dir, cfg)
            else:
                self.rundir.checkpoints.mkdir(parents=True, exist_ok=True)
                self.rundir.truncate_metrics(self.epoch)
        else:
            self.rundir = create_run_dir(trainer.runs_dir, cfg)
        self.n = t.log_every
        # per-step device buffers: losses and correct counts of the current log interval
        self.loss_buf = torch.zeros(self.n, device=device)
        self.correct_buf = torch.zeros(self.n, device=device, dtype=torch.long)

    # -- checkpoints -------------------------------------------------------

    def _restore(self, ck: dict[str, Any]) -> None:
        why = state_mismatch(self.model, ck["model"])
        if why:
            raise CheckpointError(f"checkpoint does not match the {self.cfg.model.arch} model of its config: {why}")
        try:
            self.model.load_state_dict(ck["model"])
            if ck.get("optimizer"):
                load_optimizer_state(self.optimizer, ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"checkpoint does not match the {self.cfg.model.arch} model of its config: {first}") from None
        self.schedule.load_state_dict(ck.get("scheduler") or {})
        self.epoch, self.step = int(ck["epoch"]), int(ck["step"])
        self.batch_in_epoch = int(ck.get("batch_in_epoch", 0))
        self.stopper.load_state_dict(ck.get("early_stopping") or {})
        self.history = list(ck.get("history") or [])
        self.partial = dict(ck.get("partial") or self.partial)
        rng = ck.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])

    def payload(self, kind: str) -> dict[str, Any]:
        """Everything needed to continue the run exactly (weights_only-loadable types only)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": FORMAT_VERSION,
            "kind": kind,
            "model": self.model.state_dict(),
            "optimizer": optimizer_state(self.optimizer),
            "scheduler": self.schedule.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "partial": dict(self.partial),
            "rng": rng,
            "early_stopping": self.stopper.state_dict(),
            "history": list(self.history),
            "config": self.cfg.to_dict(),
            "run_dir": str(self.rundir.path),
            "saved_at": time.time(),
        }

    def save(self, kind: str, path: Path | None = None, payload: dict | None = None) -> Path | None:
        """Write a checkpoint; a failed write is reported and the run goes on."""
        path = path or {"last": self.rundir.last, "best": self.rundir.best}.get(kind) or self.rundir.manual(
            self.epoch, self.step)
        try:
            save_checkpoint(payload or self.payload(kind), path)
        except CheckpointError as exc:
            self.sink.emit(LogMessage("error", f"{exc}; the previous {path.name} is intact"))
            return None
        if kind == "last":
            self.last_checkpoint = path
        self.sink.emit(CheckpointSaved(str(path), kind, self.epoch, self.step))
        return path

    # -- the loop ----------------------------------------------------------

    def _poll_controls(self) -> None:
        if self.controls.stop.is_set():
            raise _Stop("stopped", f"stopped by request at epoch {self.epoch + 1}, step {self.step}")
        if self.controls.save_now.is_set():
            self.controls.save_now.clear()
            self._sync_partial()
            self.save("manual")
        lr = self.controls.take_lr()
        if lr is not None:
            set_lr(self.optimizer, lr)
            self.sink.emit(LogMessage("info", f"learning rate set to {lr:g} at step {self.step}"))

    def _layout(self, xb: torch.Tensor) -> torch.Tensor:
        """The batch in the model's memory format (channels_last for image batches when asked)."""
        if self.cfg.train.channels_last and xb.dim() == 4:
            return xb.contiguous(memory_format=torch.channels_last)
        return xb

    def _train_step(self, xb: torch.Tensor, yb: torch.Tensor, slot: int, watch: bool = False) -> None:
        """One eager training step, then the per-step schedule."""
        self._step_body(self._layout(xb), yb, slot, watch)
        self.schedule.step_batch()

    def _step_body(self, xb: torch.Tensor, yb: torch.Tensor, slot: int | torch.Tensor, watch: bool = False) -> None:
        """Forward, loss, backward, clipping, optimizer step; the loss and correct count go to ``slot``
        of the interval's buffers (an int, or a (1,) device tensor when the step is being captured)."""
        # cache_enabled=False: autocast's weight-cast cache cannot live across CUDA-graph replays
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp, cache_enabled=False):
            out = self._compiled_forward(xb) if self._compile_pending else self.forward(xb)
        loss = self.loss_fn(out.float(), yb)
        total = loss
        reg = self.cfg.regularization
        if reg.l1 > 0:
            total = loss + reg.l1 * l1_penalty(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        watch = watch and self.monitor is not None
        if watch:
            self.monitor.after_backward()  # device kernels only; read at the log-interval sync
        if reg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, reg.grad_clip, foreach=True)
        if watch:
            self.monitor.before_step()
        self.optimizer.step()
        if watch:
            self._health = self.monitor.after_step()
        # no .item(): the step's numbers stay on the device until the log interval
        loss_v = loss.detach() * len(yb)
        correct = (out.detach().argmax(1) == yb).sum() if self.data.task == "classification" else None
        if isinstance(slot, int):
            self.loss_buf[slot] = loss_v
            if correct is not None:
                self.correct_buf[slot] = correct
        else:
            self.loss_buf.index_copy_(0, slot, loss_v.view(1))
            if correct is not None:
                self.correct_buf.index_copy_(0, slot, correct.view(1))

    def _step(self, xb: torch.Tensor, yb: torch.Tensor, watch: bool) -> None:
        """One training step: a replay of the captured step, or an eager one (warm-up, watched steps
        whose gradient statistics need hooks between backward and the optimizer, odd shapes)."""
        if self.captured is not None and not watch and xb.shape == self.captured.x.shape:
            self.captured.run(xb, yb, self._used)  # copy_ into the static input keeps its memory format
            self.schedule.step_batch()
        elif self._capture_in == 0 and not watch:
            self._capture(xb, yb)
        elif self._capture_in > 0:
            side = self._side_stream  # warm-up on a side stream, as PyTorch's CUDA-graph notes require
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._train_step(xb, yb, self._used, watch)
            torch.cuda.current_stream().wait_stream(side)
            self._capture_in -= 1
        else:
            self._train_step(xb, yb, self._used, watch)

    def _capture(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        """Record this step as a CUDA graph, then replay it (capture records without running)."""
        self._capture_in = -1
        xb = self._layout(xb)
        try:
            self.captured = CapturedStep(self._step_body, xb, yb)
        except Exception as exc:  # noqa: BLE001 - any capture error means "not here": the run goes on eagerly
            self.captured = None
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            self.sink.emit(LogMessage("warning", f"train.compile: CUDA-graph capture failed ({type(exc).__name__}: "
                                                 f"{first}); continuing eagerly"))
            self._train_step(xb, yb, self._used)
            return
        self.sink.emit(LogMessage("info", "train.compile: the training step is captured as one CUDA graph and replayed"))
        self.captured.run(xb, yb, self._used)
        self.schedule.step_batch()

    def _compiled_forward(self, xb: torch.Tensor) -> torch.Tensor:
        """The first compiled call captures the step; if capture fails, fall back to eager for the run."""
        self._compile_pending = False
        try:
            return self.forward(xb)
        except Exception as exc:  # noqa: BLE001 - dynamo, inductor and graph-capture errors all mean "not here"
            self.forward = self.model
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            self.sink.emit(LogMessage("warning", f"train.compile: capture failed ({type(exc).__name__}: {first}); "
                                                 "continuing eagerly"))
            return self.forward(xb)

    def _flush(self, used: int, count: int, first_step: int) -> float:
        """Read the interval's buffers (host sync, once per log interval); returns the interval's mean loss."""
        if used == 0:
            return float("nan")
        losses = self.loss_buf[:used]
        finite = torch.isfinite(losses)
        loss_sum, correct, all_finite = losses.sum(), self.correct_buf[:used].sum(), finite.all()
        parts = [torch.stack([loss_sum.double(), correct.double(), all_finite.double()])]
        health, self._health = self._health, None
        if health is not None:
            parts.append(health.double().flatten())
        # host sync: one transfer per log interval (three scalars, and the per-layer health table)
        values = torch.cat(parts).tolist()
        loss_sum_v, correct_v, ok = values[:3]
        if health is not None:
            table = [values[3 + 3 * i : 6 + 3 * i] for i in range(len(self.monitor.names))]
            self.layers = health_rows(self.monitor.names, table)
            self._alarm(gradient_alarms(self.layers))
        if not ok:
            bad = first_step + int((~finite).nonzero()[0, 0])
            raise _Stop("non_finite_loss",
                        f"loss became non-finite at epoch {self.epoch + 1}, step {bad}: lower the learning rate "
                        f"(optimizer.lr = {current_lr(self.optimizer):g}) or set regularization.grad_clip")
        self.partial["loss_sum"] += loss_sum_v
        self.partial["correct"] += int(correct_v)
        self.partial["count"] += count
        return loss_sum_v / max(count, 1)

    def _alarm(self, alarms: list[tuple[str, str]], where: str | None = None) -> None:
        """Emit each kind of alarm or hint once per run."""
        for kind, text in alarms:
            if kind not in self.alarmed:
                self.alarmed.add(kind)
                place = where or f"epoch {self.epoch + 1}, step {self.step}"
                self.sink.emit(LogMessage("warning", f"{place}: {text}"))

    def _sync_partial(self) -> None:
        """Fold the open interval into the partial-epoch totals (before a mid-epoch checkpoint)."""
        if self._used:
            self._flush(self._used, self._count, self.step - self._used + 1)
            self._used, self._count = 0, 0

    def _train_epoch(self) -> None:
        batches = len(self.data.train)
        skip = self.batch_in_epoch
        self._used, self._count = 0, 0
        t_epoch = time.perf_counter()
        t_int, n_int = t_epoch, 0
        for xb, yb in self.data.train.epoch(epoch_seed(self.cfg.train.seed, self.epoch + 1), skip):
            self._poll_controls()
            watch = self._used + 1 == self.n or self.batch_in_epoch + 1 == batches
            self._step(xb, yb, watch)
            self._used += 1
            self._count += len(yb)
            n_int += len(yb)
            self.step += 1
            self.batch_in_epoch += 1
            if self._used == self.n or self.batch_in_epoch == batches:
                mean = self._flush(self._used, self._count, self.step - self._used + 1)
                self._used, self._count = 0, 0
                now = time.perf_counter()
                # memory_in_use: host-side counters and cudaMemGetInfo, no stream sync (the loss read
                # above already waited for this interval's steps)
                self.sink.emit(StepLogged(self.epoch + 1, self.step, self.batch_in_epoch, batches, mean,
                                          current_lr(self.optimizer), n_int / max(now - t_int, 1e-9),
                                          now - self._t_start, self.layers, memory_in_use(self.device)))
                t_int, n_int = now, 0
        self.partial["seconds"] += time.perf_counter() - t_epoch

    def _end_epoch(self) -> bool:
        """Validate, record, checkpoint; True when early stopping says stop."""
        t_val = time.perf_counter()
        val_loss, val_acc = evaluate(self.model, self.data, self.loss_fn, self.amp)
        p = self.partial
        train_loss = p["loss_sum"] / max(p["count"], 1)
        train_acc = p["correct"] / max(p["count"], 1) if self.data.task == "classification" else None
        self.epoch += 1
        self.batch_in_epoch = 0
        if not math.isfinite(val_loss):
            raise _Stop("non_finite_loss", f"validation loss became non-finite at epoch {self.epoch}: lower the "
                        "learning rate or set regularization.grad_clip")
        monitor = val_acc if self.stopper.monitor == "val_acc" else val_loss
        is_best = self.stopper.update(monitor, self.epoch)
        self.schedule.step_epoch(val_loss)
        train_seconds = p["seconds"]
        dead: dict[str, float] = {}
        if self.monitor is not None:
            dead = dead_units(self.model, self._probe_batch())
            alarm = dead_alarm(dead)
            if alarm:
                self._alarm([("dead", alarm)], where=f"after epoch {self.epoch}")
        row = EpochEnded(self.epoch, self.step, train_loss, val_loss, train_acc, val_acc, current_lr(self.optimizer),
                         train_seconds + (time.perf_counter() - t_val), p["count"] / max(train_seconds, 1e-9), is_best,
                         tuple((r.name, r.grad_norm) for r in self.layers), tuple(dead.items()))
        self.partial = {"loss_sum": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
        self.history.append(row.metrics())
        if self.monitor is not None:
            self._alarm(curve_hints(self.history), where=f"after epoch {self.epoch}")
        try:
            self.rundir.append_metrics(row.metrics())
        except OSError as exc:
            self.sink.emit(LogMessage("error", f"could not append to {self.rundir.metrics_path}: {exc.strerror}"))
        self.sink.emit(row)
        if self.monitor is not None and self.data.input_shape == (2,) and self.data.task == "classification":
            self._emit_boundary()
        payload = self.payload("last")
        if is_best:
            if self.cfg.regularization.restore_best and self.cfg.regularization.early_stopping:
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.save("best", payload=dict(payload, kind="best"))
        self.save("last", payload=payload)
        reg = self.cfg.regularization
        return reg.early_stopping and self.stopper.should_stop

    def _probe_batch(self) -> torch.Tensor:
        """One validation batch, taken once and kept on the device, for the per-epoch dead-unit check."""
        if self._probe is None:
            self._probe = next(iter(self.data.val.epoch(0)))[0]
        return self._probe

    def _emit_boundary(self) -> None:
        val = self.data.val
        if not hasattr(val, "x"):
            return
        xr, yr, classes, points = decision_grid(self.model, val.x, val.y)
        self.sink.emit(Boundary(self.epoch, xr, yr, 64, 24, tuple(classes), tuple(map(tuple, points))))

    def _emit_class_results(self) -> None:
        from tui_trainer.report import class_report, format_class_report

        report = class_report(self.model, self.data)
        self.sink.emit(ClassResults(report.class_names, report.confusion, format_class_report(report)))

    def _finish(self, reason: str, message: str) -> FitResult:
        if reason in ("completed", "early_stopped", "stopped") and self.data.task == "classification" and self.epoch:
            try:
                self._emit_class_results()
            except Exception as exc:  # noqa: BLE001 - a report must never turn a finished run into a failure
                self.sink.emit(LogMessage("warning", f"per-class results unavailable: {exc}"))
        result = FitResult(reason, message, self.epoch, self.step, self.stopper.best, self.rundir.path,
                           list(self.history), self.last_checkpoint, self.model)
        self.sink.emit(RunFinished(reason, message, self.epoch, self.step, self.stopper.best, str(self.rundir.path),
                                   str(self.last_checkpoint) if self.last_checkpoint else None,
                                   tuple(self.history)))
        return result

    def _started(self) -> None:
        total, trainable = count_params(self.model)
        try:
            summary = format_summary(summarize(self.model, self.data.input_shape), self.model)
        except Exception as exc:  # a summary is a nicety; never let it stop a run
            summary = f"(summary unavailable: {exc})"
        self.sink.emit(RunStarted(
            run_dir=str(self.rundir.path), device=describe_device(self.device).describe(), n_params=total,
            n_trainable=trainable, epochs=self.cfg.train.epochs, start_epoch=self.epoch,
            steps_per_epoch=len(self.data.train), train_samples=self.data.train.n_samples,
            val_samples=self.data.val.n_samples, task=self.data.task, summary=summary, preset=self.cfg.name))
        for note in self.data.notes:
            self.sink.emit(LogMessage("warning", note))

    def execute(self) -> FitResult:
        """The loop, with every way out turned into a reason."""
        self._t_start = time.perf_counter()
        self._used, self._count = 0, 0
        self._started()
        self.model.train()
        try:
            while self.epoch < self.cfg.train.epochs:
                self._train_epoch()
                if self._end_epoch():
                    msg = (f"early stop at epoch {self.epoch}: {self.stopper.monitor} did not improve for "
                           f"{self.stopper.patience} epochs (best {self.stopper.best:.4g} at epoch {self.stopper.best_epoch})")
                    if self.best_state is not None:
                        self.model.load_state_dict(self.best_state)
                        msg += "; best weights restored"
                    self.sink.emit(LogMessage("info", msg))
                    return self._finish("early_stopped", msg)
            return self._finish("completed", f"completed {self.epoch} epochs")
        except _Stop as stop:
            if stop.reason == "stopped":
                try:
                    self._sync_partial()
                except _Stop as late:  # the open interval held a non-finite loss: do not save it
                    self.sink.emit(LogMessage("error", late.message))
                    return self._finish(late.reason, late.message)
                self.save("last")
            else:
                self.sink.emit(LogMessage("error", stop.message))
            return self._finish(stop.reason, stop.message)
        except torch.cuda.OutOfMemoryError:
            return self._finish("out_of_memory", self._oom_message())
        except Exception as exc:  # reported as an event and a reason, never a traceback on the screen
            msg = f"training failed: {type(exc).__name__}: {exc}"
            self.sink.emit(LogMessage("error", msg))
            return self._finish("error", msg)

    def _oom_message(self) -> str:
        self.optimizer.zero_grad(set_to_none=True)
        mem = ""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            used_free = memory_in_use(self.device)
            if used_free:
                mem = f" ({used_free[0] / 2**20:.0f} MiB in use, {used_free[1] / 2**20:.0f} MiB free after cleanup)"
        msg = (f"out of device memory at batch size {self.cfg.data.batch_size}{mem}: try a smaller "
               f"data.batch_size, e.g. --set data.batch_size={max(1, self.cfg.data.batch_size // 2)}")
        self.sink.emit(LogMessage("error", msg))
        return msg


def warm_up() -> None:
    """Pay torch's lazy imports now: the first optimizer built in a process imports torch._dynamo
    and sympy (seconds on a small CPU). The app calls this while it waits for the user."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1e-3, foreach=True)
    (p * 2).sum().backward()
    torch.nn.utils.clip_grad_norm_([p], 1.0, foreach=True)
    opt.step()


def config_from_checkpoint(ck: dict[str, Any]) -> RunConfig:
    """The config a checkpoint carries (validated again)."""
    return from_dict(copy.deepcopy(ck["config"]), source="checkpoint config")
