"""What a run says: frozen events of primitives, the reasons a run ends, and their JSON codec.

Stdlib only: the app, ``runs``, ``attach`` and ``compare`` read ``events.jsonl`` without torch.
Events are immutable snapshots (tuples, not lists), so a reader on another thread can keep them
without copying. ``encode``/``decode`` turn one event into one JSON line and back; the first line
of every ``events.jsonl`` is a header carrying ``PROTOCOL``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from tui_trainer.errors import ProtocolError  # noqa: F401 - part of this module's interface (decode raises it)
from tui_trainer.run.samples import SampleSet

PROTOCOL = 1
"""Version of the events.jsonl format. A reader refuses a file with a newer one, by name."""


class Reason(StrEnum):
    """Why a run ended."""

    COMPLETED = "completed"
    EARLY_STOPPED = "early_stopped"
    STOPPED = "stopped"
    NON_FINITE_LOSS = "non_finite_loss"
    OUT_OF_MEMORY = "out_of_memory"
    ERROR = "error"
    INVALID = "invalid"  # a config, data or checkpoint problem found while setting up: exit code 2

    @classmethod
    def parse(cls, text: str) -> Reason:
        """The reason a file names; ERROR for one this version does not know (a newer run's, or garbage)."""
        try:
            return cls(text)
        except ValueError:
            return cls.ERROR

    @property
    def as_asked(self) -> bool:
        """The run ended the way the user asked for (finished, early-stopped or stopped)."""
        return self in ENDED_AS_ASKED

    @property
    def state(self) -> str:
        """The run's final state in status.json: finished, stopped or failed."""
        if self is Reason.STOPPED:
            return "stopped"
        return "finished" if self.as_asked else "failed"


ENDED_AS_ASKED = frozenset({Reason.COMPLETED, Reason.EARLY_STOPPED, Reason.STOPPED})


@dataclass(frozen=True)
class LayerHealth:
    """One layer's gradient numbers at a log interval."""

    name: str
    grad_norm: float
    weight_norm: float
    update_ratio: float


@dataclass(frozen=True)
class RunStarted:
    """A run begins (or resumes: ``start_epoch``/``start_step`` > 0, ``prior`` the epochs already done)."""

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
    start_step: int = 0
    elapsed_s: float = 0.0  # training time already spent before this start (a resumed run)
    monitor: str = "val_loss"
    prior: tuple = ()  # metrics rows (dicts) of the epochs done before a resume
    world_size: int = 1
    source: str = "tui-trainer"  # who trains: "tui-trainer" (its engine) or "track" (a user's own loop, run/track.py)


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
    elapsed_s: float  # training time of the whole run so far (a resumed run continues its clock)
    layers: tuple[LayerHealth, ...] = ()  # per layer, when train.diagnostics is on
    memory: tuple[int, int] | None = None  # (allocated, free) bytes on a CUDA device; None elsewhere
    memory_ranks: tuple[tuple[int, int], ...] = ()  # every rank's (allocated, free) under DDP on CUDA, by rank
    extra: tuple[tuple[str, float], ...] = ()  # a user's own loop's other named scalars at this step (run/track.py)


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
    extra: tuple[tuple[str, float], ...] = ()  # a user's own loop's other named scalars of the epoch (run/track.py)

    def metrics(self) -> dict:
        """The metrics.jsonl row (a user's loop's own scalars are columns of it, after the tool's)."""
        row = {k: getattr(self, k) for k in ("epoch", "step", "train_loss", "val_loss", "train_acc", "val_acc",
                                             "lr", "epoch_seconds", "samples_per_s")}
        if self.grad_norms:
            row["grad_norms"] = dict(self.grad_norms)
        if self.dead_units:
            row["dead_relu"] = dict(self.dead_units)
        row.update(self.extra)
        return row


ROW_KEYS = frozenset({"epoch", "step", "train_loss", "val_loss", "train_acc", "val_acc", "lr", "epoch_seconds",
                      "samples_per_s", "grad_norms", "dead_relu"})
"""The columns of a metrics row the tool writes itself (any other is a user's loop's own scalar, ``EpochEnded.extra``)."""


@dataclass(frozen=True)
class CheckpointSaved:
    """A checkpoint file was written (kind: last, best, manual)."""

    path: str
    kind: str
    epoch: int
    step: int


@dataclass(frozen=True)
class LogMessage:
    """Something worth telling the user: level is info, warning (alarms and hints) or error."""

    level: str
    text: str


@dataclass(frozen=True)
class LrChanged:
    """The learning rate was set by hand while training (marked on the loss chart)."""

    epoch: int
    step: int
    x: float  # position on the step axis: epochs done + fraction of the current one
    lr: float


@dataclass(frozen=True)
class Paused:
    """The run holds between steps (``paused``) or goes on (``not paused``)."""

    paused: bool
    epoch: int
    step: int


@dataclass(frozen=True)
class ParamValues:
    """Every scalar parameter of a small network at a step: (name, value the gradient was taken at,
    gradient, value after the optimizer's update)."""

    step: int
    params: tuple[tuple[str, float, float, float], ...]


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
class StartupTimed:
    """Where the seconds before training went, said once, after this process's first step: (phase, seconds) in
    order. "start-up" (the process's start to the engine's setup: the interpreter, imports, the config; only where
    the caller knows when its process began), "checkpoint" (a resume's: reading it, and the data-parallel set-up),
    "device" (a GPU's context made), "data", "model" (with its optimizer, schedule, restored state and summary),
    "first step" (its batch fetched, a streaming loader's workers started, and the step, synchronised on a GPU: its
    kernels, a captured step's capture). Rank 0's, under DDP (its first step waits for the slowest rank)."""

    phases: tuple[tuple[str, float], ...]

    @property
    def total(self) -> float:
        return sum(s for _, s in self.phases)


@dataclass(frozen=True)
class RunFinished:
    """The run ended; ``reason`` is a ``Reason`` value."""

    reason: str
    message: str
    epoch: int
    step: int
    best_metric: float | None
    run_dir: str
    last_checkpoint: str | None = None
    elapsed_s: float = 0.0


Event = (RunStarted | StepLogged | EpochEnded | CheckpointSaved | LogMessage | LrChanged | Paused | ParamValues
         | Boundary | ClassResults | StartupTimed | RunFinished | SampleSet)
"""``SampleSet`` (run/samples.py) is said to sinks like the others, but the recorder writes it to samples.json,
never to events.jsonl (it is images, replaced each epoch): it has no JSON line and no place in ``EVENT_TYPES``."""

EVENT_TYPES: dict[str, type] = {t.__name__: t for t in (
    RunStarted, StepLogged, EpochEnded, CheckpointSaved, LogMessage, LrChanged, Paused, ParamValues, Boundary,
    ClassResults, StartupTimed, RunFinished)}


class Sink(Protocol):
    """Receives the engine's events, on the engine's thread. Must return quickly."""

    def emit(self, event: Event) -> None:  # pragma: no cover - protocol
        ...


class RecordLost(Exception):  # noqa: N818 - a condition, not an error of the engine's
    """Raised by a sink that can no longer write the run's record: its folder was removed or replaced while it
    trained, or events.jsonl or status.json could not be written (a full disk). The engine ends the run at once
    (no further checkpoint), with ``message`` as its reason; the sink then records the end as far as it still can
    and never raises for it. ``folder_kept``: False when the folder itself is gone (no checkpoint to offer)."""

    def __init__(self, message: str, folder_kept: bool = True) -> None:
        super().__init__(message)
        self.message, self.folder_kept = message, folder_kept


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


class TeeSink:
    """Passes every event to several sinks, in order."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(event)


# ---------------------------------------------------------------------------
# JSON codec: one event per line


def header() -> str:
    """The first line of an events.jsonl."""
    return json.dumps({"type": "header", "protocol": PROTOCOL})


def _plain(value: Any) -> Any:
    """JSON-safe: non-finite floats become strings ("nan", "inf") so the line stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def encode(event: Event) -> str:
    """One JSON line (without the newline)."""
    row = {"type": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if f.name == "layers":
            value = [[h.name, h.grad_norm, h.weight_norm, h.update_ratio] for h in value]
        row[f.name] = _plain(value)
    return json.dumps(row, separators=(",", ":"))


def _float(value: Any) -> Any:
    return float(value) if isinstance(value, str) and value in ("nan", "inf", "-inf") else value


def _frozen(value: Any) -> Any:
    """Lists back to tuples (recursively), non-finite markers back to floats; dicts stay dicts."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return _float(value)


def _pairs(value: list) -> tuple:
    return tuple((k, _float(v)) for k, v in value)


_DEEP: dict[str, Any] = {  # how each nested field comes back from JSON, without a generic recursive walk
    "layers": lambda v: tuple(LayerHealth(n, _float(g), _float(w), _float(u)) for n, g, w, u in v),
    "memory": tuple,
    "memory_ranks": lambda v: tuple(map(tuple, v)),
    "grad_norms": _pairs,
    "dead_units": _pairs,
    "extra": _pairs,
    "phases": _pairs,
    "points": lambda v: tuple(map(tuple, v)),
    "confusion": lambda v: tuple(map(tuple, v)),
    "params": lambda v: tuple((n, _float(a), _float(b), _float(c)) for n, a, b, c in v),
    "prior": _frozen,
}


def _field_kinds(cls: type) -> dict[str, Any]:
    """Per field of an event class, how to turn its JSON value back: None (as is), ``_float`` (a non-finite
    marker), or a converter for nested values. Worked out once per class: attaching to a long run decodes
    tens of thousands of events."""
    kinds: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = str(f.type)
        if f.name in _DEEP:
            kinds[f.name] = _DEEP[f.name]
        elif "tuple" in hint:
            kinds[f.name] = tuple
        elif "float" in hint:
            kinds[f.name] = _float
        else:
            kinds[f.name] = None
    return kinds


_KINDS = {name: _field_kinds(cls) for name, cls in EVENT_TYPES.items()}


def decode(line: str) -> Event | None:
    """The event on one line; None for the header, a blank line or an event type this version does not
    know (a newer run may add kinds; the ones we know still fold). Raises ValueError on a torn line and
    ProtocolError on a header of a newer protocol."""
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("not an event")
    kind = row.pop("type", None)
    if kind == "StepLogged" and len(row) in (10, 11, 12):  # most of a long run's events: built directly, no field walk
        memory = row["memory"]
        return StepLogged(row["epoch"], row["step"], row["batch"], row["batches"], _float(row["loss"]), _float(row["lr"]),
                          _float(row["samples_per_s"]), _float(row["elapsed_s"]),
                          tuple(LayerHealth(n, _float(g), _float(w), _float(u)) for n, g, w, u in row["layers"]),
                          None if memory is None else tuple(memory), tuple(map(tuple, row.get("memory_ranks", ()))),
                          _pairs(row.get("extra", ())))
    if kind == "header":
        version = row.get("protocol")
        if not isinstance(version, int) or version > PROTOCOL:
            raise ProtocolError(f"events written with protocol {version}, this tui-trainer reads up to {PROTOCOL}: "
                                "upgrade tui-trainer to read this run")
        return None
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        return None
    kinds = _KINDS[kind]
    args = {}
    for key, value in row.items():
        if key not in kinds:
            continue
        how = kinds[key]
        args[key] = value if how is None or value is None else how(value)
    return cls(**args)
