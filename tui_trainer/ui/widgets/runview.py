"""The run view (right column): what a run's events say, drawn.

It owns the fold of the run it shows (``history.RunHistory``): ``apply(events)`` folds a batch and
updates the text views at once; charts only get new series and are redrawn by the screen's timer
(at most twice a second, only the visible ones). ``reset()`` forgets the run (another one is shown).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Label, RichLog, Static, TabbedContent, TabPane

from tui_trainer.run.events import Event
from tui_trainer.run.folder import RunSummary
from tui_trainer.run.formats import format_column
from tui_trainer.run.history import RunHistory, memory_line, progress_line
from tui_trainer.ui.guard import Guarded
from tui_trainer.ui.widgets.boundary import BoundaryView
from tui_trainer.ui.widgets.fields import CompactButton

TABS = (("tab-charts", "Charts"), ("tab-log", "Log"), ("tab-gradients", "Grads"), ("tab-boundary", "Boundary"),
        ("tab-lr", "LR find"), ("tab-results", "Results"), ("tab-model", "Model"), ("tab-runs", "Runs"))
RUN_COLUMNS = ("cmp", "state", "epoch", "best", "run", "preset")  # numbers before names: a narrow view cuts names
LEVEL_STYLE = {"warning": "bold", "error": "bold reverse"}  # reads without colour too
LOG_LINES = 2000  # the Log tab keeps the last this many lines (log_lines keeps all)
BACKLOG_LINES = 500  # lines of an attached run's history written to the Log tab (events.jsonl has them all)
CHART_MIN_ROWS = 9  # below this a chart has two or three plot rows: show one chart at a time instead
ABOVE_TABS = 5  # rows of this view above a tab's content: buttons, progress, alarm, the tab row and its underline


def params_table(params: tuple) -> str:
    """Each parameter's value, gradient and value after the step, as a text table (tiny networks)."""
    width = max([len(p[0]) for p in params] + [9])
    lines = [f"{'parameter':<{width}}  {'value':>11}  {'gradient':>11}  {'after step':>11}"]
    for name, value, grad, after in params:
        lines.append(f"{name:<{width}}  {value:>11.4f}  {grad:>11.4f}  {after:>11.4f}")
    return "\n".join(lines)


class RunView(Guarded, Vertical):
    """Buttons, progress, alarms, and the tabs of one run."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history = RunHistory()
        self.path: str | None = None  # the run shown
        self._changed: set[str] = set()
        self._alarm_count = 0
        self.log_lines: list[str] = []  # every line the Log tab got (it renders lazily while hidden)
        self._log_widget: RichLog | None = None
        self._log_backlog = False
        self._progress_text = ""
        self._pending_log: list[tuple[str, str]] = []  # lines written before the Log tab exists (any mount order)
        self.one_chart_at_a_time = False  # the Charts tab has room for one readable chart only (v shows the next)
        self._chart_index = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="buttons"):
            yield CompactButton("Start", id="start", variant="success")
            yield CompactButton("Stop", id="stop", variant="error", disabled=True)
            yield CompactButton("Save", id="save", variant="primary", disabled=True)
            yield CompactButton("Pause", id="pause", disabled=True)
            yield Label("detecting the device…", id="device")
        yield Static("ready: press r to start", id="progress")
        yield Static("", id="alarm")
        with TabbedContent(id="tabs"):
            for tab_id, title in TABS:
                yield TabPane(title, id=tab_id)

    async def mount_tabs(self) -> None:
        """Fill the tabs (after the first frame: plotext's import alone is ~65 ms)."""
        if self.query("SeriesChart"):
            return
        from tui_trainer.ui.widgets.charts import SeriesChart

        loss = SeriesChart("loss", "loss", hint="press r to train: train and validation loss by epoch", id="loss-chart")
        acc = SeriesChart("accuracy", "accuracy", hint="validation accuracy appears after each epoch", id="acc-chart")
        grad = SeriesChart("gradient norm per layer (log)", "grad norm", hint="per-layer gradient norms appear while "
                           "training", id="grad-chart")
        grad.ylog = True
        grad.xlabel = "epoch"
        lr_chart = SeriesChart("LR finder", "loss", hint="press f to sweep the learning rate, a to apply", id="lr-chart")
        lr_chart.xlog, lr_chart.xlabel = True, "learning rate"
        await self.query_one("#tab-charts").mount_all([loss, acc])
        await self.query_one("#tab-log").mount(RichLog(id="log", max_lines=LOG_LINES, wrap=True, markup=False, min_width=20))
        params = Static("", id="params")
        params.display = False  # shown for networks small enough to list every parameter
        await self.query_one("#tab-gradients").mount_all([params, grad])
        await self.query_one("#tab-boundary").mount(VerticalScroll(BoundaryView(
            "decision boundary: shown after each epoch for 2-D datasets", id="boundary")))
        await self.query_one("#tab-lr").mount(lr_chart)
        await self.query_one("#tab-results").mount(VerticalScroll(Static(
            "per-class results appear when a classification run ends", id="results")))
        await self.query_one("#tab-model").mount(VerticalScroll(Static("", id="model-summary")))
        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*RUN_COLUMNS)
        compare_loss = SeriesChart("val loss by epoch", "val loss", hint="mark two runs or more with m", id="cmp-loss")
        compare_acc = SeriesChart("val acc by epoch", "val acc", hint="accuracy of classification runs", id="cmp-acc")
        await self.query_one("#tab-runs").mount_all([
            Static("Enter: show the run (its settings fill the panels: r trains a new run from them); m: mark runs to "
                   "compare; the list refreshes while this tab shows", classes="hint"),
            table,
            Horizontal(compare_loss, compare_acc, id="cmp-charts"),
            VerticalScroll(Static("", id="cmp-table"), id="cmp-box"),
        ])
        for box in self.query("#cmp-charts, #cmp-box"):
            box.display = False
        for level, text in self._pending_log[-LOG_LINES:]:
            self._show_log_line(level, text)
        self._pending_log.clear()
        self.arrange_charts()

    def on_resize(self) -> None:
        self.arrange_charts()
        for boundary in self.query(BoundaryView):
            self.call_after_refresh(boundary.refit)  # the tab's new height, once laid out
        self.call_after_refresh(self.show_progress)  # fitted to this view's new width (the terminal's, or e);
        # the charts mark themselves for a redraw on their own resize

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
        charts = list(pane.query("SeriesChart"))
        one = bool(charts) and not side_by_side and height - ABOVE_TABS < CHART_MIN_ROWS * len(charts)
        for i, chart in enumerate(charts):
            chart.display = not one or i == self._chart_index % len(charts)
        if one != self.one_chart_at_a_time:
            self.one_chart_at_a_time = one
            self.screen.refresh_bindings()  # v appears in the footer only while it does something

    def next_chart(self) -> None:
        """Show the next chart of the Charts tab (when only one fits)."""
        self._chart_index += 1
        self.arrange_charts()

    # -- folding ----------------------------------------------------------------------

    def reset(self, path: str | None) -> None:
        """Show another run (or none): forget the fold and clear every view."""
        self.history = RunHistory()
        self.path = path
        self._alarm_count = 0
        for chart in self.query("SeriesChart"):
            if chart.id != "lr-chart":
                chart.clear_series()
        self.query_one("#alarm", Static).update("")
        if self.query("#params"):
            self.query_one("#params", Static).display = False
            self.query_one("#boundary", BoundaryView).clear("decision boundary: shown after each epoch for 2-D datasets")
            self.query_one("#results", Static).update("per-class results appear when a classification run ends")

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
            self.query_one("#device", Label).update(h.started.device)
            if self.query("#model-summary"):
                self.query_one("#model-summary", Static).update(h.started.summary)
        if (memory := memory_line(h.last_step)) is not None:
            self.query_one("#device", Label).update(f"{h.device}  {memory}", layout=False)
        if "alarms" in changed:
            self._show_alarm(h.alarms[-1], new=len(h.alarms) - self._alarm_count)
            self._alarm_count = len(h.alarms)
        if "boundary" in changed and self.query("#boundary"):
            self.query_one("#boundary", BoundaryView).show(h.boundary)
        if "results" in changed and self.query("#results"):
            self.query_one("#results", Static).update(Text(h.results.text, no_wrap=True))
        if "params" in changed and self.query("#params"):
            params = self.query_one("#params", Static)
            params.update(Text(f"step {h.params.step}:\n" + params_table(h.params.params), no_wrap=True))
            params.display = True
        self._changed |= changed
        self.push_series()
        self.show_progress()
        return changed

    def push_series(self) -> None:
        """Hand the charts immutable copies of the series that grew (they redraw on the screen's timer)."""
        if not self.query("SeriesChart"):
            return
        h, changed = self.history, self._changed
        self._changed = set()
        loss = self.query_one("#loss-chart")
        if changed & {"steps", "started"}:
            loss.set_series("train (steps)", h.step_x, h.step_loss.values)
        if changed & {"epochs", "started"}:
            s = h.series
            loss.set_series("train", s.epochs, s.train_loss)
            loss.set_series("val", s.epochs, s.val_loss)
            acc = self.query_one("#acc-chart")
            if s.val_acc:
                acc.set_series("train", s.epochs, s.train_acc)
                acc.set_series("val", s.epochs, s.val_acc)
            elif h.started is not None and h.started.task == "regression":
                acc.clear_series("regression: no accuracy; see the loss")
        if changed & {"lr", "started"}:
            loss.set_markers([(x, f"lr {lr:g}") for x, lr in h.lr_marks])
        if changed & {"grads", "started"}:
            grad = self.query_one("#grad-chart")
            for name, (xs, ys) in h.grads.items():
                grad.set_series(name, xs, ys)

    def show_progress(self) -> None:
        """The progress line, fitted to the current width."""
        width = max(self.query_one("#progress").size.width - 2, 20)
        h = self.history
        if h.started is None and h.finished is None:
            return
        text = progress_line(h, width)
        if text != self._progress_text:  # unchanged text: no repaint
            self._progress_text = text
            self.query_one("#progress", Static).update(text, layout=False)

    def say(self, text: str) -> None:
        """A line of our own on the progress line (ready, starting, stopping…)."""
        self._progress_text = text
        self.query_one("#progress", Static).update(text, layout=False)

    def _show_alarm(self, text: str, new: int) -> None:
        alarm = self.query_one("#alarm", Static)
        more = f"(+{new - 1} more in the Log) " if new > 1 else ""
        alarm.update(Text(f"⚠ {more}{text}", no_wrap=True, overflow="ellipsis", style="bold"))
        self.app.notify(text, title="training hint", severity="warning", timeout=8)

    def show_lr_progress(self, text: str) -> None:
        """Where the LR finder has got, in its tab's empty chart (the sweep replaces it when done)."""
        if self.query("#lr-chart"):
            self.query_one("#lr-chart").clear_series(text)

    # -- log ------------------------------------------------------------------------

    def log_line(self, text: str, level: str = "info") -> None:
        """A line of the app's own in the Log tab (the run's lines come from its events)."""
        self._write_log(level, text)

    def _write_log(self, level: str, text: str) -> None:
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

    # -- runs list ---------------------------------------------------------------------

    def fill_runs(self, rows: list[RunSummary], marked: set[str]) -> None:
        """The Runs tab's table; ``marked``: the folders chosen for comparison. The numbers come first and the
        long names last, so a narrow view cuts a name, never a number; one format for the whole best column."""
        table = self.query_one("#runs-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        bests = format_column([r.best for r in rows])
        for r, best in zip(rows, bests, strict=True):
            mark = Text("[x]" if r.path in marked else "[ ]")  # a Text cell: "[x]" as a str would be read as markup
            table.add_row(mark, r.state, Text(f"{r.epoch}/{r.epochs}", justify="right"),
                          Text(f"{r.monitor} {best}" if r.best is not None else "-", justify="right"), r.name, r.preset,
                          key=r.path)
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))

    def show_comparison(self, runs: list[Any] | None, error: str | None = None) -> None:
        """Overlay the marked runs' validation curves (compare.RunData), with their table and differing keys."""
        from tui_trainer.run.compare import compare_table, labels

        charts, box = self.query_one("#cmp-charts"), self.query_one("#cmp-box")
        charts.display = box.display = bool(runs) or bool(error)
        table = self.query_one("#cmp-table", Static)
        if error or not runs:
            table.update(error or "")
            return
        loss, acc = self.query_one("#cmp-loss"), self.query_one("#cmp-acc")
        loss.clear_series()
        acc.clear_series("regression runs: no accuracy")
        for name, run in zip(labels(runs), runs, strict=True):
            epochs = [int(r["epoch"]) for r in run.rows]
            loss.set_series(name, epochs, [r["val_loss"] for r in run.rows])
            if run.task == "classification":
                acc.set_series(name, epochs, [r.get("val_acc") for r in run.rows])
        table.update(Text(compare_table(runs), no_wrap=True))
