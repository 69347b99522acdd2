"""The event log: ``events.jsonl`` (every event, one JSON line each, append-only, the protocol header first), its
writer and its reader; and ``history.json``, the fold of the log up to a byte offset: a cache that makes attaching to
a long run fast (``follow.fold`` reads it and the events after it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from tui_trainer.run.events import Event, ProtocolError, decode, encode, header
from tui_trainer.run.files import atomic_write
from tui_trainer.run.history import RunHistory


class LogFiles(Protocol):
    """Where a run keeps its event log and the snapshot of its fold (a ``folder.RunDir``)."""

    @property
    def events_path(self) -> Path: ...

    @property
    def snapshot_path(self) -> Path: ...


SNAPSHOT_VERSION = 2
"""history.json's format (2: the fold keeps every log interval's lr and clock, so compare and export need only it)."""


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


class EventWriter:
    """Appends events to events.jsonl; each line is written whole (unbuffered: one write call, no flush), so a
    reader never sees half an event unless the process dies mid-write (the torn line is then skipped). A write
    that fails part-way (a full disk) is cut back to the last whole line before the OSError is raised, so the
    file ends whole and a later write (the run's end, once there is room) starts on a line of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fresh = not path.exists() or path.stat().st_size == 0
        torn = not fresh and _last_byte(path) != b"\n"  # a process killed mid-line: the resume starts a new one
        self._fh = open(path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the run
        self.offset = 0 if fresh else path.stat().st_size  # bytes in the file: the end of the last whole line
        if fresh or torn:
            self._write(header() + "\n" if fresh else "\n")

    def emit(self, event: Event) -> None:
        self._write(encode(event) + "\n")

    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        done = 0
        try:
            while done < len(data):
                done += self._fh.write(data[done:]) or 0  # a raw write may take part of it (a nearly full disk)
        except OSError:
            if done:
                self._cut_to_whole_lines()
            raise
        self.offset += len(data)

    def _cut_to_whole_lines(self) -> None:
        try:
            os.ftruncate(self._fh.fileno(), self.offset)
        except OSError:
            pass  # the reader skips a torn last line anyway

    def close(self) -> None:
        self._fh.close()


class EventReader:
    """Reads events.jsonl from the start, then whatever was appended since (``read`` again)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.skipped = path, 0, 0
        self._partial = b""

    @property
    def whole_offset(self) -> int:
        """The byte offset after the last whole line read (``offset`` also counts a torn line's start)."""
        return self.offset - len(self._partial)

    def read(self, max_bytes: int = 1 << 30) -> list[Event]:
        """New whole events since the last read. A line that is not valid JSON is skipped (a torn last
        line stays pending until it is complete or more lines follow it); ProtocolError on a newer
        protocol; FileNotFoundError if the file is gone."""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(max_bytes)
        if not chunk:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            if not line.strip():
                continue
            try:
                event = decode(line.decode("utf-8"))
            except ProtocolError:
                raise
            except (ValueError, TypeError, UnicodeDecodeError):
                self.skipped += 1
                continue
            if event is not None:
                events.append(event)
        return events


def write_snapshot(run: LogFiles, history: RunHistory, offset: int, events: int) -> None:
    """history.json: ``history`` is the fold of events.jsonl's first ``offset`` bytes (``events`` events).
    Replaced atomically (not fsynced: it can always be rebuilt from events.jsonl)."""
    doc = {"version": SNAPSHOT_VERSION, "offset": offset, "events": events, "history": history.to_dict()}
    atomic_write(run.snapshot_path, json.dumps(doc, separators=(",", ":")), durable=False)


def read_snapshot(run: LogFiles) -> tuple[RunHistory, int, int] | None:
    """(history, offset, events) from history.json, or None when there is none usable: missing, torn, of
    another version, or not at the end of a line of events.jsonl (ahead of it: a folder copied without
    its tail, or a tail lost in a power cut and then written over by a resume)."""
    try:
        doc = json.loads(run.snapshot_path.read_bytes())
        offset = int(doc["offset"])
        if doc["version"] != SNAPSHOT_VERSION or offset <= 0 or offset > run.events_path.stat().st_size:
            return None
        with open(run.events_path, "rb") as fh:
            fh.seek(offset - 1)
            if fh.read(1) != b"\n":
                return None
        return RunHistory.from_dict(doc["history"]), offset, int(doc["events"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
