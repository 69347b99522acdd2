"""Frozen dataclasses the engine emits, and the Sink protocol that receives them.

Events are immutable snapshots (tuples, not lists), so a sink on another thread can keep
them without copying and the engine can never mutate what a chart is drawing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

REASONS = ("completed", "early_stopped", "stopped", "non_finite_loss", "out_of_memory", "error")


@dataclass(frozen=True)
class RunStarted:
    """A run begins (or resumes)."""

    run_dir: str
    device: str
    n_params: int
    n_trainable: int
    epochs: int
    start_epoch: int
    steps_per_epoch: int
    train_samples: int
    val_samples: int
    task: str
    summary: str
    preset: str


@dataclass(frozen=True)
class StepLogged:
    """Progress at a log interval: the mean training loss since the last one."""

    epoch: int
    step: int
    batch: int  # batches done in this epoch
    batches: int  # batches per epoch
    loss: float
    lr: float
    samples_per_s: float
    elapsed_s: float
    layers: tuple = ()  # diagnostics.LayerHealth per layer, when train.diagnostics is on
    memory: tuple[int, int] | None = None  # (allocated, free) bytes on a CUDA device; None elsewhere


@dataclass(frozen=True)
class EpochEnded:
    """One epoch's results (also one line of metrics.jsonl)."""

    epoch: int
    step: int
    train_loss: float
    val_loss: float
    train_acc: float | None
    val_acc: float | None
    lr: float
    epoch_seconds: float
    samples_per_s: float
    is_best: bool = False
    grad_norms: tuple[tuple[str, float], ...] = ()
    dead_units: tuple[tuple[str, float], ...] = ()

    def metrics(self) -> dict:
        """The metrics.jsonl row."""
        row = {k: getattr(self, k) for k in ("epoch", "step", "train_loss", "val_loss", "train_acc", "val_acc",
                                             "lr", "epoch_seconds", "samples_per_s")}
        if self.grad_norms:
            row["grad_norms"] = dict(self.grad_norms)
        if self.dead_units:
            row["dead_relu"] = dict(self.dead_units)
        return row


@dataclass(frozen=True)
class CheckpointSaved:
    """A checkpoint file was written (kind: last, best, manual)."""

    path: str
    kind: str
    epoch: int
    step: int


@dataclass(frozen=True)
class LogMessage:
    """Something worth telling the user: level is info, warning or error."""

    level: str
    text: str


@dataclass(frozen=True)
class Boundary:
    """A 2-D classifier's predicted class over a grid, with validation points (row-major, top row first)."""

    epoch: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    cols: int
    rows: int
    classes: tuple[int, ...]
    points: tuple[tuple[float, float, int], ...]


@dataclass(frozen=True)
class ClassResults:
    """Per-class results on the validation split at the end of a run."""

    class_names: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]
    text: str


@dataclass(frozen=True)
class RunFinished:
    """The run ended; ``reason`` is one of REASONS."""

    reason: str
    message: str
    epoch: int
    step: int
    best_metric: float | None
    run_dir: str
    last_checkpoint: str | None = None
    history: tuple = field(default=(), repr=False)


Event = RunStarted | StepLogged | EpochEnded | CheckpointSaved | LogMessage | Boundary | ClassResults | RunFinished


class Sink(Protocol):
    """Receives the engine's events, on the engine's thread. Must return quickly."""

    def emit(self, event: Event) -> None:  # pragma: no cover - protocol
        ...


class ListSink:
    """Keeps every event (tests, benchmarks)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        """Events of one type, in order."""
        return [e for e in self.events if isinstance(e, kind)]


class NullSink:
    """Drops every event."""

    def emit(self, event: Event) -> None:
        pass
