"""Showing that a command works: a spinner on a terminal's stderr (``Busy``), JSON lines for a program that runs
the command (``ProgressLines``), so nobody waits on silence for more than a second.

Only when stderr is a terminal: in a pipe ``Busy`` writes nothing at all (scripts and logs see the
command's own lines only). The line appears after ``delay`` seconds (a quick command never
flickers), redraws ten times a second from a daemon thread, can change its text as work
progresses (``update``: "training the LR sweep: 1200/3100 steps"), and is cleared when the
``with`` block ends or ``stop()`` is called, before the command prints its own output::

    with Busy("loading torch…") as busy:
        import torch
        busy.update("building the model…")
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # lrfind imports torch; this module must not
    from tui_trainer.engine.lrfind import SweepProgress

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
"""The spinner's frames (braille: one column wide)."""
CLEAR = "\r\x1b[2K"
"""Back to the start of the line and erase it."""


class Busy:
    """A transient status line on a terminal's stderr (nothing in a pipe)."""

    def __init__(self, text: str, stream: TextIO | None = None, delay: float = 0.2, interval: float = 0.1,
                 tty: bool | None = None) -> None:
        self.text = text
        self.stream = stream or sys.stderr
        self.delay, self.interval = delay, interval
        self.tty = _isatty(self.stream) if tty is None else tty
        self.drawn = threading.Event()
        """Set once the line has been drawn (a test waits on it)."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> Busy:
        """Begin (the line shows after ``delay`` seconds); a no-op in a pipe."""
        if self.tty and self._thread is None:
            self._thread = threading.Thread(target=self._spin, name="busy", daemon=True)
            self._thread.start()
        return self

    def update(self, text: str) -> None:
        """New text for the line (drawn at the next frame)."""
        self.text = text

    def stop(self) -> None:
        """Clear the line and stop drawing; the command may print now. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        with self._lock:
            if self.drawn.is_set():
                self.stream.write(CLEAR)
                self.stream.flush()

    def __enter__(self) -> Busy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _spin(self) -> None:
        if self._stop.wait(self.delay):  # done before the delay: never drawn
            return
        n = 0
        while not self._stop.is_set():
            width = shutil.get_terminal_size((80, 24)).columns - 3  # one line: a wrapped one could not be cleared
            text = self.text if len(self.text) <= width else self.text[: max(width - 1, 0)] + "…"
            with self._lock:
                self.stream.write(f"{CLEAR}{FRAMES[n % len(FRAMES)]} {text}")
                self.stream.flush()
                self.drawn.set()
            n += 1
            self._stop.wait(self.interval)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


PROGRESS_EVERY_S = 0.5
"""How often ``lr-find --progress`` writes a line (and at the first step of every sweep)."""


class ProgressLines:
    """``lr-find --progress``: one JSON object per line on ``stream``, at the first step of each sweep and then about
    every ``PROGRESS_EVERY_S`` seconds: ``{"progress": "lr-find", "sweep": 2, "max_sweeps": 4, "step": 250,
    "steps": 400, "lr": 0.00031, "loss": 0.6843, "steps_done": 350, "elapsed_s": 1.93}``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.t0 = time.monotonic()
        self.last = -math.inf

    def emit(self, p: SweepProgress) -> None:
        """Write ``p`` (a lrfind.SweepProgress) if it starts a sweep or the last line is old enough."""
        now = time.monotonic()
        if p.step != 1 and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        line = {"progress": "lr-find", "sweep": p.sweep, "max_sweeps": p.max_sweeps, "step": p.step, "steps": p.steps,
                "lr": p.lr, "loss": p.loss, "steps_done": p.steps_done, "elapsed_s": round(now - self.t0, 3)}
        self.stream.write(json.dumps(line) + "\n")
        self.stream.flush()
