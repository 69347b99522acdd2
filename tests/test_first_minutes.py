"""What a new user meets in the first minutes of the app (issue 19): keys go where the person is looking,
every panel in sight, words drawn where they belong, nothing silent. Assertions are on what the screen shows.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, screen_text, tiny
from tests.fakes import FakeClient
from tests.test_ui import ready, until
from tui_trainer.cli.launch import app_options_as_ui
from tui_trainer.config import load_preset
from tui_trainer.run.events import Boundary
from tui_trainer.ui.app import make_app
from tui_trainer.ui.widgets.boundary import render_boundary
from tui_trainer.ui.widgets.charts import SeriesChart, fit_legend
from tui_trainer.ui.widgets.lrfinder import lr_progress_text
from tui_trainer.ui.widgets.panels import EXPERT, PANELS, shown
from tui_trainer.ui.widgets.runview import TABS, RunView

pytestmark = pytest.mark.timeout(120)


@pytest.mark.slow
async def test_typing_a_preset_name_into_the_open_list_picks_it_and_starts_nothing(tmp_path):
    app = make_app(load_preset("spirals-mlp"), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        assert app.focused.id == "preset-select"  # on launch: Enter opens the list, it does not start a run
        await pilot.press("enter")
        select = screen.query_one("#preset-select")
        await until(pilot, lambda: select.expanded)
        await pilot.press(*"fashion-mnist-mlp")  # r, l, p, f, ... are commands elsewhere: here they search the list
        await pilot.press("enter")
        await until(pilot, lambda: screen.setup.cfg.name == "fashion-mnist-mlp")
        await pilot.pause()
        assert screen.handle is None and not screen.starting and screen.view.lr_finder.process is None
        assert app.screen is screen  # no learning-rate dialog (l), no help
        assert not (tmp_path / "runs").exists()  # no run was started (r)
        assert app.sub_title == "fashion-mnist-mlp"


@pytest.mark.slow
async def test_slash_opens_the_preset_list_from_anywhere(tmp_path):
    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        await pilot.press("2")  # the Log tab
        await pilot.press("slash")
        await until(pilot, lambda: screen.query_one("#preset-select").expanded)
        assert "/ Preset" in screen_text(app).splitlines()[-1]  # the footer says how to get there


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["spirals-mlp", "fashion-mnist-mlp", "moons-mlp"])
async def test_every_panel_in_sight_at_120x36(tmp_path, preset):
    """The everyday fields of all five panels are on screen at once; x shows the expert ones."""
    app = make_app(load_preset(preset), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        await pilot.pause()
        assert screen.setup.max_scroll_y == 0  # nothing below the fold
        text = screen_text(app)
        setup_column = "\n".join(line[: screen.setup.region.right] for line in text.splitlines())
        for title in ("Preset", "Dataset", "Architecture", "Optimizer", "Regularization"):
            assert f"─ {title} ─" in setup_column, title
        values = screen.setup.values
        for title, fields in PANELS.items():
            for section, key in fields:
                f = screen.setup.field(f"{section}.{key}")
                if shown(section, key, values):
                    assert f.label in setup_column, (title, key)
                    assert f.region.bottom <= 35, (title, key)
        assert "x: " in setup_column and " more" in setup_column  # the border says how to see the rest
        tab_row = next(line for line in text.splitlines() if "Charts" in line)
        assert tab_row.rstrip().endswith("  ".join(title for _id, title in TABS)), tab_row  # every tab, none cut
        split = screen.setup.field("data.split")
        assert not split.display  # an expert field at its default is folded
        await pilot.press("x")
        await pilot.pause()
        assert split.display and screen.setup.max_scroll_y > 0  # every field: the column scrolls
        await pilot.press("x")
        await pilot.pause()
        assert not split.display


def test_an_expert_field_the_preset_sets_is_shown():
    values = load_preset("lecture6-fashion-mnist-mlp").to_dict()
    assert values["data"]["split"] == "stratified"  # the notes' split: the preset sets it
    assert ("data", "split") in EXPERT and shown("data", "split", values)
    assert not shown("data", "split", load_preset("fashion-mnist-mlp").to_dict())


@pytest.mark.slow
async def test_sixty_by_twenty_shows_one_readable_chart_at_a_time_and_the_help_key(tmp_path):
    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(60, 20)) as pilot:
        screen = await ready(pilot)
        await pilot.press("e")  # the panels hidden: the charts take the width
        await pilot.pause()
        loss, acc = screen.query_one("#loss-chart"), screen.query_one("#acc-chart")
        assert loss.display and not acc.display and loss.region.height >= 9
        footer = screen_text(app).splitlines()[-1]
        assert "? Help" in footer and "v Next chart" in footer
        await pilot.press("v")
        await pilot.pause()
        assert acc.display and not loss.display and acc.region.height >= 9
        await pilot.resize_terminal(120, 36)
        await pilot.pause()
        assert loss.display and acc.display  # room for both again
        assert "Next chart" not in screen_text(app).splitlines()[-1]


@pytest.mark.slow
async def test_the_footer_says_what_p_does_and_f_during_a_run_says_why_it_waits(tmp_path):
    """n, p and s steer a fake run (tests/fakes.py), which writes the events a run writes for them."""
    client = FakeClient()
    app = make_app(tiny("train.epochs=50"), tmp_path / "runs", client=client)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        await pilot.press("n")  # no run: start one held after its first step
        await until(pilot, lambda: screen.view.history.paused and screen.live)
        assert client.runs and client.last.step_no == 1
        await pilot.pause()
        footer = screen_text(app).splitlines()[-1]
        assert "p Resume" in footer and "p Pause" not in footer
        assert str(screen.query_one("#pause").label) == "Resume"
        await pilot.press("f")
        await until(pilot, lambda: any("sweeps before a run" in str(n.message) for n in app._notifications))
        assert screen.view.lr_finder.process is None
        await pilot.press("p")
        await until(pilot, lambda: not screen.view.history.paused)
        await pilot.pause()
        assert "p Pause" in screen_text(app).splitlines()[-1] and str(screen.query_one("#pause").label) == "Pause"
        await pilot.press("s")
        await until(pilot, lambda: not screen.live)
        assert screen.handle.sent == ["resume", "stop"] and screen.handle.state() == "stopped"


@pytest.mark.slow
async def test_w_with_no_run_shown_writes_into_the_runs_folder(tmp_path):
    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("w")
        await until(pilot, lambda: list((tmp_path / "runs").glob("view-charts-*.svg")))
        assert not list(tmp_path.glob("*.svg"))  # never into the folder the app was started in


async def test_an_empty_chart_writes_its_word_in_the_themes_colours(tmp_path):
    """plotext's default for text is the next series colour on its default canvas (purple on white)."""
    from textual.color import Color

    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        chart = screen.query_one("#loss-chart", SeriesChart)
        await until(pilot, lambda: chart.replots >= 1)
        await pilot.pause()
        lines = chart.render_lines(chart.region.reset_offset)
        assert "press r to train: train and validation loss by epoch" in "".join(strip.text for strip in lines)
        await pilot.resize_terminal(80, 24)  # narrower than the words: wrapped onto two rows, none cut
        await until(pilot, lambda: "validation loss by epoch" in screen_text(app))
        assert "press r to train: train and" in screen_text(app)
        await pilot.resize_terminal(120, 36)
        await until(pilot, lambda: "press r to train: train and validation loss by epoch" in screen_text(app))
        word = [seg.style for strip in lines for seg in strip if "press" in seg.text or "train" in seg.text]
        surface = Color.parse(app.theme_variables["surface"]).rgb
        foreground = Color.parse(app.theme_variables["foreground"]).rgb
        assert word and all(style.bgcolor.get_truecolor() == surface for style in word), word
        assert all(style.color.get_truecolor() == foreground for style in word), word


def test_a_legend_that_does_not_fit_the_title_goes_under_the_chart_shortened():
    marks = [("lr=0.01, dropout=0.2", "hd"), ("lr=0.003, dropout=0.5", "dot"), ("lr=0.1, dropout=0", "+")]
    line = fit_legend("epoch  ", marks, 50)
    assert line.startswith("epoch  ▀ lr=0.01, dropout=0.2") and line.endswith(" …") and len(line) <= 50
    assert fit_legend("epoch  ", marks, 200) == "epoch  ▀ lr=0.01, dropout=0.2, • lr=0.003, dropout=0.5, + lr=0.1, dropout=0"


def test_the_boundary_legend_comes_first_and_the_grid_fits_the_height():
    rows, cols = 30, 60
    b = Boundary(epoch=3, rows=rows, cols=cols, x_range=(-1.0, 1.0), y_range=(-1.0, 1.0),
                 classes=tuple((c // 30) for _r in range(rows) for c in range(cols)), points=((0.5, 0.5, 1),))
    text = render_boundary(b, width=60, height=14)
    lines = text.plain.splitlines()
    assert lines[0].startswith("epoch 3: regions") and len(lines) <= 14
    assert "1 shown points" in lines[0] or "of 1 shown points" in text.plain


def test_log_lines_name_the_run_s_files_relative_to_its_folder_and_wait_for_the_log_widget():
    view = RunView()
    view.path = "/tmp/runs/20260101-000000-spirals-mlp"
    view.log_line("checkpoint saved: /tmp/runs/20260101-000000-spirals-mlp/checkpoints/last.pt")  # before any mount
    assert view._pending_log == [("info", "checkpoint saved: checkpoints/last.pt")]


def test_lr_finder_progress_lines_read_as_words_for_the_tab():
    line = ('{"progress": "lr-find", "sweep": 2, "max_sweeps": 4, "step": 250, "steps": 400, "lr": 0.00031, '
            '"loss": 0.6843, "steps_done": 350, "elapsed_s": 1.93}')
    assert lr_progress_text(line) == ("LR finder: sweep 2 of at most 4, step 250 of 400, lr 3.100e-04, "
                                      "smoothed loss 0.6843 (2 s)")
    assert lr_progress_text("Traceback (most recent call last):") is None
    assert lr_progress_text("[1, 2]") is None


def test_the_bare_command_takes_the_apps_options():
    assert app_options_as_ui(["--preset", "moons-mlp"]) == ["ui", "--preset", "moons-mlp"]
    assert app_options_as_ui(["--help"]) == ["--help"] and app_options_as_ui(["runs"]) == ["runs"]
    proc = subprocess.run([sys.executable, "-m", "tui_trainer", "--preset", "nope"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: unknown preset 'nope'") and len(proc.stderr.splitlines()) == 1


def _finished_run(runs, name: str, best: float, monitor: str = "val_loss"):
    """A run folder as a finished run leaves it (what the runs list reads: its status)."""
    import json

    folder = runs / name
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps({
        "state": "finished", "preset": "spirals-mlp", "epoch": 3, "epochs": 3, "best": best, "monitor": monitor,
        "created": 1.0e9, "started": 1.0e9, "ended": 1.0e9 + 30, "elapsed_s": 30.0, "reason": "completed"}))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
async def test_the_runs_tab_never_cuts_a_number(tmp_path, size):
    runs = tmp_path / "runs"
    _finished_run(runs, "20260101-000000-a-run-with-a-long-name-to-push-the-columns", 4.19e-05)
    _finished_run(runs, "20260101-000001-another-run-with-a-long-name", 0.3)
    app = make_app(tiny(), runs)
    async with app.run_test(size=size) as pilot:
        screen = await ready(pilot)
        await pilot.press("8")
        table = screen.query_one("#runs-table")
        await until(pilot, lambda: table.row_count == 2)
        # the table sizes its columns at its next idle moment after the rows arrive: wait for the frame that shows
        # them (a cut number never shows, and the wait fails)
        await until(pilot, lambda: "val_loss 4.19e-05" in screen_text(app), timeout=10)
        text = screen_text(app)
        assert "val_loss 4.19e-05" in text and "val_loss 3.00e-01" in text  # one format for the column, whole
        assert "3/3" in text
