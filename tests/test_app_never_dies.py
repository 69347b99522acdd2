"""The app never dies: degenerate charts, an exception in a view, and a seeded monkey of keys, clicks and
resizes before, during and after training."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from textual.app import App
from textual.pilot import OutOfBounds

from tests.conftest import tiny
from tests.faulty_runner import use_in_run_processes
from tests.test_ui import ready, until
from tui_trainer.config import apply_overrides, load_preset
from tui_trainer.ui.app import make_app
from tui_trainer.ui.widgets.charts import SeriesChart
from tui_trainer.ui.widgets.runview import TABS, RunView

pytestmark = pytest.mark.timeout(300)


class ChartApp(App):
    """One chart, nothing else."""

    def __init__(self, chart: SeriesChart) -> None:
        super().__init__()
        self.chart = chart

    def compose(self):
        yield self.chart


DEGENERATE = {
    "no points": ([], []),
    "one point": ([1.0], [0.5]),
    "equal values": ([1.0, 2.0, 3.0], [0.7, 0.7, 0.7]),
    "zeros": ([1.0, 2.0], [0.0, 0.0]),
    "nan": ([1.0, 2.0, 3.0], [math.nan, math.nan, math.nan]),
    "inf and nan mixed": ([1.0, 2.0, math.inf], [math.inf, 1.0, math.nan]),
    "negative": ([1.0, 2.0], [-1.0, -2.0]),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("log", [False, True], ids=["linear", "log"])
async def test_a_chart_with_degenerate_data_draws_a_frame_and_never_raises(case, log):
    chart = SeriesChart("gradient norm", "norm", hint="no points yet")
    chart.ylog = chart.xlog = log
    xs, ys = DEGENERATE[case]
    chart.set_series("a", xs, ys)
    chart.add_marker(0.0, "lr 0")  # at 0: not drawable on a log axis
    app = ChartApp(chart)
    async with app.run_test(size=(60, 20)) as pilot:
        chart.replot()
        await pilot.pause()
        for size in ((60, 20), (30, 8), (13, 5), (8, 3), (160, 48)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            text = "".join(strip.text for strip in chart.render_lines(chart.region.reset_offset))
            assert chart.failed is None or "cannot draw" in text, (size, chart.failed)
        assert app.is_running
    drawable = [(x, y) for x, y in zip(xs, ys, strict=False) if math.isfinite(x) and math.isfinite(y)
                and (not log or (x > 0 and y > 0))]
    assert (chart.empty_reason is None) == bool(drawable)
    finite = [(x, y) for x, y in zip(xs, ys, strict=False) if math.isfinite(x) and math.isfinite(y)]
    if not xs:
        assert chart.empty_reason == "no points yet"
    elif not drawable and finite and log:
        assert chart.empty_reason == "nothing to draw on a log axis: no values above 0 yet"
    elif not drawable:
        assert chart.empty_reason == "nothing to draw: no finite values yet"


async def test_an_exception_in_a_view_is_a_notification_and_the_app_goes_on(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = RunView.show_progress

    def broken(self):
        calls["n"] += 1
        raise ZeroDivisionError("a bug in a view")

    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        monkeypatch.setattr(RunView, "show_progress", broken)
        await pilot.resize_terminal(100, 30)  # the screen's resize handler calls the broken view
        await until(pilot, lambda: calls["n"] >= 1)
        await pilot.pause()
        assert app.is_running
        notes = [str(n.message) for n in app._notifications]
        assert any("ZeroDivisionError: a bug in a view" in n for n in notes), notes
        monkeypatch.setattr(RunView, "show_progress", real)
        await pilot.press("2")  # the screen still handles keys
        assert screen.query_one("#tabs").active == "tab-log"
        await pilot.press("q")
    assert app.return_code == 0
    from tui_trainer.ui.guard import error_log

    assert "ZeroDivisionError: a bug in a view" in error_log().read_text()


async def test_a_worker_that_fails_is_a_notification_and_the_app_goes_on(tmp_path, monkeypatch):
    """Workers are exit_on_error=False: a failure would otherwise pass in silence."""
    from tui_trainer.ui.widgets import runs

    def unreadable(runs_dir):
        raise PermissionError(f"[Errno 13] Permission denied: '{runs_dir}'")

    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        monkeypatch.setattr(runs, "run_summaries", unreadable)
        await pilot.press("8")  # the Runs tab lists the runs folder in a worker
        await until(pilot, lambda: any("list runs" in str(n.message) for n in app._notifications))
        note = next(str(n.message) for n in app._notifications if "list runs" in str(n.message))
        assert "RunsTab: list runs: PermissionError: [Errno 13] Permission denied" in note, note
        await pilot.press("1")
        assert app.is_running and screen.view.active_tab == "tab-charts"


KEYS = ["r", "s", "c", "p", "n", "a", "u", "e", "l", "escape", "?", "escape", "tab", "shift+tab", "left", "right", "up",
        "down", "enter", "space", "x", "0", "7", "-", "1", "2", "3", "4", "5", "6", "7", "8", "q", "escape", "f1",
        "escape", "home", "end", "pageup", "pagedown", "backspace", "ctrl+q", "escape"]


async def _poke(pilot, rng: random.Random, steps: int, app) -> int:
    """``steps`` random keys, clicks and resizes; how many of them came while a run was training."""
    screen = app.train_screen
    training = 0
    for _ in range(steps):
        training += screen.live and screen.view.history.last_step is not None and screen.view.history.finished is None
        roll = rng.random()
        if roll < 0.55:
            key = rng.choice(KEYS)
            if key in ("q", "ctrl+q") and not screen.live:
                key = "escape"  # with no run, quitting quits (tested elsewhere): the monkey stays in
            await pilot.press(key)
        elif roll < 0.75 and app.screen is screen:  # a tab of the training screen (not under a dialog)
            tab_id = rng.choice(TABS)[0]
            try:
                await pilot.click(f"#--content-tab-{tab_id}")
            except OutOfBounds:  # scrolled out of a narrow tab bar: the user could not click it either
                pass
        elif roll < 0.9:
            w, h = app.size
            await pilot.click(offset=(rng.randrange(max(w, 1)), rng.randrange(max(h, 1))))
        else:
            await pilot.resize_terminal(rng.randint(60, 160), rng.randint(20, 48))
        if type(app.screen).__name__ == "QuitDialog" and rng.random() < 0.8:
            await pilot.press("escape")  # mostly stay; sometimes the monkey picks an answer
        assert app.is_running or not screen.is_attached
    return training


@pytest.mark.parametrize(("preset", "overrides"), [
    ("spirals-mlp", ("train.epochs=400", "data.n_samples=2000")),
    ("fashion-mnist-mlp", ("train.epochs=50", "data.subset=2000", "data.batch_size=64")),
], ids=["2d", "image"])
@pytest.mark.slow
async def test_monkey_keys_clicks_and_resizes_before_during_and_after_training(tmp_path, monkeypatch, preset, overrides):
    """A seeded monkey, about half a minute per preset on 2 cores (120 keys, clicks and resizes): the app stays up,
    and q still leaves with exit code 0."""
    from tui_trainer.data import real

    if preset.startswith("fashion") and not (real.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        overrides = (*overrides, 'data.dataset="spirals"', 'model.arch="mlp"')  # no image data here: same pokes
    use_in_run_processes(monkeypatch, "slow@0.005")
    cfg = apply_overrides(load_preset(preset), [*overrides, 'train.device="cpu"'])
    rng = random.Random(f"{preset}-7")
    app = make_app(cfg, tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        await _poke(pilot, rng, 30, app)  # before
        while app.screen is not screen:
            await pilot.press("escape")
        if not screen.live:  # the monkey may have typed into the panels: start from the preset's own settings
            screen.setup.load(cfg)
            await pilot.pause()
            await pilot.press("escape", "r")
        await until(pilot, lambda: screen.view.history.last_step is not None, timeout=120)  # training, not starting
        during = await _poke(pilot, rng, 60, app)  # during (and after, if the monkey stopped it)
        assert during >= 30, during  # the "during training" part happened while the run trained
        if screen.live and screen.handle is not None:  # it may be ending already, or still loading torch
            await asyncio.to_thread(screen.handle.stop, 60)
            await until(pilot, lambda: not screen.live, timeout=60)
        await _poke(pilot, rng, 30, app)  # after
        while app.screen is not screen:
            await pilot.press("escape")
        assert app.is_running
        await pilot.press("q")
        # a run the monkey started is still going (or still starting: the question comes once it has started)
        await until(pilot, lambda: not app.is_running or type(app.screen).__name__ == "QuitDialog", timeout=120)
        if app.is_running:
            await pilot.press("s")
        await until(pilot, lambda: not app.is_running, timeout=60)
    assert app.return_code == 0
