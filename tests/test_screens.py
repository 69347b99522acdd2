"""Whole screens pinned as SVG snapshots (pytest-textual-snapshot): a run in progress at 120x36 and 80x24,
the same under NO_COLOR, the setup screen under NO_COLOR, and the Runs tab with two runs marked and compared.
(The setup screen in colour is ``test_ui.py::test_setup_screen_snapshot``.)

Every screen is drawn from fixed inputs, never a live run or the clock: a run is a folder written here
(config.toml, events.jsonl, metrics.jsonl, status.json) from made-up numbers; one "in progress" names
another host in its status, so it reads as running with no process behind it; times on screen (elapsed,
ETA) come from its events; the only line that names this machine (the device) is replaced.

When a screen changes on purpose, look at the report of what changed, then regenerate the snapshots:

    python -m pytest tests/test_screens.py --snapshot-update
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny
from tests.fakes import write_run
from tests.test_ui import ready, until
from tui_trainer.run.events import StepLogged
from tui_trainer.run.folder import RunDir
from tui_trainer.ui.app import make_app
from tui_trainer.ui.widgets.charts import SeriesChart

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    """Dates on screen, if any, in one time zone whatever the machine's."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def in_progress(tmp_path: Path) -> RunDir:
    """Epoch 4 of 8 of spirals-mlp, half done."""
    return write_run(tmp_path / "runs", "20260101-000000-spirals-mlp", tiny("train.epochs=8"), 3, finished=False)


async def shown(pilot, run: RunDir) -> None:
    """Wait until the app shows every event of ``run``, its charts are drawn, and the panels are filled."""
    screen = await ready(pilot, helper=True)
    last = [e for e in run.read_events()[0] if isinstance(e, StepLogged)][-1]
    await until(pilot, lambda: screen.view.history.last_step == last)
    charts = [screen.query_one("#loss-chart", SeriesChart), screen.query_one("#acc-chart", SeriesChart)]
    await until(pilot, lambda: all(c.series and c.replots and not c.dirty for c in charts))
    await until(pilot, lambda: "params: …" not in str(screen.query_one("#param-count").render()))
    await pilot.pause()


@pytest.mark.slow
def test_a_run_in_progress_at_120x36(snap_compare, tmp_path):
    run = in_progress(tmp_path)
    app = make_app(tiny(), tmp_path / "runs", attach=run.path)
    assert snap_compare(app, terminal_size=(120, 36), run_before=lambda pilot: shown(pilot, run))


@pytest.mark.slow
def test_a_run_in_progress_at_80x24(snap_compare, tmp_path):
    run = in_progress(tmp_path)
    app = make_app(tiny(), tmp_path / "runs", attach=run.path)
    assert snap_compare(app, terminal_size=(80, 24), run_before=lambda pilot: shown(pilot, run))


@pytest.mark.slow
def test_a_run_in_progress_without_colour(snap_compare, tmp_path, monkeypatch):
    """NO_COLOR: Textual draws greys only; the charts' series still read apart by their markers."""
    run = in_progress(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")  # read (and removed) when the app is made
    app = make_app(tiny(), tmp_path / "runs", attach=run.path)
    assert app.no_color
    assert snap_compare(app, terminal_size=(80, 24), run_before=lambda pilot: shown(pilot, run))


@pytest.mark.slow
def test_the_setup_screen_without_colour(snap_compare, tmp_path, monkeypatch):
    async def settle(pilot):
        screen = await ready(pilot, helper=True)
        await until(pilot, lambda: "4,482" in str(screen.query_one("#param-count").render()))
        screen.query_one("#device").update("cpu: (device name left out of the snapshot)")
        await pilot.pause()

    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(tiny(), tmp_path / "runs")
    assert app.no_color
    assert snap_compare(app, terminal_size=(120, 36), run_before=settle)


@pytest.mark.slow
def test_the_runs_tab_with_two_runs_marked_and_compared(snap_compare, tmp_path):
    runs = tmp_path / "runs"
    for name, lr in (("20260101-000000-spirals-mlp", "0.01"), ("20260101-010000-spirals-mlp", "0.02")):
        write_run(runs, name, tiny("train.epochs=6", f"optimizer.lr={lr}"), 6, finished=True,
                  lr_scale=float(lr) / 0.01)

    async def marked(pilot):
        screen = await ready(pilot, helper=True)
        screen.query_one("#device").update("cpu: (device name left out of the snapshot)")
        await pilot.press("8")
        table = screen.query_one("#runs-table")
        await until(pilot, lambda: table.row_count == 2)
        await pilot.press("m", "down", "m")
        cmp_loss, cmp_acc = screen.query_one("#cmp-loss", SeriesChart), screen.query_one("#cmp-acc", SeriesChart)
        await until(pilot, lambda: len(cmp_loss.series) == 2 and len(cmp_acc.series) == 2)
        await until(pilot, lambda: [str(table.get_row_at(i)[0]) for i in (0, 1)] == ["[x]", "[x]"])
        await until(pilot, lambda: all(c.replots and not c.dirty for c in (cmp_loss, cmp_acc)))
        await pilot.pause()

    app = make_app(tiny(), runs)
    assert snap_compare(app, terminal_size=(120, 36), run_before=marked)
