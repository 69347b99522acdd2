"""The run process's sink: what a run says becomes its folder.

``RunRecorder`` writes every event to events.jsonl (an image classifier's ``SampleSet`` to samples.json
instead), each epoch's row to metrics.jsonl (from ``EpochEnded``;
a resumed ``RunStarted`` first drops the rows after its start epoch, which the run is about to train again),
and keeps status.json up to date: the one writer of a run folder's record (the engine only emits events).

It also folds what it writes into a ``RunHistory`` and, for a long run, saves that fold as ``history.json``:
the fold as of a byte offset of events.jsonl. A watcher (``follow.fold``, the one follower) then reads the
snapshot and decodes only the events after its offset: attaching to 10,000 epochs reads one JSON document
instead of 60,000 lines (benchmarks/attach.py). The snapshot is a cache: a missing, torn or foreign one is
ignored and everything is folded from the start.

When the record cannot be kept it says so by raising ``RecordLost`` (the engine then ends the run):
* the folder was removed, or replaced by another at its path (its device and inode differ from those taken
  at the start): one ``os.stat`` per log interval and epoch, and while paused each time the engine looks at
  its commands (``check_folder``, which the runner sets as ``Controls.check``). Nothing more is written
  there, not even the end: the path is no longer this run's;
* events.jsonl or status.json cannot be written (a full disk): the end is still tried, once, when the run
  finishes (events.jsonl is cut back to its last whole line first, which may leave room for it).
metrics.jsonl and history.json are copies of what events.jsonl holds: failing to write them is logged (or
drops the snapshot) and the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tui_trainer.run.controls import Controls
from tui_trainer.run.eventlog import EventWriter, read_snapshot, write_snapshot
from tui_trainer.run.events import (
    EpochEnded,
    Event,
    LogMessage,
    Paused,
    Reason,
    RecordLost,
    RunFinished,
    RunStarted,
    StepLogged,
)
from tui_trainer.run.files import why_not_written
from tui_trainer.run.folder import RunDir
from tui_trainer.run.follow import fold
from tui_trainer.run.history import RunHistory
from tui_trainer.run.samples import FILE_NAME as SAMPLES_FILE
from tui_trainer.run.samples import SampleSet, write_samples


def folder_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a folder, or None when it is gone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class RunRecorder:
    """The run process's sink: every event into events.jsonl, each epoch's row into metrics.jsonl, and the run's
    state into status.json (running at the start, epoch, best and training time as epochs end, paused, the outcome
    at the end).

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
        self.identity = folder_identity(run.path)  # the folder this run was given: one removed or replaced is not
        self.lost: str | None = None  # why nothing more is written (the folder is gone or another)
        self.failed: str | None = None  # why the record could not be written (the end is still tried)
        self._ended = False
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
        if self.lost is not None:
            return
        final = isinstance(event, RunFinished)
        if self.failed is not None and not final:
            return
        if isinstance(event, SampleSet):
            self._write_samples(event)
            return
        if isinstance(event, (StepLogged, EpochEnded)):
            self.check_folder()  # once per log interval and epoch: a stat, no more
        try:
            self.writer.emit(event)
        except OSError as exc:
            self._cannot_write(self.run.events_path, exc, final)
            if final and self.lost is None:
                self._finish(event)  # the outcome in status.json, if that still can be written
            return
        self._count(event)
        match event:
            case RunStarted():
                self._monitor = event.monitor
                self._drop_metrics_after(event.start_epoch)
                self._write_status(state="running", epoch=event.start_epoch, epochs=event.epochs,
                                   preset=event.preset, monitor=event.monitor, device=event.device,
                                   world_size=event.world_size, elapsed_s=event.elapsed_s, updated=time.time())
            case EpochEnded():
                self._append_metrics(event)
                self._due["epoch"] = event.epoch
                if event.is_best:
                    self._due["best"] = event.val_acc if self._monitor == "val_acc" else event.val_loss
            case StepLogged():
                if self._due:
                    self._due["elapsed_s"] = event.elapsed_s
            case Paused():
                self._flush_status(state="paused" if event.paused else "running")
            case RunFinished():
                self._finish(event)
                return
        if self._due and time.monotonic() - self._written >= self.STATUS_EVERY:
            self._flush_status()
        if (self.history is not None and self._events - self._snap_events >= self.SNAPSHOT_EVENTS
                and time.monotonic() - self._snap_time >= self._snap_gap):
            self._snapshot()

    def check_folder(self) -> None:
        """RecordLost (once; nothing is written from then on) when the run's folder was removed, or replaced by
        another folder at its path, since the recorder started."""
        if self.lost is None and self._folder_changed():
            raise RecordLost(self.lost or "", folder_kept=False)

    def _folder_changed(self) -> bool:
        """Whether the folder is no longer the one this run was given (then ``lost`` says so)."""
        if self.identity is None:
            return False
        now = folder_identity(self.run.path)
        if now == self.identity:
            return False
        what = "removed" if now is None else "replaced by another folder"
        self.lost = f"its folder {self.run.path} was {what} while it trained; nothing more is written there"
        return True

    def update_status(self, **changes: Any) -> None:
        """Merge ``changes`` into status.json (the runner's: its pid, its endpoint); nothing once the folder is lost;
        RecordLost if it cannot be written before the run has ended (after that, the failure is let go)."""
        if self.lost is None:
            self._write_status(**changes)

    def _finish(self, event: RunFinished) -> None:
        reason = Reason(event.reason)
        final = {k: v for k, v in self._due.items() if v is not None}  # e.g. the last epochs' best
        self._due = {}
        final.update(state=reason.state, reason=reason.value, message=event.message, ended=time.time(),
                     epoch=event.epoch, elapsed_s=event.elapsed_s, last_checkpoint=event.last_checkpoint,
                     updated=time.time())
        if self.failed is None and self.history is not None and (
                self._events - self._snap_events >= self.SNAPSHOT_EVENTS or self.run.snapshot_path.exists()):
            self._snapshot()  # before the status says it ended: a watcher that sees the end finds it
        self._ended = True
        if not self._write_status(**final) and self.lost is None:
            self._status_in_place(final)

    def _status_in_place(self, final: dict[str, Any]) -> None:
        """The outcome of a run whose record failed (a full disk), written over status.json itself when replacing
        it failed: a new file needs a free block, the old one's blocks hold the few hundred bytes it takes. Not
        atomic (a reader may meet it half-written and read it again), but the last word on why the run stopped."""
        status = {**self.run.read_status(), **final}
        try:
            with open(self.run.status_path, "r+", encoding="utf-8") as fh:
                fh.write(json.dumps(status, indent=1) + "\n")
                fh.truncate()
        except OSError:
            pass

    # -- writing ------------------------------------------------------------------------

    def _write_status(self, **changes: Any) -> bool:
        """Whether status.json now holds ``changes`` (see ``_cannot_write`` for when it does not)."""
        try:
            self.run.write_status(**changes)
        except OSError as exc:
            self._cannot_write(self.run.status_path, exc, self._ended)
            return False
        return True

    def _cannot_write(self, path: Path, exc: OSError, ending: bool) -> None:
        """A write of the record failed: the folder is gone (RecordLost, nothing more), or the disk is full or
        another error (RecordLost unless the run is ending: then what could be written was)."""
        if self.lost is None and self._folder_changed():
            if ending:
                return
            raise RecordLost(self.lost or "", folder_kept=False)
        if self.failed is None:
            self.failed = f"cannot write {path}: {why_not_written(exc)}"
        if not ending:
            raise RecordLost(self.failed)

    def _append_metrics(self, event: EpochEnded) -> None:
        try:
            self.run.append_metrics(event.metrics())
        except OSError as exc:  # a copy of the epoch events: say so, train on
            self._log_error(f"could not append to {self.run.metrics_path}: {why_not_written(exc)}")

    def _write_samples(self, sample: SampleSet) -> None:
        """The epoch's image sample replaces samples.json (a view's copy: failing to write it is logged)."""
        try:
            write_samples(self.run.path, sample)
        except OSError as exc:
            self._log_error(f"could not write {self.run.path / SAMPLES_FILE}: {why_not_written(exc)}")

    def _drop_metrics_after(self, epoch: int) -> None:
        """A run (re)starting at ``epoch``: rows of later epochs are trained again, so they go."""
        try:
            self.run.truncate_metrics(epoch)
        except OSError as exc:
            self._log_error(f"could not rewrite {self.run.metrics_path}: {why_not_written(exc)}")

    def _log_error(self, text: str) -> None:
        """A line in the run's log from the recorder itself (the engine does not know about these files)."""
        note = LogMessage("error", text)
        try:
            self.writer.emit(note)
        except OSError as exc:
            self._cannot_write(self.run.events_path, exc, self._ended)
            return
        self._count(note)

    def _count(self, event: Event) -> None:
        """An event now in events.jsonl: counted, and folded for the snapshot."""
        self._events += 1
        if self.history is not None:
            try:
                self.history.apply(event)
            except Exception:  # noqa: BLE001 - see __init__
                self._no_snapshots()

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
        if self.lost is not None:
            return
        try:
            self.run.snapshot_path.unlink(missing_ok=True)
        except OSError:
            pass

    def _flush_status(self, **extra: Any) -> None:
        changes = {k: v for k, v in {**self._due, **extra}.items() if v is not None}
        self._due = {}
        self._written = time.monotonic()
        self._write_status(**changes, updated=time.time())

    def close(self) -> None:
        """Close events.jsonl."""
        self.writer.close()


@contextlib.contextmanager
def recording(folder: RunDir, controls: Controls) -> Iterator[RunRecorder]:
    """A run's recorder for the length of the block, its folder check given to ``controls`` (a paused engine meets
    the check there instead of in the sink); closed, and the check taken back, whatever happens."""
    recorder = RunRecorder(folder)  # first: it takes the folder's identity, to notice the folder removed or replaced
    controls.check = recorder.check_folder
    try:
        yield recorder
    finally:
        controls.check = None
        recorder.close()
