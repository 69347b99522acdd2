"""The training screen: coordinates the setup column, the run view, and the run process it shows.

It trains nothing itself. ``r`` starts a run process (``session.start``) and follows its
events.jsonl; Stop, Save, Pause, Step and a new learning rate are commands sent to the run's control
endpoint from a worker thread. Quitting detaches (the run goes on); stopping is explicit. The helper
process answers what needs torch (devices, parameter counts); the LR finder sweeps in a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Header, Input, Select, Static, TabbedContent, Tabs
from textual.worker import get_current_worker

from tui_trainer.config import ConfigError, RunConfig, load_preset, to_toml
from tui_trainer.errors import first_line
from tui_trainer.run.client import RunHandle
from tui_trainer.run.events import Reason, RunFinished
from tui_trainer.run.folder import LIVE_STATES, RunDir, resume_hint, run_summaries
from tui_trainer.run.formats import format_number
from tui_trainer.run.history import end_line
from tui_trainer.ui.guard import Guarded
from tui_trainer.ui.helper import Helper
from tui_trainer.ui.messages import LrFound, LrProgress, OracleReply, RunEnded, RunEvents, RunLost, RunSnapshot
from tui_trainer.ui.screens.dialogs import HelpScreen, LearningRateDialog, QuitDialog
from tui_trainer.ui.widgets.footer import KeyFooter
from tui_trainer.ui.widgets.runview import TABS, RunView
from tui_trainer.ui.widgets.setup import SetupColumn


def lr_progress_text(line: str) -> str | None:
    """The words for the LR tab from one progress line of ``lr-find --progress`` (None: not a progress line)."""
    try:
        p = json.loads(line)
    except ValueError:
        return None
    if not isinstance(p, dict) or p.get("progress") != "lr-find":
        return None
    return (f"LR finder: sweep {p['sweep']} of at most {p['max_sweeps']}, step {p['step']:,} of {p['steps']:,}, "
            f"lr {format_number(p['lr'])}, smoothed loss {format_number(p['loss'])} ({p['elapsed_s']:.0f} s)")


@dataclass
class RunStarting(Message, bubble=False):
    """A run process was launched (``handle``), or could not be (``error``)."""

    handle: Any
    error: str | None = None


@dataclass
class CommandDone(Message, bubble=False):
    """The run's answer to a command (or why it could not be reached)."""

    cmd: str
    reply: dict[str, Any]


class TrainScreen(Guarded, Screen):
    """Pick settings, start or attach to a run, watch it, steer it."""

    AUTO_FOCUS = "#preset-select"  # Enter opens the preset list (it never starts a run); letters are commands

    # In the footer's order, most used first: a narrow footer keeps the front of this list (? Help included).
    BINDINGS = [
        Binding("r", "start", "Start"),
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
        Binding("d", "detach", "Detach"),
        Binding("q", "quit", "Quit"),
        Binding("x", "every_field", "All fields", show=False),
        Binding("e", "toggle_setup", "Setup", show=False),
        Binding("ctrl+q,ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("escape", "leave_field", "Leave field", show=False),
        *[Binding(str(i + 1), f"tab('{tab_id}')", title, show=False) for i, (tab_id, title) in enumerate(TABS)],
    ]

    def __init__(self, cfg: RunConfig, runs_dir: Path, resume: Path | None = None, attach: Path | None = None,
                 chart_hz: float = 2.0) -> None:
        super().__init__()
        self.cfg, self.runs_dir, self.resume_path, self.attach_path = cfg, Path(runs_dir), resume, attach
        self.chart_hz = chart_hz
        self.handle: RunHandle | None = None  # the run shown
        self.starting = False  # a run process is being launched
        self._quit_when_started = False  # q was pressed while it was
        self.started_here: set[str] = set()  # runs this app launched fresh (removed if they fail at setup)
        self.helper = Helper(self.post_message)
        self.helper_ready = False
        self.device_text = ""
        self.model_request: int | None = None
        self.lr_suggestion: float | None = None
        self.lr_process: subprocess.Popen | None = None
        self._follow_id = 0
        self.lost = False  # the run shown cannot be followed any more (crashed, deleted)
        self.ended = False  # the run shown has ended (its last session's RunFinished, its status no longer live)
        self._was_live = False
        self.marked: set[str] = set()  # run folders chosen in the Runs tab for comparison
        self._changed_while_catching_up: set[str] = set()

    # -- layout -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="body"):
            yield SetupColumn(self.cfg, id="setup")
            yield RunView(id="run")
        yield KeyFooter()

    @property
    def setup(self) -> SetupColumn:
        """The left column."""
        return self.query_one(SetupColumn)

    @property
    def view(self) -> RunView:
        """The right column."""
        return self.query_one(RunView)

    def on_mount(self) -> None:
        self.set_interval(1.0 / self.chart_hz, self._redraw_charts)
        self.set_interval(2.0, self._refresh_runs_tab)
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
        return self.starting or (self.handle is not None and not self.lost and not self.ended)

    def _update_buttons(self) -> None:
        live = self.live
        if live != self._was_live and self.size.width < 100:
            self.setup.display = not live  # a narrow terminal gives a training run the whole width (e shows them)
        self._was_live = live
        self.query_one("#start", Button).disabled = live or bool(self.setup.invalid)
        for name in ("stop", "save", "pause"):
            self.query_one(f"#{name}", Button).disabled = not live or self.starting
        self.query_one("#pause", Button).label = "Resume" if self.view.history.paused else "Pause"
        self.setup.set_locked(live)
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show in the footer only what can be done now."""
        live = self.live
        if action in ("stop", "save", "detach"):
            return live
        if action == "pause":
            return live and not self.view.history.paused
        if action == "unpause":
            return live and self.view.history.paused
        if action == "next_chart":
            return self.view.one_chart_at_a_time
        if action == "every_field":
            return bool(self.setup.display) and not self.setup.disabled
        if action == "pick_preset":
            return bool(self.setup.display) and not self.setup.disabled
        if action == "step":
            return not live or self.view.history.paused
        if action == "apply_lr":
            return self.lr_suggestion is not None and not live
        if action == "lr_find":
            return not live
        if action == "lr_find_refused":  # f during a run says why it waits, instead of nothing
            return live
        if action == "resume_run":
            # from the fold, not the disk: this runs at every key press (u itself looks the checkpoint up)
            return not live and self.handle is not None and self.view.history.last_checkpoint is not None
        if action == "start":
            return not live
        if action == "mark_run":
            return self.query_one("#tabs", TabbedContent).active == "tab-runs"
        return True

    # -- setup column -------------------------------------------------------------------

    @on(SetupColumn.Changed)
    def _settings_changed(self, event: SetupColumn.Changed) -> None:
        self._update_buttons()
        self.app.sub_title = self.setup.cfg.name
        if event.model_changed:
            self._request_model_info()

    @on(SetupColumn.Said)
    def _setup_said(self, event: SetupColumn.Said) -> None:
        if event.error:
            self._error(event.text)
        else:
            self.view.log_line(event.text)

    def _request_model_info(self) -> None:
        if not self.helper_ready or self.setup.invalid:
            return
        try:
            cfg = self.setup.config()
        except ConfigError:
            return
        self.model_request = self.helper.ask("describe", config=cfg.to_dict())

    def on_oracle_reply(self, message: OracleReply) -> None:
        reply = message.reply
        if "devices" in reply:
            self.helper_ready = True
            gpus = reply.get("gpus", 0)
            self.device_text = reply["describe"]["auto"] + (f" (x{gpus}: data parallel with {gpus} processes)"
                                                            if gpus > 1 else "")
            if not self.live:
                self.query_one("#device").update(self.device_text)
            self.setup.set_devices(reply["devices"], gpus)
            self._request_model_info()
        elif reply.get("gone"):
            self.helper_ready = False
            if not self.device_text:
                self.query_one("#device").update("device: unknown (helper ended)")
        elif reply.get("id") == self.model_request and self.query("#param-count"):
            label = self.query_one("#param-count", Static)
            if "error" in reply:
                label.update(f"params: ? ({reply['error']})")
                return
            frozen = reply["total"] - reply["trainable"]
            label.update(f"params: {reply['total']:,}" + (f" ({frozen:,} frozen)" if frozen else ""))
            if not self.live and self.view.history.started is None:
                self.query_one("#model-summary", Static).update(reply["summary"])

    # -- starting and attaching ------------------------------------------------------------

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

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
        resume, self.resume_path = self.resume_path, None
        self.starting = True
        self.view.reset(None)
        self.view.say("starting a run process (it loads torch and the data)…")
        self._update_buttons()
        self._launch(cfg, resume, paused)

    @work(thread=True, group="launch", exit_on_error=False, description="start a run process")
    def _launch(self, cfg: RunConfig, resume: Path | None, paused: bool = False) -> None:
        from tui_trainer.run import client as session

        try:
            handle = session.start(cfg, self.runs_dir, resume, paused=paused)
        except ConfigError as exc:
            self.post_message(RunStarting(None, str(exc)))
            return
        except OSError as exc:
            self.post_message(RunStarting(None, f"cannot start the run process: {first_line(exc)}"))
            return
        self.post_message(RunStarting(handle))

    def on_run_starting(self, message: RunStarting) -> None:
        self.starting = False
        quit_asked, self._quit_when_started = self._quit_when_started, False
        if message.error:
            self._error(message.error)
            self.view.say("ready: press r to start")
            self._update_buttons()
        else:
            if message.handle.process is not None and not message.handle.run.last.exists():
                self.started_here.add(str(message.handle.path))
            self._show_run(message.handle)
        if quit_asked:
            self.call_later(self.action_quit)

    def attach(self, run: RunDir) -> None:
        """Show a run started elsewhere (live: its history, then live; ended: read-only)."""
        from tui_trainer.run import client as session

        try:
            if run.source == "track":  # a user's own loop: its config is its own, not a preset's
                self.view.log_line(f"{run.name} is your own loop's run: its config is in {run.config_path}; the "
                                   "panels keep theirs")
            else:
                self.setup.load(load_preset(str(run.config_path)))
        except ConfigError as exc:
            self.view.log_line(f"the run's config cannot be shown in the panels: {exc}", "warning")
        self._show_run(session.attach(run))

    def _show_run(self, handle: Any) -> None:
        self._follow_id += 1
        self.workers.cancel_group(self, "follow")
        self.handle, self.lost, self.ended = handle, False, False
        self.view.reset(str(handle.path))
        self.view.say(f"following {handle.run.name}…")
        self._follow(handle.run, self._follow_id)
        self._update_buttons()

    @work(thread=True, group="follow", exit_on_error=False, description="follow the run's events")
    def _follow(self, run: RunDir, follow_id: int) -> None:
        """The one follower (run/follow.py), its updates posted as messages to this screen."""
        from tui_trainer.run.follow import Ended, Events, Lost, Snapshot, follow

        worker = get_current_worker()
        path = str(run.path)
        for update in follow(run, lambda: worker.is_cancelled or follow_id != self._follow_id):
            match update:
                case Snapshot(history=history):
                    self.post_message(RunSnapshot(path, history))
                case Events(events=events, caught_up=caught_up):
                    self.post_message(RunEvents(path, events, caught_up))
                case Ended(finished=finished):
                    self.post_message(RunEnded(path, finished))
                case Lost(why=why, kind=kind):
                    good = run.last_good_checkpoint() if kind == "crashed" else None
                    self.post_message(RunLost(path, f"{why} (or press u)" if good else why))

    def on_run_events(self, message: RunEvents) -> None:
        if self.handle is None or message.path != str(self.handle.path):
            return  # a run we stopped following
        changed = self.view.apply(message.events, catching_up=not message.caught_up)
        self._changed_while_catching_up |= changed
        if not message.caught_up:
            return  # more history is on its way: lock or unlock the panels once, for where the run stands
        changed, self._changed_while_catching_up = self._changed_while_catching_up, set()
        self._caught_up(changed)

    def on_run_snapshot(self, message: RunSnapshot) -> None:
        if self.handle is None or message.path != str(self.handle.path):
            return
        self._changed_while_catching_up = set()
        self._caught_up(self.view.load_history(message.history))

    def _caught_up(self, changed: set[str]) -> None:
        """The view holds everything on disk so far: where the run stands decides the panels and buttons."""
        if self.view.history.finished is not None and not self.ended and getattr(self.handle, "resumed", False):
            self.view.say(f"resuming {self.handle.run.name}: its process is loading torch and the data…")
        if changed & {"started", "finished", "paused"}:
            self._update_buttons()

    def on_run_ended(self, message: RunEnded) -> None:
        if self.handle is None or message.path != str(self.handle.path):
            return
        self.ended = True
        self._run_ended(message.finished)

    def _run_ended(self, end: RunFinished) -> None:
        reason = Reason.parse(end.reason)
        if reason is Reason.INVALID and str(self.handle.path) in self.started_here and end.epoch == 0:
            self.workers.cancel_group(self, "follow")
            self._follow_id += 1
            self._remove_run_folder(self.handle)  # nothing trained: leave nothing behind
            self.handle = None
        if reason.as_asked:
            self.notify(end_line(end.reason, end.message))  # the progress line's words: "finished: completed 20 epochs"
        else:
            self.notify(end.message, title=f"run failed: {end.reason}", severity="error", timeout=10)
        self._update_buttons()
        self.call_after_refresh(self._refocus)  # focus is never lost when a run ends
        if isinstance(self.app.screen, QuitDialog):  # the quit question was about a run that has now ended
            self.app.screen.run_ended(reason.state)

    @work(thread=True, group="cleanup", exit_on_error=False, description="remove a run folder that trained nothing")
    def _remove_run_folder(self, handle: RunHandle) -> None:
        handle.discard()

    def on_run_lost(self, message: RunLost) -> None:
        if self.handle is None or message.path != str(self.handle.path):
            return
        self.lost = True
        self._error(message.why)
        self.view.say(message.why)
        self._update_buttons()

    def _refocus(self) -> None:
        if self.app.focused is None or self.app.focused.disabled:
            self._focus_home()

    def _focus_home(self) -> None:
        """Where the focus rests when no field has it: the preset list (Enter opens it, letters are commands), or
        the tabs while the panels are locked or hidden."""
        select = self.query_one("#preset-select", Select)
        if select.focusable and self.setup.display:
            select.focus()
        else:
            self.query_one("#tabs", TabbedContent).focus()

    # -- commands to the run ---------------------------------------------------------------

    def _send(self, cmd: str, **args: Any) -> bool:
        if self.handle is None or not self.live or self.starting:
            self.notify("no run is training", severity="warning")
            return False
        self._command(self.handle, cmd, args)
        return True

    @work(thread=True, group="command", exit_on_error=False, description="send a command to the run")
    def _command(self, handle: Any, cmd: str, args: dict[str, Any]) -> None:
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

    @on(Button.Pressed, "#stop")
    def action_stop(self) -> None:
        if self._send("stop"):
            self.view.say("stopping: the run saves last.pt…")

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        self._send("save")

    @on(Button.Pressed, "#pause")
    def _pause_pressed(self) -> None:
        self._send("resume" if self.view.history.paused else "pause")

    def action_pause(self) -> None:
        self._send("pause")

    def action_unpause(self) -> None:
        self._send("resume")

    def action_step(self) -> None:
        """One training step: of the paused run; with no run, start one that takes a step and holds."""
        if not self.live:
            self.action_start(paused=True)
        elif not self.view.history.paused:
            self.notify("pause first (p), then n takes one step at a time", severity="warning")
        else:
            self._send("step")

    def action_change_lr(self) -> None:
        """Change the learning rate: of the running fit (logged, marked, checkpointed), else of the panel."""
        step = self.view.history.last_step
        current = step.lr if (self.live and step) else self.setup.values["optimizer"]["lr"]

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
        if self.view.history.finished is not None and self.view.history.finished.epoch >= cfg.train.epochs:
            self.notify(f"the run finished its {cfg.train.epochs} epochs; raise epochs in the panels and press r to "
                        "train a new run", severity="warning")
            return
        self.starting = True
        self.view.say(f"resuming {self.handle.run.name} from {checkpoint.name}…")
        self._update_buttons()
        self._launch(cfg, checkpoint)

    # -- LR finder (a child process) ----------------------------------------------------------

    def action_lr_find_refused(self) -> None:
        self.notify("the LR finder sweeps before a run (beside one it would share its cores): after this run ends, "
                    "or stop it with s", severity="warning")

    def action_lr_find(self) -> None:
        """Sweep the learning rate on a fresh copy of the panels' model, in a child process."""
        if self.handle is not None and self.handle.run.source == "track":  # said once, then the sweep goes on
            self.notify("the LR finder sweeps the panels' preset model, never your own loop's", severity="warning")
        if self.lr_process is not None and self.lr_process.poll() is None:
            self.notify("the LR finder is sweeping: its progress is in the LR find tab")
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
        self.view.show_lr_progress("LR finder: starting (loading torch and the data)…")
        self._lr_find(cfg)

    @work(thread=True, exclusive=True, group="lr-find", exit_on_error=False, description="LR finder")
    def _lr_find(self, cfg: RunConfig) -> None:
        with tempfile.TemporaryDirectory(prefix="tui-trainer-lr-") as tmp:
            preset, result_path = Path(tmp) / "panels.toml", Path(tmp) / "result.json"
            preset.write_text(to_toml(cfg), encoding="utf-8")
            with open(result_path, "w+", encoding="utf-8") as result_file:  # a file: the sweep can be large
                self.lr_process = subprocess.Popen(
                    [sys.executable, "-m", "tui_trainer.cli", "lr-find", str(preset), "--json", "--progress"],
                    stdout=result_file, stderr=subprocess.PIPE, text=True)
                errors = []
                for line in self.lr_process.stderr:  # progress lines as they come, until the child ends
                    progress = lr_progress_text(line)
                    if progress is not None:
                        self.post_message(LrProgress(progress))
                    elif line.strip():
                        errors.append(line.strip())
                code = self.lr_process.wait()
                result_file.seek(0)
                out = result_file.read()
        if get_current_worker().is_cancelled:
            return
        if code != 0:
            self.post_message(LrFound(None, (errors or [f"exit code {code}"])[-1]))
            return
        try:
            self.post_message(LrFound(json.loads(out.strip().splitlines()[-1])))
        except (ValueError, IndexError):
            self.post_message(LrFound(None, "the LR finder gave no result"))

    def on_lr_progress(self, message: LrProgress) -> None:
        self.view.show_lr_progress(message.text)

    def on_lr_found(self, message: LrFound) -> None:
        if message.error or message.result is None:
            self._error(f"LR finder failed: {message.error}")
            self.view.show_lr_progress(f"LR finder failed: {message.error}; press f to try again")
            return
        r = message.result
        chart = self.query_one("#lr-chart")
        chart.clear_series()
        chart.set_series("loss", r["lrs"], r["smoothed"])
        self.lr_suggestion = r.get("suggestion")
        if self.lr_suggestion is None:
            why = r.get("reason") or "the loss did not fall enough anywhere in the sweep"
            self.view.log_line(f"LR finder: no suggestion: {why}", "warning")
            self.notify(f"LR finder: no suggestion: {why}", severity="warning")
        else:
            chart.add_marker(self.lr_suggestion, f"suggested {self.lr_suggestion:.3g}")
            self.view.log_line(f"suggested lr: {self.lr_suggestion:.3g} (press a to put it in the Optimizer panel)")
            self.notify(f"suggested lr {self.lr_suggestion:.3g}: press a to apply")
        self.refresh_bindings()

    def action_apply_lr(self) -> None:
        if self.lr_suggestion is None:
            self.notify("no LR suggestion yet: press f to sweep", severity="warning")
            return
        if self.live:
            self.notify("the panels are locked while a run trains; use l to change its learning rate", severity="warning")
            return
        value = float(f"{self.lr_suggestion:.3g}")
        self.setup.field("optimizer.lr").set_value(value)
        self.view.log_line(f"optimizer.lr set to {value:g} from the LR finder")

    # -- leaving --------------------------------------------------------------------------

    def action_detach(self) -> None:
        """Leave the app; the run goes on."""
        self.app.exit(return_code=0)

    async def action_quit(self) -> None:
        """Quit: with a run training, ask whether to detach (it goes on) or stop it."""
        if self.starting:  # its process is being launched: ask about it once it is there, never orphan it
            self._quit_when_started = True
            self.notify("a run is starting: you will be asked whether to detach from it or stop it")
            return
        if not self.live:
            self.app.exit(return_code=0)
            return

        def chosen(choice: str | None) -> None:
            if choice == "detach":
                self.app.exit(return_code=0)
            elif choice == "stop":
                self._stop_then_exit()

        self.app.push_screen(QuitDialog(self.handle.run.name), chosen)

    @work(thread=True, group="quit", exit_on_error=False, description="stop the run, then quit")
    def _stop_then_exit(self) -> None:
        self.handle.stop(timeout=60)  # a run still loading torch is asked again once it can hear it
        self.app.call_from_thread(self.app.exit, 0)

    def shutdown(self) -> None:
        """End the helper and an LR sweep (the run is not ours to end)."""
        self._follow_id += 1  # the follower thread sees this and ends (the app may be gone: no worker API here)
        self.helper.close()
        if self.lr_process is not None and self.lr_process.poll() is None:
            self.lr_process.kill()

    # -- small actions ------------------------------------------------------------------------

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.BINDINGS))

    def action_tab(self, tab_id: str) -> None:
        """Show a tab. Focus leaves a widget inside the tab being hidden first: TabbedContent shows the pane
        that holds the focus, and would switch straight back."""
        tabs = self.query_one("#tabs", TabbedContent)
        focused = self.app.focused
        if focused is not None and tabs.active and focused in self.query_one(f"#{tabs.active}").query("*"):
            tabs.query_one(Tabs).focus()
        tabs.active = tab_id

    def action_toggle_setup(self) -> None:
        self.setup.display = not self.setup.display
        self.refresh_bindings()

    def action_every_field(self) -> None:
        """Show the folded expert fields of every panel too, or fold them again."""
        self.setup.toggle_every_field()

    def action_pick_preset(self) -> None:
        """Open the preset list (type a name to jump to it, Enter picks it)."""
        select = self.query_one("#preset-select", Select)
        select.focus()
        select.expanded = True

    def action_next_chart(self) -> None:
        """With room for one chart only, show the next one."""
        self.view.next_chart()

    def action_leave_field(self) -> None:
        """Escape leaves a text field, so the next key is a command again."""
        if isinstance(self.focused, Input):
            self._focus_home()

    # -- timers ----------------------------------------------------------------------------

    def _redraw_charts(self) -> None:
        """Rebuild only charts that got new points and are on screen (at most chart_hz times a second)."""
        active = self.query_one("#tabs", TabbedContent).active
        if not active:
            return
        charts = [c for c in self.query_one(f"#{active}").query("SeriesChart") if c.dirty]
        if not charts:
            return
        with self.app.batch_update():
            for chart in charts:
                chart.replot()

    def _refresh_runs_tab(self) -> None:
        if self.query_one("#tabs", TabbedContent).active == "tab-runs":
            self._list_runs(frozenset(self.marked))  # a snapshot: the worker reads no state the UI changes

    @on(TabbedContent.TabActivated)
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-runs":
            self._list_runs(frozenset(self.marked))
            if self.query("#runs-table"):
                self.query_one("#runs-table").focus()  # up, down, m and Enter act on the list at once

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False, description="list runs")
    def _list_runs(self, marked: frozenset[str]) -> None:
        rows = run_summaries(self.runs_dir)
        self.app.call_from_thread(self.view.fill_runs, rows, marked)

    def action_mark_run(self) -> None:
        """Mark (or unmark) the highlighted run for comparison; two or more are overlaid below the list."""
        table = self.query_one("#runs-table", DataTable)
        if table.row_count == 0:
            return
        path = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.marked.symmetric_difference_update({path})
        self._list_runs(frozenset(self.marked))
        self._compare(sorted(self.marked))

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False, description="compare runs")
    def _compare(self, paths: list[str]) -> None:
        from tui_trainer.run.compare import check_comparable, load_runs

        if len(paths) < 2:
            self.app.call_from_thread(self.view.show_comparison, None)
            return
        try:
            runs = load_runs(paths)
            check_comparable(runs)
        except ConfigError as exc:
            self.app.call_from_thread(self.view.show_comparison, None, str(exc))
            return
        self.app.call_from_thread(self.view.show_comparison, runs)

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
        tab = self.query_one("#tabs", TabbedContent).active.removeprefix("tab-")
        name = f"view-{tab}-{time.strftime('%Y%m%d-%H%M%S')}.svg"
        try:
            written = self.app.save_screenshot(filename=name, path=str(folder))
        except OSError as exc:
            self._error(f"cannot write {folder / name}: {exc.strerror or exc}")
            return
        self.view.log_line(f"saved the view as {written}")
        self.notify(f"saved {written}")

    @on(DataTable.RowSelected, "#runs-table")
    def _run_chosen(self, event: DataTable.RowSelected) -> None:
        path = event.row_key.value
        if path is None or (self.handle is not None and str(self.handle.path) == path):
            return
        if self.starting:
            return
        self.attach(RunDir(Path(path)))
        self.action_tab("tab-charts")

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
