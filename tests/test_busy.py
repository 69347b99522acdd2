"""The spinner: on a terminal it shows, changes and is cleared; in a pipe it writes nothing at all."""

from __future__ import annotations

import io
import threading

from tui_trainer.cli.busy import CLEAR, Busy


def test_in_a_pipe_nothing_is_written():
    out = io.StringIO()
    with Busy("loading torch…", stream=out, delay=0.0) as busy:
        busy.update("building the model…")
    assert out.getvalue() == "" and not busy.drawn.is_set()


class Terminal(io.StringIO):
    """A stream that tells when a text has been written to it."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle, self.seen = needle, threading.Event()

    def write(self, text: str) -> int:
        if self.needle in text:
            self.seen.set()
        return super().write(text)


def test_on_a_terminal_the_line_shows_changes_and_is_cleared():
    out = Terminal("250/400")
    with Busy("loading torch…", stream=out, delay=0.0, interval=0.01, tty=True) as busy:
        assert busy.drawn.wait(10)
        busy.update("LR sweep 2 (of at most 4): 250/400 steps")
        assert out.seen.wait(10)  # the next frame draws the new text
    text = out.getvalue()
    assert text.startswith(CLEAR) and "loading torch…" in text and text.endswith(CLEAR)  # nothing left behind
    assert "\n" not in text  # one line, redrawn in place


def test_a_quick_command_never_shows_the_line():
    out = io.StringIO()
    with Busy("loading torch…", stream=out, delay=30.0, tty=True):
        pass
    assert out.getvalue() == ""
