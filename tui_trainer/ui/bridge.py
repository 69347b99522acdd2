"""UISink: the engine's sink inside the app.

The engine thread only appends to a deque (no lock, no widget, no reactive) and, at most
``max_posts_per_s`` times a second, posts the batch collected so far as one ``EngineEvents``
message. Anything left when events stop arriving is drained by the screen's timer, so no
event waits longer than that timer's period. ``call_from_thread`` is never used: it would
block the training thread until the UI thread got round to it.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from tui_trainer.events import RunFinished
from tui_trainer.ui.messages import EngineEvents


class UISink:
    """Batches engine events and posts them to ``target`` (a Textual message pump)."""

    def __init__(self, target: Any, max_posts_per_s: float = 10.0) -> None:
        self.target = target
        self.min_interval = 1.0 / max_posts_per_s
        self._queue: collections.deque = collections.deque()
        self._last_post = 0.0
        self._post_lock = threading.Lock()  # the timer (UI thread) and emit (engine thread) may both drain
        self.posts = 0

    def emit(self, event: Any) -> None:
        """Engine thread: queue the event; post a batch if the throttle allows."""
        self._queue.append(event)
        now = time.monotonic()
        if isinstance(event, RunFinished) or now - self._last_post >= self.min_interval:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Post everything queued as one message (either thread)."""
        with self._post_lock:
            events = []
            while self._queue:
                events.append(self._queue.popleft())
            if events:
                self._last_post = now if now is not None else time.monotonic()
                self.posts += 1
                self.target.post_message(EngineEvents(tuple(events)))
