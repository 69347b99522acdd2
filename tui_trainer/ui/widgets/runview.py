"""The run view (right column): what a run's events say, drawn, and the buttons that steer it.

It owns the fold of the run it shows (``history.RunHistory``): ``apply(events)`` folds a batch and
updates the text views at once; the charts get new series and redraw themselves (at most ``chart_hz``
times a second, only while on screen). ``reset()`` forgets the run (another one is shown). Its buttons
follow ``run_state`` and ``settings_valid``, reactives the screen binds to its own. The Runs tab, the
LR find tab, the Images tab and the Machine tab are widgets of their own (runs.py, lrfinder.py, images.py,
machine.py); the Machine tab's short line goes beside the device, its alarms on the alarm line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import var
from textual.widgets import Label, RichLog, Static, TabbedContent, TabPane, Tabs

from tui_trainer.run.events import Event, RunFinished
from tui_trainer.run.history import RunHistory, memory_line, progress_line
from tui_trainer.ui.guard import Guarded
from tui_trainer.ui.state import RunState
from tui_trainer.ui.widgets.boundary import BoundaryView
from tui_trainer.ui.widgets.fields import CompactButton
from tui_trainer.ui.widgets.images import ImagesTab
from tui_trainer.ui.widgets.lrfinder import LrFinderTab
from tui_trainer.ui.widgets.machine import MachineTab
from tui_trainer.ui.widgets.runs import RunsTab

if TYPE_CHECKING:
    from tui_trainer.ui.widgets.charts import SeriesChart

TABS = (("tab-charts", "Charts"), ("tab-log", "Log"), ("tab-gradients", "Grads"), ("tab-boundary", "Boundary"),
        ("tab-lr", "LR"), ("tab-results", "Results"), ("tab-model", "Model"), ("tab-runs", "Runs"),
        ("tab-images", "Images"), ("tab-machine", "Machine"))
LEVEL_STYLE = {"warning": "bold", "error": "bold reverse"}  # reads without colour too
LOG_LINES = 2000  # the Log tab keeps the last this many lines (log_lines keeps all)
BACKLOG_LINES = 500  # lines of an attached run's history written to the Log tab (events.jsonl has them all)
CHART_MIN_ROWS = 9  # below this a chart has two or three plot rows: show one chart at a time instead
ABOVE_TABS = 5  # rows of this view above a tab's content: buttons, progress, alarm, the tab row and its underline
BOUNDARY_HINT = "decision boundary: shown after each epoch for 2-D datasets"
RESULTS_HINT = "per-class results appear when a classification run ends"


def params_table(params: tuple) -> str:
    """Each parameter's value, gradient and value after the step, as a text table (tiny networks)."""
    width = max([len(p[0]) for p in params] + [9])
    lines = [f"{'parameter':<{width}}  {'value':>11}  {'gradient':>11}  {'after step':>11}"]
    for name, value, grad, after in params:
        lines.append(f"{name:<{width}}  {value:>11.4f}  {grad:>11.4f}  {after:>11.4f}")
    return "\n".join(lines)


class RunView(Guarded, Vertical):
    """Buttons, progress, alarms, and the tabs of one run."""

    run_state: var[RunState] = var(RunState.NONE, init=False)
    """Where the run shown stands (bound to the screen's): which buttons can be pressed."""
    settings_valid: var[bool] = var(True, init=False)
    """The panels hold a valid config (bound to the screen's): Start can be pressed."""
    one_chart_at_a_time: var[bool] = var(False, bindings=True)
    """The Charts tab has room for one readable chart only (v shows the next, and is in the footer)."""

    def __init__(self, runs_dir: Path = Path("runs"), *, chart_hz: float = 2.0, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runs_dir, self.chart_hz = runs_dir, chart_hz
        self.history = RunHistory()
        self.path: str | None = None  # the run shown
        self._changed: set[str] = set()
        self._alarm_count = 0
        self.log_lines: list[str] = []  # every line the Log tab got (it renders lazily while hidden)
        self._log_widget: RichLog | None = None
        self._log_backlog = False
        self._progress_text = ""
        self._pinned: str | None = None  # a line that stays until another run is shown (a run that was lost)
        self._pending_log: list[tuple[str, str]] = []  # lines written before the Log tab exists (any mount order)
        self._chart_index = 0
        self._charts: dict[str, SeriesChart] = {}  # loss, acc, grad: mounted by mount_tabs()
        titles = dict(TABS)
        self.lr_finder = LrFinderTab(titles["tab-lr"], max_hz=chart_hz, id="tab-lr")  # tabs that are widgets of their own
        self.runs_tab = RunsTab(titles["tab-runs"], runs_dir, max_hz=chart_hz, id="tab-runs")
        self.images = ImagesTab(titles["tab-images"], id="tab-images")
        self.machine_tab = MachineTab(titles["tab-machine"], max_hz=chart_hz, id="tab-machine")
        self._device_base = "detecting the device…"  # the helper's word, then the run's device line
        self._machine_line = ""  # the Machine tab's short line for the run shown
        self._machine_alarms: set[str] = set()  # kinds of machine alarm shown for this run (each once)

    def compose(self) -> ComposeResult:
        with Horizontal(id="buttons"):
            yield CompactButton("Start", id="start", variant="success", action="screen.start")
            yield CompactButton("Stop", id="stop", variant="error", disabled=True, action="screen.stop")
            yield CompactButton("Save", id="save", variant="primary", disabled=True, action="screen.save")
            yield CompactButton("Pause", id="pause", disabled=True, action="screen.toggle_pause")
            yield Label("detecting the device…", id="device")
        yield Static("ready: press r to start", id="progress")
        yield Static("", id="alarm")
        with TabbedContent(id="tabs"):
            for tab_id, title in TABS:
                own = {"tab-lr": self.lr_finder, "tab-runs": self.runs_tab, "tab-images": self.images,
                       "tab-machine": self.machine_tab}
                yield own.get(tab_id) or TabPane(title, id=tab_id)

    async def mount_tabs(self) -> None:
        """Fill the tabs (after the first frame: plotext's import alone is ~65 ms)."""
        if self._charts:
            return
        from tui_trainer.ui.widgets.charts import SeriesChart

        hz = self.chart_hz
        loss = SeriesChart("loss", "loss", hint="press r to train: train and validation loss by epoch", max_hz=hz,
                           id="loss-chart")
        acc = SeriesChart("accuracy", "accuracy", hint="validation accuracy appears after each epoch", max_hz=hz,
                          id="acc-chart")
        grad = SeriesChart("gradient norm per layer (log)", "grad norm", hint="per-layer gradient norms appear while "
                           "training", max_hz=hz, id="grad-chart")
        grad.ylog = True
        grad.xlabel = "epoch"
        self._charts = {"loss": loss, "acc": acc, "grad": grad}
        await self.query_one("#tab-charts").mount_all([loss, acc])
        await self.query_one("#tab-log").mount(RichLog(id="log", max_lines=LOG_LINES, wrap=True, markup=False, min_width=20))
        params = Static("", id="params")
        params.display = False  # shown for networks small enough to list every parameter
        await self.query_one("#tab-gradients").mount_all([params, grad])
        await self.query_one("#tab-boundary").mount(VerticalScroll(BoundaryView(BOUNDARY_HINT, id="boundary")))
        await self.lr_finder.fill()
        await self.query_one("#tab-results").mount(VerticalScroll(Static(RESULTS_HINT, id="results")))
        await self.query_one("#tab-model").mount(VerticalScroll(Static("", id="model-summary")))
        await self.runs_tab.fill()
        await self.images.fill()
        await self.machine_tab.fill()
        for level, text in self._pending_log[-LOG_LINES:]:
            self._show_log_line(level, text)
        self._pending_log.clear()
        self.arrange_charts()

    # -- buttons ---------------------------------------------------------------------------

    def watch_run_state(self) -> None:
        self._show_buttons()
        self._machine_training()

    def watch_settings_valid(self) -> None:
        self._show_buttons()

    def _show_buttons(self) -> None:
        state = self.run_state
        self.query_one("#start", CompactButton).disabled = state.live or not self.settings_valid
        for name in ("stop", "save", "pause"):
            self.query_one(f"#{name}", CompactButton).disabled = not state.steerable
        self.query_one("#pause", CompactButton).label = "Resume" if state is RunState.PAUSED else "Pause"

    def show_device(self, text: str) -> None:
        """The device line (right of the buttons): what the helper found, until a run names its own."""
        self._device_base = text
        self._paint_device()

    def _paint_device(self) -> None:
        """The device line: the machine's short line (live numbers first: a narrow view cuts the end), the device,
        and its memory at the last log interval."""
        memory = memory_line(self.history.last_step)
        text = "  ".join(part for part in (self._machine_line, self._device_base, memory) if part)
        self.query_one("#device", Label).update(text, layout=False)

    def _machine_training(self) -> None:
        """Tell the Machine tab whether steps are running (its low-utilisation alarm means something only then)."""
        self.machine_tab.training = self.run_state is RunState.LIVE and self.history.last_step is not None

    def on_machine_tab_updated(self, message: MachineTab.Updated) -> None:
        self._machine_line = message.line
        self._paint_device()
        new = [(kind, text) for kind, text in message.alarms if kind not in self._machine_alarms]
        for kind, text in new:  # each kind once a run: the alarm line says it until another replaces it
            self._machine_alarms.add(kind)
            self.log_line(text, "warning")
        if new:
            self._show_alarm(new[-1][1], new=len(new))

    # -- tabs --------------------------------------------------------------------------------

    @property
    def active_tab(self) -> str:
        """The id of the tab shown."""
        return self.query_one("#tabs", TabbedContent).active

    def show_tab(self, tab_id: str) -> None:
        """Show a tab. Focus leaves a widget inside the tab being hidden first: TabbedContent shows the pane
        that holds the focus, and would switch straight back."""
        tabs = self.query_one("#tabs", TabbedContent)
        focused = self.app.focused
        if focused is not None and tabs.active and focused in self.query_one(f"#{tabs.active}").query("*"):
            tabs.query_one(Tabs).focus()
        tabs.active = tab_id

    def focus_tabs(self) -> None:
        """Give the tabs the focus (the panels are locked or hidden)."""
        self.query_one("#tabs", TabbedContent).focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if isinstance(event.pane, (RunsTab, ImagesTab)):
            event.pane.activated()

    def on_resize(self) -> None:
        self.arrange_charts()
        for boundary in self.query(BoundaryView):
            self.call_after_refresh(boundary.refit)  # the tab's new height, once laid out
        self.call_after_refresh(self.show_progress)  # fitted to this view's new width (the terminal's, or e);
        # the charts redraw themselves on their own resize

    def arrange_charts(self) -> None:
        """Loss and accuracy side by side when the view is wide for its height (80x24 with the panels hidden:
        two 40x16 charts read better than two 80x7 ones), else one above the other; and when neither leaves each
        chart ``CHART_MIN_ROWS`` rows (60x20), one chart at a time (v shows the next)."""
        width, height = self.size
        side_by_side = width >= 150 or (width >= 76 and height < 26)
        pane = self.query_one("#tab-charts")
        layout = "horizontal" if side_by_side else "vertical"
        if pane.styles.layout is None or pane.styles.layout.name != layout:
            pane.styles.layout = layout
        charts = [self._charts[name] for name in ("loss", "acc") if name in self._charts]
        one = bool(charts) and not side_by_side and height - ABOVE_TABS < CHART_MIN_ROWS * len(charts)
        for i, chart in enumerate(charts):
            chart.display = not one or i == self._chart_index % len(charts)
        self.one_chart_at_a_time = one

    def next_chart(self) -> None:
        """Show the next chart of the Charts tab (when only one fits)."""
        self._chart_index += 1
        self.arrange_charts()

    # -- what the run shown has done --------------------------------------------------------

    @property
    def paused(self) -> bool:
        """The run shown is held between steps (as its events say)."""
        return self.history.paused

    @property
    def finished(self) -> RunFinished | None:
        """The last end the run shown wrote (a resumed run keeps its earlier sessions' until its new one starts)."""
        return self.history.finished

    @property
    def current_lr(self) -> float | None:
        """The learning rate of the run shown at its last logged step."""
        step = self.history.last_step
        return step.lr if step is not None else None

    @property
    def has_checkpoint(self) -> bool:
        """The run shown has saved a checkpoint (from the fold: asked at every key press)."""
        return self.history.last_checkpoint is not None

    def show_model_summary(self, summary: str) -> None:
        """The panels' model, as the helper describes it: shown until a run's own summary replaces it."""
        if self.history.started is None and self.query("#model-summary"):
            self.query_one("#model-summary", Static).update(summary)

    # -- folding ----------------------------------------------------------------------

    def reset(self, path: str | None) -> None:
        """Show another run (or none): forget the fold and clear every view of the run."""
        self.history = RunHistory()
        self.path = path
        self._pinned = None
        self._alarm_count = 0
        self._machine_line = ""
        self._machine_alarms = set()
        self.machine_tab.follow(path)
        for chart in self._charts.values():
            chart.clear_series()
        self.query_one("#alarm", Static).update("")
        if self.query("#params"):
            self.query_one("#params", Static).display = False
            self.query_one("#boundary", BoundaryView).clear(BOUNDARY_HINT)
            self.query_one("#results", Static).update(RESULTS_HINT)
        self.images.show_run(path)

    def apply(self, events: tuple[Event, ...], catching_up: bool = False) -> set[str]:
        """Fold a batch of events and update what shows them; returns what changed. ``catching_up``: more of an
        attached run's history follows at once, so the Log tab is written when it has all arrived."""
        changed: set[str] = set()
        log_from = len(self.history.log)
        for event in events:
            changed |= self.history.apply(event)
        return self._show(changed, self.history.log[log_from:], catching_up)

    def load_history(self, history: RunHistory) -> set[str]:
        """Show a history folded elsewhere (a snapshot and the events after it), in place of this one."""
        self.history = history
        changed = {"started", "steps", "epochs", "grads", "lr", "log", "paused"}
        changed |= {name for name in ("boundary", "results", "params", "finished") if getattr(history, name) is not None}
        if history.alarms:
            changed.add("alarms")
        self._log_backlog = True  # the Log tab gets the history's last lines, once
        return self._show(changed, history.log, catching_up=False)

    def _show(self, changed: set[str], new_lines: list[tuple[str, str]], catching_up: bool) -> set[str]:
        """Update what shows the parts that ``changed``; ``new_lines``: the log lines they added."""
        h = self.history
        self.log_lines.extend(line for _level, line in new_lines)
        if catching_up:
            self._log_backlog = True
        elif self._log_backlog:  # the history has arrived: the Log tab gets its last lines, once
            self._log_backlog = False
            for level, line in h.log[-BACKLOG_LINES:]:
                self._show_log_line(level, line)
        else:
            for level, line in new_lines[-LOG_LINES:]:
                self._show_log_line(level, line)
        if "started" in changed and h.started is not None:
            self._device_base = h.device or h.started.device
            self.machine_tab.set_device(h.started.device)
            self.query_one("#device", Label).tooltip = h.started.device  # whole, where the line is cut
            if self.query("#model-summary"):
                self.query_one("#model-summary", Static).update(h.started.summary)
        if changed & {"started", "steps"}:
            self._paint_device()
            self._machine_training()
        if "alarms" in changed:
            self._show_alarm(h.alarms[-1], new=len(h.alarms) - self._alarm_count)
            self._alarm_count = len(h.alarms)
        if "boundary" in changed and self.query("#boundary"):
            self.query_one("#boundary", BoundaryView).show(h.boundary)
        if "results" in changed and self.query("#results"):
            self.query_one("#results", Static).update(Text(h.results.text, no_wrap=True))
        if "epochs" in changed:
            self.images.load_sample()  # written before the epoch's end: this epoch's
        if "params" in changed and self.query("#params"):
            params = self.query_one("#params", Static)
            params.update(Text(f"step {h.params.step}:\n" + params_table(h.params.params), no_wrap=True))
            params.display = True
        self._changed |= changed
        self.push_series()
        self.show_progress()
        return changed

    def push_series(self) -> None:
        """Hand the charts immutable copies of the series that grew (they redraw themselves)."""
        if not self._charts:
            return
        h, changed = self.history, self._changed
        self._changed = set()
        loss, acc, grad = self._charts["loss"], self._charts["acc"], self._charts["grad"]
        if changed & {"steps", "started"}:
            loss.set_series("train (steps)", h.step_x, h.step_loss.values)
        if changed & {"epochs", "started"}:
            s = h.series
            loss.set_series("train", s.epochs, s.train_loss)
            loss.set_series("val", s.epochs, s.val_loss)
            if s.val_acc:
                acc.set_series("train", s.epochs, s.train_acc)
                acc.set_series("val", s.epochs, s.val_acc)
            elif h.started is not None and h.started.task == "regression":
                acc.clear_series("regression: no accuracy; see the loss")
        if changed & {"lr", "started"}:
            loss.set_markers([(x, f"lr {lr:g}") for x, lr in h.lr_marks])
        if changed & {"grads", "started"}:
            for name, (xs, ys) in h.grads.items():
                grad.set_series(name, xs, ys)

    def show_progress(self) -> None:
        """The progress line, fitted to the current width."""
        width = max(self.query_one("#progress").size.width - 2, 20)
        h = self.history
        if self._pinned is not None or (h.started is None and h.finished is None):
            return
        text = progress_line(h, width)
        if text != self._progress_text:  # unchanged text: no repaint
            self._progress_text = text
            self.query_one("#progress", Static).update(text, layout=False)

    def say(self, text: str, pinned: bool = False) -> None:
        """A line of our own on the progress line (ready, starting, stopping…); ``pinned``: it stays there, whatever
        the fold or the width does, until something else is said or another run is shown (a run that crashed: its
        last "epoch 10/30 31% ETA 0:05" would be a lie)."""
        self._pinned = text if pinned else None
        self._progress_text = text
        self.query_one("#progress", Static).update(text, layout=False)

    def _show_alarm(self, text: str, new: int) -> None:
        alarm = self.query_one("#alarm", Static)
        more = f"(+{new - 1} more in the Log) " if new > 1 else ""
        alarm.update(Text(f"⚠ {more}{text}", no_wrap=True, overflow="ellipsis", style="bold"))
        self.app.notify(text, title="training hint", severity="warning", timeout=8)

    # -- log ------------------------------------------------------------------------

    def log_line(self, text: str, level: str = "info") -> None:
        """A line of the app's own in the Log tab (the run's lines come from its events)."""
        self.log_lines.append(text)
        self._show_log_line(level, text)

    def _show_log_line(self, level: str, text: str) -> None:
        if self.path and f"{self.path}/" in text:  # files of the run shown: relative to its folder (named at its start),
            text = text.replace(f"{self.path}/", "")  # so a line wraps between words, not inside a long path
        if self._log_widget is None:
            found = self.query("#log")
            if not found:
                self._pending_log.append((level, text))
                return
            self._log_widget = found.first(RichLog)
        self._log_widget.write(Text(text, style=LEVEL_STYLE.get(level, "")))
