"""Console output of a run: a live progress line on a terminal, one plain line per event in a pipe.

Folds events with ``run.history.RunHistory`` and prints ``run.history.describe`` lines, the same text
the app's log shows. The end of a run is left to the caller (one final line, stdout or stderr).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import TextIO

from tui_trainer.run.events import Event, ProtocolError, RunFinished, StepLogged
from tui_trainer.run.folder import RunDir
from tui_trainer.run.follow import Ended, Events, Lost, Snapshot, follow
from tui_trainer.run.history import RunHistory, progress_line


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

    def show_history(self, history: RunHistory) -> None:
        """Start from a fold made elsewhere (a long run's history.json): print its lines, then go on from it."""
        self.history = history
        for _level, line in history.log:
            self._line(line)

    def finish(self) -> None:
        """Clear a progress line left on the terminal."""
        if self._bar:
            self.out.write("\r\x1b[2K")
            self.out.flush()
            self._bar = False


def follow_run(run: RunDir, sink: ConsoleSink, period: float = 0.2) -> RunFinished | None:
    """Show a run on the console through the one follower, from its start (a long run: its history.json's lines,
    then the events after it) until it ends. Returns its last RunFinished; None if it was lost (crashed: its
    process is gone without an end; its folder deleted). ProtocolError if it needs a newer tui-trainer."""
    for update in follow(run, period=period):
        match update:
            case Snapshot(history=history):
                sink.show_history(history)
            case Events(events=events):
                for event in events:
                    sink.emit(event)
            case Ended(finished=finished):
                sink.finish()
                return finished
            case Lost(why=why, kind=kind):
                sink.finish()
                if kind == "protocol":
                    raise ProtocolError(why)
                return None
    return None


def follow_plain(run: RunDir, out: TextIO) -> RunFinished | None:
    """Print a run's events as plain lines, from the start, until it ends."""
    return follow_run(run, ConsoleSink(out, tty=False))
