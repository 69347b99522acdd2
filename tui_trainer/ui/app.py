"""The Textual app: thin. It pushes the training screen and owns process-level signals."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from textual.app import App

from tui_trainer.config import RunConfig
from tui_trainer.ui.screens.train import TrainScreen


class TrainerApp(App):
    """tui-trainer's app."""

    CSS_PATH = "app.tcss"
    TITLE = "tui-trainer"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, cfg: RunConfig, runs_dir: Path | str = "runs", resume: Path | None = None,
                 chart_hz: float = 2.0) -> None:
        super().__init__()
        self.cfg, self.runs_dir, self.resume, self.chart_hz = cfg, Path(runs_dir), resume, chart_hz
        self.hung_up = False

    def get_default_screen(self) -> TrainScreen:
        return TrainScreen(self.cfg, self.runs_dir, self.resume, self.chart_hz)

    def on_mount(self) -> None:
        self.sub_title = self.cfg.name
        self._install_signal_handlers()

    def on_ready(self) -> None:
        """The first frame is on the terminal."""
        self.train_screen.after_first_frame()

    @property
    def train_screen(self) -> TrainScreen:
        """The training screen (the app has only this one)."""
        return self.get_screen_stack_top()

    def get_screen_stack_top(self) -> TrainScreen:
        for screen in reversed(self.screen_stack):
            if isinstance(screen, TrainScreen):
                return screen
        raise LookupError("no training screen")

    def _install_signal_handlers(self) -> None:
        """Textual handles neither SIGHUP nor SIGTERM: stop the run, save, and leave."""
        try:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, lambda: self.call_later(self._leave, False))
            loop.add_signal_handler(signal.SIGHUP, lambda: self.call_later(self._leave, True))
        except (NotImplementedError, RuntimeError, AttributeError, ValueError):  # not the main thread / Windows
            pass

    async def _leave(self, hung_up: bool) -> None:
        screen = self.train_screen
        await screen.stop_and_wait()
        if hung_up:
            # the terminal is gone: restoring it would block or fail on writes to a dead tty
            self.hung_up = True
            os._exit(129)
        self.exit(return_code=143)


def make_app(cfg: RunConfig, runs_dir: Path | str = "runs", resume: Path | None = None, chart_hz: float = 2.0) -> TrainerApp:
    """One factory for the CLI and the tests."""
    return TrainerApp(cfg, runs_dir, resume, chart_hz)


def run_app(cfg: RunConfig, runs_dir: Path | str = "runs", resume: Path | None = None) -> int:
    """Run the app in this terminal; returns the exit code."""
    app = make_app(cfg, runs_dir, resume)
    app.run()
    return app.return_code or 0
