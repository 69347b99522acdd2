"""Where a fit is: the small state the loop advances and a checkpoint carries (besides weights and optimizer).

``Progress`` is shared by reference between the loop, which advances it, ``steering.Steering``, which
says where the run is in its acknowledgements, and ``checkpoint.Checkpoints``, which saves and
restores it. ``EpochTotals`` is the epoch under way so far (a checkpoint's ``"partial"``: converted
to and from that dict only at the checkpoint boundary, so old checkpoints load and new ones keep
its shape). ``Clock`` is the run's training time across processes, pauses left out.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tui_trainer.run.events import Reason
from tui_trainer.run.history import position, shown_epoch


class StopRun(Exception):
    """Leave the loop now with a reason (a stop command, a non-finite loss); the loop decides what to save."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class EpochTotals:
    """The epoch under way so far: summed loss, correct predictions and samples of its flushed log intervals, and
    its training seconds (before this process: a resumed mid-epoch stop's)."""

    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        """The checkpoint's ``"partial"``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, partial: dict[str, Any] | None) -> EpochTotals:
        """From a checkpoint's ``"partial"`` (missing or empty: nothing done yet)."""
        partial = partial or {}
        return cls(float(partial.get("loss_sum", 0.0)), int(partial.get("correct", 0)), int(partial.get("count", 0)),
                   float(partial.get("seconds", 0.0)))

    @property
    def train_loss(self) -> float:
        """Mean training loss per sample."""
        return self.loss_sum / max(self.count, 1)

    @property
    def train_acc(self) -> float:
        """Share of samples predicted right (classification)."""
        return self.correct / max(self.count, 1)


@dataclass
class Clock:
    """A run's training seconds: earlier processes' (a resumed run) plus this one's since ``start``, pauses left out."""

    before: float = 0.0
    started: float | None = None  # perf_counter when this process began training
    paused: float = 0.0  # seconds this process held paused

    def start(self) -> None:
        """This process begins training now."""
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Training seconds of the whole run so far."""
        if self.started is None:
            return self.before
        return self.before + time.perf_counter() - self.started - self.paused


class Startup:
    """The seconds before training, phase by phase (``StartupTimed``): ``lap(name)`` adds the time since the last lap
    (or since ``since``, a ``time.time()``: the process's start where the caller knows it; else now) to ``name``."""

    def __init__(self, since: float | None = None) -> None:
        self.phases: dict[str, float] = {}
        self._last = time.time()
        if since is not None:
            self.phases["start-up"] = max(0.0, self._last - since)

    def lap(self, name: str) -> None:
        now = time.time()
        self.phases[name] = self.phases.get(name, 0.0) + now - self._last
        self._last = now


@dataclass
class Progress:
    """Epochs complete, steps done, batches done in the epoch under way, that epoch's totals, one metrics row per
    epoch complete (``EpochEnded.metrics()``, as in metrics.jsonl), and the training clock."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    totals: EpochTotals = field(default_factory=EpochTotals)
    rows: list[dict] = field(default_factory=list)
    clock: Clock = field(default_factory=Clock)

    def where(self) -> str:
        """Where the run is, in the words every front end uses: "in epoch 214 (213 complete), step 42600"."""
        return position(self.epoch, self.batch_in_epoch, self.step)

    @property
    def shown_epoch(self) -> int:
        """The epoch number the progress line shows (the one under way once a step of it is done)."""
        return shown_epoch(self.epoch, self.batch_in_epoch)
