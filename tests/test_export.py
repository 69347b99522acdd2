"""``tui-trainer export``: CSV that reads back equal, TensorBoard files that TensorBoard's own reader reads
back equal, nothing written half, and one line with exit 2 for what cannot be done."""

from __future__ import annotations

import csv
import json
import os
import struct
import sys
from pathlib import Path

import pytest

from tests.test_cli import run_main
from tests.test_compare import make_run
from tui_trainer.run.compare import load_run
from tui_trainer.run.events import StepLogged, decode
from tui_trainer.run.export import TENSORBOARD_MISSING, ExportError, export_run
from tui_trainer.run.folder import RunDir
from tui_trainer.run.smoothing import RunningMean


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    """A finished moons run with per-layer gradient norms in its metrics rows and a step log every 2 steps."""
    return make_run(tmp_path_factory.mktemp("export") / "runs", "train.log_every=2", "train.diagnostics=true")


def metrics(run: RunDir) -> list[dict]:
    return [json.loads(line) for line in run.metrics_path.read_text().splitlines()]


def f32(x: float) -> float:
    """What a TensorBoard scalar (float32) holds of ``x``."""
    return struct.unpack("f", struct.pack("f", x))[0]


def unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permissions: then /sys)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        folder = Path("/sys")
    try:
        (folder / "probe").touch()
    except OSError:
        return folder
    pytest.skip(f"no unwritable folder here ({folder} is writable)")


def test_csv_reads_back_equal(run, tmp_path, capsys):
    out = tmp_path / "out.csv"
    code, stdout, err = run_main(capsys, "export", str(run.path), "--format", "csv", "-o", str(out))
    assert code == 0, err
    assert stdout == f"wrote {out} (3 epochs)\n"
    with open(out, newline="") as fh:
        table = list(csv.DictReader(fh))
    rows = metrics(run)
    assert len(table) == len(rows) == 3
    for got, row in zip(table, rows, strict=True):
        for key, value in row.items():
            if isinstance(value, dict):  # grad_norms: one column per layer
                assert value and all(float(got[f"{key}.{layer}"]) == v for layer, v in value.items())
            else:
                assert float(got[key]) == value, key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary file left


def test_csv_default_name_and_folder_target(run, tmp_path, capsys):
    code, stdout, _ = run_main(capsys, "export", run.name, "--runs-dir", str(run.path.parent))
    assert code == 0 and Path(f"{run.name}.csv").is_file()  # the tests run in tmp_path
    code, stdout, _ = run_main(capsys, "export", str(run.path), "--output", str(tmp_path))
    assert code == 0 and stdout.startswith(f"wrote {tmp_path / (run.name + '.csv')} ")


def test_out_is_a_hidden_alias_of_output(run, tmp_path, capsys):
    code, stdout, err = run_main(capsys, "export", str(run.path), "--out", str(tmp_path / "old.csv"))
    assert code == 0 and stdout.startswith(f"wrote {tmp_path / 'old.csv'} "), err  # scripts written for --out work
    code, stdout, _ = run_main(capsys, "export", "--help")
    assert "-o, --output" in stdout and "--out " not in stdout
    code, stdout, err = run_main(capsys, "export", str(run.path), "-o", "a.csv", "--out", "b.csv")
    assert code == 2 and stdout == "" and err == ("error: --output a.csv and --out b.csv: give one (--out is the old "
                                                  "name of -o/--output)\n")


def test_a_failed_csv_write_leaves_the_old_file_and_no_temporary(run, tmp_path, monkeypatch):
    out = tmp_path / "metrics.csv"
    out.write_text("old\n")

    def full_disk(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(ExportError, match="cannot write .*metrics.csv: No space left on device"):
        export_run(load_run(run), "csv", out)
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


@pytest.mark.parametrize("fmt", ["csv", "tensorboard"])
def test_export_to_an_unwritable_path_is_one_line_exit_2_and_leaves_nothing(run, tmp_path, capsys, fmt):
    if fmt == "tensorboard":
        pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
    folder = unwritable(tmp_path)
    before = sorted(os.listdir(folder))
    target = folder / ("out.csv" if fmt == "csv" else "tb")
    code, out, err = run_main(capsys, "export", str(run.path), "--format", fmt, "--out", str(target))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: cannot write {target}: ")
    assert sorted(os.listdir(folder)) == before


def test_bad_format_or_missing_folder_is_one_line_exit_2(run, tmp_path, capsys):
    code, _, err = run_main(capsys, "export", str(run.path), "--format", "xml")
    assert code == 2 and err == "error: unknown format 'xml': choose csv or tensorboard\n"
    code, _, err = run_main(capsys, "export", str(run.path), "--out", str(tmp_path / "nope" / "x.csv"))
    assert code == 2 and err == f"error: cannot write {tmp_path / 'nope' / 'x.csv'}: folder {tmp_path / 'nope'} does not exist\n"


def test_tensorboard_without_the_extra_is_one_line_exit_2(run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if it were not installed
    code, out, err = run_main(capsys, "export", str(run.path), "--format", "tensorboard")
    assert code == 2 and out == ""
    assert err == f"error: {TENSORBOARD_MISSING}\n" == ("error: TensorBoard export needs tensorboardX: pip install "
                                                    "'tensorboardX>=2.6' (in a clone of tui-trainer: pip install "
                                                    "'.[tensorboard]')\n")  # a command that works from a clone
    assert not (run.path / "tensorboard").exists()


def test_tensorboard_reads_back_equal(run, tmp_path, capsys):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra (tensorboardX) is not installed")
    pytest.importorskip("tensorboard", reason="TensorBoard (its reader checks the files) is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    for _ in range(2):  # a second export replaces the first, it does not add to it
        code, stdout, err = run_main(capsys, "export", str(run.path), "--format", "tensorboard", "--out", str(out))
        assert code == 0, err
    assert stdout == f"wrote {out}; view with: tensorboard --logdir {out}\n"
    assert len(list(out.iterdir())) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["tb"]
    reader = EventAccumulator(str(out), size_guidance={"scalars": 0})
    reader.Reload()

    def read(tag: str) -> list[tuple[int, float]]:
        return [(s.step, s.value) for s in reader.Scalars(tag)]

    rows = metrics(run)
    for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("accuracy/train", "train_acc"),
                     ("accuracy/val", "val_acc")):
        assert read(tag) == [(r["step"], f32(r[key])) for r in rows], tag
    events = [decode(line) for line in run.events_path.read_text().splitlines()]
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert len(steps) >= 6
    smooth = RunningMean(0.9)
    assert read("loss/train_smoothed") == [(e.step, f32(smooth.add(e.loss))) for e in steps]
    assert read("lr") == [(e.step, f32(e.lr)) for e in steps]
    status = run.read_status()
    started = status.get("started") or status["created"]  # a run made in process (no run process) has no "started"
    assert reader.Scalars("lr")[-1].wall_time == pytest.approx(started + steps[-1].elapsed_s)


def test_tensorboard_never_replaces_a_folder_of_other_files(run, tmp_path):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="holds other files than an earlier export"):
        export_run(load_run(run), "tensorboard", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
