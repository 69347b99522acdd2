"""The one follower of a run: fold its events.jsonl (from history.json when that is usable) and follow what is
appended, with one rule for when the run has ended and one for when it crashed. The app, ``attach --plain``,
``runs``/``compare``/``export`` and the recorder of a resumed run all read a run through here.

``fold(run)`` is the whole history so far, once. ``follow(run)`` yields what a watcher shows, as it comes:

* ``Snapshot(history)``: a long run's fold as of its last history.json (then only the events after it follow);
* ``Events(events, caught_up)``: events in order, in large batches while catching up (attaching to a long run
  paints its whole history at once), then as they come, at most every ``period`` seconds (each batch repaints a
  screen, which is CPU the run on the same cores does not get);
* ``Ended(finished)``: the run has ended (``finished`` is its RunFinished);
* ``Lost(why)``: it cannot be followed any more: its folder was removed, it needs a newer tui-trainer, or its
  process is gone without writing its end (crashed; the note says how to resume).

The run has ended when the last of its sessions wrote a RunFinished and its status is no longer live: a run being
resumed keeps its earlier sessions' RunFinished in its folder while its new process loads, and its status says
"starting" meanwhile, so the fold and the status together answer, and nothing else is counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from tui_trainer.run.eventlog import EventReader, read_snapshot
from tui_trainer.run.events import Event, ProtocolError, RunFinished, RunStarted
from tui_trainer.run.files import size
from tui_trainer.run.folder import LIVE_STATES, RunDir
from tui_trainer.run.history import RunHistory

BACKLOG_BATCH = 20_000  # events per batch while catching up
CHUNK = 4 << 20  # bytes read at a time while following (a long history arrives a few MB at a time: it paints early)
FOLD_CHUNK = 16 << 20  # bytes decoded at a time by fold()
QUIET = 1.0  # seconds without new lines after a run's process is gone before it counts as crashed


@dataclass(frozen=True)
class Snapshot:
    """The run's fold as of its history.json; the events after it follow."""

    history: RunHistory


@dataclass(frozen=True)
class Events:
    """Events in the order the run wrote them; ``caught_up``: the last of them is the end of the file for now."""

    events: tuple[Event, ...]
    caught_up: bool


@dataclass(frozen=True)
class Ended:
    """The run has ended (its last session's RunFinished)."""

    finished: RunFinished


@dataclass(frozen=True)
class Lost:
    """The run cannot be followed any more, and why."""

    why: str
    kind: str = "crashed"
    """crashed (its process is gone without an end), deleted (its folder), protocol (written by a newer
    tui-trainer) or unreadable."""


Update = Snapshot | Events | Ended | Lost


class Folded(NamedTuple):
    """A run's history so far and where in events.jsonl it was read to."""

    history: RunHistory
    offset: int
    """Bytes of events.jsonl folded: the end of its last whole line."""
    events: int
    """Events folded (the snapshot's and those read after it)."""
    skipped: int
    """Lines read after the snapshot that were torn or unreadable, and left out."""


def fold(run: RunDir, snapshot_only: bool = False) -> Folded | None:
    """The fold of all of events.jsonl so far: from history.json on when it is usable, else from the start (or,
    with ``snapshot_only``, None). ProtocolError if the file needs a newer tui-trainer."""
    snap = read_snapshot(run)
    if snap is None and snapshot_only:
        return None
    history, offset, count = snap if snap is not None else (RunHistory(), 0, 0)
    reader = EventReader(run.events_path)
    reader.offset = offset
    while True:
        try:
            events = reader.read(FOLD_CHUNK)
        except FileNotFoundError:
            if snapshot_only:
                return None
            events = []
        if not events and reader.offset >= size(run.events_path):  # every whole line read (a chunk may hold none)
            break
        for event in events:
            history.apply(event)
        count += len(events)
    return Folded(history, reader.whole_offset, count, reader.skipped)


def follow(run: RunDir, cancelled: Callable[[], bool] = lambda: False, period: float = 0.5) -> Iterator[Update]:
    """What a watcher of ``run`` shows, from its start (or its snapshot) until it ends, is lost, or ``cancelled()``."""
    reader = EventReader(run.events_path)
    last_session: Event | None = None  # the last RunStarted or RunFinished: whether the last session has ended
    loaded = _from_snapshot(run)
    if cancelled():
        return
    if loaded is not None:
        history, reader = loaded
        last_session = history.finished if history.finished is not None else history.started
        yield Snapshot(history)
    quiet_since = time.monotonic()
    while not cancelled():
        if not run.path.is_dir():
            yield Lost(f"the run's folder {run.path} was deleted", "deleted")
            return
        try:
            events = reader.read(CHUNK)
        except FileNotFoundError:
            events = []
        except ProtocolError as exc:
            yield Lost(str(exc), "protocol")
            return
        except OSError as exc:
            yield Lost(f"cannot read {run.events_path}: {exc.strerror or exc}", "unreadable")
            return
        caught_up = reader.offset >= size(run.events_path)
        for i in range(0, len(events), BACKLOG_BATCH):
            last = i + BACKLOG_BATCH >= len(events)
            yield Events(tuple(events[i:i + BACKLOG_BATCH]), caught_up=caught_up and last)
        for event in events:
            if isinstance(event, (RunStarted, RunFinished)):
                last_session = event
        if events:
            quiet_since = time.monotonic()
            continue
        if run.state() not in LIVE_STATES:
            if isinstance(last_session, RunFinished):
                yield Ended(last_session)
                return
            if size(run.events_path) > reader.offset:  # it ended between the read above and the state: its last lines
                continue
            if time.monotonic() - quiet_since > QUIET:  # its last lines had time to land: it ended without an end
                yield Lost(crash_note(run))
                return
        time.sleep(period)  # tailing a file another process appends to: nothing to wait on but time


def _from_snapshot(run: RunDir) -> tuple[RunHistory, EventReader] | None:
    """The history of ``run`` from its snapshot plus the events after it, and a reader positioned after them;
    None when there is no usable snapshot (the events then come in batches from the start)."""
    try:
        loaded = fold(run, snapshot_only=True)
    except (OSError, ValueError):  # unreadable since: the loop then says so, reading from the start
        return None
    if loaded is None:
        return None
    reader = EventReader(run.events_path)
    reader.offset = loaded.offset
    return loaded.history, reader


def crash_note(run: RunDir) -> str:
    """What to say of a run whose process is gone without an end."""
    return f"run {run.name} crashed: its process is gone without an end; {run.resume_hint()}"
