"""Messages that cross from the engine thread to the UI thread.

None of them bubble: the screen they are posted to handles them, and the app has no use for
them (a bubbling batch would be dispatched twice).
"""

from __future__ import annotations

from textual.message import Message


class EngineEvents(Message, bubble=False):
    """A batch of engine events, in order. Carries data points, so it is never coalesced."""

    def __init__(self, events: tuple) -> None:
        super().__init__()
        self.events = events


class EngineReady(Message, bubble=False):
    """torch and the engine finished importing on a worker thread."""

    def __init__(self, device: str, error: str | None = None) -> None:
        super().__init__()
        self.device = device
        self.error = error


class ModelInfo(Message, bubble=False):
    """Parameter count and summary of the model the panels describe (computed on a worker)."""

    def __init__(self, request: int, total: int, trainable: int, summary: str, error: str | None = None) -> None:
        super().__init__()
        self.request, self.total, self.trainable, self.summary, self.error = request, total, trainable, summary, error


class LrFound(Message, bubble=False):
    """The LR finder's sweep (computed on a worker), or why it failed."""

    def __init__(self, result: object, error: str | None = None) -> None:
        super().__init__()
        self.result, self.error = result, error
