"""What a sweep says: ``events.jsonl`` in its folder, one JSON object a line, written by the sweep process as trials
change state, and the fold every reader shares (``SweepHistory``: ``attach SWEEP``, the foreground progress, the
app's future Sweep view). Stdlib only.

The first line is a header ``{"protocol": 1, "kind": "tui-trainer-sweep"}``; then, each with ``t`` (epoch
seconds):

* ``started``: the sweep process began (``resumed``: again, after a stop or a crash): study, storage (its password
  hidden), trials, slots, metric, direction, pruner and the space (``params``: key -> range text);
* ``trial``: a trial changed state: ``running`` (with ``params``, its config values; ``run``, its run folder;
  ``slot``; ``how``: new, resumed from its last.pt, re-run, or followed again), then ``complete``, ``pruned``,
  ``failed`` or ``interrupted`` (the sweep was stopped or died; it goes on when the sweep is resumed), with
  ``value``, ``epochs`` and ``reason``;
* ``report``: a trial's metric at the end of an epoch, as reported to the study (the pruner's input);
* ``best``: a new best trial (``number``, ``value``, ``params``, ``run``);
* ``ended``: the sweep process ended (``state`` finished, stopped or failed; ``message``; ``counts``).

A torn last line (a process killed mid-write) is skipped; a reader keeps its byte offset and reads on from there.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_trainer.errors import ProtocolError

PROTOCOL = 1
HEADER = {"protocol": PROTOCOL, "kind": "tui-trainer-sweep"}
FINISHED_STATES = ("complete", "pruned", "failed")


class SweepLog:
    """The sweep process's writer: one line per event, appended and flushed at once (a reader sees whole lines
    only, a crash loses at most the line being written)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fresh = not path.exists() or path.stat().st_size == 0
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if fresh:
            self._write(HEADER)
        elif not _ends_with_newline(path):
            os.write(self._fd, b"\n")  # end a line torn by a kill, so the next one starts whole

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event; returns it."""
        row = {"event": event, "t": time.time(), **fields}
        self._write(row)
        return row

    def _write(self, row: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(row, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The events after byte ``offset`` (whole lines only) and the offset after the last whole one. ProtocolError
    if the header names a newer protocol."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line torn by a kill, ended by the next writer
        if not isinstance(row, dict):
            continue
        if "protocol" in row:
            if int(row.get("protocol", 0)) > PROTOCOL:
                raise ProtocolError(f"{path} was written by a newer tui-trainer (sweep protocol {row['protocol']}); "
                                    "upgrade to read it")
            continue
        events.append(row)
    return events, offset + end


@dataclass
class TrialRow:
    """One trial as the sweep's events tell it."""

    number: int
    state: str = "running"
    params: dict[str, Any] = field(default_factory=dict)
    run: str | None = None
    slot: str | None = None
    how: str = "new"
    value: float | None = None
    epochs: int = 0
    reason: str | None = None
    values: list[tuple[int, float]] = field(default_factory=list)
    """(epoch, metric) as reported to the study."""


@dataclass
class SweepHistory:
    """The fold of a sweep's events: its start, every trial, the best and its end."""

    started: dict[str, Any] | None = None
    trials: dict[int, TrialRow] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    ended: dict[str, Any] | None = None

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one event in."""
        kind = event.get("event")
        if kind == "started":
            self.started, self.ended = event, None
        elif kind == "trial":
            number = int(event["number"])
            row = self.trials.setdefault(number, TrialRow(number))
            row.state = str(event.get("state", row.state))
            for name in ("params", "run", "slot", "how", "value", "epochs", "reason"):
                if event.get(name) is not None:
                    setattr(row, name, event[name])
        elif kind == "report":
            row = self.trials.setdefault(int(event["number"]), TrialRow(int(event["number"])))
            row.values = [v for v in row.values if v[0] != event["epoch"]] + [(int(event["epoch"]), event["value"])]
            row.epochs = max(row.epochs, int(event["epoch"]))
        elif kind == "best":
            self.best = event
        elif kind == "ended":
            self.ended = event

    def counts(self) -> dict[str, int]:
        """Trials by state."""
        counts: dict[str, int] = {}
        for row in self.trials.values():
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts


def fold_sweep(path: Path) -> SweepHistory:
    """The whole history of a sweep's events so far."""
    history = SweepHistory()
    for event in read_events(path)[0]:
        history.apply(event)
    return history
