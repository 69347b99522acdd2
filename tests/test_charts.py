"""What a chart draws: fixed series in a fixed-size chart, read back from the rendered cells.

The other chart tests check the stored series and the redraw counters; these check the picture: each
series' marker in the cells where its points belong, on linear and log axes, and a learning-rate mark
where it was set. The canvas is found by its frame (``┌ ┐ └ ┘``), so the title, ticks and labels around
it may move without breaking the tests; a point may land one cell either way of where it is expected.
"""

from __future__ import annotations

import math

from textual.app import App

from tui_trainer.ui.widgets.charts import GLYPH, SeriesChart

HD = set("▀▄█▌▐▖▗▘▙▚▛▜▝▞▟")  # plotext's "hd" marker: quarter blocks


class ChartApp(App):
    """One chart filling the screen."""

    def __init__(self, chart: SeriesChart) -> None:
        super().__init__()
        self.chart = chart

    def compose(self):
        yield self.chart


async def drawn(chart: SeriesChart, size: tuple[int, int] = (60, 20)) -> list[str]:
    """The chart's rendered lines, as text, after one replot at ``size``."""
    async with ChartApp(chart).run_test(size=size) as pilot:
        chart.replot()
        await pilot.pause()
        return [strip.text for strip in chart.render_lines(chart.region.reset_offset)]


def canvas(lines: list[str]) -> list[str]:
    """The cells inside the plot's frame, top row first."""
    top = next(i for i, line in enumerate(lines) if "┌" in line)
    bottom = next(i for i, line in enumerate(lines) if "└" in line)
    left, right = lines[top].index("┌"), lines[top].index("┐")
    return [line[left + 1:right] for line in lines[top + 1:bottom]]


def cells(grid: list[str], glyphs: set[str]) -> set[tuple[int, int]]:
    """(row, column) of every cell showing one of ``glyphs``."""
    return {(r, c) for r, row in enumerate(grid) for c, ch in enumerate(row) if ch in glyphs}


def cell_of(grid: list[str], x: float, y: float, xs: tuple[float, float], ys: tuple[float, float]) -> tuple[int, int]:
    """Where (x, y) belongs on the canvas, the data spanning ``xs`` and ``ys`` edge to edge."""
    height, width = len(grid), len(grid[0])
    col = (x - xs[0]) / (xs[1] - xs[0]) * (width - 1)
    row = (1 - (y - ys[0]) / (ys[1] - ys[0])) * (height - 1)
    return round(row), round(col)


def near(found: set[tuple[int, int]], cell: tuple[int, int], slack: int = 1) -> bool:
    return any(abs(r - cell[0]) <= slack and abs(c - cell[1]) <= slack for r, c in found)


async def test_each_series_is_drawn_with_its_marker_where_its_points_are():
    chart = SeriesChart("loss", "loss")
    chart.set_series("val", [1, 2, 3, 4, 5], [1.0, 2.0, 3.0, 4.0, 5.0])  # rising: lower left to upper right
    chart.set_series("train", [1, 3, 5], [5.0, 3.0, 1.0])  # falling: upper left to lower right
    lines = await drawn(chart)
    assert f"{GLYPH['dot']} val" in lines[0] and f"{GLYPH['hd']} train" in lines[0]  # the legend, in the title
    grid = canvas(lines)
    height, width = len(grid), len(grid[0])
    assert height >= 10 and width >= 40
    dots, blocks = cells(grid, {"•"}), cells(grid, HD)
    for x, y in zip([1, 2, 3, 4, 5], [1.0, 2.0, 3.0, 4.0, 5.0], strict=True):
        assert near(dots, cell_of(grid, x, y, (1, 5), (1, 5))), (x, y, "\n".join(grid))
    for x, y in zip([1, 3, 5], [5.0, 3.0, 1.0], strict=True):
        assert near(blocks, cell_of(grid, x, y, (1, 5), (1, 5))), (x, y, "\n".join(grid))
    # and nowhere else: every marker lies on its own series' line, within a cell or so
    for r, c in dots:
        assert abs(r - (height - 1) * (1 - c / (width - 1))) <= 1.5, (r, c, "\n".join(grid))
    for r, c in blocks:
        assert abs(r - (height - 1) * c / (width - 1)) <= 1.5, (r, c, "\n".join(grid))
    assert not cells([row[: width // 4] for row in grid[: height // 4]], {"•"})  # upper left: no rising points
    assert not cells([row[-width // 4:] for row in grid[: height // 4]], HD)  # upper right: no falling points


async def test_a_log_axis_spaces_decades_evenly():
    chart = SeriesChart("loss", "loss")
    chart.ylog = True
    chart.set_series("val", [1, 2, 3, 4], [1.0, 10.0, 100.0, 1000.0])  # a straight line on a log axis
    grid = canvas(await drawn(chart, (50, 16)))
    dots = cells(grid, {"•"})
    for x, y in zip([1, 2, 3, 4], [1.0, 10.0, 100.0, 1000.0], strict=True):
        assert near(dots, cell_of(grid, x, math.log10(y), (1, 4), (0, 3))), (x, y, "\n".join(grid))
    # on a linear axis 10 and 100 would sit on the bottom rows, next to 1
    assert not near(dots, cell_of(grid, 2, 10 / 1000 * 3, (1, 4), (0, 3)), slack=0)
    chart = SeriesChart("loss", "loss")
    chart.ylog = True
    chart.set_series("val", [1, 2], [1.0, 100.0])  # two values are enough for a log axis
    ticks = [float(line.split("┤")[0]) for line in await drawn(chart, (50, 16)) if "┤" in line]
    assert 10.0 in ticks and ticks[0] == 100.0 and ticks[-1] == 1.0, ticks


async def test_a_learning_rate_change_is_a_labelled_vertical_line_at_its_step():
    chart = SeriesChart("loss", "loss")
    chart.set_series("train (steps)", [0, 1, 2, 3, 4], [0.9, 0.7, 0.6, 0.55, 0.5])
    chart.add_marker(2.0, "lr 0.01")
    lines = await drawn(chart)
    grid = canvas(lines)
    col = cell_of(grid, 2.0, 0.0, (0, 4), (0, 1))[1]
    column = [row[col] for row in grid]
    assert sum(ch == "│" for ch in column) >= len(grid) // 2, "\n".join(grid)  # a line down the canvas at x = 2
    assert sum(ch == "│" for row in grid for ch in row) <= len(grid) + 2  # and only there
    assert "lr 0.01" in "\n".join(lines)
    braille = {ch for row in grid for ch in row if 0x2801 <= ord(ch) <= 0x28FF}
    assert braille  # the step losses, in braille dots


async def test_an_empty_chart_is_a_frame_from_0_to_1_with_its_title_labels_and_why():
    lines = await drawn(SeriesChart("loss", "loss", hint="no points yet"), (40, 12))
    grid = canvas(lines)
    assert lines[0].strip() == "loss"
    assert grid[len(grid) // 2].strip() == "no points yet"  # the word why, inside the frame, half way up
    ticks = [line.split("┤")[0].strip() for line in lines if "┤" in line]
    assert ticks[0] == "1.00" and ticks[-1] == "0.00"
    assert lines[-2].split() == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    assert lines[-1].split() == ["loss", "epoch"]  # the y label, then the x label


async def test_series_beyond_the_named_ones_get_a_marker_each():
    chart = SeriesChart("gradient norm by layer", "norm")
    for i, name in enumerate("abcd"):
        chart.set_series(name, [1, 2, 3], [1, 2, 3 + i])
    lines = await drawn(chart, (60, 14))
    assert lines[0].strip() == "gradient norm by layer: ▀ a, • b, + c, x d"
    grid = canvas(lines)
    for glyphs in (HD, {"•"}, {"+"}, {"x"}):
        assert cells(grid, glyphs), (glyphs, "\n".join(grid))
    assert near(cells(grid, {"x"}), cell_of(grid, 3, 6, (1, 3), (1, 6)))  # d ends highest, at 6


async def test_a_legend_too_long_for_the_title_goes_under_the_plot_never_over_the_curves():
    chart = SeriesChart("gradient norm by layer", "norm")
    for name in ("layers.1", "layers.3", "layers.5", "layers.7"):
        chart.set_series(name, [1, 2, 3], [1, 2, 3])
    lines = await drawn(chart, (60, 14))
    assert lines[0].strip() == "gradient norm by layer"
    inside = "\n".join(canvas(lines))
    assert not any(name in inside for name in ("layers.1", "layers.3", "layers.5", "layers.7")), inside
    assert all(name in lines[-1] for name in ("layers.1", "layers.3", "layers.5", "layers.7"))  # the x label's row
    narrow = await drawn(chart, (40, 14))
    assert "layers.1" in narrow[-1] and narrow[-1].rstrip().endswith("…")  # as much as fits, and it says so
    assert not any(name in "\n".join(canvas(narrow)) for name in ("layers.5", "layers.7"))


async def test_a_title_too_long_for_the_chart_is_cut_with_an_ellipsis():
    chart = SeriesChart("validation loss of every marked run", "loss")
    chart.set_series("val", [1, 2], [1.0, 2.0])
    lines = await drawn(chart, (30, 12))
    assert lines[0].strip() == "validation loss of …"  # the width less the y ticks: 19 characters and the ellipsis


def test_downsample_averages_buckets_and_keeps_the_last_x():
    from tui_trainer.ui.widgets.charts import downsample

    xs = list(range(600))
    dx, dy = downsample(xs, [2.0 * x for x in xs], 300)
    assert dx == [2 * i + 0.5 for i in range(299)] + [599]  # pairs averaged; the last x is the series' own
    assert dy == [4 * i + 1.0 for i in range(300)]
    assert downsample(xs[:300], xs[:300], 300) == (xs[:300], xs[:300])  # at the limit: as is
    dx, dy = downsample(xs[:7], xs[:7], 3)  # uneven buckets: 0-1, 2-3, 4-6
    assert dx == [0.5, 2.5, 6] and dy == [0.5, 2.5, 5.0]


async def test_ten_thousand_points_are_drawn_end_to_end():
    chart = SeriesChart("loss", "loss")
    chart.set_series("val", list(range(10_000)), [x / 10_000 for x in range(10_000)])
    grid = canvas(await drawn(chart))
    dots = cells(grid, {"•"})
    assert near(dots, (len(grid) - 1, 0)) and near(dots, (0, len(grid[0]) - 1))


async def test_points_that_cannot_be_drawn_are_left_out_and_the_rest_drawn():
    chart = SeriesChart("loss", "loss")
    chart.set_series("val", [1, 2, 3, 4, 5], [1.0, math.nan, None, 4.0, 5.0])  # a gap, then the curve goes on
    grid = canvas(await drawn(chart))
    dots = cells(grid, {"•"})
    assert near(dots, cell_of(grid, 5, 5.0, (1, 5), (1, 5))) and near(dots, cell_of(grid, 1, 1.0, (1, 5), (1, 5)))
    chart = SeriesChart("gradient norm", "norm")
    chart.xlog = True
    chart.set_series("val", [0, 1, 10, 100], [1.0, 1.0, 2.0, 3.0])  # x = 0 has no place on a log axis
    lines = await drawn(chart)
    assert chart.failed is None and chart.empty_reason is None
    ticks = [float(t) for t in lines[-2].split()]
    assert ticks[0] == 1.0 and ticks[-1] == 100.0 and ticks[2] == 10.0, lines[-2]  # from 1, half-decades


async def test_a_mark_is_drawn_at_the_edges_of_the_data_and_never_outside_them():
    for x, inside in ((0.0, True), (4.0, True), (4.5, False), (-1.0, False)):
        chart = SeriesChart("loss", "loss")
        chart.set_series("val", [0, 1, 2, 3, 4], [0.9, 0.7, 0.6, 0.55, 0.5])
        chart.add_marker(x, "lr 0.01")
        grid = canvas(await drawn(chart))
        lines_down = [c for c in range(len(grid[0])) if sum(row[c] == "│" for row in grid) >= len(grid) // 2]
        assert lines_down == ([cell_of(grid, x, 0, (0, 4), (0, 1))[1]] if inside else []), (x, "\n".join(grid))
