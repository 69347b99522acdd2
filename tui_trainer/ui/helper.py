"""The app's side of the helper process (``engine/helper.py``): start it, ask, and hear its answers.

The helper imports torch so the app never has to; it dies when the app does (its stdin closes).
Answers come back as ``HelperReply`` messages from a reader thread.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from tui_trainer.ui.messages import HelperReply


class Helper:
    """One helper process and a thread reading its answers."""

    def __init__(self, post: Callable[[object], object]) -> None:
        self._post = post
        self._next_id = 0
        self._lock = threading.Lock()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Launch the helper (its torch import then runs beside the app, not in it)."""
        self.process = subprocess.Popen([sys.executable, "-m", "tui_trainer.engine.helper"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        threading.Thread(target=self._read, name="helper-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                continue
            self._post(HelperReply(reply))
        self._post(HelperReply({"id": None, "error": "the helper process ended", "gone": True}))

    def ask(self, op: str, **args: Any) -> int | None:
        """Send a request; its answer comes as an HelperReply with this id (None if the helper is gone)."""
        if self.process is None or self.process.poll() is not None or self.process.stdin is None:
            return None
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            try:
                self.process.stdin.write(json.dumps({"id": rid, "op": op, **args}) + "\n")
                self.process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                return None
        return rid

    def close(self) -> None:
        """End the helper."""
        if self.process is not None and self.process.poll() is None:
            try:
                if self.process.stdin is not None:
                    self.process.stdin.close()
            except OSError:
                pass
            self.process.kill()
            self.process.wait()  # reaped: no zombie left behind
