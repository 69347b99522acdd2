"""The training screen: setup panels on the left, charts, progress, log and model on the right.

All behaviour lives here; the App only pushes this screen. The training thread never touches a
widget: it emits events into a ``UISink``, which posts batches at most 10 times a second;
handlers here update text at once and mark charts dirty, and a timer redraws dirty charts at
most ``chart_hz`` times a second (2 by default).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Log, Select, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerCancelled, WorkerFailed, get_current_worker

from tui_trainer.config import ConfigError, RunConfig, from_dict, load_preset, save_user_preset
from tui_trainer.errors import USER_ERRORS
from tui_trainer.events import (
    Boundary,
    CheckpointSaved,
    ClassResults,
    EpochEnded,
    LogMessage,
    RunFinished,
    RunStarted,
    StepLogged,
)
from tui_trainer.smoothing import RunningMean
from tui_trainer.ui.bridge import UISink
from tui_trainer.ui.messages import EngineEvents, EngineReady, LrFound, ModelInfo
from tui_trainer.ui.screens.lr import LearningRateDialog
from tui_trainer.ui.widgets.boundary import BoundaryView
from tui_trainer.ui.widgets.fields import CompactButton, ConfigField
from tui_trainer.ui.widgets.panels import PANELS, ConfigPanel, PresetPanel, applies


def _hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class TrainScreen(Screen):
    """Pick settings, train, watch, stop, save."""

    AUTO_FOCUS = "#start"  # keys work at once; never start in a text field

    BINDINGS = [
        Binding("r", "start", "Start"),
        Binding("s", "stop", "Stop"),
        Binding("c", "save", "Save checkpoint"),
        Binding("q", "quit", "Quit"),
        Binding("l", "change_lr", "Set LR"),
        Binding("f", "lr_find", "LR finder"),
        Binding("a", "apply_lr", "Apply LR", show=False),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, cfg: RunConfig, runs_dir: Path, resume: Path | None = None, chart_hz: float = 2.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.values: dict[str, dict[str, Any]] = cfg.to_dict()
        self.runs_dir, self.resume_path, self.chart_hz = runs_dir, resume, chart_hz
        self.invalid: dict[str, str] = {}
        self.engine_ready = False
        self.start_pending = False  # Start pressed while torch was still importing
        self.training = False
        self.controls: Any = None
        self.sink = UISink(self, max_posts_per_s=5.0)  # measured: 10/s cost ~8% more training speed than 2/s
        self.train_worker: Worker | None = None
        self.last_result: RunFinished | None = None
        self._resumed = False
        self.device_text = ""
        self.model_request = 0  # the latest parameter-count request; older answers are dropped
        self._reset_series()

    # -- layout --------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="body"):
            with VerticalScroll(id="setup"):
                # the four config panels (~180 of the screen's ~250 widgets) mount once the first
                # frame is on the terminal: see after_first_frame
                yield PresetPanel(self.cfg.name)
            with Vertical(id="run"):
                with Horizontal(id="buttons"):
                    yield CompactButton("Start", id="start", variant="success")
                    yield CompactButton("Stop", id="stop", variant="error", disabled=True)
                    yield CompactButton("Save checkpoint", id="save", variant="primary", disabled=True)
                    yield Label("loading torch…", id="device")
                yield Static("ready: press r to start", id="progress")
                with TabbedContent(id="tabs"):
                    yield TabPane("Charts", id="tab-charts")  # charts mount after the first frame
                    with TabPane("Log", id="tab-log"):
                        yield Log(id="log", max_lines=2000)
                    yield TabPane("Gradients", id="tab-gradients")
                    with TabPane("Boundary", id="tab-boundary"):
                        with VerticalScroll():
                            yield BoundaryView("decision boundary: shown each epoch for 2-D datasets", id="boundary")
                    yield TabPane("LR finder", id="tab-lr")
                    with TabPane("Results", id="tab-results"):
                        with VerticalScroll():
                            yield Static("per-class results appear when a classification run ends", id="results")
                    with TabPane("Model", id="tab-model"):
                        with VerticalScroll():
                            yield Static("", id="model-summary")
        yield Footer()

    def on_mount(self) -> None:
        self.lr_suggestion: float | None = None
        self.set_interval(1.0 / self.chart_hz, self._redraw_charts)
        self.set_interval(0.25, self.sink.flush)  # trailing events when the engine goes quiet
        self._log(f"preset {self.cfg.name}: {self.cfg.description}")

    def after_first_frame(self) -> None:
        """Called by the app once the first frame is on the terminal: fill in the rest.

        Textual paints nothing until the whole start-up mount is done. The config panels (~180
        of ~250 widgets) and the charts (plotext's import alone is ~65 ms) cost ~0.5 s of first
        frame on 2 cores when mounted with it; mounted after it, they appear a moment later.
        torch is imported after that (the import holds the GIL for seconds)."""
        self.call_after_refresh(self._mount_the_rest)

    async def _mount_the_rest(self) -> None:
        if self.query(ConfigPanel):
            return
        from tui_trainer.ui.widgets.charts import SeriesChart  # imports plotext: after the first frame

        grad = SeriesChart("gradient norm per layer (log)", "grad norm", id="grad-chart")
        grad.ylog = True
        lr_chart = SeriesChart("LR finder: press f to sweep, a to apply", "loss", id="lr-chart")
        lr_chart.xlog, lr_chart.xlabel = True, "learning rate"
        await self.query_one("#setup").mount_all([ConfigPanel(title, self.values) for title in PANELS])
        await self.query_one("#tab-charts").mount_all([SeriesChart("loss", "loss", id="loss-chart"),
                                                        SeriesChart("accuracy", "accuracy", id="acc-chart")])
        await self.query_one("#tab-gradients").mount(grad)
        await self.query_one("#tab-lr").mount(lr_chart)
        self._show_panel_errors()
        self.call_after_refresh(self._import_engine)

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        """Skip the restyle of the first resume (this handler runs before Screen's own).

        Every widget was styled as it mounted, moments earlier; Textual restyles the whole tree
        again when the screen first resumes, ~0.2 s on 2 cores before the first frame. Later
        resumes (after a dialog) keep it."""
        if not self._resumed:
            self._resumed = True
            event.refresh_styles = False

    # -- engine start-up (off the UI thread) -----------------------------------

    @work(thread=True, exclusive=True, group="import", exit_on_error=False, description="import torch")
    def _import_engine(self) -> None:
        try:
            from tui_trainer.engine import warm_up  # the slow import: torch

            warm_up()
            from tui_trainer.device import describe_device, pick_device

            # torch keeps every core, as headless: on 2 cores, with one core left to the interface
            # the app trained slower in 4 of 5 interleaved pairs, the fifth a tie (RESULTS.md)
            device = describe_device(pick_device(self.values["train"]["device"])).describe()
            self.post_message(EngineReady(device))
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a traceback
            self.post_message(EngineReady("", error=f"{type(exc).__name__}: {exc}"))

    def on_engine_ready(self, message: EngineReady) -> None:
        if message.error:
            self._error(f"cannot start the engine: {message.error}")
            self.query_one("#device", Label).update("device: unavailable")
            return
        self.engine_ready = True
        self.device_text = message.device
        self.query_one("#device", Label).update(message.device)
        self._update_buttons()
        self._request_model_info()
        if self.resume_path is not None:
            self._log(f"press r to resume {self.resume_path}")
        if self.start_pending:
            self.start_pending = False
            self.action_start()

    # -- fields ------------------------------------------------------------------

    @on(ConfigField.Changed)
    def _field_changed(self, event: ConfigField.Changed) -> None:
        f = event.field
        if event.result.error:
            self.invalid[f.dotted] = event.result.error
        else:
            self.invalid.pop(f.dotted, None)
            self.values[f.section][f.key] = event.result.value
        self._show_panel_errors()
        self._refresh_visibility()
        self._update_buttons()
        if f.section in ("model", "data") and not event.result.error:
            self._request_model_info()

    def _show_panel_errors(self) -> None:
        for panel in self.query(ConfigPanel):
            keys = {f"{s}.{k}" for s, k in PANELS[panel.title]}
            errors = [msg for key, msg in self.invalid.items() if key in keys]
            error = panel.query_one(".panel-error", Static)
            error.update("\n".join(errors))
            error.display = bool(errors)  # no blank row in every panel

    def _refresh_visibility(self) -> None:
        for f in self.query(ConfigField):
            f.display = applies(f.section, f.key, self.values)

    def _valid_config(self) -> RunConfig | None:
        """The panels' config, or None after telling the user what to fix."""
        if self.invalid:
            self._error("fix the marked fields first: " + "; ".join(self.invalid.values()))
            return None
        try:
            return self.current_config()
        except ConfigError as exc:
            self._error(str(exc))
            return None

    def current_config(self) -> RunConfig:
        """The panels' settings as a validated config (ConfigError if they do not fit together)."""
        return from_dict({**self.values, "name": self.cfg.name, "description": self.cfg.description}, source="panels")

    @on(Select.Changed, "#preset-select")
    def _preset_chosen(self, event: Select.Changed) -> None:
        if event.value is Select.BLANK or event.value == self.cfg.name:
            return
        try:
            cfg = load_preset(str(event.value))
        except ConfigError as exc:
            self._error(str(exc))
            return
        self.cfg = cfg
        self.values = cfg.to_dict()
        self.invalid.clear()
        for f in self.query(ConfigField):
            f.set_value(self.values[f.section][f.key])
        description = self.query_one("#preset-description", Label)
        description.update(cfg.description)
        description.display = True
        self._log(f"preset {cfg.name}: {cfg.description}")

    @on(Button.Pressed, "#preset-save")
    def _save_preset(self) -> None:
        name = self.query_one("#preset-name", Input).value.strip()
        try:
            path = save_user_preset(self.current_config(), name)
        except ConfigError as exc:
            self._error(str(exc))
            return
        self._log(f"saved preset {name} to {path}")
        self.notify(f"saved preset {name}")

    # -- model info (worker) -----------------------------------------------------

    def _request_model_info(self) -> None:
        if not self.engine_ready or self.invalid:
            return
        try:
            cfg = self.current_config()
        except ConfigError:
            return
        self.model_request += 1
        self._model_info(cfg, self.model_request)

    @work(thread=True, exclusive=True, group="model-info", exit_on_error=False, description="count parameters")
    def _model_info(self, cfg: RunConfig, request: int) -> None:
        from tui_trainer.engine import describe_model

        try:
            self.post_message(ModelInfo(request, *describe_model(cfg)))
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            self.post_message(ModelInfo(request, 0, 0, "", error=str(exc)))

    def on_model_info(self, message: ModelInfo) -> None:
        if message.request != self.model_request:
            return  # an older request finishing late (a thread worker cannot be interrupted)
        label = self.query_one("#param-count", Static)
        if message.error:
            label.update(f"params: ? ({message.error})")
            return
        frozen = message.total - message.trainable
        label.update(f"params: {message.total:,}" + (f" ({frozen:,} frozen)" if frozen else ""))
        if not self.training:
            self.query_one("#model-summary", Static).update(message.summary)

    # -- actions -----------------------------------------------------------------

    def _update_buttons(self) -> None:
        can_start = not self.training and not self.invalid
        self.query_one("#start", Button).disabled = not can_start
        self.query_one("#stop", Button).disabled = not self.training
        self.query_one("#save", Button).disabled = not self.training

    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        if self.training:
            return
        if any(w.group == "lr-find" and w.is_running for w in self.app.workers):
            # two threads training at once would share the CPU and the global RNG (no seeded run)
            self.notify("the LR finder is still sweeping: press r when it is done", severity="warning")
            return
        if not self.engine_ready:
            self.start_pending = True
            self.query_one("#progress", Static).update("starting as soon as torch has loaded…")
            return
        cfg = self._valid_config()
        if cfg is None:
            return
        resume = None
        if self.resume_path is not None:
            resume, self.resume_path = self.resume_path, None
        from tui_trainer.engine import Controls

        self.controls = Controls()
        self.training = True
        self.query_one("#setup").disabled = True
        self._reset_series()
        for chart in self.query("SeriesChart"):
            chart.clear_series()
        self._update_buttons()
        self.query_one("#progress", Static).update("starting…")
        self.train_worker = self._train(cfg, resume)

    @on(Button.Pressed, "#stop")
    def action_stop(self) -> None:
        if self.training and self.controls is not None:
            self.controls.stop.set()
            self._log("stop requested: finishing the current step and saving last.pt")

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        if self.training and self.controls is not None:
            self.controls.save_now.set()
        else:
            self.notify("nothing to save: no run is training", severity="warning")

    def action_change_lr(self) -> None:
        """Change the learning rate: of the running fit (logged, marked, checkpointed), else of the panel."""
        current = self.last_step.lr if (self.training and self.last_step) else self.values["optimizer"]["lr"]

        def done(value: float | None) -> None:
            if value is None:
                return
            if self.training and self.controls is not None:
                self.controls.request_lr(value)
                x = self.step_x[-1] if self.step_x else 0.0
                self.query_one("#loss-chart").add_marker(x)
                self._log(f"learning rate change to {value:g} requested")
            else:
                self.query_one("#f-optimizer-lr", ConfigField).set_value(value)

        self.app.push_screen(LearningRateDialog(current), done)

    def action_lr_find(self) -> None:
        """Sweep the learning rate on a copy of the panels' model (never the training one)."""
        if self.training or not self.engine_ready:
            self.notify("the LR finder runs between runs, once torch has loaded", severity="warning")
            return
        cfg = self._valid_config()
        if cfg is None:
            return
        self._log("LR finder: sweeping 1e-07 .. 10 over 100 batches on a copy of the model…")
        self.query_one("#tabs", TabbedContent).active = "tab-lr"
        self._lr_find(cfg)

    @work(thread=True, exclusive=True, group="lr-find", exit_on_error=False, description="LR finder")
    def _lr_find(self, cfg: RunConfig) -> None:
        from tui_trainer.lrfind import lr_find

        worker = get_current_worker()
        try:
            self.post_message(LrFound(lr_find(cfg, should_stop=lambda: worker.is_cancelled)))
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.post_message(LrFound(None, f"{type(exc).__name__}: {exc}"))

    def on_lr_found(self, message: LrFound) -> None:
        if message.error or message.result is None:
            self._error(f"LR finder failed: {message.error}")
            return
        r = message.result
        chart = self.query_one("#lr-chart")
        chart.clear_series()
        chart.set_series("loss", r.lrs, r.smoothed)
        self.lr_suggestion = r.suggestion
        if r.suggestion is None:
            self._log("LR finder: the loss did not fall by 2% anywhere in the sweep; no suggestion")
            return
        chart.add_marker(r.suggestion)
        self._log(f"suggested lr: {r.suggestion:.3g} (press a to put it in the Optimizer panel)")

    def action_apply_lr(self) -> None:
        if self.lr_suggestion is None or self.training:
            return
        self.query_one("#f-optimizer-lr", ConfigField).set_value(float(f"{self.lr_suggestion:.3g}"))
        self._log(f"optimizer.lr set to {self.lr_suggestion:.3g} from the LR finder")

    async def action_quit(self) -> None:
        """Stop the run (it saves last.pt within one step), wait for the thread, leave."""
        await self.stop_and_wait()
        self.app.exit()

    async def stop_and_wait(self, timeout: float = 10.0) -> None:
        """Ask a running fit to stop and wait (without blocking the UI) until its thread ended."""
        if self.training and self.controls is not None:
            self.controls.stop.set()
            self.query_one("#progress", Static).update("stopping: saving last.pt…")
        worker = self.train_worker
        if worker is not None and not worker.is_finished:
            try:  # the engine polls stop between steps; a step can be long on a slow device
                await asyncio.wait_for(asyncio.shield(worker.wait()), timeout)
            except (WorkerFailed, WorkerCancelled, TimeoutError):
                pass

    # -- the training worker ---------------------------------------------------------

    @work(thread=True, exclusive=True, group="train", exit_on_error=False, description="training")
    def _train(self, cfg: RunConfig, resume: Path | None) -> None:
        from tui_trainer.checkpoint import load_checkpoint
        from tui_trainer.engine import Trainer

        try:
            ck = load_checkpoint(resume) if resume is not None else None
            Trainer(self.runs_dir).fit(cfg, self.sink, self.controls, resume=ck)
        except USER_ERRORS as exc:
            self.sink.emit(LogMessage("error", str(exc)))
            self.sink.emit(RunFinished("error", str(exc), 0, 0, None, ""))
        except Exception as exc:  # noqa: BLE001 - a worker failure becomes an event, not a traceback
            msg = f"training failed: {type(exc).__name__}: {exc}"
            self.sink.emit(LogMessage("error", msg))
            self.sink.emit(RunFinished("error", msg, 0, 0, None, ""))

    # -- engine events (UI thread) ------------------------------------------------------

    def _reset_series(self) -> None:
        self.epochs: list[int] = []
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.train_acc: list[float] = []
        self.val_acc: list[float] = []
        self.step_x: list[float] = []
        self.step_smooth = RunningMean()
        self.changed: set[str] = set()  # which series got points in the current batch of events
        self.started: RunStarted | None = None
        self.t0 = time.monotonic()
        self.last_step: StepLogged | None = None
        self.grad_series: dict[str, tuple[list[float], list[float]]] = {}

    def on_engine_events(self, message: EngineEvents) -> None:
        for event in message.events:
            self._apply(event)
        self._push_series()  # once per batch: each push copies a whole series
        self._update_progress()

    def _push_series(self) -> None:
        """Hand the charts immutable copies of the series that grew (they redraw on their timer)."""
        if "steps" in self.changed:
            self.query_one("#loss-chart").set_series("train (steps)", self.step_x, self.step_smooth.values)
        if "epochs" in self.changed:
            loss = self.query_one("#loss-chart")
            loss.set_series("train", self.epochs, self.train_loss)
            loss.set_series("val", self.epochs, self.val_loss)
            if self.val_acc:
                acc = self.query_one("#acc-chart")
                acc.set_series("train", self.epochs, self.train_acc)
                acc.set_series("val", self.epochs, self.val_acc)
        if "grads" in self.changed:
            grad = self.query_one("#grad-chart")
            for name, (xs, ys) in self.grad_series.items():
                grad.set_series(name, xs, ys)
        self.changed.clear()

    def _apply(self, event: Any) -> None:
        if isinstance(event, RunStarted):
            self.started, self.t0 = event, time.monotonic()
            self.device_text = event.device
            self.query_one("#device", Label).update(event.device)
            self.query_one("#model-summary", Static).update(event.summary)
            verb = "resuming" if event.start_epoch else "training"
            self._log(f"{verb} {event.preset}: {event.n_params:,} params, {event.train_samples:,} train / "
                      f"{event.val_samples:,} val samples -> {event.run_dir}")
        elif isinstance(event, StepLogged):
            self.last_step = event
            self.step_x.append(event.epoch - 1 + event.batch / max(event.batches, 1))
            self.step_smooth.add(event.loss)
            self.changed.add("steps")
            if event.layers:
                self._gradients(event)
            if event.memory is not None:
                used, free = event.memory
                self.query_one("#device", Label).update(
                    f"{self.device_text}  {used / 2**30:.2f} GiB in use, {free / 2**30:.1f} GiB free", layout=False)
        elif isinstance(event, Boundary):
            self.query_one("#boundary", BoundaryView).show(event)
        elif isinstance(event, ClassResults):
            self.query_one("#results", Static).update(event.text)
            self._log(event.text.splitlines()[0] + " " + ", ".join(
                f"{n} {row[i] / max(sum(row), 1):.0%}" for i, (n, row) in enumerate(zip(event.class_names, event.confusion,
                                                                                        strict=True))))
        elif isinstance(event, EpochEnded):
            self._epoch_ended(event)
        elif isinstance(event, CheckpointSaved):
            self._log(f"checkpoint ({event.kind}) saved: {event.path}")
            if event.kind == "manual":
                self.notify(f"checkpoint saved: {Path(event.path).name}")
        elif isinstance(event, LogMessage):
            if event.level == "error":
                self._error(event.text)
            else:
                self._log(event.text if event.level == "info" else f"{event.level}: {event.text}")
        elif isinstance(event, RunFinished):
            self._finished(event)

    def _gradients(self, event: StepLogged) -> None:
        x = self.step_x[-1]
        for layer in event.layers:
            xs, ys = self.grad_series.setdefault(layer.name, ([], []))
            xs.append(x)
            ys.append(max(layer.grad_norm, 1e-12))  # log axis
        self.changed.add("grads")

    def _epoch_ended(self, e: EpochEnded) -> None:
        self.epochs.append(e.epoch)
        self.train_loss.append(e.train_loss)
        self.val_loss.append(e.val_loss)
        self.changed.add("epochs")
        acc = ""
        if e.val_acc is not None:
            self.train_acc.append(e.train_acc)
            self.val_acc.append(e.val_acc)
            acc = f" acc {e.train_acc:.3f}/{e.val_acc:.3f}"
        best = " (new best)" if e.is_best else ""
        self._log(f"epoch {e.epoch}: loss {e.train_loss:.4f}/{e.val_loss:.4f}{acc} lr {e.lr:.3g} "
                  f"{e.epoch_seconds:.2f}s {e.samples_per_s:,.0f} samples/s{best}")

    def _finished(self, e: RunFinished) -> None:
        self.last_result = e
        self.training = False
        self.query_one("#setup").disabled = False
        self._update_buttons()
        if e.reason in ("completed", "early_stopped", "stopped"):
            self._log(f"run ended ({e.reason}): {e.message}")
            if e.last_checkpoint:
                self._log(f"last checkpoint: {e.last_checkpoint}")
            self.notify(f"run ended: {e.reason}")
        else:
            self.notify(e.message, severity="error", timeout=10)
        best = f"  best {self.values['regularization']['monitor']} {e.best_metric:.4g}" if e.best_metric is not None else ""
        self.query_one("#progress", Static).update(f"{e.message}{best}  (press r to train again)")

    def _update_progress(self) -> None:
        s, st = self.last_step, self.started
        if s is None or st is None or not self.training:
            return
        frac = s.batch / max(s.batches, 1)
        done = (s.epoch - 1 - st.start_epoch) + frac
        total = st.epochs - st.start_epoch
        elapsed = time.monotonic() - self.t0
        eta = elapsed / done * (total - done) if done > 0 else 0.0
        width = 20
        bar = "█" * int(frac * width) + "░" * (width - int(frac * width))
        text = (f"epoch {s.epoch}/{st.epochs} {bar} {frac:4.0%}  {s.samples_per_s:,.0f} samples/s  "
                f"elapsed {_hms(elapsed)}  ETA {_hms(eta)}")
        self.query_one("#progress", Static).update(text, layout=False)  # one fixed line: a repaint, no layout

    def _redraw_charts(self) -> None:
        """Timer (chart_hz): rebuild only charts that got new points and are on screen."""
        active = self.query_one("#tabs", TabbedContent).active
        if not active:
            return
        charts = [c for c in self.query_one(f"#{active}").query("SeriesChart") if c.dirty]
        if not charts:
            return
        with self.app.batch_update():
            for chart in charts:
                chart.replot()

    # -- log -------------------------------------------------------------------------------

    def _log(self, text: str) -> None:
        self.query_one("#log", Log).write_line(text)

    def _error(self, text: str) -> None:
        self._log(f"error: {text}")
        self.notify(text, severity="error", timeout=10)
