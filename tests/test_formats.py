"""Numbers as text: one format per column, every value reads right, and the columns line up."""

from __future__ import annotations

import math

import pytest

from tui_trainer.run.formats import format_column, format_number


@pytest.mark.parametrize(("values", "expected"), [
    ([0.01, 0.003], ["0.010", "0.003"]),  # compare's names: lr=0.010 beside lr=0.003, not lr=0.01 beside lr=3e-3
    ([3e-4, 1e-3], ["3e-04", "1e-03"]),
    ([4.19e-05, 0.3], ["4.19e-05", "3.00e-01"]),  # a tiny regression loss beside a big one: scientific for both
    ([0.41234, 12.5, None], ["0.4123", "12.5000", "-"]),
    ([0.5, 0.25], ["0.50", "0.25"]),
    ([0.0, 1e-4], ["0", "1e-04"]),
    ([0.0, 0.5], ["0.0", "0.5"]),
    ([123456.0, 0.5], ["1.235e+05", "5.000e-01"]),
    ([-0.0123, 0.5], ["-0.0123", "0.5000"]),
    ([None, float("nan"), float("inf")], ["-", "nan", "inf"]),
    ([], []),
])
def test_a_column_has_one_format(values, expected):
    assert format_column(values) == expected


@pytest.mark.parametrize("values", [
    [4.19e-05, 0.31, 2.5],
    [0.8123, 0.95, 1.0],
    [1e-7, 3e-3, 0.01, 10.0],
    [0.001, 0.0123, 99999.0],
    [7.5e-4, 1.5e-3],
])
def test_every_value_reads_back_within_its_4th_significant_digit_and_the_points_line_up(values):
    texts = format_column(values)
    for value, text in zip(values, texts, strict=True):
        assert float(text) == pytest.approx(value, rel=5e-4), (value, text)  # never truncated, never 0.00 for 4e-5
    width = max(map(len, texts))
    aligned = [t.rjust(width) for t in texts]
    if "e" not in texts[0]:
        assert len({a.index(".") if "." in a else len(a) for a in aligned}) == 1  # the decimal points line up
    else:
        assert all("e" in t for t in texts)  # scientific for all or none


def test_a_lone_number_keeps_4_significant_digits_and_is_never_truncated():
    assert format_number(4.19e-05) == "4.190e-05"
    assert format_number(0.41234) == "0.4123"
    assert format_number(0.5) == "0.5000"  # alike from one log line to the next
    assert format_number(12.5) == "12.50"
    assert format_number(None) == "-"
    assert format_number(0) == "0"
    assert format_number(2e5) == "2.000e+05"
    for x in (4.19e-05, 1.234e-9, 0.000999, 0.001, 0.0123, 1.5, 1234.56, 99999.0, 3.3e7):
        assert math.isclose(float(format_number(x)), x, rel_tol=5e-4), x
