"""The app never dies of an exception in a view.

``Guarded`` (a mixin for our screens and widgets) catches an exception raised while one of their
messages is handled, and hears of their workers' failures (``Worker.StateChanged``, which does not bubble:
each widget that starts workers hears of its own): either is logged with its traceback to ``app-errors.log`` in the user's state
folder and shown as a notification, and the widget goes on handling its next message (Textual
would otherwise end the widget's message loop and exit the app). ``TrainerApp`` sends anything
that still reaches Textual's own handler the same way. Charts guard their own drawing.

This overrides ``MessagePump._dispatch_message``, a private method of Textual: pyproject pins the range it
was tested with (``textual>=8.2,<9``); tests/test_app_never_dies.py fails if a Textual upgrade changes it.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from textual.app import App
    from textual.message import Message

from tui_trainer.config import user_state_dir
from tui_trainer.errors import first_line


def error_log() -> Path:
    """Where view errors are written."""
    return user_state_dir() / "app-errors.log"


_last_notified: dict[str, float] = {}


def report_view_error(app: App, exc: BaseException, where: str) -> None:
    """Log ``exc`` with its traceback and notify the user (once per kind of error every 10 s)."""
    path = error_log()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} in {where}\n")
            fh.write("".join(traceback.format_exception(exc)))
    except OSError:
        path = None
    key = f"{where}:{type(exc).__name__}"
    now = time.monotonic()
    if now - _last_notified.get(key, 0.0) < 10.0:
        return
    _last_notified[key] = now
    detail = f" (details in {path})" if path else ""
    try:
        app.notify(f"{where}: {type(exc).__name__}: {first_line(exc, 120)}{detail}", title="internal error, app goes on",
                   severity="error", timeout=8)
    except Exception:  # noqa: BLE001 - a notification failing must not start a loop of errors
        pass


class Guarded:
    """Mixin: an exception in one of this widget's message handlers is reported, not fatal."""

    async def _dispatch_message(self, message: Message) -> None:
        try:
            await super()._dispatch_message(message)  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the point of this class
            report_view_error(self.app, exc, f"{type(self).__name__} handling {type(message).__name__}")  # type: ignore[attr-defined]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker of this widget failed (its workers are ``exit_on_error=False``): report it as above."""
        error = event.worker.error
        if event.state is WorkerState.ERROR and error is not None:
            report_view_error(self.app, error, f"{type(self).__name__}: {event.worker.description}")  # type: ignore[attr-defined]
