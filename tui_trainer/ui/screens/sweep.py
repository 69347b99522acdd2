"""The Sweep view: a sweep's trials as a table (state, parameters, metric, epochs), the best so far, the best trials'
validation curves overlaid, what each parameter did to the metric (a scatter per parameter, ``p`` for the next) and
Optuna's importance once enough trials have finished.

Enter on a trial shows it on the training screen (attached, as the Runs tab does; ``g`` there comes back), ``b``
saves the best trial's config as a preset, ``s`` stops the sweep (each running trial saves last.pt; ``tui-trainer
resume SWEEP`` goes on). The screen follows the sweep's events.jsonl in a worker (``sweep.client.follow_sweep``), folds
them with ``SweepHistory`` (the fold ``attach`` on a console uses too) and starts nothing; the importance is worked out
in a worker (Optuna is imported there, never on the UI thread).
"""

from __future__ import annotations

import math
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, get_current_worker

from tui_trainer.config import ConfigError
from tui_trainer.run.compare import format_value, short_names
from tui_trainer.run.formats import format_column, format_number
from tui_trainer.sweep.events import FINISHED_STATES, SweepHistory, TrialRow
from tui_trainer.sweep.folder import LIVE, SweepDir
from tui_trainer.ui.guard import Guarded
from tui_trainer.ui.widgets.charts import SeriesChart

IMPORTANCE_AFTER = 4
"""Finished trials before the importance is worked out (fANOVA on fewer says little)."""
BEST_CURVES = 3
"""Trials whose validation curves are overlaid: the best this many."""


class SweepFolded(Message, bubble=False):
    """The sweep's history so far, folded by its worker (a copy: the worker folds on into its own)."""

    def __init__(self, worker: Worker, history: SweepHistory) -> None:
        super().__init__()
        self.worker, self.history = worker, history


class SweepImportance(Message, bubble=False):
    """Optuna's importance of each key (``{}``: not enough to say), or why it could not be worked out."""

    def __init__(self, weights: dict[str, float], why: str | None = None) -> None:
        super().__init__()
        self.weights, self.why = weights, why


def running_best(trials: list[TrialRow], minimize: bool) -> tuple[list[float], list[float]]:
    """The best value so far after each completed trial, in trial order: (trial numbers, best). A pruned trial's value
    is its last report, which Optuna never counts as a best: neither does this."""
    xs, ys, best = [], [], None
    for row in sorted(trials, key=lambda r: r.number):
        if row.state != "complete" or row.value is None or not math.isfinite(row.value):
            continue
        best = row.value if best is None else (min if minimize else max)(best, row.value)
        xs.append(float(row.number))
        ys.append(best)
    return xs, ys


def ranked(trials: list[TrialRow], minimize: bool) -> list[TrialRow]:
    """Trials with a finite value, best first (a pruned trial's value is its last reported one)."""
    valued = [r for r in trials if r.value is not None and math.isfinite(r.value)]
    return sorted(valued, key=lambda r: r.value if minimize else -r.value)


def numeric(value: Any, choices: list[str]) -> float | None:
    """A parameter's value on a chart's x axis: a number as it is, a choice by its place among those seen."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value)
    if text not in choices:
        choices.append(text)
    return float(choices.index(text))


class SweepScreen(Guarded, Screen):
    """One sweep, followed live (or read, when it has ended)."""

    BINDINGS = [
        Binding("enter", "show_trial", "Show trial"),
        Binding("p", "next_param", "Next parameter"),
        Binding("b", "save_best", "Save best"),
        Binding("s", "stop_sweep", "Stop sweep"),
        Binding("escape", "leave", "Training screen"),
        Binding("q", "app.quit", "Quit"),  # as the training screen quits (a run training is asked about)
    ]

    def __init__(self, folder: SweepDir, chart_hz: float = 2.0) -> None:
        super().__init__()
        self.folder, self.chart_hz = folder, chart_hz
        self.history = SweepHistory()
        self.param_index = 0
        self.importance: dict[str, float] = {}
        self._importance_at = -1  # finished trials when the importance was last asked for
        self._follower: Worker | None = None
        self._shown_rows: list[int] = []  # trial numbers, in the table's order
        self._cells: dict[int, tuple[str, ...]] = {}  # each trial's row as shown: only changed cells are redrawn
        self.stopping = False  # s was pressed: the sweep stops its trials (a second SIGTERM would end it at once)

    # -- layout --------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        hz = self.chart_hz
        yield Static(f"sweep {self.folder.name}: reading…", id="sweep-head")
        yield DataTable(id="trials", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="sweep-charts"):
            yield SeriesChart("best so far", "metric", hint="the best value after each finished trial", max_hz=hz,
                              id="sweep-best")
            yield SeriesChart("best trials", "metric", hint="the best trials' validation curves", max_hz=hz,
                              id="sweep-curves")
            yield SeriesChart("parameter", "metric", hint="each trial's metric against a parameter (p: next)",
                              max_hz=hz, id="sweep-param")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#sweep-best", SeriesChart).xlabel = "trial"
        self.query_one("#sweep-param", SeriesChart).scatter = {"trials"}
        self.query_one("#sweep-best", SeriesChart).scatter = {"trials"}
        self._follower = self._follow()

    @property
    def minimize(self) -> bool:
        started = self.history.started or {}
        return started.get("direction", "minimize") == "minimize"

    @property
    def metric(self) -> str:
        return str((self.history.started or {}).get("metric", "metric"))

    @property
    def keys(self) -> list[str]:
        """The searched keys, in the sweep's order."""
        started = self.history.started or {}
        params = started.get("params") or {}
        keys = list(params) if isinstance(params, dict) else []
        for row in self.history.trials.values():
            keys += [k for k in row.params if k not in keys]
        return keys

    # -- following -----------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="sweep-follow", exit_on_error=False, description="follow the sweep")
    def _follow(self) -> None:
        """Fold each read of events.jsonl here and post the history (a sweep's backlog is one message, however long;
        a trial's epoch is shown as soon as it is written)."""
        import copy

        from tui_trainer.sweep.client import follow_sweep_batches

        worker = get_current_worker()
        history = SweepHistory()
        for batch in follow_sweep_batches(self.folder, lambda: worker.is_cancelled):
            for event in batch:
                history.apply(event)
            self.post_message(SweepFolded(worker, copy.deepcopy(history)))

    def on_sweep_folded(self, message: SweepFolded) -> None:
        if message.worker is not self._follower:
            return
        self.history = message.history
        self.show()

    def show(self) -> None:
        """Head, table and charts from the fold."""
        self._show_head()
        self._show_table()
        self._show_charts()
        finished = sum(1 for r in self.history.trials.values() if r.state in FINISHED_STATES)
        if finished >= IMPORTANCE_AFTER and finished != self._importance_at:
            self._importance_at = finished
            self._work_out_importance()
        self.refresh_bindings()

    def _show_head(self) -> None:
        h, started = self.history, self.history.started or {}
        state = str(h.ended.get("state")) if h.ended is not None else "running" if started else "starting"
        counts = h.counts()
        done = sum(counts.get(s, 0) for s in FINISHED_STATES)
        told = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        lines = [f"sweep {self.folder.name} · {state} · {done}/{started.get('trials', '?')} trials"
                 + (f" ({told})" if told else "")
                 + f" · {self.metric} ({'min' if self.minimize else 'max'}) · pruner {started.get('prune', '?')}"
                 + f" · {started.get('parallel', '?')} at once"]
        if h.best is not None:  # the study's best, as the sweep says it (with several workers: theirs too)
            shown = ", ".join(f"{k}={format_value(v)}" for k, v in (h.best.get("params") or {}).items())
            lines.append(f"best: trial {h.best.get('number')}, {self.metric} {format_number(h.best.get('value'))} "
                         f"({shown}); b saves it")
        if self.importance:
            lines.append("importance: " + ", ".join(f"{k} {w:.2f}" for k, w in self.importance.items()))
        if h.ended is not None and h.ended.get("state") != "finished" and h.ended.get("message"):
            lines.append(str(h.ended["message"]))  # why it stopped, failed or crashed, and how to go on
        if h.trials:
            lines.append("↑↓ Enter: a trial's curves, log and steering on the training screen (g comes back)")
        self.query_one("#sweep-head", Static).update("\n".join(lines))

    def _show_table(self) -> None:
        """The trials, one row each: new rows added, changed cells updated (a long sweep's table is not rebuilt)."""
        table = self.query_one("#trials", DataTable)
        keys = self.keys
        names = short_names(keys)  # lr, dropout; data.seed and train.seed keep their sections
        columns = ["#", "state", *[names[k] for k in keys], self.metric, "epochs", "note"]
        if [str(c.label) for c in table.columns.values()] != columns:
            table.clear(columns=True)
            table.add_columns(*columns)
            self._cells, self._shown_rows = {}, []
        column_keys = list(table.columns)
        rows = sorted(self.history.trials.values(), key=lambda r: r.number)
        values = format_column([r.value for r in rows])  # one format for the metric's column, as the Runs tab
        for row, value in zip(rows, values, strict=True):
            note = row.reason or ("" if row.how == "new" else row.how)
            cells = (str(row.number), row.state, *[format_value(row.params.get(k, "")) for k in keys],
                     value if row.value is not None else "", str(row.epochs or ""), note)
            before = self._cells.get(row.number)
            if before is None:
                table.add_row(*cells, key=str(row.number))
                self._shown_rows.append(row.number)
            elif before != cells:
                for column, old, new in zip(column_keys, before, cells, strict=True):
                    if old != new:
                        table.update_cell(str(row.number), column, new, update_width=True)
            self._cells[row.number] = cells

    def _show_charts(self) -> None:
        trials = list(self.history.trials.values())
        best = self.query_one("#sweep-best", SeriesChart)
        best.ylabel = self.metric
        finished = [r for r in trials if r.state == "complete" and r.value is not None]
        best.set_series("trials", [float(r.number) for r in finished], [float(r.value) for r in finished])
        best.set_series("best so far", *running_best(trials, self.minimize))

        curves = self.query_one("#sweep-curves", SeriesChart)
        curves.ylabel = self.metric
        top = ranked([r for r in trials if r.state == "complete"], self.minimize)[:BEST_CURVES]  # as Optuna ranks
        if {f"trial {r.number}" for r in top} != set(curves.series):
            curves.clear_series()
        for row in top:
            points = sorted(row.values)
            curves.set_series(f"trial {row.number}", [float(e) for e, _ in points], [float(v) for _, v in points])

        keys = self.keys
        chart = self.query_one("#sweep-param", SeriesChart)
        if not keys:
            return
        key = keys[self.param_index % len(keys)]
        space = str(((self.history.started or {}).get("params") or {}).get(key, ""))
        chart.xlog = space.startswith("log:")
        choices: list[str] = []
        xs, ys = [], []
        for row in sorted(finished, key=lambda r: r.number):
            x = numeric(row.params.get(key), choices)
            if x is not None:
                xs.append(x)
                ys.append(float(row.value))
        chart.title = f"{key} → {self.metric}"
        chart.ylabel = self.metric
        chart.xlabel = key.split(".", 1)[1] + (f" ({', '.join(f'{i}={c}' for i, c in enumerate(choices))})"
                                                 if choices else "")
        chart.set_series("trials", xs, ys)

    # -- importance (Optuna, in a worker) ------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="sweep-importance", exit_on_error=False,
          description="the parameters' importance")
    def _work_out_importance(self) -> None:
        from tui_trainer.sweep.spec import read_spec
        from tui_trainer.sweep.study import importances, open_storage, optuna_module

        worker = get_current_worker()
        try:
            spec = read_spec(self.folder.spec_path)
            study = optuna_module().load_study(study_name=spec.study, storage=open_storage(spec, self.folder))
            weights = importances(study)
        except (ConfigError, OSError, KeyError, ValueError) as exc:
            weights, why = {}, str(exc)
        else:
            why = None
        if not worker.is_cancelled:  # a newer one was asked for: its answer stands
            self.post_message(SweepImportance(weights, why))

    def on_sweep_importance(self, message: SweepImportance) -> None:
        self.importance = message.weights
        self._show_head()

    # -- keys ----------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_sweep":
            return self.history.ended is None and self.history.started is not None and not self.stopping
        if action == "save_best":
            return self.history.best is not None
        return True

    def action_next_param(self) -> None:
        self.param_index += 1
        self._show_charts()

    @on(DataTable.RowSelected, "#trials")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_show_trial()

    def action_show_trial(self) -> None:
        """The highlighted trial on the training screen (its curves, log, steering: it is a run like any)."""
        from tui_trainer.run.folder import RunDir

        table = self.query_one("#trials", DataTable)
        if not 0 <= table.cursor_row < len(self._shown_rows):
            return
        row = self.history.trials[self._shown_rows[table.cursor_row]]
        if not row.run:
            self.notify(f"trial {row.number} has no run folder yet", severity="warning")
            return
        app: Any = self.app
        if app.train_screen.starting:
            self.notify("a run is being started on the training screen: wait for it", severity="warning")
            return
        self.dismiss_to_training()
        app.train_screen.show_run_folder(RunDir(row.run))

    def action_leave(self) -> None:
        self.dismiss_to_training()

    def dismiss_to_training(self) -> None:
        """Back to the training screen; ``g`` there shows this screen again (it goes on following)."""
        if self.app.screen is self:
            self.app.pop_screen()

    def action_stop_sweep(self) -> None:
        """Stop the sweep once (a second SIGTERM would end it at once, without its trials' ends)."""
        if self.stopping:
            return
        self.stopping = True
        self.refresh_bindings()
        self.notify(f"stopping sweep {self.folder.name}: its running trials save last.pt…")
        self._stop_sweep()

    @work(thread=True, exclusive=True, group="sweep-stop", exit_on_error=False, description="stop the sweep")
    def _stop_sweep(self) -> None:
        from tui_trainer.sweep.client import stop_sweep

        try:
            state = stop_sweep(self.folder)
        except ConfigError as exc:  # not running, or on another host: s may be pressed again
            self.app.call_from_thread(self._stop_refused, str(exc))
            return
        said = "stopped" if state not in LIVE else f"still {state}"
        self.app.call_from_thread(self.notify, f"sweep {self.folder.name}: {said}; tui-trainer resume {self.folder.path} "
                                  "goes on")

    def action_save_best(self) -> None:
        """The study's best trial as a preset ``<sweep>-t<N>`` (what ``sweeps SWEEP --save-best`` writes)."""
        if self.history.best is not None:
            best = dict(self.history.best)  # read here, on the UI thread: the worker gets a copy
            self._save_best(best, f"{self.folder.name}-t{best['number']}")

    def _stop_refused(self, why: str) -> None:
        self.stopping = False
        self.refresh_bindings()
        self.notify(why, severity="warning")

    @work(thread=True, exclusive=True, group="sweep-save", exit_on_error=False, description="save the best trial")
    def _save_best(self, best: dict[str, Any], name: str) -> None:
        from tui_trainer.sweep.spec import save_best

        try:
            _best, _spec, path = save_best(self.folder, name, best)
        except (ConfigError, OSError) as exc:
            self.app.call_from_thread(self.notify, f"the best trial was not saved: {exc}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"trial {best['number']} saved as preset {name} ({path})")

