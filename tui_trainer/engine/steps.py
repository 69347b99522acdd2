"""How one training step runs: chosen once per fit, called the same way by the loop.

``StepBody`` is the step itself (forward, loss, backward, clipping, optimizer step, and the
writes of the step's loss and correct count into the interval's device buffers). A step object
decides how the body is executed, and the loop calls it as ``train_step(xb, yb, slot, watch)``:

* ``EagerStep``: every step in Python;
* ``CompiledStep``: the same with the forward ``torch.compile``d (``train.compile`` on where the
  whole step cannot be captured); if the first compiled call fails, eager from then on;
* ``CapturedStep``: CUDA, ``train.compile`` auto (the default) or on, a capturable optimizer: three
  eager warm-up steps on a side stream, then the step recorded as one CUDA graph and replayed
  (``capture.StepGraph``); watched steps and batches of another shape (an epoch's last) run eagerly,
  so nothing is dropped and every step is the step the eager engine would take.

``choose_step`` picks one and says why in the log (under data parallel ``dist.DataParallel`` takes
``EagerStep`` itself).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tui_trainer.config import RunConfig
from tui_trainer.engine.capture import WARM_UP_STEPS, StepGraph
from tui_trainer.engine.diagnostics import GradientMonitor
from tui_trainer.engine.losses import correct_count
from tui_trainer.engine.optim import CAPTURABLE, Schedule, l1_penalty
from tui_trainer.engine.params import flat_values, scalar_names, small_enough, step_table
from tui_trainer.errors import first_line
from tui_trainer.run.events import LogMessage, Sink


class StepBody:
    """One training step on ``(xb, yb)``; its numbers stay on the device."""

    def __init__(self, cfg: RunConfig, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                 task: str, device: torch.device, log_every: int, monitor: GradientMonitor | None) -> None:
        self.cfg, self.model, self.loss_fn, self.optimizer, self.task = cfg, model, loss_fn, optimizer, task
        self.device, self.monitor = device, monitor
        self.amp = cfg.train.amp == "bf16"
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.forward: Callable[[torch.Tensor], torch.Tensor] = model
        self.tiny = small_enough(sum(p.numel() for p in self.params))  # every scalar shown (params.py)
        # per-step device buffers: losses and correct counts of the current log interval
        self.loss_buf = torch.zeros(log_every, device=device)
        self.correct_buf = torch.zeros(log_every, device=device, dtype=torch.long)
        self.health: torch.Tensor | None = None  # (layers, 3), read at the interval's sync
        self.param_table: torch.Tensor | None = None  # (3, n) value, gradient, new value (tiny nets, params.py)

    def layout(self, xb: torch.Tensor) -> torch.Tensor:
        """The batch in the model's memory format (channels_last for image batches when asked)."""
        if self.cfg.train.channels_last and xb.dim() == 4:
            return xb.contiguous(memory_format=torch.channels_last)
        return xb

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, slot: int | torch.Tensor, watch: bool = False) -> None:
        """Forward, loss, backward, clipping, optimizer step; the loss and correct count go to ``slot``
        of the interval's buffers (an int, or a (1,) device tensor when the step is being captured)."""
        # cache_enabled=False: autocast's weight-cast cache cannot live across CUDA-graph replays
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp, cache_enabled=False):
            out = self.forward(xb)
        loss = self.loss_fn(out.float(), yb)
        total = loss
        reg = self.cfg.regularization
        if reg.l1 > 0:
            total = loss + reg.l1 * l1_penalty(self.model, reg.decay_biases)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        monitor = self.monitor if watch else None
        if monitor is not None:
            monitor.after_backward()  # device kernels only; read at the log-interval sync
        if reg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, reg.grad_clip, foreach=True)
        before = None
        if watch and self.tiny:
            before = flat_values(self.params)
        if monitor is not None:
            monitor.before_step()
        self.optimizer.step()
        if monitor is not None:
            self.health = monitor.after_step()
        if before is not None:
            self.param_table = step_table(self.params, before)
        # no .item(): the step's numbers stay on the device until the log interval
        loss_v = loss.detach() * len(yb)
        correct = correct_count(out.detach(), yb, self.task)
        if isinstance(slot, int):
            self.loss_buf[slot] = loss_v
            if correct is not None:
                self.correct_buf[slot] = correct
        else:
            self.loss_buf.index_copy_(0, slot, loss_v.view(1))
            if correct is not None:
                self.correct_buf.index_copy_(0, slot, correct.view(1))

    def param_names(self) -> list[str]:
        """One name per scalar of ``param_table`` (e.g. ``layers.1.weight[0,1]``), as ``params.scalar_names``."""
        return scalar_names((name, p) for name, p in self.model.named_parameters() if p.requires_grad)


class EagerStep:
    """Every step in Python."""

    def __init__(self, body: StepBody, schedule: Schedule, sink: Sink) -> None:
        self.body, self.schedule, self.sink = body, schedule, sink

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, slot: int, watch: bool) -> None:
        self.body(self.body.layout(xb), yb, slot, watch)
        self.schedule.step_batch()


class CompiledStep(EagerStep):
    """Every step in Python with a ``torch.compile``d forward; the first call compiles, and if that fails the
    forward is the plain model from then on."""

    def __init__(self, body: StepBody, schedule: Schedule, sink: Sink) -> None:
        super().__init__(body, schedule, sink)
        self._first = True

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, slot: int, watch: bool) -> None:
        if self._first:
            self._first = False
            self._first_compiled(xb, yb, slot, watch)
            self.schedule.step_batch()
        else:
            super().__call__(xb, yb, slot, watch)

    def _first_compiled(self, xb: torch.Tensor, yb: torch.Tensor, slot: int, watch: bool) -> None:
        try:
            self.body(self.body.layout(xb), yb, slot, watch)
        except Exception as exc:  # noqa: BLE001 - dynamo, inductor and graph-capture errors all mean "not here"
            self.body.forward = self.body.model
            self.sink.emit(LogMessage("warning", f"train.compile: compiling failed ({type(exc).__name__}: "
                                                 f"{first_line(exc, 160)}); continuing eagerly"))
            self.body(self.body.layout(xb), yb, slot, watch)


class CapturedStep:
    """Warm up, capture the whole step as a CUDA graph, replay it (see capture.py for the invariants)."""

    def __init__(self, body: StepBody, schedule: Schedule, sink: Sink) -> None:
        self.body, self.schedule, self.sink = body, schedule, sink
        self.captured: StepGraph | None = None
        self.warm_up_left = WARM_UP_STEPS  # -1 once captured or given up
        self._side = torch.cuda.Stream(body.device)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, slot: int, watch: bool) -> None:
        body = self.body
        if self.captured is not None and not watch and xb.shape == self.captured.x.shape:
            self.captured.run(xb, yb, slot)  # copy_ into the static input keeps its memory format
        elif self.warm_up_left == 0 and not watch:
            self._capture(body.layout(xb), yb, slot)
        elif self.warm_up_left > 0:
            # warm-up on a side stream, as PyTorch's CUDA-graph notes require
            self._side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self._side):
                body(body.layout(xb), yb, slot, watch)
            torch.cuda.current_stream().wait_stream(self._side)
            self.warm_up_left -= 1
        else:
            body(body.layout(xb), yb, slot, watch)  # watched steps and batches of another shape
        self.schedule.step_batch()

    def _capture(self, xb: torch.Tensor, yb: torch.Tensor, slot: int) -> None:
        """Record this step as a CUDA graph, then replay it (capture records without running)."""
        self.warm_up_left = -1
        try:
            self.captured = StepGraph(self.body, xb, yb)
        except Exception as exc:  # noqa: BLE001 - any capture error means "not here": the run goes on eagerly
            self.captured = None
            self.sink.emit(LogMessage("warning", f"train.compile: CUDA-graph capture failed ({type(exc).__name__}: "
                                                 f"{first_line(exc, 160)}); continuing eagerly"))
            self.body(xb, yb, slot)
            return
        self.sink.emit(LogMessage("info", "train.compile: the training step is captured as one CUDA graph and replayed"))
        self.captured.run(xb, yb, slot)


def capture_possible(cfg: RunConfig, device: torch.device) -> bool:
    """Whether the whole step is recorded as a CUDA graph: ``train.compile`` auto or on, a CUDA device, an optimizer
    that keeps its state on the device, one process (under DDP it stays off until shown to be exact there)."""
    return (cfg.train.compile != "off" and device.type == "cuda" and cfg.optimizer.name in CAPTURABLE
            and cfg.train.nproc == 1)


TrainStep = EagerStep | CapturedStep
"""What the loop calls once per batch: ``train_step(xb, yb, slot, watch)``."""


def choose_step(cfg: RunConfig, body: StepBody, schedule: Schedule, sink: Sink) -> TrainStep:
    """The way steps run for this fit, chosen once, and said in the log with the reason."""
    mode, device = cfg.train.compile, body.device
    if capture_possible(cfg, device):
        return CapturedStep(body, schedule, sink)
    why = ("off" if mode == "off" else "a CPU: capture is for CUDA" if device.type != "cuda"
           else f"{cfg.optimizer.name} keeps its step count on the host, so the step cannot be captured")
    if mode != "on" or device.type == "mps":
        sink.emit(LogMessage("info", f"steps run eagerly (train.compile = {mode}: {why})"))
        return EagerStep(body, schedule, sink)
    sink.emit(LogMessage("info", f"train.compile = on: {why}; compiling the forward pass only"))
    try:  # CUDA graphs of the forward on GPU, inductor kernels on CPU; a last batch of another size recompiles once
        body.forward = torch.compile(body.model, mode="reduce-overhead" if device.type == "cuda" else "default",
                                     dynamic=False)
    except Exception as exc:  # noqa: BLE001 - no compiler here: train eagerly
        sink.emit(LogMessage("warning", f"train.compile unavailable ({type(exc).__name__}); training eagerly"))
        return EagerStep(body, schedule, sink)
    return CompiledStep(body, schedule, sink)
