"""history.json: the fold of a run's events up to an offset, so attaching to a long run reads one document."""

from __future__ import annotations

import json

import pytest

from tests.conftest import tiny
from tui_trainer.engine import fit
from tui_trainer.run.eventlog import EventReader, read_snapshot, write_snapshot
from tui_trainer.run.events import RunFinished, RunStarted, encode
from tui_trainer.run.folder import RunDir, prepare_run
from tui_trainer.run.follow import fold
from tui_trainer.run.history import RunHistory
from tui_trainer.run.recorder import RunRecorder


def full_fold(run: RunDir) -> RunHistory:
    history = RunHistory()
    for event in EventReader(run.events_path).read():
        history.apply(event)
    return history


def record(cfg, run: RunDir, resume=None) -> None:
    recorder = RunRecorder(run)
    try:
        result = fit(cfg, recorder, run_dir=run, resume_path=resume)
    finally:
        recorder.close()
    assert result.ok, result.message


@pytest.fixture
def often(monkeypatch):
    """Snapshots as often as events come (the shipped thresholds are 5,000 events and 30 s)."""
    monkeypatch.setattr(RunRecorder, "SNAPSHOT_EVENTS", 5)
    monkeypatch.setattr(RunRecorder, "SNAPSHOT_EVERY", 0.0)


def test_a_snapshot_and_the_events_after_it_fold_to_the_history_of_every_event(tmp_path):
    cfg = tiny("train.epochs=4", "data.n_samples=300", "train.log_every=2")
    run = prepare_run(cfg, tmp_path / "runs")
    record(cfg, run)
    assert not run.snapshot_path.exists()  # a short run writes none: it attaches fast anyway
    lines = run.events_path.read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    head = RunHistory()
    for event in EventReader(run.events_path).read()[: half - 1]:  # the header is line 0
        head.apply(event)
    write_snapshot(run, head, sum(map(len, lines[:half])), half - 1)
    history, offset, count, _skipped = fold(run, snapshot_only=True)
    expected = full_fold(run)
    assert json.dumps(history.to_dict()) == json.dumps(expected.to_dict())
    assert offset == run.events_path.stat().st_size and count == len(lines) - 1
    assert history.series.val_loss == [r["val_loss"] for r in run.read_metrics()]


def test_the_recorder_snapshots_a_long_run_and_a_resume_continues_its_fold(tmp_path, often):
    cfg = tiny("train.epochs=3", "data.n_samples=300", "train.log_every=2")
    run = prepare_run(cfg, tmp_path / "runs")
    record(cfg, run)
    snap = read_snapshot(run)
    assert snap is not None and snap[1] == run.events_path.stat().st_size  # written with the end
    assert json.dumps(snap[0].to_dict()) == json.dumps(full_fold(run).to_dict())
    from tui_trainer.cli.common import resume_config

    record(resume_config(run.last, epochs=5), run, resume=run.last)
    history, _offset, _count = read_snapshot(run)
    assert [e.start_epoch for e in EventReader(run.events_path).read() if isinstance(e, RunStarted)] == [0, 3]
    assert json.dumps(history.to_dict()) == json.dumps(full_fold(run).to_dict())
    assert history.series.epochs == [1, 2, 3, 4, 5] and history.finished is not None
    assert sum(isinstance(e, RunFinished) for e in EventReader(run.events_path).read()) == 2


@pytest.mark.parametrize("content", ["{torn", '{"version": 99}', "[]"], ids=["torn", "other-version", "not-a-dict"])
def test_an_unusable_snapshot_is_ignored(tmp_path, content):
    cfg = tiny("train.epochs=2", "data.n_samples=200")
    run = prepare_run(cfg, tmp_path / "runs")
    record(cfg, run)
    run.snapshot_path.write_text(content)
    assert read_snapshot(run) is None and fold(run, snapshot_only=True) is None
    history, offset, _count, _skipped = fold(run)  # folded from the start instead
    assert json.dumps(history.to_dict()) == json.dumps(full_fold(run).to_dict())
    assert offset == run.events_path.stat().st_size


def test_a_snapshot_ahead_of_its_events_file_is_ignored(tmp_path):
    cfg = tiny("train.epochs=2", "data.n_samples=200")
    run = prepare_run(cfg, tmp_path / "runs")
    record(cfg, run)
    write_snapshot(run, full_fold(run), run.events_path.stat().st_size + 1, 99)  # a folder copied without the tail
    assert read_snapshot(run) is None


def test_non_finite_values_survive_the_snapshot(tmp_path):
    from tests.test_events import epoch_end, started, step

    history = RunHistory()
    for event in (started(), step(1, 10, 0.5, loss=float("nan")), epoch_end(1, val_loss=float("inf"))):
        history.apply(event)
    back = RunHistory.from_dict(json.loads(json.dumps(history.to_dict())))
    assert encode(back.last_step) == encode(history.last_step) and back.series.val_loss == [float("inf")]


def test_a_snapshot_whose_offset_is_not_at_a_line_end_is_ignored(tmp_path):
    cfg = tiny("train.epochs=2", "data.n_samples=200")
    run = prepare_run(cfg, tmp_path / "runs")
    record(cfg, run)
    first_line = run.events_path.read_bytes().index(b"\n") + 1
    write_snapshot(run, RunHistory(), first_line + 5, 1)  # inside the second line: its events were lost
    assert read_snapshot(run) is None
    write_snapshot(run, RunHistory(), first_line, 0)  # right after the header: usable
    assert read_snapshot(run) is not None


def test_the_fold_reads_a_file_larger_than_one_chunk(tmp_path, monkeypatch):
    import tui_trainer.run.follow as follow

    cfg = tiny("train.epochs=3", "data.n_samples=300", "train.log_every=2")
    run = prepare_run(cfg, tmp_path / "runs")
    record(cfg, run)
    monkeypatch.setattr(follow, "FOLD_CHUNK", 300)  # a few lines at a time, some chunks inside one long line
    history, offset, count, _skipped = fold(run)
    assert json.dumps(history.to_dict()) == json.dumps(full_fold(run).to_dict())
    assert offset == run.events_path.stat().st_size and count == len(EventReader(run.events_path).read())


def test_a_resume_after_a_whole_last_event_without_its_newline_folds_that_event(tmp_path, often):
    cfg = tiny("train.epochs=2", "data.n_samples=200", "train.log_every=2")
    run = prepare_run(cfg, tmp_path / "runs")
    record(cfg, run)
    run.snapshot_path.unlink()
    run.events_path.write_bytes(run.events_path.read_bytes().rstrip(b"\n"))  # the write stopped after the "}"
    from tui_trainer.cli.common import resume_config

    record(resume_config(run.last, epochs=3), run, resume=run.last)
    history, _offset, _count = read_snapshot(run)
    assert json.dumps(history.to_dict()) == json.dumps(full_fold(run).to_dict())
    # the first session's RunFinished, made whole by the resume's newline, and the second's
    assert sum(isinstance(e, RunFinished) for e in EventReader(run.events_path).read()) == 2


def test_a_fold_that_fails_stops_the_snapshots_not_the_run(tmp_path, often, monkeypatch):
    cfg = tiny("train.epochs=2", "data.n_samples=200", "train.log_every=2")
    run = prepare_run(cfg, tmp_path / "runs")

    def broken(self, event):
        raise RuntimeError("a bug in the fold")

    monkeypatch.setattr(RunHistory, "apply", broken)
    record(cfg, run)  # trains to the end
    assert not run.snapshot_path.exists() and [r["epoch"] for r in run.read_metrics()] == [1, 2]
