"""Following a run from the app: read events.jsonl from the start, then what is appended.

Runs in a thread worker. Everything already on disk is posted in large batches first (attaching to
a long run paints its whole history at once), then new events as they come, at most every
``period`` seconds (each batch repaints the progress line and the charts: twice a second is as much as an
eye follows, and each repaint is CPU the run on the same cores does not get). It stops on its own when the
run's folder disappears, the file needs a newer
tui-trainer, or the run process is gone without writing its end (crashed).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tui_trainer.events import ProtocolError, RunFinished, RunStarted
from tui_trainer.history import RunHistory
from tui_trainer.recorder import load_history
from tui_trainer.runs import LIVE_STATES, EventReader, RunDir, resume_hint
from tui_trainer.ui.messages import RunEvents, RunLost, RunSnapshot

BACKLOG_BATCH = 20_000  # events per message while catching up
CHUNK = 4 << 20  # bytes read at a time


def follow(run: RunDir, post: Callable[[object], object], cancelled: Callable[[], bool], period: float = 0.5,
           ends_before: int = 0) -> None:
    """Post ``RunEvents`` for every event of ``run`` until it ends, is lost, or ``cancelled()``. ``ends_before``:
    RunFinished events of earlier sessions of a run being resumed; the run ends at the one after them."""
    reader = EventReader(run.events_path)
    path = str(run.path)
    finished = False
    ends = 0
    snap = _from_snapshot(run)  # a long run: its history.json and the events after it, folded here
    if cancelled():  # the screen moved on while this was read: an old fold must not replace a newer one
        return
    if snap is not None:
        history, reader = snap
        ends = history.ends
        finished = history.finished is not None and ends > ends_before
        post(RunSnapshot(path, history))
    quiet_since = time.monotonic()
    while not cancelled():
        if not run.path.is_dir():
            post(RunLost(path, f"the run's folder {run.path} was deleted"))
            return
        try:
            events = reader.read(CHUNK)  # a long history arrives a few MB at a time: the first chunk paints early
        except FileNotFoundError:
            events = []
        except ProtocolError as exc:
            post(RunLost(path, str(exc)))
            return
        except OSError as exc:
            post(RunLost(path, f"cannot read {run.events_path}: {exc.strerror or exc}"))
            return
        caught_up = reader.offset >= _size(run)
        for i in range(0, len(events), BACKLOG_BATCH):
            last = i + BACKLOG_BATCH >= len(events)
            post(RunEvents(path, tuple(events[i:i + BACKLOG_BATCH]), caught_up=caught_up and last))
        for event in events:
            if isinstance(event, RunFinished):
                ends += 1
                finished = ends > ends_before
            elif isinstance(event, RunStarted):
                finished = False
        if events:
            quiet_since = time.monotonic()
            continue
        state = run.state()
        if state not in LIVE_STATES:
            if finished:
                return
            if _size(run) > reader.offset:  # it ended between the read above and the state: read its last lines
                continue
            if time.monotonic() - quiet_since > 1.0:  # its last lines had time to land: it ended without an end
                post(RunLost(path, _crash_note(run)))
                return
        time.sleep(period)  # tailing a file another process appends to: nothing to wait on but time


def _from_snapshot(run: RunDir) -> tuple[RunHistory, EventReader] | None:
    """The history of ``run`` from its snapshot plus the events after it, and a reader positioned after them;
    None when there is no usable snapshot (the events are then posted in batches from the start)."""
    try:
        loaded = load_history(run, snapshot_only=True)
    except (OSError, ValueError):  # unreadable since: the loop then says so, reading from the start
        return None
    if loaded is None:
        return None
    history, offset, _count = loaded
    reader = EventReader(run.events_path)
    reader.offset = offset
    return history, reader


def _size(run: RunDir) -> int:
    try:
        return run.events_path.stat().st_size
    except OSError:
        return 0


def _crash_note(run: RunDir) -> str:
    good = run.last_good_checkpoint()
    return f"run {run.name} crashed: its process is gone without an end; {'u, or ' if good else ''}{resume_hint(good)}"
