"""The app, driven through App.run_test() and Pilot: panels, validation, Start/Stop/Save, quit."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from tests.conftest import tiny
from tui_trainer.checkpoint import load_checkpoint
from tui_trainer.config import load_preset
from tui_trainer.events import CheckpointSaved, EpochEnded, RunFinished, StepLogged
from tui_trainer.ui.app import make_app
from tui_trainer.ui.messages import EngineEvents
from tui_trainer.ui.widgets.charts import SeriesChart, downsample
from tui_trainer.ui.widgets.fields import ConfigField

pytestmark = pytest.mark.timeout(120)


class Recorder:
    """message_hook that keeps every engine event that reached the UI, in order."""

    def __init__(self) -> None:
        self.events: list = []
        self.messages = 0

    def __call__(self, message) -> None:
        if isinstance(message, EngineEvents):
            self.messages += 1
            self.events.extend(message.events)

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]


async def until(pilot, condition, timeout: float = 60.0) -> None:
    """Wait (letting the app process messages) until condition() holds; fail after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)


@contextlib.asynccontextmanager
async def training(cfg, tmp_path, size=(120, 36)):
    """The app on ``cfg``, torch loaded and 'r' pressed: yields (pilot, screen, recorder)."""
    rec = Recorder()
    app = make_app(cfg, tmp_path / "runs")
    async with app.run_test(size=size, message_hook=rec) as pilot:
        screen = await ready(pilot)
        await pilot.press("r")
        yield pilot, screen, rec


def field(screen, dotted: str) -> ConfigField:
    section, key = dotted.split(".")
    return next(f for f in screen.query(ConfigField) if f.section == section and f.key == key)


async def ready(pilot):
    screen = pilot.app.train_screen
    await until(pilot, lambda: screen.engine_ready)
    return screen


async def test_first_frame_focus_and_panels(tmp_path):
    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.train_screen
        assert app.focused is not None and app.focused.id == "start"
        # the first frame has the Preset panel; the config panels mount right after it, then torch loads
        assert [p.border_title for p in screen.query(".panel")][0] == "Preset"
        await ready(pilot)
        titles = [p.border_title for p in screen.query(".panel")]
        assert titles == ["Preset", "Dataset", "Architecture", "Optimizer", "Regularization"]
        assert app.focused.id == "start"  # mounting the panels' inputs does not take the focus
        await until(pilot, lambda: "4,482" in str(screen.query_one("#param-count").render()))


async def test_choosing_a_preset_fills_every_panel(tmp_path):
    app = make_app(load_preset("spirals-mlp"), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        screen.query_one("#preset-select").value = "xor-mlp"
        await until(pilot, lambda: screen.cfg.name == "xor-mlp")
        await pilot.pause()
        xor = load_preset("xor-mlp")
        assert field(screen, "data.dataset").result.value == "xor"
        assert field(screen, "optimizer.name").result.value == "nesterov"
        assert field(screen, "model.hidden").query_one("Input").value == "8"
        assert field(screen, "model.activation").query_one("Select").value == "sigmoid"
        assert screen.current_config().to_dict() == {**xor.to_dict(), "name": "xor-mlp"}
        # fields that mean nothing for this optimizer are hidden, the ones that do are shown
        assert field(screen, "optimizer.momentum").display and not field(screen, "optimizer.beta1").display


async def test_invalid_lr_is_marked_and_disables_start(tmp_path):
    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        start = screen.query_one("#start")
        assert not start.disabled
        lr = field(screen, "optimizer.lr")
        lr.query_one("Input").value = "-0.5"
        await pilot.pause()
        assert start.disabled and lr.has_class("-invalid")
        assert "optimizer.lr = -0.5: must be > 0" in str(screen.query_one("#panel-optimizer .panel-error").render())
        await pilot.press("r")  # the key does nothing while a field is invalid
        assert not screen.training
        lr.query_one("Input").value = "0.02"
        await pilot.pause()
        assert not start.disabled and not lr.has_class("-invalid")
        assert screen.current_config().optimizer.lr == 0.02


async def test_start_trains_and_charts_receive_points(tmp_path):
    async with training(tiny("train.epochs=3"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(RunFinished))
        assert [e.epoch for e in rec.of(EpochEnded)] == [1, 2, 3]
        assert rec.of(RunFinished)[0].reason == "completed"
        assert rec.messages < len(rec.events)  # events arrive batched, not one message each
        loss = screen.query_one("#loss-chart", SeriesChart)
        acc = screen.query_one("#acc-chart", SeriesChart)
        assert loss.series["val"][1] == tuple(e.val_loss for e in rec.of(EpochEnded))
        assert acc.series["val"][1] == tuple(e.val_acc for e in rec.of(EpochEnded))
        assert len(loss.series["train (steps)"][0]) == len(rec.of(StepLogged))
        await until(pilot, lambda: loss.replots >= 1 and not loss.dirty)  # the chart timer redraws
        assert not screen.training and not screen.query_one("#setup").disabled
        assert not screen.query_one("#start").disabled
        assert "completed 3 epochs" in str(screen.query_one("#progress").render())


async def test_save_writes_a_checkpoint_while_the_run_continues_and_stop_ends_it(tmp_path):
    async with training(tiny("train.epochs=500", "data.n_samples=2000", "train.log_every=1"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(EpochEnded))
        assert screen.training and screen.query_one("#setup").disabled  # panels are locked while training
        assert screen.query_one("#start").disabled and not screen.query_one("#stop").disabled
        await pilot.press("c")
        await until(pilot, lambda: [e for e in rec.of(CheckpointSaved) if e.kind == "manual"])
        saved = [e for e in rec.of(CheckpointSaved) if e.kind == "manual"][0]
        assert Path(saved.path).is_file() and load_checkpoint(saved.path)["step"] == saved.step
        steps_at_save = saved.step
        await until(pilot, lambda: rec.of(StepLogged)[-1].step > steps_at_save + 5)
        assert screen.training  # the run went on
        await pilot.press("s")
        await until(pilot, lambda: rec.of(RunFinished))
        done = rec.of(RunFinished)[0]
        assert done.reason == "stopped"
        last = load_checkpoint(done.last_checkpoint)
        assert last["step"] == done.step and last["step"] > steps_at_save
        assert not screen.training


async def test_quit_mid_run_saves_last_and_leaves_no_thread(tmp_path):
    async with training(tiny("train.epochs=500", "data.n_samples=2000"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(StepLogged))
        worker = screen.train_worker
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await pilot.press("q")
        await until(pilot, lambda: worker.is_finished, timeout=5)
        assert loop.time() - t0 < 2.0
    assert worker.is_finished and worker.state.name == "SUCCESS"
    lasts = list((tmp_path / "runs").glob("*/checkpoints/last.pt"))
    assert len(lasts) == 1
    ck = load_checkpoint(lasts[0])
    assert ck["step"] > 0 and ck["epoch"] < 500


async def test_an_error_in_the_run_is_shown_and_unlocks_the_panels(tmp_path, monkeypatch):
    from tui_trainer import engine

    monkeypatch.setattr(engine._Run, "_train_step", lambda *a: (_ for _ in ()).throw(RuntimeError("kaboom")))
    async with training(tiny(), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(RunFinished))
        await pilot.pause()
        assert rec.of(RunFinished)[0].reason == "error"
        log = "\n".join(str(line) for line in screen.query_one("#log").lines)
        assert "error: training failed: RuntimeError: kaboom" in log
        assert not screen.query_one("#setup").disabled and not screen.training


async def test_save_as_preset_writes_the_user_preset(tmp_path):
    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        field(screen, "optimizer.lr").query_one("Input").value = "0.123"
        screen.query_one("#preset-name").value = "mine"
        await pilot.pause()
        screen.query_one("#preset-save").press()
        await pilot.pause()
    assert load_preset("mine").optimizer.lr == 0.123


async def test_small_terminal_keeps_everything_reachable(tmp_path):
    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        assert screen.query_one("#setup").region.width <= 34  # the charts get the rest
        for widget_id in ("#start", "#stop", "#save", "#loss-chart", "#acc-chart"):
            region = screen.query_one(widget_id).region
            assert region.width > 0 and region.height > 0 and region.right <= 80 and region.bottom <= 24
        setup = screen.query_one("#setup")
        assert setup.max_scroll_y > 0  # the panels scroll rather than being cut off


def test_downsample_keeps_a_few_hundred_points_and_the_mean():
    xs = list(range(10_000))
    ys = [float(i % 10) for i in xs]
    dx, dy = downsample(xs, ys, 300)
    assert len(dx) == len(dy) == 300 and dx[-1] == 9_999
    assert sum(dy) / len(dy) == pytest.approx(4.5, abs=0.1)
    assert downsample([1, 2], [3, 4]) == ([1, 2], [3, 4])


def test_setup_screen_snapshot(snap_compare, tmp_path):
    async def settle(pilot):
        screen = await ready(pilot)
        await until(pilot, lambda: "4,482" in str(screen.query_one("#param-count").render()))
        screen.query_one("#device").update("cpu: (device name left out of the snapshot)")
        await pilot.pause()

    assert snap_compare(make_app(load_preset("spirals-mlp"), tmp_path / "runs"), terminal_size=(120, 36), run_before=settle)


async def test_insight_views_fill_during_and_after_a_run(tmp_path):
    from tui_trainer.events import Boundary, ClassResults

    async with training(tiny("train.epochs=4", "train.log_every=2", preset="moons-mlp"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(RunFinished))
        await pilot.pause()
        boundaries = rec.of(Boundary)
        assert [b.epoch for b in boundaries] == [1, 2, 3, 4]
        view = screen.query_one("#boundary").render().plain
        assert view.startswith(("·", "░")) and "epoch 4: regions" in view and "o" in view and "x" in view
        results = rec.of(ClassResults)[0]
        assert sum(map(sum, results.confusion)) == 80
        assert "per-class accuracy" in screen.query_one("#results").render().plain
        grad = screen.query_one("#grad-chart", SeriesChart)
        assert set(grad.series) == {"layers.1", "layers.3", "layers.5"}
        screen.query_one("#tabs").active = "tab-gradients"
        await until(pilot, lambda: grad.replots >= 1 and not grad.dirty)  # redrawn once its tab shows


async def test_learning_rate_change_during_a_run_is_logged_marked_and_saved(tmp_path):
    async with training(tiny("train.epochs=500", "data.n_samples=2000", "train.log_every=1"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(StepLogged))
        await pilot.press("l")
        await until(pilot, lambda: pilot.app.screen.__class__.__name__ == "LearningRateDialog")
        pilot.app.screen.query_one("#lr-input").value = "-1"
        await pilot.press("enter")
        assert "must be > 0" in str(pilot.app.screen.query_one("#lr-error").render())
        pilot.app.screen.query_one("#lr-input").value = "0.0025"
        await pilot.press("enter")
        await until(pilot, lambda: any(getattr(e, "text", "").startswith("learning rate set to 0.0025") for e in rec.events))
        assert screen.query_one("#loss-chart", SeriesChart).markers
        await until(pilot, lambda: rec.of(StepLogged)[-1].lr == 0.0025)
        await pilot.press("s")
        await until(pilot, lambda: rec.of(RunFinished))
        ck = load_checkpoint(rec.of(RunFinished)[0].last_checkpoint)
        assert ck["optimizer"]["param_groups"][0]["lr"] == 0.0025


async def test_a_late_parameter_count_from_an_older_request_is_dropped(tmp_path):
    from tui_trainer.engine import describe_model
    from tui_trainer.ui.messages import ModelInfo

    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        count = screen.query_one("#param-count")
        await until(pilot, lambda: "4,482" in str(count.render()))
        field(screen, "model.hidden").query_one("Input").value = "8"
        await until(pilot, lambda: screen.values["model"]["hidden"] == [8])
        now = f"params: {describe_model(screen.current_config())[0]:,}"
        await until(pilot, lambda: str(count.render()) == now)
        screen.post_message(ModelInfo(screen.model_request - 1, 4482, 4482, "stale"))  # the 64, 64 answer, late
        await pilot.pause()
        assert now != "params: 4,482" and str(count.render()) == now


async def test_device_line_shows_cuda_memory_from_the_engine_events(tmp_path):
    """The engine puts (allocated, free) into each StepLogged on CUDA; the device line shows it.
    No GPU here: the event is made by hand, with what a CUDA run would send."""
    from tui_trainer.events import StepLogged
    from tui_trainer.ui.messages import EngineEvents

    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        device = screen.query_one("#device")
        before = str(device.render())
        screen.post_message(EngineEvents((StepLogged(1, 20, 20, 100, 0.5, 1e-3, 1000.0, 1.0, (),
                                                     (3 * 2**30, 70 * 2**30)),)))
        await until(pilot, lambda: "GiB" in str(device.render()))
        assert str(device.render()) == f"{before}  3.00 GiB in use, 70.0 GiB free"


async def test_lr_finder_in_the_app_suggests_and_applies(tmp_path, monkeypatch):
    import threading

    import tui_trainer.lrfind

    gate, real = threading.Event(), tui_trainer.lrfind.lr_find
    monkeypatch.setattr(tui_trainer.lrfind, "lr_find", lambda cfg, **kw: real(cfg, **kw) if gate.wait(60) else None)
    app = make_app(tiny("data.n_samples=2000", preset="moons-mlp"), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        await pilot.press("f")
        await pilot.press("r")  # refused while the finder sweeps: two trainings would share the RNG
        assert not screen.training and not (tmp_path / "runs").exists()
        gate.set()
        await until(pilot, lambda: screen.lr_suggestion is not None)
        assert screen.query_one("#lr-chart", SeriesChart).series["loss"][0]
        await pilot.press("a")
        await pilot.pause()
        assert screen.current_config().optimizer.lr == pytest.approx(float(f"{screen.lr_suggestion:.3g}"))
        log = "\n".join(str(line) for line in screen.query_one("#log").lines)
        assert "suggested lr:" in log


async def test_every_tab_is_reachable_by_keyboard_at_80x24(tmp_path):
    from textual.widgets import TabbedContent, Tabs

    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        tabs = screen.query_one("#tabs", TabbedContent)
        screen.query_one(Tabs).focus()
        seen = [tabs.active]
        for _ in range(6):
            await pilot.press("right")
            seen.append(tabs.active)
        assert seen == ["tab-charts", "tab-log", "tab-gradients", "tab-boundary", "tab-lr", "tab-results", "tab-model"]
        pane = screen.query_one("#tab-model")
        assert pane.region.width > 20 and pane.region.height > 5 and pane.region.right <= 80


def test_first_frame_comes_before_torch_plotext_and_the_panels():
    """What the first frame waits for: not torch, not plotext, not the ~180 panel widgets."""
    import subprocess
    import sys

    code = """
import asyncio, sys
from tui_trainer.config import load_preset
from tui_trainer.ui.app import make_app
from tui_trainer.ui.screens.train import TrainScreen
seen = []
first = TrainScreen.after_first_frame
def spy(self):
    seen.append(("torch" in sys.modules, "plotext" in sys.modules, len(self.query("ConfigField"))))
    first(self)
TrainScreen.after_first_frame = spy
async def main():
    async with make_app(load_preset("spirals-mlp")).run_test() as pilot:
        for _ in range(500):
            if pilot.app.screen.query("ConfigField") and pilot.app.screen.query("SeriesChart"):
                break
            await pilot.pause(0.01)
        print(seen, len(pilot.app.screen.query("ConfigField")), len(pilot.app.screen.query("SeriesChart")))
asyncio.run(main())
"""
    from tui_trainer.ui.widgets.panels import PANELS

    fields = sum(len(keys) for keys in PANELS.values())
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["[(False,", "False,", "0)]", str(fields), "4"], proc.stdout + proc.stderr
