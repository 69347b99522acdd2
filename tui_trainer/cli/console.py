"""Console output of a run: a live progress line on a terminal, one plain line per event in a pipe.

Folds events with ``history.RunHistory`` and prints ``history.describe`` lines, the same text
the app's log shows. The end of a run is left to the caller (one final line, stdout or stderr).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import Any, TextIO

from tui_trainer.events import Event, RunFinished, RunStarted, StepLogged
from tui_trainer.history import RunHistory, progress_line


class ConsoleSink:
    """Prints a run's events as they come."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None,
                 before_output: Callable[[], None] | None = None) -> None:
        self.out = stream or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.history = RunHistory()
        self._bar = False
        self._before_output = before_output
        """Called once, before the first thing this sink writes (clears a "loading…" spinner)."""

    def _first_output(self) -> None:
        if self._before_output is not None:
            self._before_output, call = None, self._before_output
            call()

    def _line(self, text: str) -> None:
        self._first_output()
        if self._bar:
            self.out.write("\r\x1b[2K")
            self._bar = False
        self.out.write(text + "\n")
        self.out.flush()

    def emit(self, event: Event) -> None:
        changed = self.history.apply(event)
        if isinstance(event, StepLogged):
            if self.tty:
                self._first_output()
                width = shutil.get_terminal_size((100, 24)).columns - 1
                self.out.write("\r\x1b[2K" + progress_line(self.history, width, bar=True))
                self.out.flush()
                self._bar = True
        elif isinstance(event, RunFinished):
            self.finish()  # the caller prints the outcome once (stdout when done, stderr when failed)
        elif "log" in changed:
            self._line(self.history.log[-1][1])

    def finish(self) -> None:
        """Clear a progress line left on the terminal."""
        if self._bar:
            self.out.write("\r\x1b[2K")
            self.out.flush()
            self._bar = False


def follow_run(run: Any, sink: Any, live: Any = None, poll: float = 0.2) -> RunFinished | None:
    """Pass a run's events to ``sink`` from the start of events.jsonl and follow it while ``live()`` (default: while
    its state is live). Returns the last RunFinished (None if the run ended without one: crashed)."""
    import time

    from tui_trainer.runs import LIVE_STATES, EventReader

    live = live or (lambda: run.state() in LIVE_STATES)
    reader = EventReader(run.events_path)
    finished: RunFinished | None = None
    ended = False
    while True:
        try:
            events = reader.read()
        except FileNotFoundError:
            events = []
        for event in events:
            sink.emit(event)
            if isinstance(event, RunFinished):
                finished = event
            elif isinstance(event, RunStarted):  # a resumed run goes on in the same folder
                finished = None
        if events:
            continue
        if ended:
            return finished
        ended = not live()  # read once more after the run ended: its last lines
        if not ended:
            time.sleep(poll)  # tailing a file another process appends to


def follow_plain(run: Any, out: TextIO) -> RunFinished | None:
    """Print a run's events as plain lines, from the start, until it ends."""
    return follow_run(run, ConsoleSink(out, tty=False))
