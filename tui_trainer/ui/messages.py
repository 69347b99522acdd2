"""Messages that reach the screen from its workers (the run follower, the helper process, the LR finder).

None of them bubble: the screen they are posted to handles them. Messages that carry events are never
coalesced (points would be lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class RunEvents(Message, bubble=False):
    """A batch of a run's events, in order, read from its events.jsonl."""

    path: str
    events: tuple
    caught_up: bool = True  # nothing more was on disk when this batch was read


@dataclass
class RunSnapshot(Message, bubble=False):
    """A run's whole history so far, folded from its history.json and the events after it (a RunHistory that
    the follower no longer touches); the events after it come as RunEvents."""

    path: str
    history: Any


@dataclass
class RunEnded(Message, bubble=False):
    """The followed run has ended: its last session wrote this RunFinished and its status is no longer live."""

    path: str
    finished: Any


@dataclass
class RunLost(Message, bubble=False):
    """The followed run cannot be read any more (its folder was deleted, a newer protocol) or its
    process is gone without an end (``crashed``)."""

    path: str
    why: str


@dataclass
class OracleReply(Message, bubble=False):
    """An answer of the helper process (device list, parameter count), or why there is none."""

    reply: dict[str, Any]


@dataclass
class LrFound(Message, bubble=False):
    """The LR finder's sweep (a dict of lrs, losses, smoothed, suggestion), or why it failed."""

    result: dict[str, Any] | None
    error: str | None = None


@dataclass
class LrProgress(Message, bubble=False):
    """How far the LR finder's child process has got (only the latest matters)."""

    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LrProgress)
