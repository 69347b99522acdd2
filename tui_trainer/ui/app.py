"""The Textual app: thin. It pushes the training screen, owns process-level signals, and never dies
of an exception in a view (see guard.py).

Exit codes: 0 quit (the run shown is detached or was stopped), 1 the app could not start,
2 bad usage (before the app opens), 129 the terminal hung up, 143 SIGTERM. None of them stops a run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App

from tui_trainer.config import RunConfig
from tui_trainer.ui.alert import end_title, terminal_alert
from tui_trainer.ui.guard import Guarded, report_view_error
from tui_trainer.ui.screens.train import RunClient, TrainScreen

if TYPE_CHECKING:
    from tui_trainer.ui.screens.sweep import SweepScreen


class TrainerApp(Guarded, App):
    """tui-trainer's app."""

    CSS_PATH = "app.tcss"
    TITLE = "tui-trainer"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, cfg: RunConfig, runs_dir: Path | str = "runs", resume: Path | None = None,
                 attach: Path | None = None, chart_hz: float = 2.0, client: RunClient | None = None,
                 notify_end: bool = False, sweep: Path | None = None) -> None:
        super().__init__()
        self.sweep_path = sweep  # a sweep's folder: its Sweep view opens over the training screen
        self.sweep_screen: SweepScreen | None = None
        self.notify_end = notify_end  # bell and desktop notification when the followed run ends (ui/alert.py)
        self.cfg, self.runs_dir, self.resume, self.attach_to, self.chart_hz = cfg, Path(runs_dir), resume, attach, chart_hz
        self.client = client
        self._started = False
        self.main_screen: TrainScreen | None = None

    def get_default_screen(self) -> TrainScreen:
        self.main_screen = TrainScreen(self.cfg, self.runs_dir, self.resume, self.attach_to, self.chart_hz, self.client)
        return self.main_screen

    def on_mount(self) -> None:
        self.sub_title = self.cfg.name
        self._install_signal_handlers()
        yield_to_training()

    def open_sweep(self, path: Path) -> None:
        """A sweep's view over the training screen (``attach SWEEP``, or a sweep started from the panels); it is
        installed, so it is kept, and goes on following, while a trial is shown beneath it (``g`` comes back)."""
        from tui_trainer.sweep.folder import SweepDir
        from tui_trainer.ui.screens.sweep import SweepScreen  # plotext with it: never before the first frame

        old = self.sweep_screen
        if old is not None:  # another sweep started since: the last one's view stops following
            if self.screen is old:
                self.pop_screen()
            self.workers.cancel_node(old)
            self.call_later(self.uninstall_screen, old)  # once popped: not kept with its table and charts
        self.sub_title = f"sweep {path.name}"
        self.sweep_screen = SweepScreen(SweepDir(path), self.chart_hz)
        self.install_screen(self.sweep_screen, name=f"sweep {path}")
        self.push_screen(self.sweep_screen)

    def show_sweep(self) -> None:
        """The Sweep view again (``g`` on the training screen), if there is one."""
        if self.sweep_screen is not None and self.screen is not self.sweep_screen:
            self.push_screen(self.sweep_screen)

    def on_ready(self) -> None:
        """The first frame is on the terminal."""
        self._started = True
        self.train_screen.after_first_frame()
        if self.sweep_path is not None:  # after the first frame: the view brings plotext with it
            self.open_sweep(self.sweep_path)

    @property
    def train_screen(self) -> TrainScreen:
        """The training screen (at the bottom of the stack)."""
        assert self.main_screen is not None, "the screen is made when the app starts"
        return self.main_screen

    def alert_end(self, state: str, body: str) -> None:
        """When turned on: the bell and a desktop notification (OSC 9, OSC 777) written to the terminal through
        Textual's driver (its writer thread orders them with the frames)."""
        if not self.notify_end or self._driver is None:
            return
        self._driver.write(terminal_alert(end_title(state), body, tmux=bool(os.environ.get("TMUX"))))

    async def action_quit(self) -> None:
        """Quit (q, ctrl+q) takes the training screen's path from it or the Sweep view: with a run training, ask
        first; a dialog keeps ctrl+q for itself."""
        if self.main_screen is None:
            self.exit()
            return
        if self.sweep_screen is not None and self.screen is self.sweep_screen:
            self.pop_screen()
        elif self.screen is not self.main_screen:
            return
        await self.main_screen.action_quit()

    def _handle_exception(self, error: Exception) -> None:
        """The last line of defence: once the app is up, an exception that reached Textual is reported
        and the app goes on (the view that raised it may stop updating); before that, Textual's own exit."""
        if not self._started or self._exit_renderables or isinstance(error, (KeyboardInterrupt, SystemExit)):
            super()._handle_exception(error)
            return
        report_view_error(self, error, "the app")

    def _install_signal_handlers(self) -> None:
        """Textual handles neither SIGHUP nor SIGTERM: leave, and the run goes on training."""
        try:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, lambda: self.exit(return_code=143))
            loop.add_signal_handler(signal.SIGHUP, self._hung_up)
        except (NotImplementedError, RuntimeError, AttributeError, ValueError):  # not the main thread / Windows
            pass

    def _hung_up(self) -> None:
        """The terminal is gone: restoring it would block or fail on writes to a dead tty. The run is in its
        own process and session: it trains on."""
        self.train_screen.shutdown()
        os._exit(129)


def yield_to_training() -> None:
    """Lower the UI thread's priority (nice +10, Linux: per thread), so the run process it shows, on the same
    cores, gets them first: with torch's threads on every core, each slice the UI takes stalls the whole step.
    Threads started later by the app (the workers that launch runs) keep the normal priority, and so do the
    run processes they start; the helper process, started from this thread, runs at the UI's priority."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + 10, 19))
    except (AttributeError, OSError):  # not Linux, or not allowed: the app runs as before
        pass


def make_app(cfg: RunConfig, runs_dir: Path | str = "runs", resume: Path | None = None, attach: Path | None = None,
             chart_hz: float = 2.0, client: RunClient | None = None, notify_end: bool = False,
             sweep: Path | None = None) -> TrainerApp:
    """One factory for the CLI and the tests. ``client``: how runs are started and attached (None: as run
    processes, run/client.py; tests of what is drawn pass a fake that writes run folders itself). ``notify_end``:
    the bell and desktop notification when the followed run ends (ui/alert.py)."""
    return TrainerApp(cfg, runs_dir, resume, attach, chart_hz, client, notify_end, sweep)


def run_app(cfg: RunConfig, runs_dir: Path | str = "runs", resume: Path | None = None, attach: Path | None = None,
            notify_end: bool = False, sweep: Path | None = None) -> int:
    """Run the app in this terminal; print where the run shown stands; return the exit code."""
    app = make_app(cfg, runs_dir, resume, attach, notify_end=notify_end, sweep=sweep)
    try:
        app.run()
    finally:
        screen = app.main_screen
        if screen is not None:
            screen.shutdown()
            line = screen.exit_line()
            if line:
                print(line)
        if app.sweep_screen is not None:  # a sweep is its own process: it goes on
            sweep = app.sweep_screen.folder
            print(f"sweep {sweep.name}: {sweep.state()}; follow it with: tui-trainer attach {sweep.path}")
    return app.return_code or 0
