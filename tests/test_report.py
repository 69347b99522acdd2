"""Per-class results as text: every column labelled, nothing trailing."""

from __future__ import annotations

from tui_trainer.report import ClassReport, format_class_report


def test_the_confusion_matrix_has_a_label_for_every_column_and_no_trailing_one():
    text = format_class_report(ClassReport(("T-shirt/top", "Trouser", "Pullover"), ((50, 2, 3), (1, 60, 0), (9, 0, 40))))
    lines = text.splitlines()
    header = lines[lines.index(next(ln for ln in lines if ln.startswith("confusion matrix"))) + 1]
    rows = lines[-3:]
    assert header.split() == ["0", "1", "2"]
    assert [r.split()[:2] for r in rows] == [["0", "T-shirt/top"], ["1", "Trouser"], ["2", "Pullover"]]
    assert [r.split()[2:] for r in rows] == [["50", "2", "3"], ["1", "60", "0"], ["9", "0", "40"]]  # no extra column
    assert all(len(r) == len(header) for r in rows)  # the numbers sit under their headers
    assert "  1 Trouser       98.4%  (60/61)" in lines
