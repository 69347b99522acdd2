"""The Runs tab: the runs folder's list, runs marked for comparison, and their overlay.

The tab owns the list (re-read from the runs folder every ``REFRESH_S`` seconds while it shows, and at once
when it is chosen), the marked folders, and the comparison of two or more marked runs (their validation curves
overlaid, a table of what differs). Reading folders is a worker's job; it reports back as ``RunsListed`` and
``RunsCompared``, handled here. Enter on a run posts ``RunsTab.Chosen``: the screen shows that run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Static, TabPane

from tui_trainer.config import ConfigError
from tui_trainer.run.folder import RunSummary, run_summaries
from tui_trainer.run.formats import format_column
from tui_trainer.ui.guard import Guarded

if TYPE_CHECKING:
    from tui_trainer.run.compare import RunData
    from tui_trainer.ui.widgets.charts import SeriesChart

RUN_COLUMNS = ("cmp", "state", "epoch", "best", "run", "preset")  # numbers before names: a narrow view cuts names
REFRESH_S = 2.0  # the list is read again this often while the tab shows (runs started elsewhere appear)


@dataclass
class RunsListed(Message, bubble=False):
    """The runs folder as read by the list worker, newest first."""

    rows: list[RunSummary]


@dataclass
class RunsCompared(Message, bubble=False):
    """The marked runs as read by the comparison worker (None: fewer than two), or why they cannot be compared."""

    runs: list[RunData] | None
    error: str | None = None


class RunsTab(Guarded, TabPane):
    """The runs list, the marks, and the comparison of the marked runs."""

    @dataclass
    class Chosen(Message):
        """Enter on a run: show it."""

        path: Path

    def __init__(self, title: str, runs_dir: Path, *, max_hz: float = 2.0, id: str | None = None) -> None:
        super().__init__(title, id=id)
        self.runs_dir = runs_dir
        self.max_hz = max_hz
        self.marked: set[str] = set()  # run folders chosen for comparison
        self._table: DataTable | None = None
        self._charts: tuple[SeriesChart, SeriesChart] | None = None
        self._cmp_table: Static | None = None
        self._cmp_boxes: tuple[Horizontal, VerticalScroll] | None = None  # shown while two runs or more are marked
        self._refresh_timer: Timer | None = None

    async def fill(self) -> None:
        """Mount the list and the comparison views (after the first frame: the charts import plotext)."""
        from tui_trainer.ui.widgets.charts import SeriesChart

        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*RUN_COLUMNS)
        loss = SeriesChart("val loss by epoch", "val loss", hint="mark two runs or more with m", max_hz=self.max_hz,
                           id="cmp-loss")
        acc = SeriesChart("val acc by epoch", "val acc", hint="accuracy of classification runs", max_hz=self.max_hz,
                          id="cmp-acc")
        cmp_table = Static("", id="cmp-table")
        charts, box = Horizontal(loss, acc, id="cmp-charts"), VerticalScroll(cmp_table, id="cmp-box")
        charts.display = box.display = False  # shown once two runs are marked
        await self.mount_all([
            Static("Enter: show the run (its settings fill the panels: r trains a new run from them); m: mark runs to "
                   "compare; the list refreshes while this tab shows", classes="hint"),
            table, charts, box,
        ])
        self._table, self._charts, self._cmp_table, self._cmp_boxes = table, (loss, acc), cmp_table, (charts, box)
        self._refresh_timer = self.set_interval(REFRESH_S, self.refresh_list, pause=not self.is_on_screen)

    # -- while the tab shows -----------------------------------------------------------------

    def activated(self) -> None:
        """The tab was chosen: read the list now, and give it the keys (up, down, m and Enter act at once)."""
        self.refresh_list()
        if self._table is not None:
            self._table.focus()

    def on_show(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.resume()

    def on_hide(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.pause()

    def refresh_list(self) -> None:
        """Read the runs folder again (in a worker; the table follows when it is read)."""
        self._list_runs()

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False, description="list runs")
    def _list_runs(self) -> None:
        self.post_message(RunsListed(run_summaries(self.runs_dir)))

    def on_runs_listed(self, message: RunsListed) -> None:
        """The Runs tab's table; the numbers come first and the long names last, so a narrow view cuts a name,
        never a number; one format for the whole best column."""
        table = self._table
        if table is None:
            return
        rows = message.rows
        cursor = table.cursor_row
        table.clear()
        bests = format_column([r.best for r in rows])
        for r, best in zip(rows, bests, strict=True):
            mark = Text("[x]" if r.path in self.marked else "[ ]")  # a Text cell: "[x]" as a str would be markup
            table.add_row(mark, r.state, Text(f"{r.epoch}/{r.epochs}", justify="right"),
                          Text(f"{r.monitor} {best}" if r.best is not None else "-", justify="right"), r.name, r.preset,
                          key=r.path)
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))

    # -- marks and the comparison ------------------------------------------------------------------

    def toggle_mark(self) -> None:
        """Mark (or unmark) the highlighted run; two or more marked are overlaid below the list."""
        table = self._table
        if table is None or table.row_count == 0:
            return
        path = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if path is None:
            return
        self.marked.symmetric_difference_update({path})
        mark_column = next(iter(table.columns))  # the one cell that changed: no need to read every run folder again
        table.update_cell(path, mark_column, Text("[x]" if path in self.marked else "[ ]"))
        self._compare(sorted(self.marked))

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False, description="compare runs")
    def _compare(self, paths: list[str]) -> None:
        from tui_trainer.run.compare import check_comparable, load_runs

        if len(paths) < 2:
            self.post_message(RunsCompared(None))
            return
        try:
            runs = load_runs(paths)
            check_comparable(runs)
        except ConfigError as exc:
            self.post_message(RunsCompared(None, str(exc)))
            return
        self.post_message(RunsCompared(runs))

    def on_runs_compared(self, message: RunsCompared) -> None:
        """Overlay the marked runs' validation curves, with their table and differing keys."""
        from tui_trainer.run.compare import compare_table, labels

        if self._charts is None or self._cmp_table is None or self._cmp_boxes is None:
            return
        runs, error = message.runs, message.error
        loss, acc = self._charts
        for box in self._cmp_boxes:
            box.display = bool(runs) or bool(error)
        if error or not runs:
            self._cmp_table.update(error or "")
            return
        loss.clear_series()
        acc.clear_series("regression runs: no accuracy")
        for name, run in zip(labels(runs), runs, strict=True):
            epochs = [int(r["epoch"]) for r in run.rows]
            loss.set_series(name, epochs, [r["val_loss"] for r in run.rows])
            if run.task == "classification":
                acc.set_series(name, epochs, [r.get("val_acc") for r in run.rows])
        self._cmp_table.update(Text(compare_table(runs), no_wrap=True))

    @on(DataTable.RowSelected)
    def _run_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Chosen(Path(event.row_key.value)))
