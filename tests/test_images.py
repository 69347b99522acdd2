"""Images in the terminal: the drawing, the run's samples.json, ``evaluate --show`` and the app's Images tab.

The runs train a tiny CNN on the tests' Fashion-MNIST stand-in (tests/test_data_real.py ``fake_fashion``: each
class a bright band at its own rows), so they take a second or two and know the real class names.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.color import Color
from rich.console import Console
from rich.segment import Segment
from rich.style import Style

from tests.conftest import screen_text, tiny
from tests.test_data_real import fake_fashion
from tui_trainer.config import apply_overrides, load_preset
from tui_trainer.engine import fit
from tui_trainer.run.events import ListSink
from tui_trainer.run.folder import RunDir
from tui_trainer.run.samples import FILE_NAME, MAX_EXAMPLES, TOP_LOSSES, SampleSet, from_json, read_samples, to_json
from tui_trainer.ui.pictures import (
    UPPER_HALF,
    Picture,
    PictureGrid,
    grid_columns,
    grid_rows,
    lines_of,
    picture_rows,
    view_lines,
    view_pictures,
)

pytestmark = pytest.mark.timeout(180)

FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def grey(v: int) -> Color:
    return Color.from_rgb(v, v, v)


# -- drawing ----------------------------------------------------------------------------------------


def test_half_blocks_put_the_top_pixel_in_front_and_the_bottom_one_behind():
    # a 2x2 grey image: top row 0, 255; bottom row 128, 64 -> one row of two cells
    rows = picture_rows(bytes([0, 255, 128, 64]), (1, 2, 2))
    assert rows == [[Segment(UPPER_HALF, Style(color=grey(0), bgcolor=grey(128))),
                     Segment(UPPER_HALF, Style(color=grey(255), bgcolor=grey(64)))]]
    # 4 wide, 2 high, two equal cells in a row become one segment of two half blocks
    rows = picture_rows(bytes([10, 10, 200, 30, 20, 20, 90, 30]), (1, 2, 4))
    assert [(s.text, s.style.color.triplet, s.style.bgcolor.triplet) for s in rows[0]] == [
        ("▀▀", (10, 10, 10), (20, 20, 20)), ("▀", (200, 200, 200), (90, 90, 90)), ("▀", (30, 30, 30), (30, 30, 30))]


def test_rgb_channels_and_an_odd_last_row():
    # 1 wide, 3 high RGB (channels first): red, green, blue pixels -> two cells, the last with no background
    pixels = bytes([255, 0, 0, 0, 255, 0, 0, 0, 255])  # R plane, G plane, B plane
    rows = picture_rows(pixels, (3, 3, 1))
    assert len(rows) == 2
    assert rows[0][0].style == Style(color=Color.from_rgb(255, 0, 0), bgcolor=Color.from_rgb(0, 255, 0))
    assert rows[1][0].style.color.triplet == (0, 0, 255) and rows[1][0].style.bgcolor is None
    with pytest.raises(ValueError, match="not a 1x2x2 image"):
        picture_rows(bytes(3), (1, 2, 2))


def test_the_grey_ramp_without_colour_reads_dark_to_bright():
    # 4x2: each cell is the mean of its two pixels: 0, 255, 128 (mean of 0 and 255), 60
    rows = picture_rows(bytes([0, 255, 0, 60, 0, 255, 255, 60]), (1, 2, 4), color=False)
    assert lines_of(rows) == [" @=:"]
    assert all(seg.style is None for seg in rows[0])  # no colour at all
    console = Console(width=40, file=io.StringIO(), color_system=None, force_terminal=True)
    console.print(PictureGrid([Picture(bytes([0, 255, 0, 60, 0, 255, 255, 60]), (1, 2, 4), ("bag",))]))
    assert console.file.getvalue() == " @=:\nbag\n"  # NO_COLOR / monochrome: the console decides, no escape codes


def _pictures(n: int, caption: str = "Shirt -> T-shirt/top") -> list[Picture]:
    return [Picture(bytes(range(256)) * 3 + bytes(16), (1, 28, 28), (caption, f"p=0.{i:02d}")) for i in range(n)]


@pytest.mark.parametrize(("width", "per_row"), [(80, 2), (120, 4)])
def test_the_grid_puts_as_many_per_row_as_the_width_allows(width, per_row):
    pictures = _pictures(6, caption="Ankle boot -> Sneaker, a long caption")
    assert grid_columns(28, width) == per_row
    text = lines_of(grid_rows(pictures, width, color=False))
    rows_of_pictures = -(-6 // per_row)
    assert len(text) == rows_of_pictures * (14 + 2) + rows_of_pictures - 1  # 14 cells high, 2 captions, a gap line
    assert all(len(line) <= width for line in text)
    captions = text[14]
    assert captions.count("Ankle boot -> Sneaker, a lo…") == per_row  # cut to the picture's width, marked
    assert text[15].split() == [f"p=0.{i:02d}" for i in range(per_row)]
    assert len(text[0]) == per_row * 28 + (per_row - 1) * 2


# -- the sample file -----------------------------------------------------------------------------------


def fashion_cache(tmp_path: Path, n_train: int = 400, n_test: int = 200) -> Path:
    raw = tmp_path / "cache" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, data in fake_fashion(n_train, n_test).items():
        (raw / name).write_bytes(data)
    return tmp_path / "cache"


def cnn_cfg(cache: Path, *extra: str):
    return apply_overrides(load_preset("fashion-mnist-cnn"), [
        f'data.cache_dir="{cache}"', "train.epochs=2", 'train.device="cpu"', "model.channels=[4, 8]",
        "model.hidden=[16]", "data.batch_size=32", "train.log_every=5", *extra])


@pytest.fixture
def fashion_run(tmp_path):
    """A finished 2-epoch run of a tiny CNN on the Fashion-MNIST stand-in (a learning rate too low to learn it
    all: it makes mistakes worth showing)."""
    cache = fashion_cache(tmp_path)
    result = fit(cnn_cfg(cache, "optimizer.lr=0.0003"), ListSink(), runs_dir=tmp_path / "runs")
    assert result.ok, result.message
    return result


@pytest.mark.slow
def test_each_epoch_writes_a_bounded_sample_of_the_validation_set(fashion_run):
    run = fashion_run.run_dir
    sample = read_samples(run)
    assert isinstance(sample, SampleSet) and sample.epoch == 2 and sample.val_samples == 200
    assert sample.class_names == FASHION and sample.shape == (1, 28, 28)
    assert not any("SampleSet" in line for line in (run / "events.jsonl").read_text().splitlines())  # its own file
    # the highest losses first, and each is what the model said about that validation image
    losses = [sample.example(i).loss for i in sample.top_losses]
    assert len(losses) == min(TOP_LOSSES, 200) and losses == sorted(losses, reverse=True)
    worst = sample.example(sample.top_losses[0])
    assert worst.true != worst.pred and 0 < worst.prob <= 1 and worst.loss > 0.5
    assert worst.true == worst.index % 10  # the stand-in's labels: index mod 10
    # the stand-in's pixels: the class's band of rows is bright (250) in the stored image
    band = worst.pixels[worst.true * 2 * 28: (worst.true * 2 + 4) * 28]
    assert min(band) == 250
    # the most confused pairs, worst first, with examples of exactly that pair
    counts = [n for _t, _p, n, _idx in sample.confused]
    assert counts and counts == sorted(counts, reverse=True)
    for t, p, _n, idx in sample.confused:
        assert t != p and idx and all(sample.example(i).true == t and sample.example(i).pred == p for i in idx)
    assert [c for c, _r, _w in sample.per_class] == list(range(10)) and any(w for _c, _r, w in sample.per_class)
    for c, right, wrong in sample.per_class:
        assert all(sample.example(i).pred == c == sample.example(i).true for i in right)
        assert all(sample.example(i).true == c != sample.example(i).pred for i in wrong)
    # bounded: every example stored once, at most MAX_EXAMPLES, about 1.4 bytes per pixel
    assert len(sample.examples) == len({e.index for e in sample.examples}) <= MAX_EXAMPLES
    size = (run / FILE_NAME).stat().st_size
    assert size < len(sample.examples) * 784 * 1.4 + 10_000 < 200_000
    assert from_json(to_json(sample)) == sample


@pytest.mark.parametrize(("every", "epochs"), [(0.0, [1, 2, 3]), (1e9, [1, 3])])
def test_samples_are_taken_at_most_every_so_often_and_after_the_last_epoch(tmp_path, monkeypatch, every, epochs):
    from tui_trainer.engine import watch

    monkeypatch.setattr(watch, "SAMPLE_EVERY", every)
    sink = ListSink()
    result = fit(cnn_cfg(fashion_cache(tmp_path, 200, 50), "train.epochs=3"), sink, runs_dir=tmp_path / "runs")
    assert [s.epoch for s in sink.of(SampleSet)] == epochs
    assert read_samples(result.run_dir).epoch == 3


def test_a_cnn_sample_holds_its_first_layer_filters(fashion_run):
    import torch

    sample = read_samples(fashion_run.run_dir)
    weights = next(m.weight.detach() for m in fashion_run.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert len(sample.filters) == 4 and sample.filter_shape == (1, 6, 6)  # model.channels=[4, 8]: 3x3, enlarged 2x
    for f, (lo, hi), w in zip(sample.filters, sample.filter_ranges, weights, strict=True):
        assert min(f) == 0 and max(f) == 255  # each filter from its own smallest weight to its largest
        assert lo == pytest.approx(float(w.min()), abs=1e-6) and hi == pytest.approx(float(w.max()), abs=1e-6)
        k = int(w.flatten().argmax())  # the largest weight is white, in both pixels of its enlarged 2x2 block
        assert f[(k // 3) * 2 * 6 + (k % 3) * 2] == 255 and f[(k // 3) * 2 * 6 + 6 + (k % 3) * 2 + 1] == 255
    title, pictures = view_pictures(sample, "filters")
    assert title.startswith("the first convolution's 4 filters after epoch 2") and pictures[3].caption == ("#3",)
    assert view_lines(sample, "filters")[1].startswith("filter #0: weights -")


def test_a_streamed_image_folder_of_large_images_is_stored_shrunk_in_colour(tmp_path, runs):
    from tests.test_data_real import folder_cfg, make_image_folder

    root = make_image_folder(tmp_path / "imgs")  # reddish and bluish squares, decoded per batch from disk
    cfg = folder_cfg(root, "data.image_size=64", 'data.device_resident="never"', "train.epochs=1")
    result = fit(cfg, ListSink(), runs_dir=runs)
    sample = read_samples(result.run_dir)
    assert sample.shape == (3, 48, 48) and sample.val_samples == 12 and sample.class_names == ("eva", "not_eva")
    assert len(sample.examples) == 12 and {e.true for e in sample.examples} == {0, 1}
    for e in sample.examples:  # the class is the dominant channel: red planes first, blue last
        red, blue = sum(e.pixels[:48 * 48]), sum(e.pixels[2 * 48 * 48:])
        assert (red > blue) == (e.true == 0)


def test_the_collector_reads_softmax_and_binary_heads():
    import math

    import torch

    from tui_trainer.engine.samples import SampleCollector

    collect = SampleCollector()
    collect(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]]), torch.tensor([0, 1]))
    loss, pred, prob, true = collect.table().T.tolist()
    p0 = math.exp(2) / (math.exp(2) + 2)
    assert pred == [0, 2] and true == [0, 1] and prob[0] == pytest.approx(p0)
    assert loss == pytest.approx([-math.log(p0), -math.log(1 / (2 + math.exp(3)))], rel=1e-5)
    binary = SampleCollector()  # one logit for two classes (model.head = "binary")
    binary(torch.tensor([[2.0], [-1.0]]), torch.tensor([1, 1]))
    loss, pred, prob, _true = binary.table().T.tolist()
    s2, s1 = 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1))
    assert pred == [1, 0] and prob == pytest.approx([s2, 1 - s1], rel=1e-5)
    assert loss == pytest.approx([-math.log(s2), -math.log(s1)], rel=1e-5)


def test_a_run_that_is_not_of_images_writes_no_sample(runs):
    result = fit(tiny(), ListSink(), runs_dir=runs)
    assert result.ok and not (result.run_dir / FILE_NAME).exists()


def test_the_views_caption_true_and_predicted_classes(fashion_run):
    sample = read_samples(fashion_run.run_dir)
    title, pictures = view_pictures(sample, "mistakes")
    worst = sample.example(sample.top_losses[0])
    assert title == "highest loss (epoch 2, 200 validation images): true -> predicted, its probability"
    assert pictures[0].caption == (f"{FASHION[worst.true]} -> {FASHION[worst.pred]}",
                                   f"p={worst.prob:.2f} loss {worst.loss:.2f}")
    t, p, n, _idx = sample.confused[0]
    assert view_pictures(sample, "confused")[0].startswith(f"most confused (epoch 2, 200 validation images): "
                                                           f"{FASHION[t]} -> {FASHION[p]} {n}")
    assert view_lines(sample, "confused")[1] == f"{FASHION[t]} -> {FASHION[p]}: {n} times"


# -- evaluate --show ----------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui_trainer", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_evaluate_show_mistakes_in_a_pipe_is_plain_lines(fashion_run):
    sample = read_samples(fashion_run.run_dir)  # the last epoch's: last.pt holds the same weights
    proc = cli("evaluate", str(fashion_run.run_dir / "checkpoints" / "last.pt"), "--show", "mistakes")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("highest loss (epoch 2"))
    shown = lines[start + 1:]
    assert len(shown) == len(sample.top_losses) and "▀" not in proc.stdout and "\x1b" not in proc.stdout
    expected = view_lines(sample, "mistakes")[1:]
    assert shown == expected  # the same examples, classes, probabilities and losses as the run's samples.json
    worst = sample.example(sample.top_losses[0])
    assert shown[0].startswith(f"#{worst.index} {FASHION[worst.true]} -> {FASHION[worst.pred]} p=")


@pytest.mark.slow
def test_evaluate_show_refuses_what_it_cannot_show(fashion_run, runs):
    proc = cli("evaluate", str(fashion_run.run_dir / "checkpoints" / "last.pt"), "--show", "nonsense")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "error: --show 'nonsense' is not a view; allowed: mistakes, confused, classes, filters"
    regression = fit(tiny(preset="regression-toy"), ListSink(), runs_dir=runs)
    proc = cli("evaluate", str(regression.run_dir / "checkpoints" / "last.pt"), "--show", "mistakes")
    assert proc.returncode == 2 and proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: --show mistakes:") and "regression model of regression-toy" in proc.stderr
    assert "image classifier" in proc.stderr


@pytest.mark.slow
def test_examples_draws_each_class_raw_and_as_fed_and_refuses_data_that_are_not_images(tmp_path):
    cache = fashion_cache(tmp_path)
    proc = cli("examples", "fashion-mnist-cnn", "--set", f'data.cache_dir="{cache}"', "--per-class", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "training examples, raw pixels" and "\x1b" not in proc.stdout  # a pipe: the grey ramp
    assert lines[15].split() == ["T-shirt/top", "Trouser"]  # 80 columns: two 28-wide pictures a row, one of each class
    assert lines[1][:28] == "@" * 28 and lines[2][:28] == "@" * 28  # T-shirt's bright band: rows 0-3, 2 cells
    assert set(lines[3][:28]) <= set(" .:")  # the stand-in's dark noise elsewhere (0-59 of 255)
    assert lines[2][30:58] == "@" * 28 and lines[1][30:58] != "@" * 28  # Trouser's band: rows 2-5
    fed = cli("examples", "fashion-mnist-cnn", "--set", f'data.cache_dir="{cache}"', "--set",
              'data.augment=["hflip"]', "--per-class", "1", "--fed")
    assert fed.returncode == 0 and fed.stdout.startswith("training examples as fed (scaled, augmented; values -0.81..")
    proc = cli("examples", "spirals-mlp")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("error: no images: spirals is not an image dataset (the image views show image classifiers' "
                           "data)\n")


# -- the app ---------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_the_images_tab_shows_examples_before_a_run_and_the_mistakes_of_a_run(tmp_path, monkeypatch):
    from tests.test_ui import ready, until
    from tui_trainer.ui.app import make_app

    cache = fashion_cache(tmp_path)
    result = fit(cnn_cfg(cache, "optimizer.lr=0.0003"), ListSink(), runs_dir=tmp_path / "runs")
    sample = read_samples(result.run_dir)
    app = make_app(cnn_cfg(cache), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        await pilot.press("9")
        images = screen.view.images
        await until(pilot, lambda: images.examples is not None or images.examples_error, timeout=90)
        assert images.examples_error is None
        await pilot.pause()
        text = screen_text(app)
        assert "training examples, raw pixels" in text and "t: [raw] fed" in text
        assert "T-shirt/top" in text and "Trouser" in text and "▀" in text  # captions under half-block pictures
        await pilot.press("t")
        await pilot.pause()
        assert "training examples as fed" in screen_text(app)
        screen.attach(RunDir(result.run_dir))  # a finished run: its last epoch's sample
        await until(pilot, lambda: images.sample is not None and images.view == "mistakes")
        await pilot.pause()
        text = screen_text(app)
        worst = sample.example(sample.top_losses[0])
        assert f"{FASHION[worst.true]} -> {FASHION[worst.pred]}" in text and f"p={worst.prob:.2f}" in text
        assert "highest loss (epoch 2, 200 validation images)" in text and "t: raw fed [mistakes] confused" in text


@pytest.mark.slow
async def test_the_images_tab_reads_at_80x24_without_colour(tmp_path, monkeypatch):
    from tests.test_ui import ready, until
    from tui_trainer.ui.app import make_app

    cache = fashion_cache(tmp_path)
    result = fit(cnn_cfg(cache, "optimizer.lr=0.0003"), ListSink(), runs_dir=tmp_path / "runs")
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(cnn_cfg(cache), tmp_path / "runs", attach=result.run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await pilot.press("9")
        images = screen.view.images
        await until(pilot, lambda: images.sample is not None)
        await pilot.pause()
        text = screen_text(app)
        assert "▀" not in text and "@" in text  # the grey ramp: the stand-in's bright bands are @
        assert " -> " in text and "p=0." in text
        grid = [line for line in text.splitlines() if "@" in line]
        assert grid and all(len(line.rstrip()) <= 80 for line in grid)
        assert images.sample == read_samples(result.run_dir)


@pytest.mark.slow
async def test_a_live_run_s_mistakes_are_redrawn_at_each_epoch_end(tmp_path, fashion_run):
    """What a run process does (samples.json replaced, then the epoch's end in events.jsonl) through a fake client:
    the tab shows each epoch's sample as the epoch ends."""
    import dataclasses

    from tests.fakes import FakeClient
    from tests.test_ui import ready, until
    from tui_trainer.run.samples import write_samples
    from tui_trainer.ui.app import make_app

    sample = read_samples(fashion_run.run_dir)
    client = FakeClient(("layers.1",))
    app = make_app(cnn_cfg(tmp_path / "cache"), tmp_path / "live", client=client)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        await pilot.press("r")
        await until(pilot, lambda: screen.handle is not None and client.runs)
        run = client.last
        await pilot.press("9")
        images = screen.view.images
        for epoch in (1, 2):
            write_samples(run.run.path, dataclasses.replace(sample, epoch=epoch))
            run.epoch()
            await until(pilot, lambda epoch=epoch: images.sample is not None and images.sample.epoch == epoch)
            await pilot.pause()
            assert images.view == "mistakes" and f"highest loss (epoch {epoch}," in screen_text(app)
