"""The training screen: coordinates the setup column, the run view, and the run process it shows.

It trains nothing itself. ``r`` starts a run process (through its ``RunClient``) and follows its events.jsonl;
Stop, Save, Pause, Step and a new learning rate are commands sent to the run's control endpoint from a worker
thread. Quitting detaches (the run goes on); stopping is explicit. The helper process answers what needs torch
(devices, parameter counts); the LR find tab sweeps in a child process of its own.

Where the run shown stands is one reactive, ``run_state``: its watchers lock the panels, enable the run view's
buttons (bound to it) and refresh the footer's keys. Workers report back as messages (ui/messages.py), one
handler per type; a follower is stopped one way, by cancelling its worker (the follow group is exclusive: showing
another run cancels the last follower, and what it had posted is dropped).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Header, Input
from textual.worker import Worker, WorkerState, get_current_worker

from tui_trainer.config import ConfigError, RunConfig, load_preset
from tui_trainer.config.factories import names_code
from tui_trainer.errors import first_line
from tui_trainer.run import client as run_client
from tui_trainer.run.client import RunHandle
from tui_trainer.run.events import Reason, RunFinished
from tui_trainer.run.folder import LIVE_STATES, RunDir, resume_hint
from tui_trainer.run.history import end_line
from tui_trainer.ui.guard import Guarded
from tui_trainer.ui.helper import Helper
from tui_trainer.ui.messages import (
    CommandDone,
    HelperReply,
    RunEnded,
    RunEvents,
    RunLost,
    RunSnapshot,
    RunStarting,
    Said,
    StoppedToQuit,
)
from tui_trainer.ui.screens.dialogs import HelpScreen, LearningRateDialog, QuitDialog, SweepDialog
from tui_trainer.ui.state import RunState
from tui_trainer.ui.widgets.footer import KeyFooter
from tui_trainer.ui.widgets.images import ImagesTab
from tui_trainer.ui.widgets.runs import RunsTab
from tui_trainer.ui.widgets.runview import TABS, RunView
from tui_trainer.ui.widgets.setup import SetupColumn


class RunClient(Protocol):
    """What the screen needs of run processes: start one, or hold one started elsewhere. ``run/client.py`` is
    the real one; tests of what is drawn pass a fake that writes run folders without a process."""

    def start(self, cfg: RunConfig, runs_dir: Path | str, resume: Path | None = None, *,
              paused: bool = False) -> RunHandle:
        """Create the run's folder and launch its process (ConfigError or OSError: nothing started)."""
        ...

    def attach(self, run: RunDir) -> RunHandle:
        """A handle on a run started elsewhere."""
        ...


class TrainScreen(Guarded, Screen):
    """Pick settings, start or attach to a run, watch it, steer it."""

    AUTO_FOCUS = "#preset-select"  # Enter opens the preset list (it never starts a run); letters are commands

    # In the footer's order, most used first: a narrow footer keeps the front of this list (? Help included).
    BINDINGS = [
        Binding("r", "start", "Start"),
        Binding("r", "start_sweep", "Sweep"),  # fields given ranges: the footer says r starts a sweep
        Binding("s", "stop", "Stop"),
        Binding("c", "save", "Save"),
        Binding("p", "pause", "Pause"),
        Binding("p", "unpause", "Resume"),  # the footer says what p does now, as the button does
        Binding("n", "step", "Step"),
        Binding("question_mark,f1", "help", "Help"),
        Binding("slash", "pick_preset", "Preset"),
        Binding("l", "change_lr", "Set LR"),
        Binding("f", "lr_find", "LR find"),
        Binding("f", "lr_find_refused", "LR find", show=False),
        Binding("a", "apply_lr", "Apply LR"),
        Binding("u", "resume_run", "Resume run"),
        Binding("m", "mark_run", "Compare"),
        Binding("v", "next_chart", "Next chart"),
        Binding("w", "write_svg", "SVG"),
        Binding("t", "next_image_view", "Next view"),
        Binding("d", "detach", "Detach"),
        Binding("g", "show_sweep", "Sweep"),
        Binding("q", "quit", "Quit"),
        Binding("x", "every_field", "All fields", show=False),
        Binding("e", "toggle_setup", "Setup", show=False),
        Binding("ctrl+q,ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("escape", "leave_field", "Leave field", show=False),
        *[Binding(str((i + 1) % 10), f"tab('{tab_id}')", title, show=False) for i, (tab_id, title) in enumerate(TABS)],  # 1..9, 0
    ]

    run_state: var[RunState] = var(RunState.NONE, init=False, bindings=True)
    """Where the run shown stands; the run view's buttons are bound to it."""
    settings_valid: var[bool] = var(True, init=False)
    """The panels hold a valid config; the run view's Start is bound to it."""

    def __init__(self, cfg: RunConfig, runs_dir: Path, resume: Path | None = None, attach: Path | None = None,
                 chart_hz: float = 2.0, client: RunClient | None = None) -> None:
        super().__init__()
        self.cfg, self.runs_dir, self.resume_path, self.attach_path = cfg, Path(runs_dir), resume, attach
        self.client: RunClient = client if client is not None else run_client
        self.handle: RunHandle | None = None  # the run shown
        self._state_before_start = RunState.NONE  # where to return if a launch fails
        self._quit_when_started = False  # q was pressed while a run was starting
        self._followed_since = 0.0  # time.time() when the run shown began to be followed
        self._live_when_caught_up: bool | None = None  # the run shown was alive when its history had arrived
        self.sweep_starting = False  # a sweep from the panels is being started (r waits for it)
        self.started_here: set[str] = set()  # runs this app launched fresh (removed if they fail at setup)
        self.helper = Helper(self.post_message)
        self.helper_ready = False
        self.device_text = ""
        self.model_request: int | None = None
        self.examples_request: int | None = None  # the helper's training examples for the Images tab
        self.examples_key: str | None = None  # the data section they were asked for
        self.model_request_code = False  # whether the config asked about names the user's code (Start waits for it)
        self._follower: Worker[None] | None = None  # the worker following the run shown
        self._changed_while_catching_up: set[str] = set()
        self.setup = SetupColumn(cfg, id="setup")
        self.view = RunView(self.runs_dir, chart_hz=chart_hz, id="run")

    # -- layout -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="body"):
            yield self.setup
            yield self.view.data_bind(TrainScreen.run_state, TrainScreen.settings_valid)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.view.log_line(f"preset {self.cfg.name}: {self.cfg.description}")
        self.app.sub_title = self.cfg.name

    def on_unmount(self) -> None:
        self.shutdown()  # however the app ends (run_test included), its helper process ends with it

    def after_first_frame(self) -> None:
        """Called by the app once the first frame is on the terminal: fill in the rest."""
        self.call_after_refresh(self._mount_the_rest)

    async def _mount_the_rest(self) -> None:
        await self.setup.mount_panels()
        await self.view.mount_tabs()
        self.helper.start()
        self.helper.ask("devices")
        if self.attach_path is not None:
            self.attach(RunDir(self.attach_path))
        elif self.resume_path is not None:
            self.view.say(f"press r to resume from {self.resume_path.name}")
            self.view.log_line(f"press r to resume {self.resume_path}")

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        """Skip the restyle of the first resume (every widget was styled as it mounted, moments earlier)."""
        if not getattr(self, "_resumed", False):
            self._resumed = True
            event.refresh_styles = False

    # -- state --------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """A run is being launched, or the run shown has not ended (the follower says when it has)."""
        return self.run_state.live

    @property
    def starting(self) -> bool:
        """A run process is being launched."""
        return self.run_state is RunState.STARTING

    @property
    def ended(self) -> bool:
        """The run shown has ended (its last session's RunFinished, its status no longer live)."""
        return self.run_state is RunState.ENDED

    @property
    def lost(self) -> bool:
        """The run shown cannot be followed any more (crashed, deleted)."""
        return self.run_state is RunState.LOST

    def watch_run_state(self, old: RunState, new: RunState) -> None:
        """Lock the panels while a run is live (the buttons follow by binding, the footer by ``bindings``)."""
        if old.live != new.live and self.size.width < 100:
            self.setup.display = not new.live  # a narrow terminal gives a training run the whole width (e shows them)
        self.setup.set_locked(new.live)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show in the footer only what can be done now."""
        state = self.run_state
        live = state.live
        if action in ("stop", "save", "detach"):
            return live
        if action == "pause":
            return live and state is not RunState.PAUSED
        if action == "unpause":
            return state is RunState.PAUSED
        if action == "next_chart":
            return self.view.one_chart_at_a_time
        if action in ("every_field", "pick_preset"):
            return bool(self.setup.display) and not self.setup.disabled
        if action == "step":
            return not live or state is RunState.PAUSED
        if action == "apply_lr":
            return self.view.lr_finder.suggestion is not None and not live
        if action == "lr_find":
            return not live
        if action == "lr_find_refused":  # f during a run says why it waits, instead of nothing
            return live
        if action == "resume_run":
            # from the fold, not the disk: this runs at every key press (u itself looks the checkpoint up)
            return not live and self.handle is not None and self.view.has_checkpoint
        if action == "start":
            return not live and not self.setup.ranges
        if action == "start_sweep":
            return not live and bool(self.setup.ranges) and not self.sweep_starting
        if action == "mark_run":
            return self.view.active_tab == "tab-runs"
        if action == "next_image_view":
            return self.view.active_tab == "tab-images"
        if action == "show_sweep":
            return getattr(self.app, "sweep_screen", None) is not None
        return True

    # -- setup column -------------------------------------------------------------------

    @on(SetupColumn.Changed)
    def _settings_changed(self, event: SetupColumn.Changed) -> None:
        self.settings_valid = self.setup.blocked is None
        self.app.sub_title = self.setup.cfg.name
        self.refresh_bindings()  # r: Start, or Sweep when a field holds a range
        if event.model_changed:
            self._request_model_info()
        if self.examples_key is not None and self._data_key() != self.examples_key:
            self.examples_key = self.examples_request = None  # an answer still on its way is the old dataset's
            self.view.images.forget_examples(shown=self.view.active_tab == "tab-images")

    def _data_key(self) -> str | None:
        """What the training examples depend on: the panels' data section (None: the panels are invalid)."""
        try:
            return json.dumps(self.setup.config().to_dict()["data"], sort_keys=True)
        except ConfigError:
            return None

    @on(ImagesTab.ExamplesWanted)
    def _examples_wanted(self) -> None:
        """The Images tab is shown without training examples: the helper loads the data and picks them."""
        key = self._data_key()
        if key is None:
            self.view.images.show_examples(None, "no training examples: the panels' settings are not valid")
            return
        if key == self.examples_key:
            return
        if not self.helper_ready:
            return  # asked again when the helper has answered its first question (on_helper_reply)
        self.examples_key = key
        self.examples_request = self.helper.ask("examples", config=self.setup.config().to_dict())

    @on(Said)
    def _said(self, event: Said) -> None:
        """A widget's line for the Log tab (an error is also a notification)."""
        if event.level == "error":
            self._error(event.text)
        else:
            self.view.log_line(event.text, event.level)

    def _request_model_info(self) -> None:
        if self.setup.invalid:
            return
        try:
            cfg = self.setup.config()
        except ConfigError as exc:  # a rule between fields; where it is about the user's code, Start waits on it
            values = self.setup.values
            custom = "custom" in (values["model"]["arch"], values["data"]["dataset"])
            self._show_code_check(custom, str(exc).removeprefix("panels: ") if custom else None)
            return
        if not self.helper_ready:  # asked once the helper is up; the user's code waits for that check
            self._show_code_check(names_code(cfg), pending=self.helper.process is not None)
            return
        self.model_request = self.helper.ask("describe", config=cfg.to_dict())
        self.model_request_code = names_code(cfg)
        self._show_code_check(names_code(cfg), pending=self.model_request is not None)

    def _show_code_check(self, code: bool, error: str | None = None, pending: bool = False) -> None:
        """Start waits for the helper's one batch through the user's code, and stays off when it failed."""
        self.setup.show_code_check(code, error, pending)
        self.settings_valid = self.setup.blocked is None

    def on_helper_reply(self, message: HelperReply) -> None:
        reply = message.reply
        if "devices" in reply:
            self.helper_ready = True
            gpus = reply.get("gpus", 0)
            self.device_text = reply["describe"]["auto"] + (f" (x{gpus}: data parallel with {gpus} processes)"
                                                            if gpus > 1 else "")
            if not self.live:
                self.view.show_device(self.device_text)
            self.setup.set_devices(reply["devices"], gpus)
            self._request_model_info()
            if self.view.active_tab == "tab-images":
                self._examples_wanted()
        elif reply.get("gone"):
            self.helper_ready = False
            self._show_code_check(False)  # nothing left to check with: the run process checks it itself
            if not self.device_text:
                self.view.show_device("device: unknown (helper ended)")
        elif reply.get("id") == self.examples_request and self.examples_request is not None:
            if "error" in reply:
                self.examples_key = None  # asked again when the tab is shown again
            self.view.images.show_examples(None if "error" in reply else reply, reply.get("error"))
        elif reply.get("id") == self.model_request:
            code = self.model_request_code
            if "error" in reply:
                self.setup.show_param_count(f"params: ? ({reply['error']})")
                self._show_code_check(code, reply["error"])
                return
            self._show_code_check(code)
            frozen = reply["total"] - reply["trainable"]
            self.setup.show_param_count(f"params: {reply['total']:,}" + (f" ({frozen:,} frozen)" if frozen else ""))
            if not self.live:
                self.view.show_model_summary(reply["summary"])

    # -- starting and attaching ------------------------------------------------------------

    def action_start(self, paused: bool = False) -> None:
        """Start a run process from the panels (or continue --resume CKPT), then follow it; ``paused``: it takes
        one step and holds (n steps on, p lets it run)."""
        if self.live:
            return
        try:
            cfg = self.setup.config()
        except ConfigError as exc:
            self._error(str(exc))
            return
        if self.setup.blocked is not None:
            self._error(self.setup.blocked)
            return
        if self.setup.ranges:  # fields given ranges: a sweep of them, not a run
            if paused:
                self._error(f"n steps one run; {', '.join(self.setup.ranges)} holds a range: r starts a sweep of it "
                            "(or give it a value to step a run)")
                return
            if not self.sweep_starting:
                self.app.push_screen(SweepDialog(dict(self.setup.ranges)), lambda asked: self._sweep_asked(cfg, asked))
            return
        resume, self.resume_path = self.resume_path, None
        self._begin_start()
        self.view.reset(None)
        self.view.say("starting a run process (it loads torch and the data)…")
        self._launch(cfg, resume, paused)

    def action_start_sweep(self) -> None:
        """r with fields given ranges: a sweep of them (action_start asks how many trials)."""
        self.action_start()

    def _sweep_asked(self, cfg: RunConfig, asked: dict | None) -> None:
        if asked is not None and not self.sweep_starting:
            self.sweep_starting = True  # r and n wait for it: one sweep from one press
            self.refresh_bindings()
            self.view.say(f"starting a sweep of {', '.join(self.setup.ranges)}: its process opens the study…")
            self._start_sweep(cfg, dict(self.setup.ranges), asked)

    @work(thread=True, group="launch", exit_on_error=False, description="start a sweep")
    def _start_sweep(self, cfg: RunConfig, ranges: dict[str, str], asked: dict) -> None:
        """The sweep of ``ranges`` over ``cfg`` (its folder under sweeps/ beside the runs folder), then its Sweep
        view; a bad combination is said in one line, nothing started."""
        from tui_trainer.sweep.client import start_sweep

        try:
            folder, state = start_sweep(cfg, ranges, asked, self.runs_dir.parent / "sweeps")
        except (ConfigError, OSError) as exc:
            self.app.call_from_thread(self._sweep_failed, str(exc))
            return
        self.app.call_from_thread(self._sweep_started, folder.path, state)

    def _sweep_failed(self, why: str) -> None:
        self.sweep_starting = False
        self.refresh_bindings()
        self._error(why)
        self.view.say("ready: press r to start")

    def _sweep_started(self, path: Path, state: str) -> None:
        self.sweep_starting = False
        self.refresh_bindings()
        self.view.say(f"sweep {path.name}: {state}; g shows it")
        open_sweep = getattr(self.app, "open_sweep", None)
        if open_sweep is not None:
            open_sweep(path)

    def _begin_start(self) -> None:
        self._state_before_start = self.run_state
        self.run_state = RunState.STARTING

    @work(thread=True, group="launch", exit_on_error=False, description="start a run process")
    def _launch(self, cfg: RunConfig, resume: Path | None, paused: bool = False) -> None:
        try:
            handle = self.client.start(cfg, self.runs_dir, resume, paused=paused)
        except ConfigError as exc:
            self.post_message(RunStarting(None, str(exc)))
            return
        except OSError as exc:
            self.post_message(RunStarting(None, f"cannot start the run process: {first_line(exc)}"))
            return
        self.post_message(RunStarting(handle))

    def on_run_starting(self, message: RunStarting) -> None:
        quit_asked, self._quit_when_started = self._quit_when_started, False
        if message.handle is None:
            self.run_state = self._state_before_start
            self._error(message.error or "the run process could not be started")
            self.view.say("ready: press r to start")
        else:
            if not message.handle.resumed:
                self.started_here.add(str(message.handle.path))
            self._show_run(message.handle)
        if quit_asked:
            self.call_later(self.action_quit)

    def attach(self, run: RunDir) -> None:
        """Show a run started elsewhere (live: its history, then live; ended: read-only)."""
        try:
            if run.source == "track":  # a user's own loop: its config is its own, not a preset's
                self.view.log_line(f"{run.name} is your own loop's run: its config is in {run.config_path}; the "
                                   "panels keep theirs")
            else:
                self.setup.load(load_preset(str(run.config_path)))
        except ConfigError as exc:
            self.view.log_line(f"the run's config cannot be shown in the panels: {exc}", "warning")
        self._show_run(self.client.attach(run))

    def _show_run(self, handle: RunHandle) -> None:
        self.handle = handle
        self._followed_since = time.time()  # an end written before this was not seen happening: no alert for it
        self._live_when_caught_up = None
        self.view.reset(str(handle.path))
        self.view.say(f"following {handle.run.name}…")
        self.run_state = RunState.LIVE
        self._follower = self._follow(handle.run)  # exclusive: the last run's follower is cancelled

    @work(thread=True, exclusive=True, group="follow", exit_on_error=False, description="follow the run's events")
    def _follow(self, run: RunDir) -> None:
        """The one follower (run/follow.py), its updates posted as messages to this screen."""
        from tui_trainer.run.follow import Ended, Events, Lost, Snapshot, follow

        worker: Worker[None] = get_current_worker()
        for update in follow(run, lambda: worker.is_cancelled):
            match update:
                case Snapshot(history=history):
                    self.post_message(RunSnapshot(worker, history))
                case Events(events=batch, caught_up=caught_up):
                    self.post_message(RunEvents(worker, batch, caught_up))
                case Ended(finished=finished):
                    self.post_message(RunEnded(worker, finished))
                case Lost(why=why, kind=kind):
                    good = run.last_good_checkpoint() if kind == "crashed" else None
                    self.post_message(RunLost(worker, f"{why} (or press u)" if good else why, kind))

    def on_run_events(self, message: RunEvents) -> None:
        if not message.current:
            return  # from a follower cancelled since: a run no longer shown, or shown afresh
        changed = self.view.apply(message.events, catching_up=not message.caught_up)
        self._changed_while_catching_up |= changed
        if not message.caught_up:
            return  # more history is on its way: decide where the run stands once, when it has arrived
        changed, self._changed_while_catching_up = self._changed_while_catching_up, set()
        self._caught_up(changed)

    def on_run_snapshot(self, message: RunSnapshot) -> None:
        if not message.current:
            return
        self._changed_while_catching_up = set()
        self._caught_up(self.view.load_history(message.history))

    def _caught_up(self, changed: set[str]) -> None:
        """The view holds everything on disk so far: where the run stands decides the panels and buttons."""
        if not self.run_state.steerable:
            return
        if self._live_when_caught_up is None and self.handle is not None:  # once a run: a crash seen happening
            self._live_when_caught_up = self.handle.state() in LIVE_STATES
        if self.view.finished is not None and self.handle is not None and self.handle.resumed:
            self.view.say(f"resuming {self.handle.run.name}: its process is loading torch and the data…")
        if changed & {"started", "finished", "paused"}:
            self.run_state = RunState.PAUSED if self.view.paused else RunState.LIVE

    def on_run_ended(self, message: RunEnded) -> None:
        if not message.current:
            return
        end = message.finished
        reason = Reason.parse(end.reason)
        handle = self.handle
        if (reason is Reason.INVALID and handle is not None and str(handle.path) in self.started_here
                and end.epoch == 0):
            self._discard(handle)  # nothing trained: leave nothing behind
            self.handle = None
            self.run_state = RunState.NONE
        else:
            self.run_state = RunState.ENDED
        self._say_end(end, reason)
        self._alert_end(reason.state, end_line(end.reason, end.message))
        self.call_after_refresh(self._refocus)  # focus is never lost when a run ends
        if isinstance(self.app.screen, QuitDialog):  # the quit question was about a run that has now ended
            self.app.screen.run_ended(reason.state)

    def _say_end(self, end: RunFinished, reason: Reason) -> None:
        if reason.as_asked:
            self.notify(end_line(end.reason, end.message))  # the progress line's words: "finished: completed 20 epochs"
        else:
            self.notify(end.message, title=f"run failed: {end.reason}", severity="error", timeout=10)

    @work(thread=True, group="cleanup", exit_on_error=False, description="remove a run folder that trained nothing")
    def _discard(self, handle: RunHandle) -> None:
        handle.discard()

    def _alert_end(self, state: str, line: str) -> None:
        """The bell and desktop notification (ui/alert.py, when turned on) for an end that happened while followed."""
        if self.handle is None:
            return
        ended = self.handle.run.read_status().get("ended")
        if isinstance(ended, (int, float)) and ended < self._followed_since - 1.0:
            return  # attached to a run that had already ended
        alert = getattr(self.app, "alert_end", None)
        if alert is not None:
            alert(state, f"{self.handle.run.name}: {line}")

    def on_run_lost(self, message: RunLost) -> None:
        if not message.current:
            return
        if self.run_state.steerable and message.kind == "crashed" and self._live_when_caught_up:
            self._alert_end("crashed", message.why)
        self.run_state = RunState.LOST
        self._error(message.why)
        self.view.say(message.why, pinned=True)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A follower that failed (Guarded has reported it) leaves the run unfollowed: say so."""
        if event.state is WorkerState.ERROR and event.worker is self._follower and self.run_state.steerable:
            self.run_state = RunState.LOST
            self.view.say("the run is no longer followed (an internal error, see the notification); "
                          "tui-trainer attach follows it again")

    def _refocus(self) -> None:
        if self.app.focused is None or self.app.focused.disabled:
            self._focus_home()

    def _focus_home(self) -> None:
        """Where the focus rests when no field has it: the preset list (Enter opens it, letters are commands), or
        the tabs while the panels are locked or hidden."""
        if not self.setup.focus_preset():
            self.view.focus_tabs()

    # -- commands to the run ---------------------------------------------------------------

    def _send(self, cmd: str, **args: Any) -> bool:
        """Send ``cmd`` to the run shown (``args``: the command's JSON arguments)."""
        if self.handle is None or not self.run_state.steerable:
            self.notify("no run is training", severity="warning")
            return False
        self._command(self.handle, cmd, args)
        return True

    @work(thread=True, group="command", exit_on_error=False, description="send a command to the run")
    def _command(self, handle: RunHandle, cmd: str, args: dict[str, Any]) -> None:
        from tui_trainer.run.endpoint import EndpointError

        try:
            reply = handle.send(cmd, **args)
        except EndpointError as exc:
            loading = handle.state() == "starting" and not handle.run.read_status().get("control")
            reply = {"ok": False, "error": "the run is still loading torch and its data: try again in a moment"
                     if loading else str(exc)}
        self.post_message(CommandDone(cmd, reply))

    def on_command_done(self, message: CommandDone) -> None:
        reply = message.reply
        text = reply.get("message") or reply.get("error") or ""
        if reply.get("ok"):
            if message.cmd == "save" and reply.get("path"):  # the run's own CheckpointSaved line is in the Log
                self.notify(f"checkpoint saved: {Path(reply['path']).name}")
            else:
                self.view.log_line(f"{message.cmd}: {text}")
        else:
            self._error(f"{message.cmd}: {text}")

    def action_stop(self) -> None:
        if self._send("stop"):
            self.view.say("stopping: the run saves last.pt…")

    def action_save(self) -> None:
        self._send("save")

    def action_toggle_pause(self) -> None:
        """The Pause button: pause, or let a paused run go on."""
        self._send("resume" if self.run_state is RunState.PAUSED else "pause")

    def action_pause(self) -> None:
        self._send("pause")

    def action_unpause(self) -> None:
        self._send("resume")

    def action_step(self) -> None:
        """One training step: of the paused run; with no run, start one that takes a step and holds."""
        if not self.live:
            self.action_start(paused=True)
        elif self.run_state is not RunState.PAUSED:
            self.notify("pause first (p), then n takes one step at a time", severity="warning")
        else:
            self._send("step")

    def action_change_lr(self) -> None:
        """Change the learning rate: of the running fit (logged, marked, checkpointed), else of the panel."""
        lr = self.view.current_lr
        current = lr if (self.live and lr is not None) else self.setup.values["optimizer"]["lr"]

        def done(value: float | None) -> None:
            if value is None:
                return
            if self.live:
                self._send("set_lr", lr=value)
            else:
                self.setup.field("optimizer.lr").set_value(value)

        self.app.push_screen(LearningRateDialog(current), done)

    def action_resume_run(self) -> None:
        """Continue the run shown from its last good checkpoint (a crashed or stopped run)."""
        if self.live or self.handle is None:
            return
        if self.handle.run.source == "track":
            self.notify("u resumes the runs tui-trainer trains; this one is your own loop's: go on from your script",
                        severity="warning")
            return
        checkpoint = self.handle.run.last_good_checkpoint()
        if checkpoint is None:
            self.notify("this run wrote no checkpoint to resume from", severity="warning")
            return
        try:
            cfg = load_preset(str(self.handle.run.config_path))
        except ConfigError as exc:
            self._error(str(exc))
            return
        finished = self.view.finished
        if finished is not None and finished.epoch >= cfg.train.epochs:
            self.notify(f"the run finished its {cfg.train.epochs} epochs; raise epochs in the panels and press r to "
                        "train a new run", severity="warning")
            return
        self._begin_start()
        self.view.say(f"resuming {self.handle.run.name} from {checkpoint.name}…")
        self._launch(cfg, checkpoint)

    # -- LR finder (its tab sweeps in a child process) ------------------------------------------

    def action_lr_find_refused(self) -> None:
        self.notify("the LR finder sweeps before a run (beside one it would share its cores): after this run ends, "
                    "or stop it with s", severity="warning")

    def action_lr_find(self) -> None:
        """Sweep the learning rate on a fresh copy of the panels' model, in a child process."""
        if self.handle is not None and self.handle.run.source == "track":  # said once, then the sweep goes on
            self.notify("the LR finder sweeps the panels' preset model, never your own loop's", severity="warning")
        finder = self.view.lr_finder
        if finder.sweeping:
            self.notify("the LR finder is sweeping: its progress is in the LR tab")
            self.action_tab("tab-lr")
            return
        try:
            cfg = self.setup.config()
        except ConfigError as exc:
            self._error(str(exc))
            return
        self.view.log_line("LR finder: sweeping 1e-07 .. 10 on a fresh copy of the model, longer while the loss has not "
                           "fallen (a child process)…")
        self.action_tab("tab-lr")
        finder.sweep(cfg)

    def action_apply_lr(self) -> None:
        suggestion = self.view.lr_finder.suggestion
        if suggestion is None:
            self.notify("no LR suggestion yet: press f to sweep", severity="warning")
            return
        if self.live:
            self.notify("the panels are locked while a run trains; use l to change its learning rate", severity="warning")
            return
        value = float(f"{suggestion:.3g}")
        self.setup.field("optimizer.lr").set_value(value)
        self.view.log_line(f"optimizer.lr set to {value:g} from the LR finder")

    # -- leaving --------------------------------------------------------------------------

    def action_show_sweep(self) -> None:
        """Back to the Sweep view the app was opened on (its trials go on meanwhile)."""
        show = getattr(self.app, "show_sweep", None)
        if show is not None:
            show()

    def action_detach(self) -> None:
        """Leave the app; the run goes on."""
        self.app.exit(return_code=0)

    async def action_quit(self) -> None:
        """Quit: with a run training, ask whether to detach (it goes on) or stop it."""
        if self.starting:  # its process is being launched: ask about it once it is there, never orphan it
            self._quit_when_started = True
            self.notify("a run is starting: you will be asked whether to detach from it or stop it")
            return
        if not self.live or self.handle is None:
            self.app.exit(return_code=0)
            return
        handle = self.handle

        def chosen(choice: str | None) -> None:
            if choice == "detach":
                self.app.exit(return_code=0)
            elif choice == "stop":
                self._stop_then_exit(handle)

        self.app.push_screen(QuitDialog(handle.run.name), chosen)

    @work(thread=True, group="quit", exit_on_error=False, description="stop the run, then quit")
    def _stop_then_exit(self, handle: RunHandle) -> None:
        state, _said = handle.stop(timeout=60)  # a run still loading torch is asked again once it can hear it
        self.post_message(StoppedToQuit(state))

    def on_stopped_to_quit(self, message: StoppedToQuit) -> None:
        self.app.exit(return_code=0)

    def shutdown(self) -> None:
        """End the follower, the helper and an LR sweep (the run is not ours to end). Uses no worker API and no
        query: the app may be gone (the terminal hung up) or its widgets already removed."""
        if self._follower is not None:
            self._follower.cancel()  # the follower thread sees it and ends
        self.helper.close()
        self.view.lr_finder.stop()

    # -- small actions ------------------------------------------------------------------------

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.BINDINGS))

    def action_tab(self, tab_id: str) -> None:
        """Show a tab."""
        self.view.show_tab(tab_id)

    def action_toggle_setup(self) -> None:
        self.setup.display = not self.setup.display
        self.refresh_bindings()

    def action_every_field(self) -> None:
        """Show the folded expert fields of every panel too, or fold them again."""
        self.setup.toggle_every_field()

    def action_pick_preset(self) -> None:
        """Open the preset list (type a name to jump to it, Enter picks it)."""
        self.setup.open_preset_list()

    def action_next_chart(self) -> None:
        """With room for one chart only, show the next one."""
        self.view.next_chart()

    def action_leave_field(self) -> None:
        """Escape leaves a text field, so the next key is a command again."""
        if isinstance(self.focused, Input):
            self._focus_home()

    def action_next_image_view(self) -> None:
        """The Images tab's next view: training examples raw, as fed; the run's mistakes, confused, classes."""
        self.view.images.next_view()

    def action_mark_run(self) -> None:
        """Mark (or unmark) the highlighted run for comparison; two or more are overlaid below the list."""
        self.view.runs_tab.toggle_mark()

    @on(RunsTab.Chosen)
    def _run_chosen(self, event: RunsTab.Chosen) -> None:
        self.show_run_folder(RunDir(event.path))

    def show_run_folder(self, run: RunDir) -> None:
        """Show a run chosen in a list (the Runs tab, a sweep's trial) on the Charts tab; not while a run is being
        started (it would be orphaned), nor again when it is shown already."""
        if self.starting:
            return
        if self.handle is None or self.handle.path != run.path:
            self.attach(run)
        self.action_tab("tab-charts")

    def action_write_svg(self) -> None:
        """Save what the screen shows as an SVG: into the run's folder, else (no run shown: a comparison, the setup)
        into the runs folder, never wherever the app was started."""
        import time

        folder = self.handle.path if self.handle is not None and self.handle.path.is_dir() else self.runs_dir
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._error(f"cannot write into {folder}: {exc.strerror or exc}")
            return
        tab = self.view.active_tab.removeprefix("tab-")
        name = f"view-{tab}-{time.strftime('%Y%m%d-%H%M%S')}.svg"
        try:
            written = self.app.save_screenshot(filename=name, path=str(folder))
        except OSError as exc:
            self._error(f"cannot write {folder / name}: {exc.strerror or exc}")
            return
        self.view.log_line(f"saved the view as {written}")
        self.notify(f"saved {written}")

    def exit_line(self) -> str | None:
        """What the user should know when the app closes: the run shown, its state, how to go on."""
        if self.handle is None:
            return None
        run = self.handle.run
        state = run.state()
        if state in LIVE_STATES:
            return f"run {run.name} is {state} (detached): follow it again with: tui-trainer attach {run.path}"
        status = run.read_status()
        good = run.last_good_checkpoint()
        tail = f"; {resume_hint(good)}" if good and state in ("stopped", "crashed", "failed") else ""
        reason = f" ({status['reason']})" if status.get("reason") not in (None, state) else ""
        return f"run {run.name} {state}{reason}: {run.path}{tail}"

    def _error(self, text: str) -> None:
        self.view.log_line(f"error: {text}", "error")
        self.notify(text, severity="error", timeout=10)
