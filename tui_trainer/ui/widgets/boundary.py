"""Decision boundary view: a 2-D classifier's predicted class over a grid, validation points on top.

Regions are shaded characters and points are per-class glyphs, so the view reads without
colour (NO_COLOR); colour only reinforces it.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui_trainer.events import Boundary

SHADES = "·░▒▓:=~-"
GLYPHS = "ox+*#@%&"
COLORS = ["dodger_blue2", "dark_orange", "green3", "magenta", "yellow3", "cyan", "red", "white"]


def render_boundary(b: Boundary) -> Text:
    """The grid as text: one character per cell, a glyph where a validation point falls."""
    cells = [[SHADES[c % len(SHADES)] for c in b.classes[r * b.cols:(r + 1) * b.cols]] for r in range(b.rows)]
    colors = [[b.classes[r * b.cols + c] for c in range(b.cols)] for r in range(b.rows)]
    (x0, x1), (y0, y1) = b.x_range, b.y_range
    marks: dict[tuple[int, int], int] = {}
    for x, y, label in b.points:
        col = round((x - x0) / (x1 - x0) * (b.cols - 1))
        row = round((y1 - y) / (y1 - y0) * (b.rows - 1))
        if 0 <= col < b.cols and 0 <= row < b.rows:
            marks[(row, col)] = label
    text = Text()
    for r in range(b.rows):
        for c in range(b.cols):
            if (r, c) in marks:
                label = marks[(r, c)]
                right = label == colors[r][c]
                style = f"bold {COLORS[label % len(COLORS)]}" + ("" if right else " reverse")
                text.append(GLYPHS[label % len(GLYPHS)], style=style)
            else:
                text.append(cells[r][c], style=f"dim {COLORS[colors[r][c] % len(COLORS)]}")
        text.append("\n")
    wrong = sum(1 for (r, c), label in marks.items() if label != colors[r][c])
    text.append(f"epoch {b.epoch}: regions {', '.join(f'{SHADES[i]}={i}' for i in range(max(b.classes) + 1))}; "
                f"points {', '.join(f'{GLYPHS[i]}={i}' for i in range(max(b.classes) + 1))}; "
                f"{wrong} of {len(marks)} shown points misclassified (reversed)")
    return text


class BoundaryView(Static):
    """Shows the latest Boundary event."""

    def show(self, boundary: Boundary) -> None:
        """Render a new grid (UI thread)."""
        self.update(render_boundary(boundary))
