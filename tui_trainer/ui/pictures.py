"""Images in a terminal, with Rich only (no Textual): the app's Images tab and ``evaluate --show`` draw with it.

A cell holds two pixels: the upper half block ``▀`` in the top pixel's colour on the bottom pixel's colour, so a
28x28 Fashion-MNIST item is 28x14 cells and reads over any SSH connection. Without colour (``NO_COLOR``, a
monochrome terminal, ``color=False``) each cell is a character of a grey ramp by the mean of its two pixels,
blank for black, ``@`` for white: the items still read (bright on a dark screen, as the data is).

``PictureGrid`` lays pictures out as many to a row as the width allows, each with its caption lines under it.
Measured by benchmarks/images.py: an 8x8 grid of 28x28 images draws in 28-60 ms on a shared 2-core CPU (the
grey ramp 18-28 ms), once per view change or resize: the app stays responsive.
Views of a ``run.samples.SampleSet`` (``VIEWS``: mistakes, confused, classes, filters) become pictures and captions here,
and plain lines for a pipe.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from tui_trainer.run.samples import Example, SampleSet

UPPER_HALF = "▀"
RAMP = " .:-=+*#%@"
"""Grey levels from black to white, one character each (the fallback without colour)."""
GAP = 2  # columns between two pictures of a row

VIEWS = {
    "mistakes": "the validation examples with the highest loss",
    "confused": "the most confused classes, with examples",
    "classes": "per class, examples it gets right and wrong",
    "filters": "a CNN's first-layer filters",
}
"""The views of a validation sample, by name (``evaluate --show NAME`` and the app's Images tab)."""


@dataclass(frozen=True)
class Picture:
    """One image to draw: uint8 pixels, channels first (C x H x W bytes, C is 1 or 3), and its caption lines."""

    pixels: bytes
    shape: tuple[int, int, int]
    caption: tuple[str, ...] = ()


Row = list[Segment]

_STYLES: dict[tuple[tuple[int, int, int], tuple[int, int, int] | None], Style] = {}


def _style(top: tuple[int, int, int], bottom: tuple[int, int, int] | None) -> Style:
    """The half block's style (cached: a grey image has at most 65,536 pairs, most have a few hundred)."""
    key = (top, bottom)
    style = _STYLES.get(key)
    if style is None:
        style = Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom) if bottom is not None else None)
        _STYLES[key] = style
    return style


def _pixel_rows(pixels: bytes, shape: tuple[int, int, int]) -> list[list[tuple[int, int, int]]]:
    """The image as rows of (r, g, b) (grey repeated)."""
    c, h, w = shape
    if len(pixels) != c * h * w:
        raise ValueError(f"{len(pixels)} bytes are not a {c}x{h}x{w} image")
    plane = h * w
    rows = []
    for y in range(h):
        start = y * w
        if c == 1:
            rows.append([(v, v, v) for v in pixels[start:start + w]])
        else:
            rows.append(list(zip(pixels[start:start + w], pixels[plane + start:plane + start + w],
                                 pixels[2 * plane + start:2 * plane + start + w], strict=True)))
    return rows


def _grey(rgb: tuple[int, int, int]) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def picture_rows(pixels: bytes, shape: tuple[int, int, int], color: bool = True) -> list[Row]:
    """The image as terminal rows of segments: ceil(H / 2) rows of W cells. With colour, half blocks (runs of
    one style merged into one segment); without, grey-ramp characters."""
    rows = _pixel_rows(pixels, shape)
    out: list[Row] = []
    for y in range(0, len(rows), 2):
        top = rows[y]
        bottom = rows[y + 1] if y + 1 < len(rows) else None
        if not color:
            cells = [_grey(t) if bottom is None else (_grey(t) + _grey(bottom[i])) / 2 for i, t in enumerate(top)]
            out.append([Segment("".join(RAMP[min(int(v * len(RAMP) / 256), len(RAMP) - 1)] for v in cells))])
            continue
        row: Row = []
        run_style, run = None, 0
        for i, t in enumerate(top):
            style = _style(t, bottom[i] if bottom is not None else None)
            if style is run_style:
                run += 1
                continue
            if run:
                row.append(Segment(UPPER_HALF * run, run_style))
            run_style, run = style, 1
        if run:
            row.append(Segment(UPPER_HALF * run, run_style))
        out.append(row)
    return out


def halved(p: Picture) -> Picture:
    """The picture at half its size (each 2x2 block of pixels averaged): a 28x28 item in 14x7 cells, for a view
    too low to hold it whole with its caption."""
    c, h, w = p.shape
    nh, nw = max(1, h // 2), max(1, w // 2)
    out = bytearray(c * nh * nw)
    px = p.pixels
    for ch in range(c):
        base = ch * h * w
        for y in range(nh):
            top, bottom = base + 2 * y * w, base + min(2 * y + 1, h - 1) * w
            for x in range(nw):
                x2 = min(2 * x + 1, w - 1)
                out[ch * nh * nw + y * nw + x] = (px[top + 2 * x] + px[top + x2] + px[bottom + 2 * x] + px[bottom + x2]
                                                  + 2) // 4
    return Picture(bytes(out), (c, nh, nw), p.caption)


def fit_caption(text: str, width: int) -> str:
    """A caption line cut to ``width`` (an ellipsis marks the cut) and padded to it."""
    if len(text) > width:
        text = text[:max(width - 1, 0)] + "…"
    return text.ljust(width)


def grid_columns(cell_width: int, width: int, gap: int = GAP) -> int:
    """How many pictures ``cell_width`` wide fit side by side in ``width`` columns (at least one)."""
    return max(1, (width + gap) // (cell_width + gap))


def grid_rows(pictures: list[Picture], width: int, color: bool = True, gap: int = GAP) -> list[Row]:
    """The pictures as many to a row as ``width`` allows, each with its caption under it; a blank line between
    two rows of pictures."""
    if not pictures:
        return []
    cell = max(p.shape[2] for p in pictures)
    per_row = grid_columns(cell, width, gap)
    lines: list[Row] = []
    spacer = Segment(" " * gap)
    for start in range(0, len(pictures), per_row):
        group = pictures[start:start + per_row]
        drawn = [picture_rows(p.pixels, p.shape, color) for p in group]
        height = max(len(d) for d in drawn)
        captions = max(len(p.caption) for p in group)
        if lines:
            lines.append([])
        for y in range(height):
            line: Row = []
            for i, (p, d) in enumerate(zip(group, drawn, strict=True)):
                if i:
                    line.append(spacer)
                if y < len(d):
                    line.extend(d[y])
                    pad = cell - p.shape[2]
                else:
                    pad = cell
                if pad:
                    line.append(Segment(" " * pad))
            lines.append(line)
        for k in range(captions):
            text = (" " * gap).join(fit_caption(p.caption[k] if k < len(p.caption) else "", cell) for p in group)
            lines.append([Segment(text.rstrip())])
    return lines


class PictureGrid:
    """A Rich renderable: pictures in a grid fitted to the width it is given. ``color``: None asks the console
    (no colour system, or NO_COLOR: the grey ramp)."""

    def __init__(self, pictures: list[Picture], color: bool | None = None, title: str = "") -> None:
        self.pictures, self.color, self.title = pictures, color, title

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        color = self.color if self.color is not None else (console.color_system is not None and not console.no_color)
        if self.title:
            yield Text(self.title)  # wrapped at the width, never cut
        for line in grid_rows(self.pictures, options.max_width, color):
            yield from line
            yield Segment.line()


# -- views of a validation sample ---------------------------------------------------------------


def probability(p: float) -> str:
    """A probability in two decimals ("p=0.87")."""
    return f"p={p:.2f}"


def _mistake(s: SampleSet, e: Example) -> tuple[str, ...]:
    return (f"{s.name(e.true)} -> {s.name(e.pred)}", f"{probability(e.prob)} loss {e.loss:.2f}")


def view_pictures(s: SampleSet, view: str) -> tuple[str, list[Picture]]:
    """A view's title and its pictures (``view``: a key of ``VIEWS``; KeyError for another)."""
    def pic(index: int, caption: tuple[str, ...]) -> Picture:
        return Picture(s.example(index).pixels, s.shape, caption)

    of = f"epoch {s.epoch}, {s.val_samples:,} validation images"
    if view == "mistakes":
        return (f"highest loss ({of}): true -> predicted, its probability",
                [pic(i, _mistake(s, s.example(i))) for i in s.top_losses])
    if view == "confused":
        pairs = ", ".join(f"{s.name(t)} -> {s.name(p)} {n}" for t, p, n, _idx in s.confused) or "none"
        return (f"most confused ({of}): {pairs}",
                [pic(i, (f"{s.name(t)} -> {s.name(p)}", f"{probability(s.example(i).prob)} ({n} in all)"))
                 for t, p, n, idx in s.confused for i in idx])
    if view == "classes":
        pictures = []
        for c, right, wrong in s.per_class:
            pictures += [pic(i, (f"{s.name(c)}: right", probability(s.example(i).prob))) for i in right]
            pictures += [pic(i, _mistake(s, s.example(i))) for i in wrong]
        return f"{VIEWS[view]} ({of})", pictures
    if view == "filters":
        if not s.filters:
            return "no filters to show: the model does not start with a convolution of the image", []
        return (f"the first convolution's {len(s.filters)} filters after epoch {s.epoch}, each drawn from its smallest "
                "weight (black) to its largest (white)",
                [Picture(f, s.filter_shape, (f"#{i}",)) for i, f in enumerate(s.filters)])
    raise KeyError(view)


def view_lines(s: SampleSet, view: str) -> list[str]:
    """A view as plain lines for a pipe: a title, then one line per example (class names, probability, loss)."""
    title, _pictures = view_pictures(s, view)
    lines = [title]
    if view == "mistakes":
        lines += [_line(s, s.example(i)) for i in s.top_losses]
    elif view == "confused":
        for t, p, n, idx in s.confused:
            lines.append(f"{s.name(t)} -> {s.name(p)}: {n} times")
            lines += [f"  {_line(s, s.example(i))}" for i in idx]
    elif view == "filters":
        lines += [f"filter #{i}: weights {lo:.3g} .. {hi:.3g}" for i, (lo, hi) in enumerate(s.filter_ranges)]
    else:
        for c, right, wrong in s.per_class:
            lines.append(f"{s.name(c)}:")
            lines += [f"  right {_line(s, s.example(i))}" for i in right]
            lines += [f"  wrong {_line(s, s.example(i))}" for i in wrong]
    return lines


def _line(s: SampleSet, e: Example) -> str:
    return f"#{e.index} {s.name(e.true)} -> {s.name(e.pred)} {probability(e.prob)} loss {e.loss:.3f}"


def example_pictures(reply: dict, fed: bool) -> tuple[str, list[Picture]]:
    """The training examples per class (``engine.samples.training_examples``, as the helper sends them), raw or as
    fed: a title and the pictures captioned with their class, one of each class first (the first screen shows
    every class), then the next of each."""
    names = reply["class_names"]
    shape = tuple(reply["shape"])
    seen: dict[int, int] = {}
    ranked = []
    for c, b64 in reply["fed" if fed else "raw"]:
        seen[c] = seen.get(c, -1) + 1
        ranked.append((seen[c], c, b64))
    items = [(c, b64) for _rank, c, b64 in sorted(ranked, key=lambda r: (r[0], r[1]))]  # one of each class, then again
    pictures = [Picture(base64.b64decode(b64), shape, (names[c] if c < len(names) else str(c),))  # type: ignore[arg-type]
                for c, b64 in items]
    if fed:
        lo, hi = reply["fed_range"]
        title = f"training examples as fed (scaled, augmented; values {lo:.2f}..{hi:.2f} drawn black..white)"
    else:
        title = "training examples, raw pixels"
    return title, pictures


def lines_of(rows: Iterable[Row]) -> list[str]:
    """The text of rendered rows (tests, plain output)."""
    return ["".join(seg.text for seg in row) for row in rows]
