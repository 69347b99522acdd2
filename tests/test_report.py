"""Per-class results as text: every column labelled, nothing trailing."""

from __future__ import annotations

from tui_trainer.engine.report import ClassReport, format_class_report


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


def test_a_class_whose_name_is_its_number_is_labelled_once():
    """The 2-D presets name their classes "0" and "1": the rows read "0", never "0 0"."""
    text = format_class_report(ClassReport(("0", "1"), ((40, 2), (3, 35))))
    lines = text.splitlines()
    assert lines[1:3] == ["  0   95.2%  (40/42)", "  1   92.1%  (35/38)"]
    assert lines[-2:] == ["  0   40    2", "  1    3   35"]
    assert lines[-3].split() == ["0", "1"] and len(lines[-3]) == len(lines[-1])  # the numbers under their headers
