"""One trial while it runs: its Optuna trial, its run process (a RunHandle on an ordinary run folder), its slot, and a
thread that follows its run folder through the one follower (``run.follow``) and hands every update to the sweep's
queue. The sweep's main thread alone talks to Optuna; the threads only read files.

How a trial ends, from its run's end (``outcome``):

* completed or early-stopped: complete, its value the best epoch's metric (what best.pt holds);
* stopped after the sweep asked it to, for pruning: pruned (its run keeps last.pt and says "pruned at epoch N");
* stopped because the sweep was stopped: interrupted (left running in the study; a resume goes on from last.pt);
* stopped from outside the sweep, failed, or crashed (its process gone): failed, with the run's own reason.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from tui_trainer.run.client import RunHandle
from tui_trainer.run.endpoint import EndpointError
from tui_trainer.run.events import Reason, RunFinished
from tui_trainer.run.follow import Update, follow
from tui_trainer.sweep.slots import Slot

PRUNED_AT = "pruned at epoch"
"""How a pruned trial's run says why it stopped: "pruned at epoch 3"."""
SWEEP_STOPPED = "stopped with its sweep"
"""How a trial stopped with its sweep says why."""


@dataclass
class Active:
    """A trial the sweep is running (or following again after a resume)."""

    number: int
    trial: Any
    """Its optuna.trial.Trial: report, should_prune."""
    handle: RunHandle
    slot: Slot
    reported: set[int] = field(default_factory=set)
    """Epochs whose metric the study has."""
    pruned_at: int | None = None
    """The epoch the pruner said stop at (the stop was sent)."""
    values: dict[int, float] = field(default_factory=dict)
    """Metric by epoch, this trial's whole run (earlier sessions too)."""
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def follow(self, updates: queue.Queue) -> None:
        """Start the thread that puts ``(number, update)`` on ``updates`` for every update of the run, until it
        ends, is lost, or ``cancel`` is set."""

        def pump() -> None:
            for update in follow(self.handle.run, cancelled=self.cancel.is_set, period=0.25):
                updates.put((self.number, update))

        self.thread = threading.Thread(target=pump, name=f"trial-{self.number}", daemon=True)
        self.thread.start()

    def send_stop(self, why: str) -> None:
        """Ask the run to stop and save last.pt, saying ``why``, on a thread of its own (the endpoint answers within
        seconds; the sweep's loop goes on meanwhile). A run that cannot be reached gets SIGTERM (it stops the same
        way, without the why)."""

        def stop() -> None:
            try:
                self.handle.send("stop", why=why)
            except EndpointError:
                self.handle.stop(timeout=5.0)

        threading.Thread(target=stop, name=f"stop-trial-{self.number}", daemon=True).start()

    def best(self, metric: str) -> float | None:
        """The best epoch's metric so far (lowest loss, highest accuracy)."""
        values = [v for v in self.values.values() if math.isfinite(v)]
        if not values:
            return None
        return max(values) if metric == "val_acc" else min(values)


def metric_of(row: dict[str, Any], metric: str) -> float | None:
    """An epoch's metric from its metrics row (None when absent or not a finite number)."""
    value = row.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Outcome:
    """How a trial ended, in the study's words."""

    state: str
    """complete, pruned, failed or interrupted."""
    value: float | None
    reason: str


def outcome(active: Active, finished: RunFinished, metric: str, stopping: bool) -> Outcome:
    """The trial's end from its run's end."""
    reason = Reason.parse(finished.reason)
    if reason in (Reason.COMPLETED, Reason.EARLY_STOPPED):
        best = active.best(metric)
        if best is None:
            return Outcome("failed", None, f"{finished.message}, but no epoch gave a finite {metric}")
        return Outcome("complete", best, finished.message)
    if reason is Reason.STOPPED:
        if active.pruned_at is not None:
            return Outcome("pruned", None, f"{PRUNED_AT} {active.pruned_at}")
        if stopping:
            return Outcome("interrupted", None, finished.message)
        return Outcome("failed", None, f"stopped from outside the sweep: {finished.message}")
    return Outcome("failed", None, f"{reason.value}: {finished.message}")


def lost(why: str) -> Outcome:
    """A trial whose run cannot be followed any more (its process killed, its folder removed)."""
    return Outcome("failed", None, why)


Follow = tuple[int, Update]
"""What a trial's thread puts on the queue."""
