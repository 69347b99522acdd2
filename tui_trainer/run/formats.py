"""Numbers as text that never misleads: one format for a whole column, chosen from its range.

Stdlib only (the runs list, ``compare`` and the app's Runs tab format without torch). A column
whose non-zero magnitudes all lie in [1e-3, 1e5) is written with fixed decimals, as many as give
the smallest of them at least 4 significant digits (0.41234 and 12.5 -> ``0.4123`` and ``12.5000``);
any other column is written in scientific notation with 4 significant digits for every value
(4.19e-05 beside 0.3 -> ``4.19e-05`` and ``3.00e-01``). Trailing zeros that every value of the
column has are then dropped (``0.010000``/``0.003000`` -> ``0.010``/``0.003``), so no number is
ever cut: a value only loses digits by rounding past its 4th significant one, never its magnitude
(4.19e-05 never reads ``0.00`` or ``4.19``). ``format_number`` formats one value on its own by the
same rules and keeps all 4 significant digits (``0.5000``), so a value reads alike from one log
line to the next.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

FIXED_RANGE = (1e-3, 1e5)
"""Non-zero magnitudes in this range (lower bound included) are written with fixed decimals."""
DIGITS = 4
"""Significant digits kept for the column's smallest non-zero magnitude."""
MISSING = "-"
"""What ``None`` reads as."""


def format_column(values: Sequence[float | None]) -> list[str]:
    """Every value of ``values`` in ONE format chosen from the column's range (see the module docstring), less
    the trailing zeros all of them share: the strings right-align into a column whose decimal points line up.
    ``None`` -> ``"-"``; nan and inf as ``nan``, ``inf``, ``-inf``; an exact zero as ``0`` unless the column has
    fixed decimals. Ints count as floats. [0.01, 0.003] -> ``0.010``, ``0.003``; [4.19e-05, 0.3] -> ``4.19e-05``,
    ``3.00e-01``."""
    return _format(values, trim=True)


def format_number(x: float | None) -> str:
    """One value on its own (a line of a log, a progress line), by the same rules with all 4 significant digits
    kept, so a value reads alike from one line to the next: 4.19e-05 -> ``4.190e-05``, 0.5 -> ``0.5000``,
    0.41234 -> ``0.4123``, 12.5 -> ``12.50``, 1234.56 -> ``1235``, 2e5 -> ``2.000e+05``, None -> ``-``."""
    return _format([x], trim=False)[0]


def _format(values: Sequence[float | None], trim: bool) -> list[str]:
    magnitudes = [abs(float(v)) for v in values if not _is_special(v) and v != 0]
    if not magnitudes:
        return [_special(v) if _is_special(v) else "0" for v in values]
    low, high = min(magnitudes), max(magnitudes)
    fixed = FIXED_RANGE[0] <= low and high < FIXED_RANGE[1]
    spec = f".{max(0, DIGITS - 1 - math.floor(math.log10(low)))}f" if fixed else f".{DIGITS - 1}e"
    numbers = {i: format(float(v), spec) for i, v in enumerate(values) if not _is_special(v) and (fixed or v != 0)}
    if trim:
        numbers = _drop_shared_zeros(numbers)
    return [numbers.get(i) or (_special(v) if _is_special(v) else "0") for i, v in enumerate(values)]


def _is_special(v: float | None) -> bool:
    return v is None or not math.isfinite(v)


def _special(v: float | None) -> str:
    if v is None:
        return MISSING
    if math.isnan(v):
        return "nan"
    return "inf" if v > 0 else "-inf"


def _drop_shared_zeros(numbers: dict[int, str]) -> dict[int, str]:
    """The numbers without the trailing decimal zeros that every one of them has (``0.010000``, ``0.003000`` ->
    ``0.010``, ``0.003``; ``1.000e-07``, ``3.000e-03`` -> ``1e-07``, ``3e-03``): no digit that differs anywhere
    is dropped, so the column keeps one format."""
    parts = {i: (*t.partition("e")[0].partition("."), t.partition("e")[1] + t.partition("e")[2])
             for i, t in numbers.items()}
    shared = min(len(frac) - len(frac.rstrip("0")) for _whole, _dot, frac, _exp in parts.values())
    if shared == 0:
        return numbers
    out = {}
    for i, (whole, _dot, frac, exp) in parts.items():
        frac = frac[: len(frac) - shared]
        out[i] = whole + ("." + frac if frac else "") + exp
    return out
