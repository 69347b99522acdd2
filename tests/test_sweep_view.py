"""The app's Sweep view on a real sweep (a sweep process, its trials run processes): the table, the head, the charts
against Optuna's own study, Enter to a trial and back, the best saved as a preset, the parameter scatter."""

from __future__ import annotations

import math

import pytest

from tests.conftest import screen_text
from tests.test_sweep import TINY, cli, study_of, the_sweep
from tests.test_ui import until
from tui_trainer.config import load_preset, user_preset_dir
from tui_trainer.sweep.spec import read_spec
from tui_trainer.ui.app import make_app
from tui_trainer.ui.screens.sweep import SweepScreen
from tui_trainer.ui.widgets.charts import SeriesChart

pytest.importorskip("optuna", reason="sweeps need Optuna: pip install '.[sweep]'")


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """4 trials of spirals-mlp over two keys, 2 at once, 3 epochs each, no pruning: every trial completes."""
    folder = tmp_path_factory.mktemp("sweeps")
    proc = cli("sweep", "spirals-mlp", "--param", "optimizer.lr=log:1e-3..1e-1", "--param", "model.dropout=0..0.3",
               "--trials", "4", "--parallel", "2", "--epochs", "3", "--prune", "none", "--sampler-seed", "3", *TINY,
               "--sweeps-dir", str(folder))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return the_sweep(folder)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_the_sweep_view_shows_every_trial_the_best_and_goes_to_a_trial_and_back(finished_sweep, tmp_path):
    sweep = finished_sweep
    trials = {t.number: t for t in study_of(sweep).get_trials()}
    values = {n: t.value for n, t in trials.items()}
    best = min(values, key=values.get)
    app = make_app(read_spec(sweep.spec_path).base(), tmp_path / "runs", sweep=sweep.path)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SweepScreen) and len(app.screen.history.trials) == 4)
        view = app.screen
        await until(pilot, lambda: "importance: " in screen_text(app))  # 4 finished: Optuna's importance, in a worker
        text = screen_text(app)
        assert f"sweep {sweep.name} · finished · 4/4 trials (4 complete)" in text
        assert f"best: trial {best}, val_loss " in text
        table = view.query_one("#trials")
        assert table.row_count == 4
        for row, number in enumerate(sorted(trials)):  # every trial, its state and value as the study has them
            cells = [str(c) for c in table.get_row_at(row)]
            assert cells[0] == str(number) and cells[1] == "complete"
            assert float(cells[4]) == pytest.approx(values[number], rel=1e-3)
            assert float(cells[2]) == pytest.approx(trials[number].params["optimizer.lr"], rel=1e-3)
        # the best-so-far line is the running minimum of the study's values, in trial order
        chart = view.query_one("#sweep-best", SeriesChart)
        xs, ys = chart.series["best so far"]
        expected = [min(values[n] for n in sorted(values) if n <= x) for x in xs]
        assert list(xs) == [float(n) for n in sorted(values)] and list(ys) == pytest.approx(expected)
        # the best trials' curves are their reported epochs
        curves = view.query_one("#sweep-curves", SeriesChart)
        assert f"trial {best}" in curves.series and curves.series[f"trial {best}"][0] == (1.0, 2.0, 3.0)
        # the scatter: each trial's value against the parameter shown; p shows the next one
        scatter = view.query_one("#sweep-param", SeriesChart)
        assert scatter.title == "optimizer.lr → val_loss" and scatter.xlog and "trials" in scatter.scatter
        await pilot.press("p")
        assert scatter.title == "model.dropout → val_loss" and not scatter.xlog
        assert sorted(scatter.series["trials"][1]) == pytest.approx(sorted(values.values()))

        # Enter on the best trial: the training screen shows it; g comes back
        table.move_cursor(row=sorted(trials).index(best))
        await pilot.press("enter")
        screen = app.train_screen
        await until(pilot, lambda: app.screen is screen and screen.handle is not None)
        assert str(screen.handle.path) == trials[best].user_attrs["run_dir"]
        await until(pilot, lambda: screen.view.history.finished is not None)
        assert [r["epoch"] for r in screen.view.history.rows] == [1, 2, 3]
        await pilot.press("g")
        await until(pilot, lambda: app.screen is view)

        # b: the best trial's config as a preset, with its own values
        await pilot.press("b")
        path = user_preset_dir() / f"{sweep.name}-t{best}.toml"
        await until(pilot, lambda: path.is_file())
        saved = load_preset(str(path))
        assert math.isclose(saved.optimizer.lr, trials[best].params["optimizer.lr"], rel_tol=1e-9)
        assert math.isclose(saved.model.dropout, trials[best].params["model.dropout"], rel_tol=1e-9)
        def footer() -> str:
            try:
                return next((line for line in screen_text(app).splitlines() if "Next parameter" in line), "")
            except TypeError:  # the screen shown again: no frame composed yet
                return ""

        await until(pilot, lambda: "b Save best" in footer())
        assert "Stop sweep" not in footer()  # it has ended: nothing to stop
        await pilot.press("ctrl+q")  # quits from the Sweep view as from the training screen (no run: at once)
        await until(pilot, lambda: not app.is_running)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_range_typed_into_a_field_starts_a_sweep_of_it_from_the_panels(tmp_path):
    from textual.widgets import Input

    from tests.conftest import tiny
    from tui_trainer.sweep.folder import list_sweeps

    cfg = tiny("train.epochs=2", "data.n_samples=400", "train.log_every=5", "train.device='cpu'")
    app = make_app(cfg, tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.train_screen
        await until(pilot, lambda: screen.query("#f-optimizer-lr"))
        lr = screen.setup.field("optimizer.lr")
        lr.query_one(Input).value = "log:1e-3..1e-1"
        await until(pilot, lambda: screen.setup.ranges == {"optimizer.lr": "log:1e-3..1e-1"})
        assert "optimizer.lr" not in screen.setup.invalid and screen.setup.values["optimizer"]["lr"] == cfg.optimizer.lr
        await until(pilot, lambda: "r Sweep" in screen_text(app))  # the footer follows at its next refresh
        shown = screen_text(app)
        assert "lr: a sweep searches it (r starts it)" in shown and "r Start" not in shown
        lr.query_one(Input).value = "log:1e-3..xyz"  # not a range the sweep takes: an invalid field, as before
        await until(pilot, lambda: "optimizer.lr" in screen.setup.invalid and not screen.setup.ranges)
        lr.query_one(Input).value = "log:1e-3..1e-1"
        await until(pilot, lambda: screen.setup.ranges)

        await pilot.press("r")
        await until(pilot, lambda: app.screen.query("#sweep-trials"))
        app.screen.query_one("#sweep-trials", Input).value = "3"
        app.screen.query_one("#sweep-parallel", Input).value = "2"
        app.screen.query_one("#sweep-prune", Input).value = "none"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, SweepScreen), timeout=120)
        view = app.screen
        await until(pilot, lambda: view.history.ended is not None, timeout=240)
        assert view.history.ended["state"] == "finished"
        assert {n: r.state for n, r in view.history.trials.items()} == {0: "complete", 1: "complete", 2: "complete"}
        (sweep,) = list_sweeps(tmp_path / "sweeps")  # beside the runs folder, as `sweep` puts it
        assert view.folder.path == sweep.path
        spec = read_spec(sweep.spec_path)
        assert [p.key for p in spec.params] == ["optimizer.lr"] and spec.trials == 3 and spec.parallel == 2
        for row in view.history.trials.values():  # each trial searched lr and kept the panels' other settings
            trial = load_preset(str(row.run) + "/config.toml")
            assert 1e-3 <= trial.optimizer.lr <= 1e-1 and trial.data.n_samples == 400 and trial.train.epochs == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_live_sweep_shows_each_epoch_as_it_comes_and_s_stops_it_once(tmp_path):
    """One long trial: its epochs reach the table while it trains (not when it ends); s stops the sweep once (the
    footer drops s at once: a second SIGTERM would end the sweep without its trials' ends)."""
    from tests.conftest import tiny
    from tui_trainer.sweep.folder import list_sweeps

    proc = cli("sweep", "spirals-mlp", "--param", "optimizer.lr=log:1e-3..1e-2", "--trials", "1", "--parallel", "1",
               "--epochs", "500", "--prune", "none", *TINY, "--set", "data.n_samples=2000",
               "--sweeps-dir", str(tmp_path / "sweeps"), "--detach")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sweep,) = list_sweeps(tmp_path / "sweeps")
    app = make_app(tiny(), tmp_path / "runs", sweep=sweep.path)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SweepScreen) and 0 in app.screen.history.trials, timeout=60)
        view = app.screen
        table = view.query_one("#trials")

        def epochs_shown() -> int:
            cells = [str(c) for c in table.get_row_at(0)]
            return int(cells[-2] or 0) if cells[1] == "running" else -1

        await until(pilot, lambda: epochs_shown() >= 3, timeout=120)  # still running, three epochs in
        assert view.history.trials[0].state == "running" and view.history.ended is None
        assert view.check_action("stop_sweep", ()) is True
        await pilot.press("s")
        assert view.stopping and view.check_action("stop_sweep", ()) is False  # at once, before it has ended
        await until(pilot, lambda: view.history.ended is not None, timeout=120)
        assert view.history.ended["state"] == "stopped"
        assert view.history.trials[0].state == "interrupted" and (sweep.path / "trials").is_dir()
        # the state cell grew from "running": its column grew with it (a cut "interrupt" is not what happened)
        await until(pilot, lambda: any(line.split()[:2] == ["0", "interrupted"] for line in screen_text(app).splitlines()))


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_monkey_on_the_sweep_view_and_its_trials_leaves_it_up_and_logs_no_error(finished_sweep, tmp_path):
    """80 seeded keys, clicks and resizes over the Sweep view and the trials it shows (Enter, g, p, b, s, Esc,
    arrows, tabs, letters): the app stays up, and app-errors.log (where a view's exception goes) stays empty."""
    import random

    from tests.test_app_never_dies import KEYS
    from tui_trainer.ui.guard import error_log

    rng = random.Random("sweep-view-3")
    keys = [*KEYS, "enter", "g", "p", "b", "s", "escape", "up", "down", "enter", "g"]
    app = make_app(read_spec(finished_sweep.spec_path).base(), tmp_path / "runs", sweep=finished_sweep.path)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SweepScreen) and len(app.screen.history.trials) == 4)
        for _ in range(80):
            roll = rng.random()
            if roll < 0.7:
                key = rng.choice(keys)
                await pilot.press("escape" if key in ("q", "ctrl+q", "ctrl+c") else key)  # quitting is tested elsewhere
            elif roll < 0.9:
                w, h = app.size
                await pilot.click(offset=(rng.randrange(w), rng.randrange(h)))
            else:
                await pilot.resize_terminal(rng.randint(60, 160), rng.randint(20, 48))
            if type(app.screen).__name__ == "QuitDialog":
                await pilot.press("escape")
            assert app.is_running
        await pilot.pause(0.5)
        assert not error_log().exists() or error_log().read_text() == "", error_log().read_text()
        app.show_sweep()
        await until(pilot, lambda: isinstance(app.screen, SweepScreen))
