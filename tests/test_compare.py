"""``tui-trainer compare``: the table's numbers are the runs' own, runs are named by what differs,
curves plot and print, and bad input is one line and exit 2. Runs are real (tiny fits, in process)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny
from tests.test_cli import run_main
from tui_trainer.run import compare
from tui_trainer.run.folder import RunDir, prepare_run
from tui_trainer.run.formats import format_column
from tui_trainer.run.history import hms
from tui_trainer.run.recorder import RunRecorder


def make_run(runs_dir: Path, *overrides: str, preset: str = "moons-mlp") -> RunDir:
    """A finished 3-epoch run with events.jsonl, metrics.jsonl and status.json, as the run process writes them."""
    from tui_trainer.engine import fit

    cfg = tiny("train.epochs=3", "data.n_samples=300", *overrides, preset=preset)
    run = prepare_run(cfg, runs_dir)
    recorder = RunRecorder(run)
    try:
        result = fit(cfg, recorder, run_dir=run)
    finally:
        recorder.close()
    assert result.ok, result.message
    return run


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> dict[str, RunDir]:
    """Three moons runs (two learning rates, one with dropout), a regression run, one monitoring val_acc."""
    runs = tmp_path_factory.mktemp("compare") / "runs"
    return {
        "fast": make_run(runs, "optimizer.lr=0.05"),
        "slow": make_run(runs, "optimizer.lr=0.01"),
        "dropout": make_run(runs, "optimizer.lr=0.01", "model.dropout=0.2"),
        "regression": make_run(runs, preset="regression-toy"),
        "by_acc": make_run(runs, 'regularization.monitor="val_acc"'),
    }


def metrics(run: RunDir) -> list[dict]:
    return [json.loads(line) for line in run.metrics_path.read_text().splitlines()]


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_table_numbers_are_the_metrics_rows(lab, capsys):
    trio = [lab["fast"], lab["slow"], lab["dropout"]]
    code, out, err = run_main(capsys, "compare", *(r.name for r in trio), "--runs-dir", str(trio[0].path.parent))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "3 classification runs, best by val_loss (*); differing: model.dropout, optimizer.lr"
    assert cells(lines[1]) == ["run", "best val_loss", "best val_acc", "best epoch", "epochs", "time", "state"]
    names = ["dropout=0.0, lr=0.05", "dropout=0.0, lr=0.01", "dropout=0.2, lr=0.01"]  # one format per key
    losses = [min(r["val_loss"] for r in metrics(run)) for run in trio]
    loss_texts = format_column(losses)
    acc_texts = format_column([max(r["val_acc"] for r in metrics(run)) for run in trio])
    for run, name, line, loss, acc in zip(trio, names, lines[2:5], loss_texts, acc_texts, strict=True):
        rows = metrics(run)
        best = min(rows, key=lambda r: r["val_loss"])
        star = " *" if best["val_loss"] == min(losses) else ""
        status = run.read_status()
        assert float(loss) == pytest.approx(best["val_loss"], rel=5e-4)
        assert cells(line) == [name, f"{loss}{star}", acc, str(best["epoch"]), "3/3", hms(status["elapsed_s"]),
                               "finished"]
    points = [line.index(".", len(names[2]) + 2) for line in lines[2:5]]
    assert len(set(points)) == 1  # the best val_loss column's decimal points line up, starred or not
    assert f"  {names[0]}: {trio[0].path}" in lines


def test_the_runs_list_best_is_the_best_of_every_epoch_written_just_before_the_end(lab):
    from tui_trainer.run.folder import summarize

    for name in ("fast", "slow", "dropout", "by_acc"):  # 3 epochs in well under the 2 s between status writes
        run = lab[name]
        summary, rows = summarize(run), metrics(run)
        pick = max if summary.monitor == "val_acc" else min
        assert summary.best == pick(r[summary.monitor] for r in rows), name


def test_differing_keys_are_exactly_the_changed_ones(lab):
    runs = compare.load_runs([lab["fast"], lab["slow"], lab["dropout"]])
    assert compare.differing_keys([r.config for r in runs]) == ["model.dropout", "optimizer.lr"]
    assert compare.differing_keys([r.config for r in runs[:2]]) == ["optimizer.lr"]
    assert compare.label(runs[0], ["optimizer.lr"]) == "lr=0.05"
    assert compare.label(runs[0], []) == runs[0].name
    a, b = compare.load_runs([lab["slow"], lab["fast"]])
    assert compare.labels([a, b]) == ["lr=0.01", "lr=0.05"]


def test_labels_and_values_read_short():
    assert [compare.format_value(v) for v in (3e-4, 0.01, 0.001, 0.2, 0.0, 64, True, [64, 64], "adam")] == [
        "3e-4", "0.01", "1e-3", "0.2", "0", "64", "true", "[64,64]", "adam"]
    base = {"optimizer": {"lr": 0.1, "name": "adam"}, "model": {"dropout": 0.0}, "description": "x"}
    twin = {**base, "description": "y"}
    other = {"optimizer": {"lr": 0.1, "name": "sgd"}, "model": {"dropout": 0.0}}
    assert compare.differing_keys([base, twin]) == []  # free text is never a difference
    assert compare.differing_keys([base, twin, other]) == ["optimizer.name"]
    assert compare.differing_keys([base, {"optimizer": {"lr": 0.1, "name": "adam"}}]) == ["model.dropout"]
    runs = [compare.RunData(name=n, path=Path(n), config=c, rows=(), status={}, state="finished", task="classification",
                            monitor="val_loss", epochs=1, elapsed_s=None, started=None)
            for n, c in (("a", base), ("b", twin), ("c", other))]
    assert compare.labels(runs) == ["name=adam (a)", "name=adam (b)", "name=sgd"]


def test_plot_in_a_pipe_prints_the_curves_as_rows(lab, capsys):
    pair = [lab["fast"], lab["slow"]]
    code, out, err = run_main(capsys, "compare", str(pair[0].path), str(pair[1].path), "--plot")
    assert code == 0, err
    assert "\x1b" not in out
    curves = out.split("\n\n", 1)[1].splitlines()
    assert curves[0] == "val_loss by epoch" and cells(curves[1]) == ["epoch", "lr=0.05", "lr=0.01"]
    fast, slow = metrics(pair[0]), metrics(pair[1])
    fast_loss, slow_loss = (format_column([r["val_loss"] for r in rows]) for rows in (fast, slow))
    for i in range(3):
        assert cells(curves[2 + i]) == [str(i + 1), fast_loss[i], slow_loss[i]]
        assert float(fast_loss[i]) == pytest.approx(fast[i]["val_loss"], rel=5e-4)
    at = curves.index("val_acc by epoch")
    assert cells(curves[at + 4]) == ["3", format_column([r["val_acc"] for r in fast])[2],
                                     format_column([r["val_acc"] for r in slow])[2]]


def test_runs_are_named_with_one_format_per_key_and_tiny_numbers_read_right():
    def run(name, lr, loss):
        return compare.RunData(name=name, path=Path(name), config={"optimizer": {"lr": lr}},
                               rows=({"epoch": 1, "val_loss": loss, "val_acc": None},), status={}, state="finished",
                               task="regression", monitor="val_loss", epochs=1, elapsed_s=None, started=None)

    runs = [run("a", 0.01, 4.19e-05), run("b", 3e-3, 0.31)]
    assert compare.labels(runs) == ["lr=0.010", "lr=0.003"]  # was lr=0.01 beside lr=3e-3
    table = compare.compare_table(runs).splitlines()
    assert cells(table[2])[:2] == ["lr=0.010", "4.19e-05 *"] and cells(table[3])[:2] == ["lr=0.003", "3.10e-01"]
    assert compare.labels([run("a", 1e-4, 1.0), run("b", 0.01, 1.0)]) == ["lr=1e-04", "lr=1e-02"]


def test_plot_on_a_terminal_draws_one_series_per_run(lab):
    runs = compare.load_runs([lab["fast"], lab["slow"], lab["dropout"]])
    text = re.sub(r"\x1b\[[0-9;]*m", "", compare.plot_curves(runs, width=90, height=16))
    assert "val_loss by epoch" in text and "val_acc by epoch" in text
    lines = text.splitlines()
    for marker, name in zip(compare.MARKERS, compare.labels(runs), strict=False):
        assert f"  {marker}  {name}" in lines  # the legend, under the chart: each run with its own marker
        assert f"{marker * 2} {name}" not in text  # never plotext's legend inside the plot, over the curves
    regression = compare.load_runs([lab["regression"]])
    assert "val_acc" not in compare.plot_curves(regression)


@pytest.mark.parametrize(("pair", "needle"), [
    (("fast", "regression"), "cannot compare runs of different task: "),
    (("fast", "by_acc"), "cannot compare runs of different monitored metric (regularization.monitor): "),
])
def test_runs_of_different_tasks_or_monitors_are_one_line_and_exit_2(lab, capsys, pair, needle):
    a, b = (lab[k] for k in pair)
    code, out, err = run_main(capsys, "compare", str(a.path), str(b.path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: " + needle) and a.name in err and b.name in err


def test_a_missing_run_names_what_exists(lab, capsys):
    runs_dir = lab["fast"].path.parent
    code, out, err = run_main(capsys, "compare", lab["fast"].name, "no-such-run", "--runs-dir", str(runs_dir))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: no run 'no-such-run' in ")
    assert all(run.name in err for run in list(lab.values())[:4])  # the five newest are named
    code, _, err = run_main(capsys, "compare", lab["fast"].name, lab["fast"].name, "--runs-dir", str(runs_dir))
    assert code == 2 and err == f"error: run {lab['fast'].name} is given twice\n"


def test_torn_lines_are_skipped_and_the_rest_used(lab, tmp_path):
    good = metrics(lab["fast"])
    torn_events = Path(shutil.copytree(lab["fast"].path, tmp_path / "torn-events"))
    lines = (torn_events / "events.jsonl").read_text().splitlines(keepends=True)
    lines.insert(3, '{"type":"StepLogged","epoch":1,"ste\n')  # a line torn in the middle
    (torn_events / "events.jsonl").write_text("".join(lines) + '{"type":"EpochEnded","epoch":4,')  # and at the end
    run = compare.load_run(torn_events)
    assert list(run.rows) == good and run.skipped == 1
    assert "torn-events: 1 torn event line(s) skipped" in compare.compare_table([run])

    torn_metrics = Path(shutil.copytree(lab["fast"].path, tmp_path / "torn-metrics"))
    (torn_metrics / "events.jsonl").unlink()
    text = (torn_metrics / "metrics.jsonl").read_text().splitlines(keepends=True)
    (torn_metrics / "metrics.jsonl").write_text(text[0] + '{"epoch": 2, "val_lo\n' + "".join(text[2:]) + '{"epoch": 4')
    run = compare.load_run(torn_metrics)
    assert list(run.rows) == [good[0], good[2]] and run.best_val_loss == min(good[0]["val_loss"], good[2]["val_loss"])


def test_compare_imports_neither_torch_nor_the_ui(lab):
    code = ("import sys; from tui_trainer.run import compare;"
            f"print(compare.compare_table(compare.load_runs([{str(lab['fast'].path)!r}, {str(lab['slow'].path)!r}])));"
            "print([m for m in ('torch', 'textual', 'plotext', 'typer') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]" and "lr=0.05" in proc.stdout
