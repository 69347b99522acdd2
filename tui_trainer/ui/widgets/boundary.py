"""Decision boundary view: a 2-D classifier's predicted class over a grid, validation points on top.

Regions are shaded characters and points are per-class glyphs, so the view reads without
colour (NO_COLOR); colour only reinforces it.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui_trainer.run.events import Boundary

SHADES = "·░▒▓:=~-"
GLYPHS = "ox+*#@%&"
COLORS = ["dodger_blue2", "dark_orange", "green3", "magenta", "yellow3", "cyan", "red", "white"]


def render_boundary(b: Boundary, width: int | None = None, height: int | None = None) -> Text:
    """The legend, then the grid: one character per cell, a glyph where a validation point falls; at most
    ``width`` columns and ``height`` rows in all (a smaller view shows every k-th column and row of the grid,
    never a wrapped row), so the legend and the whole grid are in sight at 80x24."""
    n = max(b.classes) + 1
    legend = Text(f"epoch {b.epoch}: regions {', '.join(f'{SHADES[i]}={i}' for i in range(n))}; "
                  f"points {', '.join(f'{GLYPHS[i]}={i}' for i in range(n))}; ")
    legend_rows = 1 if width is None else -(-(len(legend.plain) + 40) // max(width, 1))  # with the count below
    k = b.cols if width is None else max(8, min(b.cols, width))
    m = b.rows if height is None else max(6, min(b.rows, height - legend_rows))
    picked = [round(i * (b.cols - 1) / max(k - 1, 1)) for i in range(k)]
    picked_rows = [round(i * (b.rows - 1) / max(m - 1, 1)) for i in range(m)]
    colors = [[b.classes[r * b.cols + c] for c in picked] for r in picked_rows]
    (x0, x1), (y0, y1) = b.x_range, b.y_range
    marks: dict[tuple[int, int], int] = {}
    for x, y, label in b.points:
        col = round((x - x0) / (x1 - x0) * (k - 1))
        row = round((y1 - y) / (y1 - y0) * (m - 1))
        if 0 <= col < k and 0 <= row < m:
            marks[(row, col)] = label
    text = Text(no_wrap=True, overflow="crop")
    for r in range(m):
        text.append("\n")
        for c in range(k):
            cls = colors[r][c]
            if (r, c) in marks:
                label = marks[(r, c)]
                style = f"bold {COLORS[label % len(COLORS)]}" + ("" if label == cls else " reverse")
                text.append(GLYPHS[label % len(GLYPHS)], style=style)
            else:
                text.append(SHADES[cls % len(SHADES)], style=f"dim {COLORS[cls % len(COLORS)]}")
    wrong = sum(1 for (r, c), label in marks.items() if label != colors[r][c])
    legend.append(f"{wrong} of {len(marks)} shown points misclassified (reversed)")
    return Text.assemble(legend, text)


class BoundaryView(Static):
    """Shows the latest Boundary event, fitted to its width and to the height of the tab."""

    boundary: Boundary | None = None

    def _fitted(self) -> Text:
        assert self.boundary is not None
        visible = self.parent.size.height if self.parent is not None else 0
        return render_boundary(self.boundary, self.size.width or None, visible or None)

    def show(self, boundary: Boundary) -> None:
        """Render a new grid (UI thread)."""
        self.boundary = boundary
        self.update(self._fitted())

    def refit(self) -> None:
        """Fit the grid to a new size of the view or of the tab around it."""
        if self.boundary is not None:
            self.update(self._fitted())

    def clear(self, hint: str) -> None:
        """Show ``hint`` instead of a grid, and forget the grid (a resize must not bring back another run's)."""
        self.boundary = None
        self.update(hint)

    def on_resize(self) -> None:
        self.refit()
