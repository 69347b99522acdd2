"""The app as a client of run processes, driven through App.run_test() and Pilot.

Runs here are real child processes (``python -m tui_trainer.runner``) where the test is about the process
(start, stop, save, detach, crash, resume, commands): the app follows its events.jsonl and steers it through its
control endpoint. Tests of what the app draws from a run's events use a fake client (tests/fakes.py) that writes
the run's folder itself, or a folder written beforehand: the same follower reads it, with no process to wait for.
Assertions are on the messages that reached the screen, the widgets, and the files the run wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny
from tests.fakes import FakeClient, write_run
from tests.faulty_runner import use_in_run_processes
from tui_trainer.config import load_preset
from tui_trainer.engine.checkpoint import load_checkpoint
from tui_trainer.errors import ConfigError
from tui_trainer.run import client as session
from tui_trainer.run.endpoint import send
from tui_trainer.run.events import CheckpointSaved, EpochEnded, LrChanged, ParamValues, RunFinished, RunStarted, StepLogged
from tui_trainer.run.folder import RunDir
from tui_trainer.run.history import shown_epoch
from tui_trainer.ui.app import make_app
from tui_trainer.ui.messages import RunEvents
from tui_trainer.ui.widgets.charts import SeriesChart, downsample
from tui_trainer.ui.widgets.fields import ConfigField

pytestmark = pytest.mark.timeout(180)


class Recorder:
    """message_hook that keeps every run event that reached the screen, in order."""

    def __init__(self) -> None:
        self.events: list = []
        self.messages = 0

    def __call__(self, message) -> None:
        if isinstance(message, RunEvents):
            self.messages += 1
            self.events.extend(message.events)

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]


async def until(pilot, condition, timeout: float = 30.0) -> None:
    """Wait (letting the app process messages) until condition() holds; fail after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)


async def ready(pilot, helper: bool = False):
    """The screen once the panels are mounted (and, with ``helper``, the helper process has said what is here)."""
    screen = pilot.app.train_screen
    await until(pilot, lambda: screen.query(ConfigField) and screen.query("SeriesChart") and
                (screen.helper_ready or not helper))
    return screen


@contextlib.asynccontextmanager
async def training(cfg, tmp_path, size=(120, 36), **app_args):
    """The app on ``cfg``, ready, and 'r' pressed: yields (pilot, screen, recorder)."""
    rec = Recorder()
    app = make_app(cfg, tmp_path / "runs", **app_args)
    async with app.run_test(size=size, message_hook=rec) as pilot:
        screen = await ready(pilot)
        await pilot.press("r")
        try:
            yield pilot, screen, rec
        finally:
            if screen.handle is not None and screen.handle.state() in ("starting", "running", "paused"):
                screen.handle.stop(timeout=60)  # asked again while it loads torch; SIGTERM if unreachable


@contextlib.asynccontextmanager
async def faking(cfg, tmp_path, size=(120, 36), layers=("layers.1", "layers.3")):
    """The app on ``cfg`` with a fake client, ready, and 'r' pressed: yields (pilot, screen, recorder, the fake run
    the app started), once the app follows it."""
    rec = Recorder()
    client = FakeClient(layers)
    app = make_app(cfg, tmp_path / "runs", client=client)
    async with app.run_test(size=size, message_hook=rec) as pilot:
        screen = await ready(pilot)
        await pilot.press("r")
        await until(pilot, lambda: screen.handle is not None and client.runs)
        yield pilot, screen, rec, client.last


def field(screen, dotted: str) -> ConfigField:
    return screen.setup.field(dotted)


def log_text(screen) -> str:
    return "\n".join(screen.view.log_lines)


@pytest.mark.slow
async def test_first_frame_focus_panels_and_parameter_count(tmp_path):
    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.train_screen
        assert app.focused is not None and app.focused.id == "preset-select"  # Enter opens the list, never starts
        assert [p.border_title for p in screen.query(".panel")][0] == "Preset"
        await ready(pilot)
        titles = [p.border_title for p in screen.query(".panel")]
        assert titles == ["Preset", "Dataset", "Architecture", "Optimizer", "Regularization"]
        assert app.focused.id == "preset-select"  # mounting the panels' inputs does not take the focus
        await ready(pilot, helper=True)
        await until(pilot, lambda: "4,482" in str(screen.query_one("#param-count").render()))
        assert str(screen.query_one("#device").render()).startswith("cpu:")


async def test_choosing_a_preset_fills_every_panel_and_the_title(tmp_path):
    app = make_app(load_preset("spirals-mlp"), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        screen.query_one("#preset-select").value = "xor-mlp"
        await until(pilot, lambda: screen.setup.cfg.name == "xor-mlp")
        await pilot.pause()
        xor = load_preset("xor-mlp")
        assert field(screen, "data.dataset").result.value == "xor"
        assert field(screen, "optimizer.name").result.value == "nesterov"
        assert field(screen, "model.hidden").query_one("Input").value == "8"
        assert screen.setup.config().to_dict() == {**xor.to_dict(), "name": "xor-mlp"}
        assert field(screen, "optimizer.momentum").display and not field(screen, "optimizer.beta1").display
        assert app.sub_title == "xor-mlp"  # the title bar follows the preset
        assert screen.query_one("#preset-description").text == xor.description
        hint = screen.query_one("#batch-hint")
        assert not hint.display  # one process: the batch size needs no explaining
        field(screen, "train.nproc").query_one("Input").value = "4"
        await until(pilot, lambda: hint.display)
        bs = xor.data.batch_size
        text = str(hint.render())
        assert text.startswith(f"{bs} per process, {4 * bs} in all (data parallel over 4 processes)")
        cores = os.cpu_count() or 1
        assert (f"more processes than this machine's {cores} CPU cores" in text) == (4 > cores)
        field(screen, "train.nproc").query_one("Input").value = ""  # invalid: the hint does not keep the old 4
        await until(pilot, lambda: not hint.display)


@pytest.mark.slow
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
        await pilot.press("escape", "r")  # Esc leaves the field; r then does nothing while a field is invalid
        assert not screen.live and not (tmp_path / "runs").exists()
        lr.query_one("Input").value = "0.02"
        await pilot.pause()
        assert not start.disabled and not lr.has_class("-invalid")
        assert screen.setup.config().optimizer.lr == 0.02


@pytest.mark.slow
async def test_a_run_trains_in_its_own_process_and_the_charts_fold_its_events(tmp_path):
    import os

    async with training(tiny("train.epochs=3"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(RunFinished))
        run = RunDir(Path(rec.of(RunFinished)[0].run_dir))
        await until(pilot, lambda: run.state() == "finished")  # status.json is written just after the last event
        status = run.read_status()
        assert status["pid"] != os.getpid() and status["state"] == "finished" and status["reason"] == "completed"
        assert [e.epoch for e in rec.of(EpochEnded)] == [1, 2, 3]
        assert rec.messages < len(rec.events)  # events arrive batched
        on_disk, _ = run.read_events()
        assert rec.events == on_disk  # the screen saw exactly what the run wrote
        loss = screen.query_one("#loss-chart", SeriesChart)
        acc = screen.query_one("#acc-chart", SeriesChart)
        assert loss.series["val"][1] == tuple(e.val_loss for e in rec.of(EpochEnded))
        assert acc.series["val"][1] == tuple(e.val_acc for e in rec.of(EpochEnded))
        assert len(loss.series["train (steps)"][0]) == len(rec.of(StepLogged))
        await until(pilot, lambda: loss.replots >= 1 and not loss.dirty)
        assert not screen.live and not screen.setup.disabled and not screen.query_one("#start").disabled
        assert "finished: completed 3 epochs" in str(screen.query_one("#progress").render())
        await until(pilot, lambda: pilot.app.focused is not None)  # focus is not lost when a run ends
        assert pilot.app.focused.id == "preset-select"


@pytest.mark.slow
async def test_save_and_stop_are_acknowledged_commands(tmp_path, monkeypatch):
    use_in_run_processes(monkeypatch, "slow@0.005")
    async with training(tiny("train.epochs=500", "train.log_every=1"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(EpochEnded))
        assert screen.live and screen.setup.disabled  # panels are locked while training
        assert screen.query_one("#start").disabled and not screen.query_one("#stop").disabled
        await pilot.press("c")
        await until(pilot, lambda: [e for e in rec.of(CheckpointSaved) if e.kind == "manual"])
        saved = [e for e in rec.of(CheckpointSaved) if e.kind == "manual"][0]
        assert load_checkpoint(saved.path)["step"] == saved.step
        await until(pilot, lambda: any(f"checkpoint saved: {Path(saved.path).name}" == str(n.message)
                                       for n in pilot.app._notifications))  # the run's acknowledgement
        assert f"checkpoint saved: {saved.path}" in log_text(screen)  # the run's own line (the Log tab: relative)
        await until(pilot, lambda: rec.of(StepLogged)[-1].step > saved.step + 5)
        await pilot.press("s")
        await until(pilot, lambda: rec.of(RunFinished))
        done = rec.of(RunFinished)[0]
        assert done.reason == "stopped"
        assert load_checkpoint(done.last_checkpoint)["step"] == done.step > saved.step
        await until(pilot, lambda: f"stop: stopping {done.message.removeprefix('stopped ')}; saving last.pt"
                    in log_text(screen))  # the acknowledgement and the run's end name the same epoch and step
        ck = load_checkpoint(saved.path)  # named by the epoch the progress line showed: the one under way
        assert Path(saved.path).name == f"manual-e{shown_epoch(ck['epoch'], ck['batch_in_epoch']):03d}-s{ck['step']:07d}.pt"


@pytest.mark.slow
async def test_quit_asks_and_detach_leaves_the_run_training(tmp_path, monkeypatch):
    use_in_run_processes(monkeypatch, "slow@0.005")
    async with training(tiny("train.epochs=500"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(StepLogged))
        await pilot.press("q")
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "QuitDialog")
        await pilot.press("escape")  # stay
        await until(pilot, lambda: pilot.app.screen is screen)
        await pilot.press("q", "d")
        await until(pilot, lambda: not pilot.app.is_running)
        handle = screen.handle
        assert handle.state() == "running"  # quitting is not stopping
        assert "is running (detached)" in screen.exit_line() and "tui-trainer attach" in screen.exit_line()
        reply = send(handle.run, "stop")
        assert reply["ok"] and handle.wait(timeout=30) == "stopped"


@pytest.mark.slow
async def test_quit_dialog_can_stop_the_run(tmp_path, monkeypatch):
    use_in_run_processes(monkeypatch, "slow@0.005")
    async with training(tiny("train.epochs=500"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(StepLogged))
        await pilot.press("ctrl+q")  # the same path as q
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "QuitDialog")
        await pilot.press("s")
        await until(pilot, lambda: not pilot.app.is_running)
    assert screen.handle.state() == "stopped"
    assert load_checkpoint(screen.handle.run.last)["step"] > 0


@pytest.mark.slow
async def test_the_quit_question_follows_a_run_that_ends_while_it_is_open(tmp_path, monkeypatch):
    use_in_run_processes(monkeypatch, "slow@0.005")
    async with training(tiny("train.epochs=500"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(StepLogged))
        await pilot.press("q")
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "QuitDialog")
        dialog = pilot.app.screen
        assert "is training" in str(dialog.query_one("#what").render())
        assert send(screen.handle.run, "stop")["ok"]  # stopped from elsewhere (another terminal)
        await until(pilot, lambda: "has ended (stopped)" in str(dialog.query_one("#what").render()))
        assert not dialog.query_one("#stop").display and str(dialog.query_one("#detach").label) == "Quit (d)"
        await pilot.press("s")  # s no longer means "stop": the run has ended, it quits
        await until(pilot, lambda: not pilot.app.is_running)
    assert screen.handle.state() == "stopped"


@pytest.mark.slow
async def test_resume_pressed_twice_resumes_once_and_the_old_end_does_not_unlock_the_panels(tmp_path, monkeypatch):
    use_in_run_processes(monkeypatch, "slow@0.005")
    async with training(tiny("train.epochs=500"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(EpochEnded))
        await pilot.press("s")
        await until(pilot, lambda: not screen.live)
        run = screen.handle.run
        # what the progress line says once each batch of events is handled (what can be painted), from here on, with
        # whether the resumed session had reached the screen by then
        from tui_trainer.ui.screens.train import TrainScreen

        progress = screen.query_one("#progress")
        shown: list[tuple[str, bool]] = []
        handle_events = TrainScreen.on_run_events

        def recording(self, message) -> None:
            handle_events(self, message)
            shown.append((str(progress.render()), any(e.start_epoch > 0 for e in rec.of(RunStarted))))

        monkeypatch.setattr(TrainScreen, "on_run_events", recording)
        await pilot.press("u")
        await until(pilot, lambda: screen.handle is not None and screen.handle.resumed)
        # the folder's earlier session ended with a RunFinished; until the new session starts, that end is history
        await until(pilot, lambda: screen.view.history.finished is not None)
        assert screen.live and not screen.ended and screen.query_one("#start").disabled
        await pilot.press("u", "r", "n")  # ignored: the resumed run is going
        await until(pilot, lambda: len([e for e in rec.of(RunStarted) if e.start_epoch > 0]) == 1)
        await until(pilot, lambda: rec.of(StepLogged)[-1].epoch > rec.of(RunStarted)[-1].start_epoch)
        # until the new session started, the progress line said "resuming", never the old end as where the run stands
        before = [text for text, resumed in shown if not resumed]
        assert before and all(text.startswith(f"resuming {run.name}") for text in before), before
        await until(pilot, lambda: "resuming" not in str(progress.render()))  # and then the run's own progress
        assert screen.handle.run.path == run.path
        assert sum(isinstance(e, RunStarted) for e in run.read_events()[0]) == 2
        assert len(list((tmp_path / "runs").iterdir())) == 1  # r started nothing beside it
        with pytest.raises(ConfigError, match="already going"):  # and no second resume from elsewhere either
            session.start(load_preset(str(run.config_path)), tmp_path / "runs", resume=run.last)


@pytest.mark.slow
@pytest.mark.parametrize("snapshot", [False, True], ids=["events", "snapshot"])
async def test_attach_shows_the_whole_history_of_a_run_it_did_not_start(tmp_path, capsys, monkeypatch, snapshot):
    from tests.test_cli import run_main
    from tui_trainer.run.recorder import RunRecorder

    if snapshot:  # history.json as a long run leaves it: the app draws from it, not from every event
        monkeypatch.setattr(RunRecorder, "SNAPSHOT_EVENTS", 5)
        monkeypatch.setattr(RunRecorder, "SNAPSHOT_EVERY", 0.0)
    code, _out, err = run_main(capsys, "train", "moons-mlp", "--epochs", "4", "--runs-dir", str(tmp_path / "runs"),
                               "--set", "data.n_samples=300")
    assert code == 0, err
    run = RunDir(next((tmp_path / "runs").iterdir()))
    assert run.snapshot_path.exists() == snapshot
    rows = run.read_metrics()
    app = make_app(load_preset("spirals-mlp"), tmp_path / "runs", attach=run.path)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        # the fold has its end, and the screen has heard the follower say it ended (two messages: wait for both)
        await until(pilot, lambda: screen.view.history.finished is not None and not screen.live)
        loss = screen.query_one("#loss-chart", SeriesChart)
        assert loss.series["val"][1] == tuple(r["val_loss"] for r in rows)
        assert screen.setup.cfg.name == "moons-mlp" and screen.setup.config().train.epochs == 4  # the run's config
        assert not screen.live and "finished: completed 4 epochs" in str(screen.query_one("#progress").render())
        steps = [e for e in run.read_events()[0] if isinstance(e, StepLogged)]
        assert len(loss.series["train (steps)"][0]) == len(steps)
        await until(pilot, lambda: "completed 4 epochs" in log_text(screen))


@pytest.mark.slow
async def test_resume_from_a_checkpoint_takes_its_config_and_continues_the_curves(tmp_path, capsys):
    from tests.test_cli import run_main
    from tui_trainer.cli.common import resume_config

    code, _out, err = run_main(capsys, "train", "moons-mlp", "--epochs", "2", "--runs-dir", str(tmp_path / "runs"),
                               "--set", "data.n_samples=300")
    assert code == 0, err
    run = RunDir(next((tmp_path / "runs").iterdir()))
    first_elapsed = [e for e in run.read_events()[0] if isinstance(e, StepLogged)][-1].elapsed_s  # its last step's
    cfg = resume_config(run.last, epochs=4)
    assert cfg.name == "moons-mlp" and cfg.train.epochs == 4  # the checkpoint's own config, not the default preset
    async with training(cfg, tmp_path, resume=run.last) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(RunFinished) and rec.of(RunFinished)[-1].epoch == 4)
        assert [e.epoch for e in rec.of(EpochEnded)] == [1, 2, 3, 4]  # the old curve, then the new epochs
        assert screen.query_one("#loss-chart", SeriesChart).series["val"][0] == (1, 2, 3, 4)
        resumed_steps = [s for s in rec.of(StepLogged) if s.epoch >= 3]
        assert resumed_steps[0].elapsed_s > first_elapsed  # the clock goes on
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2, 3, 4]


@pytest.mark.slow
async def test_learning_rate_change_is_sent_marked_and_saved(tmp_path, monkeypatch):
    use_in_run_processes(monkeypatch, "slow@0.005")
    async with training(tiny("train.epochs=500", "train.log_every=1"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(StepLogged))
        await pilot.press("l")
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "LearningRateDialog")
        pilot.app.screen.query_one("#lr-input").value = "-1"
        await pilot.press("enter")
        assert "must be > 0" in str(pilot.app.screen.query_one("#lr-error").render())
        pilot.app.screen.query_one("#lr-input").value = "0.0025"
        await pilot.press("enter")
        await until(pilot, lambda: rec.of(LrChanged))
        assert rec.of(LrChanged)[0].lr == 0.0025
        await until(pilot, lambda: screen.query_one("#loss-chart", SeriesChart).markers)
        assert screen.query_one("#loss-chart", SeriesChart).markers[0][1] == "lr 0.0025"  # a labelled mark
        await until(pilot, lambda: rec.of(StepLogged)[-1].lr == 0.0025)
        await pilot.press("s")
        await until(pilot, lambda: rec.of(RunFinished))
        ck = load_checkpoint(rec.of(RunFinished)[0].last_checkpoint)
        assert ck["optimizer"]["param_groups"][0]["lr"] == 0.0025


@pytest.mark.slow
async def test_pause_and_one_step_at_a_time_show_every_parameter(tmp_path, monkeypatch):
    use_in_run_processes(monkeypatch, "slow@0.005")
    cfg = tiny("model.hidden=[3]", "train.epochs=500", "train.log_every=50")  # 2-3-2: 17 parameters
    async with training(cfg, tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(StepLogged))
        await pilot.press("p")
        await until(pilot, lambda: screen.view.history.paused)
        assert "PAUSED" in str(screen.query_one("#progress").render())
        await until(pilot, lambda: screen.check_action("step", ()) is True)
        before = len(rec.of(ParamValues))
        await pilot.press("n")
        await until(pilot, lambda: len(rec.of(ParamValues)) > before and screen.view.history.paused)
        first = rec.of(ParamValues)[-1]
        await pilot.press("n")
        await until(pilot, lambda: rec.of(ParamValues)[-1].step == first.step + 1)
        second = rec.of(ParamValues)[-1]
        assert len(second.params) == 17
        # the value a step starts from is the value the previous step ended on
        assert [p[1] for p in second.params] == pytest.approx([p[3] for p in first.params])
        table = str(screen.query_one("#params").render())
        assert "gradient" in table and second.params[0][0] in table
        await pilot.press("p")
        await until(pilot, lambda: not screen.view.history.paused)
        await until(pilot, lambda: rec.of(StepLogged)[-1].step > second.step + 10)


@pytest.mark.slow
async def test_an_error_in_the_run_is_shown_and_unlocks_the_panels(tmp_path, monkeypatch):
    use_in_run_processes(monkeypatch, "error@3")
    async with training(tiny(), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(RunFinished))
        await pilot.pause()
        assert rec.of(RunFinished)[0].reason == "error"
        assert "RuntimeError: kaboom" in log_text(screen)
        assert "failed: in epoch 1 (0 complete), step " in log_text(screen)  # said once, where it happened
        assert not screen.setup.disabled and not screen.live


@pytest.mark.slow
async def test_a_run_that_fails_at_setup_leaves_no_folder(tmp_path):
    cfg = tiny('data.dataset="imagefolder"', 'data.root="/nonexistent/images"', 'model.arch="mlp"')
    async with training(cfg, tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(RunFinished))
        assert rec.of(RunFinished)[0].reason == "invalid"
        await until(pilot, lambda: not list((tmp_path / "runs").iterdir()))
        assert "/nonexistent/images" in log_text(screen)


@pytest.mark.slow
async def test_device_that_is_not_here_is_marked_before_start(tmp_path):
    app = make_app(tiny('train.device="cuda"'), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot, helper=True)
        await pilot.pause()
        assert "train.device" in screen.setup.invalid and screen.query_one("#start").disabled
        assert "not available here" in str(screen.query_one("#panel-optimizer .panel-error").render())
        screen.setup.field("train.device").set_value("cpu")
        await pilot.pause()
        assert not screen.setup.invalid and not screen.query_one("#start").disabled


@pytest.mark.slow
async def test_lr_finder_runs_in_a_child_process_and_applies(tmp_path):
    app = make_app(tiny("data.n_samples=2000", preset="moons-mlp"), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        await pilot.press("f")
        assert screen.view.lr_finder.sweeping  # at once, before its child process is even started
        await pilot.press("f")  # a second f while the first is starting: told, not a second sweep
        await until(pilot, lambda: any("the LR finder is sweeping" in n.message for n in app._notifications))
        await until(pilot, lambda: screen.view.lr_finder.suggestion is not None, timeout=120)
        assert not screen.view.lr_finder.sweeping
        assert log_text(screen).count("LR finder: sweeping") == 1
        assert screen.query_one("#tabs").active == "tab-lr"
        assert screen.query_one("#lr-chart", SeriesChart).series["loss"][0]
        await pilot.press("a")
        await pilot.pause()
        assert screen.setup.config().optimizer.lr == pytest.approx(float(f"{screen.view.lr_finder.suggestion:.3g}"))
        assert "suggested lr:" in log_text(screen)


@pytest.mark.slow
async def test_keys_switch_tabs_help_lists_every_key_and_escape_leaves_a_field(tmp_path):
    from textual.widgets import TabbedContent

    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        tabs = screen.query_one("#tabs", TabbedContent)
        seen = []
        for key in "12345678":
            await pilot.press(key)
            seen.append(tabs.active)
        assert seen == ["tab-charts", "tab-log", "tab-gradients", "tab-boundary", "tab-lr", "tab-results", "tab-model",
                        "tab-runs"]
        await pilot.press("question_mark")
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "HelpScreen")
        keys = pilot.app.screen.query_one("#keys")
        await pilot.pause()
        lines = [keys.render_line(y).text for y in range(keys.size.height)]  # as drawn
        firsts = [line[:17].strip() for line in lines]
        for key in ("r", "s", "c", "p", "n", "l", "f", "a", "u", "d", "q", "ctrl+q, ctrl+c", "?, F1", "Esc"):
            assert any(first == key or first.startswith(key + ",") or first.endswith(", " + key)
                       for first in firsts), key
        wrapped = [line for line in lines if line.strip() and not line[:17].strip()]
        assert wrapped and all(line[17] != " " for line in wrapped), wrapped  # under its description, not column 0
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.screen is screen)
        box = field(screen, "train.epochs").query_one("Input")
        box.focus()
        await pilot.press("escape", "1")  # Esc leaves the field: "1" is a key again, not typed into it
        assert box.value == "2" and pilot.app.focused.id == "preset-select"


@pytest.mark.slow
async def test_small_terminal_keeps_everything_reachable(tmp_path):
    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        assert screen.setup.region.width <= 34  # the charts get the rest
        for widget_id in ("#start", "#stop", "#save", "#loss-chart"):
            region = screen.query_one(widget_id).region
            assert region.width > 0 and region.height > 0 and region.right <= 80 and region.bottom <= 24
        assert screen.setup.max_scroll_y > 0  # the panels scroll rather than being cut off
        loss = screen.query_one("#loss-chart").region
        assert loss.height >= 9 and not screen.query_one("#acc-chart").display  # one readable chart, v the next
        await pilot.press("e")  # hide the panels: the run view takes the width, the charts go side by side
        await pilot.pause()
        loss, acc = screen.query_one("#loss-chart").region, screen.query_one("#acc-chart").region
        assert loss.y == acc.y and loss.width >= 38 and acc.right <= 80 and loss.height >= 14


@pytest.mark.slow
async def test_runs_tab_lists_runs_and_attaches_to_one(tmp_path):
    for hour, lr in ((0, "0.01"), (1, "0.05")):  # two finished moons-mlp runs, as run processes leave them
        write_run(tmp_path / "runs", f"20260101-0{hour}0000-moons-mlp", tiny("train.epochs=2", f"optimizer.lr={lr}",
                  preset="moons-mlp"), 2, finished=True, lr_scale=float(lr) / 0.01)
    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        await pilot.press("8")
        table = screen.query_one("#runs-table")
        await until(pilot, lambda: table.row_count == 2)
        assert app.focused is table  # the list takes the keys as soon as the tab shows
        await pilot.press("m", "down", "m")  # mark both: their curves are overlaid, named by what differs
        cmp_loss = screen.query_one("#cmp-loss", SeriesChart)
        await until(pilot, lambda: len(cmp_loss.series) == 2)
        assert set(cmp_loss.series) == {"lr=0.01", "lr=0.05"}
        text = str(screen.query_one("#cmp-table").render())
        assert "differing: optimizer.lr" in text and "best val_loss" in text
        await until(pilot, lambda: [str(table.get_row_at(i)[0]) for i in (0, 1)] == ["[x]", "[x]"])
        await pilot.pause()
        shown = [table.render_line(y).text for y in (1, 2)]  # what the screen shows, not only the cell's value
        assert all(line.lstrip().startswith("[x]") for line in shown), shown
        row = table.get_row_at(0)
        assert row[1] == "finished" and str(row[2]) == "2/2" and row[5] == "moons-mlp"  # every column filled
        assert str(row[3]).startswith("val_loss ") and "moons-mlp" in row[4]
        await pilot.press("up", "enter")
        await until(pilot, lambda: screen.view.history.finished is not None)
        assert screen.handle.run.name == table.get_row_at(0)[4]
        await until(pilot, lambda: screen.query_one("#tabs").active == "tab-charts")
        loss = screen.query_one("#loss-chart", SeriesChart)
        assert len(loss.series["val"][0]) == 2
        await until(pilot, lambda: not loss.dirty)  # drawn since its tab came back
        await pilot.press("w")  # the view as an SVG, in the run's folder
        await until(pilot, lambda: list(screen.handle.path.glob("view-charts-*.svg")))
        svg = next(screen.handle.path.glob("view-charts-*.svg")).read_text()
        assert "<svg" in svg[:500]
        # what the charts drew, not only their frames: beside the two legends' "• val", the validation points
        assert svg.count("•&#160;val") == 2 and svg.count("•") >= 2 + 2 * 2, svg.count("•")


def test_downsample_keeps_a_few_hundred_points_and_the_mean():
    xs = list(range(10_000))
    ys = [float(i % 10) for i in xs]
    dx, dy = downsample(xs, ys, 300)
    assert len(dx) == len(dy) == 300 and dx[-1] == 9_999
    assert sum(dy) / len(dy) == pytest.approx(4.5, abs=0.1)
    assert downsample([1, 2], [3, 4]) == ([1, 2], [3, 4])


@pytest.mark.slow
def test_setup_screen_snapshot(snap_compare, tmp_path):
    async def settle(pilot):
        screen = await ready(pilot, helper=True)
        await until(pilot, lambda: "4,482" in str(screen.query_one("#param-count").render()))
        screen.query_one("#device").update("cpu: (device name left out of the snapshot)")
        await pilot.pause()

    assert snap_compare(make_app(load_preset("spirals-mlp"), tmp_path / "runs"), terminal_size=(120, 36), run_before=settle)


@pytest.mark.slow
def test_the_app_never_imports_torch_even_while_a_run_trains(tmp_path):
    """First frame, panels, parameter count, a whole run and its charts: torch stays out of the app's process."""
    code = f"""
import asyncio, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from tests.conftest import tiny
from tests.fakes import FakeClient, write_run
from tui_trainer.ui.app import make_app
async def main():
    app = make_app(tiny("train.epochs=2"), {str(tmp_path / "runs")!r})
    async with app.run_test() as pilot:
        s = app.train_screen
        for _ in range(3000):
            await pilot.pause(0.02)
            if s.helper_ready and "4,482" in str(s.query_one("#param-count").render()):
                break
        await pilot.press("r")
        for _ in range(3000):
            await pilot.pause(0.02)
            if s.view.history.finished is not None:
                break
        print(s.view.history.finished.reason, "torch" in sys.modules, "plotext" in sys.modules)
asyncio.run(main())
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=150)
    assert proc.stdout.split() == ["completed", "False", "True"], proc.stdout + proc.stderr


def test_first_frame_comes_before_plotext_and_the_panels():
    """What the first frame waits for: not torch, not plotext, not the ~180 panel widgets."""
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
    # 9 charts: loss, accuracy, gradients, LR finder, the two of the Runs tab's comparison and the Machine tab's three
    assert proc.stdout.split() == ["[(False,", "False,", "0)]", str(fields), "9"], proc.stdout + proc.stderr




@pytest.mark.slow
async def test_the_autograd_example_one_step_at_a_time_shows_the_notes_gradients(tmp_path):
    """Lecture 5's network(1, 2, 1) at x=1, y=3 with the figure's weights: n starts the run held before its first
    step and takes it; the Gradients tab lists every parameter with the gradient the notes print."""
    cfg = load_preset("lecture5-autograd")
    cfg.train.epochs = 3  # one sample: one step an epoch
    rec = Recorder()
    app = make_app(cfg, tmp_path / "runs")
    async with app.run_test(size=(120, 36), message_hook=rec) as pilot:
        screen = await ready(pilot)
        await pilot.press("n")
        await until(pilot, lambda: rec.of(ParamValues) and screen.view.history.paused)
        first = rec.of(ParamValues)[0]
        assert first.step == 1
        assert [round(p[2], 4) for p in first.params] == [-0.348, -1.3032, -0.348, -1.3032, -2.9191, -2.4229, -3.3142]
        assert [round(p[3], 4) for p in first.params] == [1.0348, -0.8697, 1.0348, 2.1303, 1.2919, 2.2423, -0.6686]
        await pilot.press("3")
        table = str(screen.query_one("#params").render())
        assert "-2.9191" in table and "-3.3142" in table and "layers.3.bias " in table
        await pilot.press("n")  # the next step, from the weights the first one left
        await until(pilot, lambda: len(rec.of(ParamValues)) == 2 and screen.view.history.paused)
        assert [p[1] for p in rec.of(ParamValues)[1].params] == pytest.approx([p[3] for p in first.params])
        await pilot.press("p")  # let it run to the end
        await until(pilot, lambda: screen.view.history.finished is not None)
        assert screen.view.history.finished.reason == "completed"


def test_a_2d_classifier_emits_what_the_insight_views_show(tmp_path):
    """The run's side of the insight views (drawn below from a fake run): a decision boundary at most once a second
    of training and at the end, the per-class results of every validation sample, gradients of every layer."""
    from tui_trainer.engine import fit
    from tui_trainer.run.events import Boundary, ClassResults, ListSink

    sink = ListSink()
    result = fit(tiny("train.epochs=4", "train.log_every=2", preset="moons-mlp"), sink, runs_dir=tmp_path / "runs")
    assert result.reason == "completed"
    epochs = [b.epoch for b in sink.of(Boundary)]
    assert epochs[0] == 1 and epochs[-1] == 4 and epochs == sorted(set(epochs))
    assert (sink.of(Boundary)[-1].cols, sink.of(Boundary)[-1].rows) == (64, 24)
    results = sink.of(ClassResults)[0]
    assert sum(map(sum, results.confusion)) == 80 and "per-class accuracy" in results.text
    assert {layer.name for step in sink.of(StepLogged) for layer in step.layers} == {"layers.1", "layers.3", "layers.5"}


@pytest.mark.slow
async def test_insight_views_fill_and_fit_a_narrow_terminal(tmp_path):
    from tui_trainer.engine.report import ClassReport, format_class_report
    from tui_trainer.run.events import Boundary, ClassResults

    cfg = tiny("train.epochs=4", preset="moons-mlp")
    async with faking(cfg, tmp_path, size=(80, 24), layers=("layers.1", "layers.3", "layers.5")) as (
            pilot, screen, rec, run):
        for epoch in range(1, 5):  # what a run of moons-mlp writes (see the test above): a 64x24 grid an epoch
            run.epoch()
            run.emit(Boundary(epoch, (-1.5, 2.5), (-1.0, 1.5), 64, 24,
                              tuple(int(c > 20 + 2 * r - epoch) for r in range(24) for c in range(64)),
                              ((-1.0, 0.5, 0), (0.0, 1.0, 0), (1.0, -0.5, 1), (2.0, 0.0, 1), (0.5, 0.2, 1))))
        report = ClassReport(("0", "1"), ((38, 2), (3, 37)))
        run.emit(ClassResults(report.class_names, report.confusion, format_class_report(report)))
        run.finish()
        await until(pilot, lambda: rec.of(RunFinished) and not screen.live)
        await pilot.pause()
        await pilot.press("4")
        view = screen.query_one("#boundary")
        await until(pilot, lambda: "epoch 4: regions" in view.render().plain)
        rows = view.render().plain.splitlines()
        assert rows[0].startswith("epoch 4: regions")  # the legend first: never below the fold
        grid = rows[1:]
        assert all(len(row) <= view.size.width for row in grid)  # fitted to the pane, never a wrapped row
        assert len(grid[0]) == min(64, view.size.width) and any("o" in r or "x" in r for r in grid)
        assert view.region.bottom <= 23  # legend and grid above the footer: nothing to scroll to
        assert "per-class accuracy" in screen.query_one("#results").render().plain
        grad = screen.query_one("#grad-chart", SeriesChart)
        assert set(grad.series) == {"layers.1", "layers.3", "layers.5"}
        first = screen.handle.path
        await pilot.press("r")  # a new run: the views of the last one are cleared, not shown as this one's
        await until(pilot, lambda: screen.handle is not None and screen.handle.path != first)
        assert "per-class results appear" in screen.query_one("#results").render().plain
        assert "shown after each epoch" in view.render().plain and not grad.series


async def test_save_as_preset_lists_it_at_once_and_refuses_a_built_in_name(tmp_path):
    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        field(screen, "optimizer.lr").query_one("Input").value = "0.123"
        screen.query_one("#preset-name").value = "spirals-mlp"
        await pilot.pause()
        screen.query_one("#preset-save").press()
        await until(pilot, lambda: "taken by a built-in preset" in log_text(screen))
        screen.query_one("#preset-name").value = "mine"
        await pilot.pause()
        screen.query_one("#preset-save").press()
        await until(pilot, lambda: "saved preset mine" in log_text(screen))
        select = screen.query_one("#preset-select")
        assert select.value == "mine" and "mine" in [value for _label, value in select._options]
        assert app.sub_title == "mine"
    assert load_preset("mine").optimizer.lr == 0.123
