"""Plain-text tables for the console that fit the terminal by dropping whole columns, never cutting a cell.

Stdlib only. A ``Column`` holds its header, its cells (already formatted: numbers through
``formats.format_column``) and a priority; ``render`` drops the columns of lowest priority until
every row fits the width (a column of priority 0 is never dropped: the run's name, which people
copy), and prints every column when the width is None (a pipe).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tui_trainer.run.controls import stop_why
from tui_trainer.run.folder import RunSummary
from tui_trainer.run.formats import format_column
from tui_trainer.run.history import hms

GAP = "  "
"""Between two columns."""


@dataclass(frozen=True)
class Column:
    """One column of a table."""

    header: str
    cells: tuple[str, ...]
    right: bool = False
    """Right-aligned (numbers)."""
    priority: int = 0
    """Columns are dropped lowest first while the table is too wide; 0 is never dropped."""

    @property
    def width(self) -> int:
        """Its widest cell or its header."""
        return max([len(self.header), *map(len, self.cells)])


def fitting(columns: Sequence[Column], width: int | None) -> list[Column]:
    """The columns that fit ``width`` (all of them when None), in their order: the lowest priorities go first."""
    kept = list(columns)
    if width is None:
        return kept
    for column in sorted((c for c in columns if c.priority), key=lambda c: c.priority):
        if _line_width(kept) <= width:
            break
        kept.remove(column)
    return kept


def render(columns: Sequence[Column], width: int | None = None) -> list[str]:
    """The header line and one line per row, of the columns that fit ``width`` (see :func:`fitting`)."""
    kept = fitting(columns, width)
    rows = zip(*([c.header, *c.cells] for c in kept), strict=True)
    return [GAP.join(cell.rjust(c.width) if c.right else cell.ljust(c.width) for cell, c in zip(row, kept, strict=True))
            .rstrip() for row in rows]


def _line_width(columns: Sequence[Column]) -> int:
    return sum(c.width for c in columns) + len(GAP) * max(len(columns) - 1, 0)


def runs_columns(rows: Sequence[RunSummary]) -> list[Column]:
    """The columns of ``tui-trainer runs``: run (never dropped), preset, state (a stop's why in its place: "pruned at
    epoch 3"), epoch, best (one number format for the whole column), started, elapsed, and code when a run imported
    the user's (file:factory@sha256); on a narrow terminal code and preset go first, then started, elapsed, best,
    epoch and state."""
    bests = format_column([r.best for r in rows])
    started = [time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "-" for r in rows]
    code = [Column("code", tuple(r.code or "-" for r in rows), priority=1)] if any(r.code for r in rows) else []
    return [
        Column("run", tuple(r.name for r in rows)),
        Column("preset", tuple(r.preset for r in rows), priority=1),
        Column("state", tuple(stop_why(r.message) or r.state if r.state == "stopped" else r.state for r in rows),
               priority=6),
        Column("epoch", tuple(f"{r.epoch}/{r.epochs}" if r.epochs else str(r.epoch) for r in rows), right=True,
               priority=5),  # epochs 0: a user's own loop that did not say how many
        Column("best", tuple(f"{r.monitor} {b}" if r.best is not None else "-" for r, b in zip(rows, bests, strict=True)),
               right=True, priority=4),
        Column("started", tuple(started), priority=2),
        Column("elapsed", tuple(hms(r.elapsed_s) if r.elapsed_s is not None else "-" for r in rows), right=True,
               priority=3),
        *code,  # only where a run imported the user's code: its file, factory and hash (dropped first)
    ]
