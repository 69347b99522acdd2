"""Runs side by side: load finished (or live) runs, name them by what differs, tabulate and plot them.

Stdlib only (plotext is imported inside ``plot_curves``): ``tui-trainer compare`` answers without
torch, and the app can reuse ``load_runs``, ``differing_keys``, ``label`` and ``compare_table``.
A run is read from its directory: ``config.toml`` (raw TOML, so a run written by an older version
still compares), ``events.jsonl`` folded by the one follower (``follow.fold``: from history.json when
usable; torn lines are skipped), and ``metrics.jsonl`` when it holds more epochs than the events;
``status.json`` gives the state and the training time.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_trainer.config.factories import code_label
from tui_trainer.errors import ConfigError
from tui_trainer.run.events import ProtocolError, RunStarted
from tui_trainer.run.folder import RunDir
from tui_trainer.run.follow import Folded, fold
from tui_trainer.run.formats import format_column
from tui_trainer.run.history import hms

IGNORED_KEYS = ("description",)
"""Config keys never shown as a difference (free text)."""

MARKERS = ("o", "x", "+", "*", "#", "@", "%", "&", "=", "~")
"""One plot marker per run, in order (then they repeat)."""


class CompareError(ConfigError):
    """Runs that cannot be compared (different tasks or monitors, a run read twice, an unreadable run)."""


@dataclass(frozen=True)
class RunData:
    """What a comparison or an export needs of one run, as plain values."""

    name: str
    path: Path
    config: dict[str, Any]  # config.toml as written (sections of keys)
    rows: tuple[dict, ...]  # one metrics row per epoch, as in metrics.jsonl
    status: dict[str, Any]
    state: str
    task: str  # "classification" or "regression"
    monitor: str  # "val_loss" or "val_acc"
    epochs: int  # epochs the run was configured for
    elapsed_s: float | None  # training time
    started: float | None  # wall-clock time the run started (epoch seconds)
    steps: tuple[tuple[int, float, float, float], ...] = ()  # (step, smoothed train loss, lr, elapsed_s) per log interval
    skipped: int = 0  # torn or unreadable event lines left out
    scalars: tuple[tuple[str, tuple[tuple[int, float], ...]], ...] = ()  # a user's loop's own: (name, ((step, value), ...))

    @property
    def best_row(self) -> dict | None:
        """The epoch where the monitored metric was best (the first of equals)."""
        key = self.monitor
        rows = [r for r in self.rows if isinstance(r.get(key), (int, float))]
        if not rows:
            return None
        return max(rows, key=lambda r: r[key]) if key == "val_acc" else min(rows, key=lambda r: r[key])

    @property
    def best_val_loss(self) -> float | None:
        """The lowest validation loss of any epoch."""
        values = [r["val_loss"] for r in self.rows if isinstance(r.get("val_loss"), (int, float))]
        return min(values) if values else None

    @property
    def best_val_acc(self) -> float | None:
        """The highest validation accuracy of any epoch (None for regression)."""
        values = [r["val_acc"] for r in self.rows if isinstance(r.get("val_acc"), (int, float))]
        return max(values) if values else None

    @property
    def epochs_done(self) -> int:
        """Epochs with a metrics row."""
        return max((int(r.get("epoch", 0)) for r in self.rows), default=0)


# ---------------------------------------------------------------------------
# loading


def _read_config(run: RunDir) -> dict[str, Any]:
    try:
        raw = tomllib.loads(run.config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CompareError(f"{run.config_path}: cannot read: {exc}") from None
    return raw


def _fold(run: RunDir) -> Folded:
    """The run's events folded (from its history.json when usable: the one follower's fold)."""
    try:
        return fold(run)
    except ProtocolError as exc:
        raise CompareError(f"{run.name}: {exc}") from None


def _task(started: RunStarted | None, rows: Sequence[dict], config: dict[str, Any]) -> str:
    """The run's own word (RunStarted), else what its rows show, else what its config says."""
    if started is not None:
        return started.task
    if rows:
        return "classification" if any(r.get("val_acc") is not None for r in rows) else "regression"
    data = config.get("data", {})
    return "regression" if data.get("dataset") == "regression-toy" or data.get("task") == "regression" else "classification"


def load_run(path: RunDir | Path | str) -> RunData:
    """One run from its directory; CompareError if it is not one."""
    run = path if isinstance(path, RunDir) else RunDir(Path(path).expanduser().resolve())
    if not run.path.is_dir():
        raise CompareError(f"{run.path} is not a run directory")
    config = _read_config(run)
    history, _offset, _events, skipped = _fold(run)
    # the events are the record; metrics.jsonl stands in where they lost epochs (gone, or a line torn)
    rows = max((tuple(history.rows), tuple(run.read_metrics())), key=len)
    status = run.read_status()
    started = history.started
    monitor = str(config.get("regularization", {}).get("monitor") or (started.monitor if started else None)
                  or status.get("monitor") or "val_loss")
    elapsed = status.get("elapsed_s")
    if elapsed is None and history.last_step is not None:
        elapsed = history.last_step.elapsed_s  # live or crashed: the clock of its last report
    if elapsed is None and rows:
        elapsed = sum(float(r.get("epoch_seconds") or 0.0) for r in rows)
    steps = tuple(zip(history.step_n, history.step_loss.values, history.step_lr, history.step_elapsed, strict=True))
    epochs = int(config.get("train", {}).get("epochs") or status.get("epochs") or (started.epochs if started else 0))
    scalars = tuple((name, tuple(zip(steps_, values, strict=True))) for name, (steps_, values) in history.scalars.items())
    return RunData(name=run.name, path=run.path, config=config, rows=rows, status=status, state=run.state(status),
                   task=_task(started, rows, config), monitor=monitor, epochs=epochs, elapsed_s=elapsed,
                   started=status.get("started") or status.get("created"), steps=steps, skipped=skipped, scalars=scalars)


def load_runs(paths: Iterable[RunDir | Path | str]) -> list[RunData]:
    """Every run, in the order given; CompareError if one is given twice."""
    runs: list[RunData] = []
    for path in paths:
        data = load_run(path)
        if any(r.path == data.path for r in runs):
            raise CompareError(f"run {data.name} is given twice")
        runs.append(data)
    return runs


def check_comparable(runs: Sequence[RunData]) -> None:
    """CompareError (one line) unless every run has the same task and monitors the same metric."""
    for attr, what in (("task", "task"), ("monitor", "monitored metric (regularization.monitor)")):
        values = {getattr(r, attr) for r in runs}
        if len(values) > 1:
            first = runs[0]
            other = next(r for r in runs if getattr(r, attr) != getattr(first, attr))
            raise CompareError(f"cannot compare runs of different {what}: {first.name} is {getattr(first, attr)}, "
                               f"{other.name} is {getattr(other, attr)}")


# ---------------------------------------------------------------------------
# naming runs by what differs


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif name not in IGNORED_KEYS:
            flat[name] = value
    return flat


_MISSING = object()


def differing_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    """The ``section.key`` names whose values are not the same in every config (a missing key differs), in
    the order they first appear."""
    flats = [flatten(c) for c in configs]
    order: dict[str, None] = {}
    for flat in flats:
        order.update(dict.fromkeys(flat))
    return [k for k in order if len({repr(f.get(k, _MISSING)) for f in flats}) > 1]


def format_value(value: Any) -> str:
    """A config value as short as it reads: 0.0003 -> 3e-4, true, [64, 64], adam."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        plain = f"{value:g}"
        mantissa, _, exp = f"{value:e}".partition("e")
        sci = f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
        return sci if len(sci) < len(plain) else plain
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, str) and value.partition(":")[0].endswith(".py") and "/" in value:
        return value.rsplit("/", 1)[-1]  # a factory's file: my_cnn.py:build (the config holds the whole path)
    return str(value)


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """``optimizer.lr`` -> ``lr``, unless two keys share their last part (then the whole name)."""
    tails = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: t if tails.count(t) == 1 else k for k, t in zip(keys, tails, strict=True)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def key_values(runs: Sequence[RunData], key: str) -> list[str]:
    """Each run's value of ``key`` as text, in ONE format across the runs: a key whose values are numbers with a
    float among them goes through ``formats.format_column`` (lr 0.01 and 0.003 read ``0.010`` and ``0.003``, never
    ``0.01`` beside ``3e-3``); anything else as :func:`format_value`; a run without the key reads ``-``."""
    values = [flatten(r.config).get(key, _MISSING) for r in runs]
    present = [v for v in values if v is not _MISSING]
    if present and all(_is_number(v) for v in present) and any(isinstance(v, float) for v in present):
        return format_column([None if v is _MISSING else float(v) for v in values])
    return ["-" if v is _MISSING else format_value(v) for v in values]


def label(run: RunData, keys: Sequence[str]) -> str:
    """The run alone named by its values of ``keys`` (``lr=3e-4, dropout=0.2``), else by its folder name. Beside
    other runs, use :func:`labels`: it writes each key's values in one format."""
    return _names([run], keys)[0]


def _names(runs: Sequence[RunData], keys: Sequence[str]) -> list[str]:
    if not keys:
        return [r.name for r in runs]
    short = short_names(keys)
    columns = [key_values(runs, k) for k in keys]
    return [", ".join(f"{short[k]}={column[i]}" for k, column in zip(keys, columns, strict=True))
            for i in range(len(runs))]


def label_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    """The differing keys that name runs: those every run has, when there are some (a user's own loop beside a
    preset's run differs in every key of either; the keys both have, such as ``name``, tell them apart), else
    every differing key."""
    keys = differing_keys(configs)
    flats = [flatten(c) for c in configs]
    return [k for k in keys if all(k in f for f in flats)] or keys


def labels(runs: Sequence[RunData]) -> list[str]:
    """Each run's label, each differing key's values in one format across the runs; runs that would share one
    get their folder name added."""
    keys = label_keys([r.config for r in runs])
    names = _names(runs, keys)
    return [f"{n} ({r.name})" if names.count(n) > 1 and n != r.name else n for n, r in zip(names, runs, strict=True)]


# ---------------------------------------------------------------------------
# the table and the curves


def shown_path(path: str | Path) -> str:
    """A folder as a person types it here: relative to the current folder when it is under it, else whole."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def compare_table(runs: Sequence[RunData]) -> str:
    """The comparison as plain text: a header line, then one row per run (the best run's monitored value
    starred), then each run's folder."""
    keys = differing_keys([r.config for r in runs])
    names = labels(runs)
    scores = [(r.best_row or {}).get(r.monitor) for r in runs]
    valid = [s for s in scores if isinstance(s, (int, float)) and s == s]
    winner = (max(valid) if runs[0].monitor == "val_acc" else min(valid)) if valid else None
    header = ["run", "best val_loss", "best val_acc", "best epoch", "epochs", "time", "state"]
    table = [header]
    losses = format_column([r.best_val_loss for r in runs])  # one format per column: the numbers line up
    accs = format_column([r.best_val_acc for r in runs])
    for r, name, score, loss, acc in zip(runs, names, scores, losses, accs, strict=True):
        best = r.best_row
        starred = winner is not None and len(runs) > 1
        star = (" *" if score == winner else "  ") if starred else ""  # blank beside the others: the points line up
        if r.monitor == "val_acc":
            acc += star
        else:
            loss += star
        table.append([name, loss, acc, str(best["epoch"]) if best else "-",
                      f"{r.epochs_done}/{r.epochs}" if r.epochs else str(r.epochs_done),  # 0: a loop that did not say
                      hms(r.elapsed_s) if r.elapsed_s is not None else "-", r.state])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i in (0, 6) else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                            strict=True)))
             .rstrip() for row in table]
    first = runs[0]
    intro = (f"{len(runs)} {first.task} run{'s' if len(runs) != 1 else ''}, best by {first.monitor} (*)"
             + (f"; differing: {_some(keys)}" if keys else ("; configs identical" if len(runs) > 1 else "")))
    folders = [f"  {name}: {shown_path(r.path)}" for name, r in zip(names, runs, strict=True) if name != r.name]
    skipped = [f"  {r.name}: {r.skipped} torn event line(s) skipped" for r in runs if r.skipped]
    code = [f"  {name}: {code_label(r.status.get('imports'))}" for name, r in zip(names, runs, strict=True)
            if r.status.get("imports")]  # the user's code each ran: file:factory@sha256 (a changed file, another hash)
    return "\n".join([intro, *lines, *(["folders:", *folders] if folders else []), *(["code:", *code] if code else []),
                      *skipped])


def _some(keys: Sequence[str], most: int = 12) -> str:
    """The first ``most`` keys, and how many more (a user's own loop beside a preset's run differs in ~80)."""
    return ", ".join(keys[:most]) + (f" … ({len(keys) - most} more)" if len(keys) > most else "")


def curve_metrics(runs: Sequence[RunData]) -> list[str]:
    """The validation curves worth drawing: val_loss, and val_acc for classification."""
    return ["val_loss", "val_acc"] if runs and runs[0].task == "classification" else ["val_loss"]


def curves_table(runs: Sequence[RunData]) -> str:
    """The validation curves as plain rows (for a pipe): per metric, one row per epoch, one column per run."""
    names = labels(runs)
    out: list[str] = []
    for metric in curve_metrics(runs):
        by_epoch = [{int(r["epoch"]): r.get(metric) for r in run.rows} for run in runs]
        epochs = sorted(set().union(*by_epoch))
        columns = [format_column([values.get(e) for e in epochs]) for values in by_epoch]  # one format per run
        widths = [max([len(n), 8, *map(len, column)]) for n, column in zip(names, columns, strict=True)]
        out.append(f"{metric} by epoch")
        out.append("  ".join(["epoch", *(n.rjust(w) for n, w in zip(names, widths, strict=True))]))
        for row, e in enumerate(epochs):
            cells = [column[row].rjust(w) for column, w in zip(columns, widths, strict=True)]
            out.append("  ".join([str(e).rjust(5), *cells]))
        out.append("")
    return "\n".join(out).rstrip("\n")


def plot_curves(runs: Sequence[RunData], width: int = 100, height: int = 20) -> str:
    """The validation curves drawn with plotext, one chart per metric (one series and marker per run), as
    text to print on a terminal."""
    import plotext as plt  # only here: the table needs no plotting library

    names = labels(runs)
    charts = []
    for metric in curve_metrics(runs):
        plt.clear_figure()
        plt.theme("clear")  # the terminal's own colours behind the chart
        plt.title(f"{metric} by epoch")
        plt.xlabel("epoch")
        epochs = sorted({int(r["epoch"]) for run in runs for r in run.rows})
        if 1 < len(epochs) <= 20:
            plt.xticks(epochs)  # whole epochs, not 1.50
        legend = []
        for n, (run, name) in enumerate(zip(runs, names, strict=True)):
            points = [(int(r["epoch"]), float(r[metric])) for r in run.rows if isinstance(r.get(metric), (int, float))]
            if points:
                xs, ys = zip(*points, strict=True)
                plt.plot(list(xs), list(ys), marker=MARKERS[n % len(MARKERS)])  # no label: a legend inside covers curves
                legend.append(f"  {MARKERS[n % len(MARKERS)]}  {name}")
        plt.plotsize(width, height)
        charts.append(plt.build() + "\n" + "\n".join(legend))  # the legend under the chart
    plt.clear_figure()
    return "\n".join(charts)
