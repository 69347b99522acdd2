"""Messages: how workers report back, and how widgets tell the screen something.

Every worker reports back one way: a message posted to the widget that started it, handled there in one
place per message type (a worker's failure is a ``Worker.StateChanged``, handled by the screen). None of the
worker messages bubble. Messages that carry events are never coalesced (points would be lost). A widget's
own workers' messages live with the widget (the Runs tab's, the LR finder's).

The follower's messages carry the worker that read them: once that worker is cancelled (another run is shown,
or the same run followed afresh), what it had already posted is dropped, so cancelling is the one way to stop
listening to a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

from tui_trainer.run.events import Event, RunFinished
from tui_trainer.run.history import RunHistory

if TYPE_CHECKING:
    from textual.worker import Worker

    from tui_trainer.run.client import RunHandle


@dataclass
class Said(Message):
    """A line for the Log tab from a widget (a preset loaded, an LR suggestion), or an error (also a
    notification). Bubbles to the screen, which writes it."""

    text: str
    level: str = "info"  # info, warning or error


# -- the run shown: its follower ------------------------------------------------------------


@dataclass
class FollowerMessage(Message, bubble=False):
    """What the follower of one run read; ``worker``: the follower that read it."""

    worker: Worker[None]

    @property
    def current(self) -> bool:
        """Whether its follower still runs for the run shown (a cancelled one's messages are stale)."""
        return not self.worker.is_cancelled


@dataclass
class RunEvents(FollowerMessage, bubble=False):
    """A batch of a run's events, in order, read from its events.jsonl."""

    events: tuple[Event, ...]
    caught_up: bool = True  # nothing more was on disk when this batch was read


@dataclass
class RunSnapshot(FollowerMessage, bubble=False):
    """A run's whole history so far, folded from its history.json and the events after it (the follower no
    longer touches it); the events after it come as RunEvents."""

    history: RunHistory


@dataclass
class RunEnded(FollowerMessage, bubble=False):
    """The followed run has ended: its last session wrote this RunFinished and its status is no longer live."""

    finished: RunFinished


@dataclass
class RunLost(FollowerMessage, bubble=False):
    """The followed run cannot be read any more (its folder was deleted, a newer protocol) or its
    process is gone without an end (``crashed``)."""

    why: str
    kind: str = "lost"
    """The follower's word for it: ``crashed`` (its process is gone without an end), or another (run/follow.py)."""


# -- starting and steering the run ------------------------------------------------------------


@dataclass
class RunStarting(Message, bubble=False):
    """A run process was launched (``handle``), or could not be (``error``)."""

    handle: RunHandle | None
    error: str | None = None


@dataclass
class CommandDone(Message, bubble=False):
    """The run's answer to a command (or why it could not be reached): the endpoint's JSON reply."""

    cmd: str
    reply: dict[str, Any]


@dataclass
class StoppedToQuit(Message, bubble=False):
    """The run was stopped because the user quit with "stop" (``state``: where it ended up)."""

    state: str


# -- the helper process --------------------------------------------------------------------------


@dataclass
class HelperReply(Message, bubble=False):
    """An answer of the helper process (device list, parameter count), or why there is none: its JSON line."""

    reply: dict[str, Any]
