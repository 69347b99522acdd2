"""The run process's sink: what a run says becomes its folder.

``RunRecorder`` writes every event to events.jsonl, each epoch's row to metrics.jsonl, and keeps status.json up
to date. It also folds what it writes into a ``RunHistory`` and, for a long run, saves that fold as
``history.json``: the fold as of a byte offset of events.jsonl. A watcher (``follow.fold``, the one follower)
then reads the snapshot and decodes only the events after its offset: attaching to 10,000 epochs reads one JSON
document instead of 60,000 lines (benchmarks/attach.py). The snapshot is a cache: a missing, torn or foreign one
is ignored and everything is folded from the start.
"""

from __future__ import annotations

import time
from typing import Any

from tui_trainer.run.eventlog import EventWriter, read_snapshot, write_snapshot
from tui_trainer.run.events import EpochEnded, Event, Paused, Reason, RunFinished, RunStarted, StepLogged
from tui_trainer.run.folder import RunDir
from tui_trainer.run.follow import fold
from tui_trainer.run.history import RunHistory


class RunRecorder:
    """The run process's sink: every event into events.jsonl, and the run's state into status.json
    (running at the start, epoch, best and training time as epochs end, paused, the outcome at the end).

    Epoch updates to status.json are written at most every ``STATUS_EVERY`` seconds (the last one always
    lands with the outcome): on a preset whose epochs take 20 ms, rewriting it every epoch cost more than
    1% of the run (benchmarks/RESULTS.md). history.json is written once ``SNAPSHOT_EVENTS`` events have
    come since the last one and ``SNAPSHOT_EVERY`` seconds have passed (longer if writing it took more
    than ``SNAPSHOT_SHARE`` of that), and at the end of a run that long: short runs, which attach fast
    anyway, never write one."""

    STATUS_EVERY = 2.0
    SNAPSHOT_EVENTS = 5_000
    SNAPSHOT_EVERY = 30.0
    SNAPSHOT_SHARE = 0.01  # and never more than this share of the run's time (10,000 epochs: 0.4 s to write)

    def __init__(self, run: RunDir) -> None:
        self.run = run
        fresh = not run.events_path.exists() or run.events_path.stat().st_size == 0
        self.writer = EventWriter(run.events_path)  # first: it ends a torn last line, which the fold then reads
        # a resumed run goes on in its folder: its fold continues the earlier sessions' (snapshot + their tail).
        # The fold only serves snapshots: if it fails, there are none (and no stale one), and training goes on.
        self.history: RunHistory | None = RunHistory()
        self._events = 0
        if not fresh:
            try:
                if read_snapshot(run) is None:
                    run.snapshot_path.unlink(missing_ok=True)
                self.history, _offset, self._events, _skipped = fold(run)  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - a cache must never stop a run
                self._no_snapshots()
        self._monitor = "val_loss"
        self._due: dict[str, Any] = {}
        self._written = 0.0
        self._snap_events = self._events
        self._snap_time = time.monotonic()
        self._snap_gap = self.SNAPSHOT_EVERY

    def emit(self, event: Event) -> None:
        self.writer.emit(event)
        self._events += 1
        if self.history is not None:
            try:
                self.history.apply(event)
            except Exception:  # noqa: BLE001 - see __init__
                self._no_snapshots()
        match event:
            case RunStarted():
                self._monitor = event.monitor
                self.run.write_status(state="running", epoch=event.start_epoch, epochs=event.epochs,
                                      preset=event.preset, monitor=event.monitor, device=event.device,
                                      world_size=event.world_size, elapsed_s=event.elapsed_s, updated=time.time())
            case EpochEnded():
                self._due["epoch"] = event.epoch
                if event.is_best:
                    self._due["best"] = event.val_acc if self._monitor == "val_acc" else event.val_loss
                self._due["elapsed_s"] = self._due.get("elapsed_s")
            case StepLogged():
                if self._due:
                    self._due["elapsed_s"] = event.elapsed_s
            case Paused():
                self._flush_status(state="paused" if event.paused else "running")
            case RunFinished():
                reason = Reason(event.reason)
                final = {k: v for k, v in self._due.items() if v is not None}  # e.g. the last epochs' best
                self._due = {}
                final.update(state=reason.state, reason=reason.value, message=event.message, ended=time.time(),
                             epoch=event.epoch, elapsed_s=event.elapsed_s, last_checkpoint=event.last_checkpoint,
                             updated=time.time())
                if self.history is not None and (self._events - self._snap_events >= self.SNAPSHOT_EVENTS
                                                 or self.run.snapshot_path.exists()):
                    self._snapshot()  # before the status says it ended: a watcher that sees the end finds it
                self.run.write_status(**final)
                return
        if self._due and time.monotonic() - self._written >= self.STATUS_EVERY:
            self._flush_status()
        if (self.history is not None and self._events - self._snap_events >= self.SNAPSHOT_EVENTS
                and time.monotonic() - self._snap_time >= self._snap_gap):
            self._snapshot()

    def _snapshot(self) -> None:
        t0 = time.monotonic()
        try:
            write_snapshot(self.run, self.history, self.writer.offset, self._events)
        except Exception:  # noqa: BLE001 - see __init__ (a full disk, say)
            self._no_snapshots()
            return
        self._snap_events, self._snap_time = self._events, time.monotonic()
        self._snap_gap = max(self.SNAPSHOT_EVERY, (self._snap_time - t0) / self.SNAPSHOT_SHARE)

    def _no_snapshots(self) -> None:
        """Stop folding and snapshotting, and remove a snapshot that would now be stale."""
        self.history = None
        try:
            self.run.snapshot_path.unlink(missing_ok=True)
        except OSError:
            pass

    def _flush_status(self, **extra: Any) -> None:
        changes = {k: v for k, v in {**self._due, **extra}.items() if v is not None}
        self._due = {}
        self._written = time.monotonic()
        self.run.write_status(**changes, updated=time.time())

    def close(self) -> None:
        """Close events.jsonl."""
        self.writer.close()
