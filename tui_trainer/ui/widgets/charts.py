"""Live charts: plotext via textual-plotext, redrawn from downsampled immutable series.

A chart owns its redraw: new points mark it dirty, and it rebuilds itself with ``replot()`` at most
``max_hz`` times a second, and only while it is on screen (a chart in a hidden tab, or folded away at a
small size, waits until it is shown). Nothing a run can send takes a chart down: points that cannot be
drawn (NaN, infinities, values <= 0 on a log axis) are left out, a log axis with fewer than two
distinct values is drawn linear, a chart with nothing to draw is an empty frame with its title,
axes and a word saying why, and if plotext still fails (a size it cannot lay out) the widget shows
that word instead of raising. Series are told apart by marker as well as colour, and a learning-rate
change is a labelled line, so the charts read without colour.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Sequence

from rich.text import Text
from textual.app import RenderResult
from textual.color import Color
from textual_plotext import PlotextPlot

from tui_trainer.errors import first_line

MAX_POINTS = 300
MARKERS = {"train (steps)": "braille", "train": "hd", "val": "dot"}
CYCLE = ("hd", "dot", "+", "x", "*", "o", "#", "@", "%", "&", "=", "$")  # further series: one marker each
GLYPH = {"braille": "⠿", "hd": "▀", "dot": "•"}  # how a marker looks, for the legend in the title


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


def fit_legend(prefix: str, marks: list[tuple[str, str]], room: int) -> str:
    """``prefix`` and as much of the legend (marker glyph and series name) as fits in ``room`` characters: whole
    entries, then "…" for the ones left out."""
    text = prefix.rstrip() if not marks else prefix
    for i, (name, marker) in enumerate(marks):
        entry = f"{GLYPH.get(marker, marker)} {name}" + (", " if i < len(marks) - 1 else "")
        if len(text) + len(entry) > room - 1:
            return text.rstrip(", ") + " …"
        text += entry
    return text


def drawable(xs: Sequence[float], ys: Sequence[float], xlog: bool, ylog: bool) -> tuple[list[float], list[float]]:
    """The points a chart can draw: finite, and > 0 on a log axis."""
    out_x, out_y = [], []
    for x, y in zip(xs, ys, strict=False):
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            continue
        if (xlog and x <= 0) or (ylog and y <= 0):
            continue
        out_x.append(float(x))
        out_y.append(float(y))
    return out_x, out_y


class SeriesChart(PlotextPlot):
    """A chart of named series; ``set_series`` stores points, and the chart redraws itself (see the module)."""

    def __init__(self, title: str, ylabel: str, *, hint: str = "no points yet", max_hz: float = 2.0,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.title, self.ylabel, self.hint = title, ylabel, hint
        self.series: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}
        self.markers: tuple[tuple[float, str], ...] = ()
        self.dirty = True
        self.replots = 0
        self.ylog = False
        self.xlog = False
        self.xlabel = "epoch"
        self.scatter: set[str] = set()  # series drawn as points alone (no line between them)
        self.empty_reason: str | None = None  # why the last replot drew no points (None: it drew some)
        self.failed: str | None = None  # why the last render fell back to text
        self._period = 1.0 / max_hz
        self._last_replot = -self._period  # monotonic seconds of the last replot: the first may come at once
        self._redraw_pending = False  # a redraw is due (at most one waits at a time)

    # -- redrawing itself -------------------------------------------------------------------

    def _changed(self) -> None:
        """New points or a new size: redraw at the next allowed moment."""
        self.dirty = True
        self._schedule_redraw()

    def _schedule_redraw(self) -> None:
        if self._redraw_pending or not self.is_mounted:
            return  # one is due already; or not mounted yet (it is shown, and then redrawn, once it is)
        self._redraw_pending = True
        delay = self._last_replot + self._period - time.monotonic()
        if delay > 0:
            self.set_timer(delay, self._redraw_due, name="chart redraw")
        else:  # the last redraw was long enough ago: once the messages queued now are handled
            self.call_later(self._redraw_due)

    def _redraw_due(self) -> None:
        self._redraw_pending = False
        if self.dirty and self.is_on_screen:  # off screen it stays dirty: on_show brings it up to date
            self.replot()

    def on_show(self) -> None:
        """Shown (its tab chosen, or unfolded): draw what arrived while it was hidden."""
        if self.dirty:
            self._schedule_redraw()

    def on_resize(self) -> None:
        """A new size may change where the legend fits."""
        self._changed()

    # -- points -------------------------------------------------------------------------------

    def set_series(self, name: str, xs: Sequence[float], ys: Sequence[float]) -> None:
        """Replace one series (immutable copies); the chart redraws itself."""
        self.series[name] = (tuple(xs), tuple(ys))
        self._changed()

    def clear_series(self, hint: str | None = None) -> None:
        """Drop every series (a new run), optionally with a new word for the empty frame."""
        self.series, self.markers = {}, ()
        if hint is not None:
            self.hint = hint
        self._changed()

    def add_marker(self, x: float, label: str = "") -> None:
        """A vertical line with a label, e.g. where the learning rate was changed by hand."""
        self.markers = (*self.markers, (x, label))
        self._changed()

    def set_markers(self, marks: Sequence[tuple[float, str]]) -> None:
        """Replace every marker."""
        self.markers = tuple(marks)
        self._changed()

    def replot(self) -> None:
        """Clear, plot and refresh this widget (UI thread only)."""
        self._configure(log_axes=True)
        self.dirty = False
        self.replots += 1
        self._last_replot = time.monotonic()
        self.refresh()

    def _configure(self, log_axes: bool) -> None:
        """Set up the plotext figure from the drawable points (``log_axes=False``: linear whatever was asked)."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        plt.xlabel(self.xlabel)
        plt.ylabel(self.ylabel)
        xlog, ylog = self.xlog and log_axes, self.ylog and log_axes
        points = {name: drawable(xs, ys, self.xlog, self.ylog) for name, (xs, ys) in self.series.items()}
        points = {name: xy for name, xy in points.items() if xy[0]}
        every_x = [x for xs, _ in points.values() for x in xs]
        every_y = [y for _, ys in points.values() for y in ys]
        self._log_axes = log_axes
        ink, paper = self._ink()
        if not every_x:
            self.empty_reason = self._why_empty()
            plt.xlim(0, 1)
            plt.ylim(0, 1)
            # wrapped to the canvas (its width less the y ticks and frame), never cut; a row apart, around the middle
            lines = textwrap.wrap(self.empty_reason, max(self.size.width - 12, 12)) or [""]
            row = 1 / max(self.size.height - 6, len(lines) + 1)
            for i, line in enumerate(lines):
                plt.text(line, 0.02, 0.5 + ((len(lines) - 1) / 2 - i) * row, alignment="left", color=ink, background=paper)
            return
        self.empty_reason = None
        if xlog and len(set(every_x)) >= 2:
            plt.xscale("log")
        if ylog and len(set(every_y)) >= 2:
            plt.yscale("log")
        marks = {name: MARKERS.get(name, CYCLE[i % len(CYCLE)]) for i, name in enumerate(points)}
        legend = ", ".join(f"{GLYPH.get(m, m)} {name}" for name, m in marks.items())
        room = self.size.width - 10  # plotext centres the title over the canvas (less the y ticks) and drops a longer one
        # The legend never goes inside the plot (it covers the curves): in the title if it fits, else on the x label's
        # row, shortened to what fits there.
        if len(self.title) + len(legend) + 2 <= room:
            plt.title(f"{self.title}: {legend}")
        else:
            if len(self.title) > room:
                plt.title(self.title[: max(room - 1, 1)] + "…")
            room = self.size.width - len(self.ylabel) - 4
            entries = list(marks.items())
            whole = fit_legend("", entries, room)  # the axis's own label goes first where the whole legend fits beside it
            with_label = fit_legend(f"{self.xlabel}  ", entries, room)
            plt.xlabel(with_label if not with_label.endswith("…") or whole.endswith("…") else whole)
        for name, (xs, ys) in points.items():
            dx, dy = downsample(xs, ys)
            (plt.scatter if name in self.scatter else plt.plot)(dx, dy, marker=marks[name])
        lo, hi = min(every_x), max(every_x)
        top = max(every_y)
        for x, label in self.markers:
            if math.isfinite(x) and (not self.xlog or x > 0) and lo <= x <= hi:
                plt.vline(x)
                if label:  # beside the line, on the side with room: never over the chart's right edge
                    right_half = (math.log(x / lo) / math.log(hi / lo) if self.xlog and lo > 0 and hi > lo
                                  else (x - lo) / (hi - lo) if hi > lo else 0.0) > 0.5
                    plt.text(label, x, top, alignment="right" if right_half else "left", color=ink, background=paper)

    def _ink(self) -> tuple[tuple[int, int, int] | str, tuple[int, int, int] | str]:
        """Text colour and background for words drawn in the plot: the theme's own. plotext's defaults are the next
        series colour on its default canvas (purple on white: a box over the chart in a browser)."""
        try:
            variables = self.app.theme_variables
            return Color.parse(variables["foreground"]).rgb, Color.parse(variables["surface"]).rgb
        except Exception:  # noqa: BLE001 - no app or no such variable: plotext's own choice
            return "default", "default"

    def _why_empty(self) -> str:
        """The word an empty frame shows."""
        raw = [(x, y) for xs, ys in self.series.values() for x, y in zip(xs, ys, strict=False)]
        if not raw:
            return self.hint
        finite = [(x, y) for x, y in raw if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
        if finite and (self.xlog or self.ylog):
            return "nothing to draw on a log axis: no values above 0 yet"
        return "nothing to draw: no finite values yet"

    def render(self) -> RenderResult:
        """The chart, or its title and why it cannot be drawn at this size (never an exception)."""
        if self.size.width < 12 or self.size.height < 4:
            return Text(f"{self.title}: too small to draw", no_wrap=True, overflow="ellipsis")
        try:
            result = super().render()
        except Exception as exc:  # noqa: BLE001 - plotext fails on some values and layouts; never take the app down
            self.failed = f"{type(exc).__name__}: {first_line(exc, 80)}"
            if not getattr(self, "_log_axes", False) or not (self.xlog or self.ylog):
                return Text(f"{self.title}: cannot draw this ({self.failed}); resize or wait for more points")
            self._configure(log_axes=False)  # plotext's log axes fail on some ranges: draw linear instead
            try:
                result = super().render()
            except Exception as again:  # noqa: BLE001 - as above
                self.failed = f"{type(again).__name__}: {first_line(again, 80)}"
                return Text(f"{self.title}: cannot draw this ({self.failed}); resize or wait for more points")
        self.failed = None
        return result
