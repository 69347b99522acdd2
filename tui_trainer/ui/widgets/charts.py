"""Live charts: plotext via textual-plotext, redrawn from downsampled immutable series.

A chart is rebuilt only by ``replot()``, which the screen calls at most ``chart_hz`` times a
second and only when new points arrived: building a plotext figure costs milliseconds of
GIL time that the training thread would otherwise spend launching kernels.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot

MAX_POINTS = 300
MARKERS = {"train (steps)": "braille", "train": "hd", "val": "dot"}


def downsample(xs: Sequence[float], ys: Sequence[float], max_points: int = MAX_POINTS) -> tuple[list, list]:
    """At most ``max_points`` points: bucket means, keeping the first and the last point's x."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    size = n / max_points
    out_x, out_y = [], []
    for i in range(max_points):
        lo, hi = int(i * size), max(int((i + 1) * size), int(i * size) + 1)
        out_x.append(sum(xs[lo:hi]) / (hi - lo))
        out_y.append(sum(ys[lo:hi]) / (hi - lo))
    out_x[-1] = xs[-1]
    return out_x, out_y


class SeriesChart(PlotextPlot):
    """A chart of named series; ``set_series`` stores points, ``replot`` draws them."""

    def __init__(self, title: str, ylabel: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title, self.ylabel = title, ylabel
        self.series: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}
        self.markers: tuple[float, ...] = ()
        self.dirty = False
        self.replots = 0
        self.ylog = False
        self.xlog = False
        self.xlabel = "epoch"

    def set_series(self, name: str, xs: Sequence[float], ys: Sequence[float]) -> None:
        """Replace one series (immutable copies) and mark the chart for the next redraw."""
        self.series[name] = (tuple(xs), tuple(ys))
        self.dirty = True

    def clear_series(self) -> None:
        """Drop every series (a new run)."""
        self.series, self.markers, self.dirty = {}, (), True

    def add_marker(self, x: float) -> None:
        """A vertical line, e.g. where the learning rate was changed by hand."""
        self.markers = (*self.markers, x)
        self.dirty = True

    def replot(self) -> None:
        """Clear, plot and refresh this widget (UI thread only)."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        plt.xlabel(self.xlabel)
        plt.ylabel(self.ylabel)
        if self.ylog:
            plt.yscale("log")
        if self.xlog:
            plt.xscale("log")
        for name, (xs, ys) in self.series.items():
            if xs:
                dx, dy = downsample(xs, ys)
                # distinct markers keep the series apart without colour (NO_COLOR, mono terminals)
                plt.plot(dx, dy, label=name, marker=MARKERS.get(name, "hd"))
        for x in self.markers:
            plt.vline(x)
        self.dirty = False
        self.replots += 1
        self.refresh()
