"""What a run says and how it is folded: the JSON codec, the fold behind console and app, the controls."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from tui_trainer.run.controls import CommandError, Controls, parse_command
from tui_trainer.run.eventlog import EventReader, EventWriter
from tui_trainer.run.events import (
    PROTOCOL,
    Boundary,
    CheckpointSaved,
    ClassResults,
    EpochEnded,
    LayerHealth,
    LogMessage,
    LrChanged,
    ParamValues,
    Paused,
    ProtocolError,
    Reason,
    RunFinished,
    RunStarted,
    StepLogged,
    decode,
    encode,
    header,
)
from tui_trainer.run.history import RunHistory, end_line, position, progress_line, shown_epoch


def started(**kw) -> RunStarted:
    base = dict(run_dir="/r", device="cpu: x", n_params=10, n_trainable=10, epochs=15, start_epoch=0, steps_per_epoch=100,
                train_samples=6400, val_samples=1600, task="classification", summary="s", preset="p")
    return RunStarted(**{**base, **kw})


def step(epoch: int, batch: int, elapsed: float, loss: float = 0.5, **kw) -> StepLogged:
    return StepLogged(epoch=epoch, step=(epoch - 1) * 100 + batch, batch=batch, batches=100, loss=loss, lr=1e-3,
                      samples_per_s=12_345.0, elapsed_s=elapsed, **kw)


def epoch_end(epoch: int, val_loss: float = 0.4, **kw) -> EpochEnded:
    return EpochEnded(epoch=epoch, step=epoch * 100, train_loss=0.5, val_loss=val_loss, train_acc=0.8, val_acc=0.85,
                      lr=1e-3, epoch_seconds=1.0, samples_per_s=6400.0, **kw)


EVERY_EVENT = [
    started(prior=({"epoch": 1, "train_loss": 0.5, "val_loss": 0.4, "train_acc": 0.8, "val_acc": 0.8,
                    "grad_norms": {"a": 1.0}},)),
    step(1, 20, 1.5, layers=(LayerHealth("layers.1", 0.1, 2.0, 1e-3), LayerHealth("layers.3", math.inf, 1.0, 0.0)),
         memory=(1, 2)),
    step(1, 40, 2.5, memory=(3 * 2**30, 70 * 2**30), memory_ranks=((3 * 2**30, 70 * 2**30), (2 * 2**30, 69 * 2**30))),
    epoch_end(1, is_best=True, grad_norms=(("layers.1", 0.1),), dead_units=(("layers.2", 0.25),)),
    CheckpointSaved("/r/checkpoints/last.pt", "last", 1, 100),
    LogMessage("warning", "épsilon ⚠ unicode"),
    LrChanged(1, 50, 0.5, 0.01),
    Paused(True, 1, 50),
    ParamValues(3, (("w", 0.1, -0.2, 0.12), ("b", 0.0, 0.5, -0.005))),
    Boundary(1, (-1.0, 1.0), (-2.0, 2.0), 2, 1, (0, 1), ((0.5, 0.5, 1),)),
    ClassResults(("a", "b"), ((3, 1), (0, 4)), "text"),
    RunFinished("non_finite_loss", "loss became nan", 1, 100, None, "/r", None, 12.5),
]


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: f"{type(e).__name__}-{EVERY_EVENT.index(e)}")
def test_every_event_round_trips_through_one_standard_json_line(event):
    line = encode(event)
    assert "\n" not in line
    json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert decode(line) == event


def test_nan_survives_the_codec():
    back = decode(encode(step(1, 1, 0.1, loss=math.nan)))
    assert math.isnan(back.loss)


def test_header_and_unknown_kinds_and_newer_protocols():
    assert decode(header()) is None
    assert json.loads(header())["protocol"] == PROTOCOL
    assert decode(json.dumps({"type": "SomethingNew", "x": 1})) is None  # a newer run's extra kinds are skipped
    with pytest.raises(ProtocolError, match=f"protocol {PROTOCOL + 1}, this tui-trainer reads up to {PROTOCOL}: "
                                            "upgrade tui-trainer to read this run$"):
        decode(json.dumps({"type": "header", "protocol": PROTOCOL + 1}))


def test_reader_skips_a_torn_line_and_picks_up_what_is_appended(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.emit(EVERY_EVENT[0])
    writer.emit(EVERY_EVENT[2])
    writer.close()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"type": "EpochEnded", "epoch": 2, "tra')  # the writer died mid-line
    reader = EventReader(path)
    assert reader.read() == [EVERY_EVENT[0], EVERY_EVENT[2]]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n" + encode(EVERY_EVENT[-1]) + "\n")  # a resumed writer goes on after the torn line
    assert reader.read() == [EVERY_EVENT[-1]] and reader.skipped == 1


def test_reasons_say_their_state():
    assert [r.state for r in Reason] == ["finished", "finished", "stopped", "failed", "failed", "failed", "failed"]
    assert {r for r in Reason if r.as_asked} == {Reason.COMPLETED, Reason.EARLY_STOPPED, Reason.STOPPED}
    assert Reason("stopped") == "stopped"


def test_the_fold_builds_series_marks_and_log():
    h = RunHistory()
    events = [started(), step(1, 50, 1.0, loss=1.0), LrChanged(1, 50, 0.5, 0.01), step(1, 100, 2.0, loss=0.5),
              epoch_end(1, val_loss=0.6), LogMessage("warning", "overfitting"), step(2, 50, 3.0), epoch_end(2, 0.5)]
    for e in events:
        h.apply(e)
    assert h.series.epochs == [1, 2] and h.series.val_loss == [0.6, 0.5]
    assert h.step_x == [0.5, 1.0, 1.5] and h.lr_marks == [(0.5, 0.01)]
    assert h.alarms == ["overfitting"] and ("warning", "warning: overfitting") in h.log
    assert h.best() == ("val_loss", 0.5)
    assert any(line.startswith("epoch 2/15 train_loss 0.5000 val_loss 0.5000") for _, line in h.log)


def test_a_resume_truncates_what_the_checkpoint_did_not_keep_and_continues_the_clock():
    h = RunHistory()
    for e in [started(), step(1, 50, 1.0), step(1, 100, 2.0), epoch_end(1), step(2, 50, 3.0), epoch_end(2),
              step(3, 50, 5.0), RunFinished("stopped", "stopped", 2, 250, 0.4, "/r", None, 5.0)]:
        h.apply(e)
    # resumed from the epoch-1 checkpoint (say epoch 2's last.pt was lost): epoch 2 and later steps are replayed
    h.apply(started(start_epoch=1, start_step=100, elapsed_s=2.0))
    assert h.series.epochs == [1] and h.step_x == [0.5, 1.0] and h.started is not None and h.finished is None
    h.apply(step(2, 50, 3.1))
    assert h.step_x == [0.5, 1.0, 1.5] and h.last_step.elapsed_s == 3.1


def test_a_resume_into_a_new_folder_draws_the_checkpoints_curve():
    h = RunHistory()
    prior = tuple({"epoch": i, "train_loss": 1.0 / i, "val_loss": 1.1 / i, "train_acc": 0.5, "val_acc": 0.6}
                  for i in (1, 2, 3))
    h.apply(started(start_epoch=3, start_step=300, prior=prior))
    assert h.series.epochs == [1, 2, 3] and h.series.val_loss == pytest.approx([1.1, 0.55, 1.1 / 3])


def test_progress_shows_the_whole_run_and_its_eta_first_and_drops_the_rest_as_width_shrinks():
    h = RunHistory()
    h.apply(started(epochs=15))
    h.apply(step(11, 40, 100.0))
    h.apply(step(11, 60, 110.0))  # 0.2 epoch in 10 s: 50 s an epoch, 4.4 epochs left
    wide = progress_line(h, 120)
    assert wide.startswith("epoch 11/15") and " 71%" in wide and "ETA 0:03:40" in wide
    assert "elapsed 0:01:50" in wide and "this epoch 60%" in wide and len(wide) <= 120
    narrow = progress_line(h, 80)
    assert "ETA 0:03:40" in narrow and len(narrow) <= 80
    tiny = progress_line(h, 40)
    assert tiny.startswith("epoch 11/15") and "ETA" in tiny and len(tiny) <= 40
    h.apply(RunFinished("stopped", "stopped in epoch 11 (10 complete), step 1060", 10, 1060, 0.4, "/r", None, 110.0))
    done = progress_line(h, 80)
    assert done == "stopped in epoch 11 (10 complete), step 1060  r: new run"  # the engine's words, said once
    assert progress_line(h, 44) == "stopped in epoch 11 (10 complete), step 1060"  # parts that do not fit: out whole


def test_every_front_end_says_where_a_run_is_and_how_it_ended_in_the_same_words():
    assert position(213, 40, 42600) == "in epoch 214 (213 complete), step 42600"  # mid-epoch: under way and done
    assert position(213, 0, 42560) == "after epoch 213, step 42560"
    assert position(0, 0) == "before epoch 1"
    assert [shown_epoch(32, 7), shown_epoch(33, 0), shown_epoch(0, 0)] == [33, 33, 1]  # as the progress line shows
    assert end_line("completed", "completed 20 epochs") == "finished: completed 20 epochs"
    assert end_line("stopped", "stopped in epoch 214 (213 complete), step 42600") == (
        "stopped in epoch 214 (213 complete), step 42600")
    assert end_line("invalid", "data.root = '/x': not found") == "failed: data.root = '/x': not found"
    h = RunHistory()
    h.apply(started())
    h.apply(RunFinished("invalid", "data.root = '/x': not found", 0, 0, None, "/r", None, 0.0))
    assert progress_line(h, 80).startswith("failed: data.root = '/x': not found")  # was "failed: invalid after epoch 0"
    assert h.log[-1][1] == "failed: data.root = '/x': not found"
    h.apply(RunFinished("completed", "completed 20 epochs", 20, 400, 0.1, "/r", "/r/last.pt", 9.0))
    assert h.log[-1][1] == "finished: completed 20 epochs; last checkpoint /r/last.pt"


def test_commands_are_validated_and_acknowledged():
    with pytest.raises(CommandError, match="unknown command 'halt'; allowed: stop, save, set_lr, pause, resume, step"):
        parse_command({"cmd": "halt"})
    with pytest.raises(CommandError, match="set_lr needs lr"):
        parse_command({"cmd": "set_lr", "lr": "fast"})
    with pytest.raises(CommandError, match="stop takes no arguments"):
        parse_command({"cmd": "stop", "now": True})
    with pytest.raises(CommandError, match="JSON object"):
        parse_command(["stop"])
    controls = Controls()
    assert controls.poll() == []
    command = controls.send("set_lr", lr=0.5)
    assert command.wait(0) is None and controls.poll() == [command]
    command.ack(True, "done", lr=0.5)
    assert command.wait(0) == {"ok": True, "message": "done", "lr": 0.5}


def _imports_of(packages: tuple[str, ...], forbidden: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[str]:
    """Import every module under ``packages`` (walking the folders, so a new module is covered without listing it)
    in a fresh interpreter; the forbidden top-level packages that got imported."""
    code = ("import sys, pkgutil, importlib\n"
            f"for pkg in {packages!r}:\n"
            "    module = importlib.import_module(pkg)\n"
            "    for m in pkgutil.walk_packages(module.__path__, pkg + '.'):\n"
            f"        if not m.name.startswith({skip!r} or ('\\0',)) and not m.name.endswith('__main__'):\n"
            "            importlib.import_module(m.name)\n"
            f"print([m for m in {forbidden!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().replace("'", '"'))


def test_the_run_boundary_and_the_config_import_only_the_stdlib():
    """run/ and config/: listing, attaching, following and validating need neither torch nor a front end."""
    assert _imports_of(("tui_trainer.run", "tui_trainer.config"), ("torch", "numpy", "textual", "typer", "plotext")) == []


def test_nothing_below_the_front_ends_imports_textual_or_typer():
    """engine/, data/, run/, config/ and the runner: no Textual, no typer, no plotting."""
    assert _imports_of(("tui_trainer",), ("textual", "typer", "textual_plotext", "plotext"),
                       skip=("tui_trainer.ui", "tui_trainer.cli")) == []


def test_an_older_step_line_without_every_ranks_memory_still_decodes():
    row = json.loads(encode(step(1, 20, 1.5, memory=(1, 2))))
    del row["memory_ranks"]  # protocol 1 runs written before DDP memory was reported
    assert decode(json.dumps(row)) == step(1, 20, 1.5, memory=(1, 2))


def test_memory_line_names_every_gpu_by_rank_and_the_least_free():
    from tui_trainer.run.history import memory_line

    assert memory_line(step(1, 1, 0.1)) is None  # off CUDA: nothing to show
    assert memory_line(step(1, 1, 0.1, memory=(int(1.5 * 2**30), 70 * 2**30))) == "1.50 GiB in use, 70.0 GiB free"
    ranks = tuple((int((1 + r / 100) * 2**30), (70 - r) * 2**30) for r in range(8))
    line = memory_line(step(1, 1, 0.1, memory=ranks[0], memory_ranks=ranks))
    assert line == "GiB in use 1.00 1.01 1.02 1.03 1.04 1.05 1.06 1.07, free ≥ 63.0"


def test_events_jsonl_holds_exactly_the_stream_the_engine_emitted(tmp_path):
    """The run process's file against an in-process copy of the same stream, and the stream itself: every
    expected step, epochs 1..N in order, one start and one end. (The app's tests compare the screen with the
    file, so a gap in both would pass there.)"""
    from tests.conftest import tiny
    from tui_trainer.engine import fit
    from tui_trainer.run.events import ListSink, TeeSink
    from tui_trainer.run.folder import prepare_run
    from tui_trainer.run.recorder import RunRecorder

    cfg = tiny("train.epochs=3", "train.log_every=3")  # 320 samples in batches of 32: steps 3, 6, 9, 10 an epoch
    run = prepare_run(cfg, tmp_path / "runs")
    seen, recorder = ListSink(), RunRecorder(run)
    t0 = time.perf_counter()
    try:
        result = fit(cfg, TeeSink(seen, recorder), run_dir=run)
    finally:
        recorder.close()
    wall = time.perf_counter() - t0
    assert result.reason == "completed"
    on_disk, _offset = run.read_events()
    assert len(on_disk) == len(seen.events) >= 20
    assert on_disk == seen.events  # nothing lost, added or changed on the way to the file
    kinds = [type(e) for e in on_disk]
    assert kinds.count(RunStarted) == 1 and kinds[0] in (RunStarted, LogMessage)
    assert kinds.count(RunFinished) == 1 and kinds[-1] is RunFinished
    steps = [(e.epoch, e.batch, e.step) for e in on_disk if isinstance(e, StepLogged)]
    assert steps == [(epoch, batch, (epoch - 1) * 10 + batch) for epoch in (1, 2, 3) for batch in (3, 6, 9, 10)]
    assert [e.epoch for e in on_disk if isinstance(e, EpochEnded)] == [1, 2, 3]
    # each epoch's end comes after its last step and before the next epoch's first
    order = [(e.epoch, 0 if isinstance(e, StepLogged) else 1) for e in on_disk if isinstance(e, (StepLogged, EpochEnded))]
    assert order == sorted(order)
    assert on_disk[-1].epoch == 3 and on_disk[-1].step == 30
    lines = run.events_path.read_text().splitlines()  # one line per event (and the header), compact
    assert len(lines) == len(on_disk) + 1 and all(line.startswith("{\"type\":\"") for line in lines[1:])
    assert [json.loads(line)["type"] for line in lines[1:]] == [type(e).__name__ for e in on_disk]
    check_fields(on_disk, wall)


def check_fields(events: list, wall: float) -> None:
    """What the progress line, the charts and the Grads tab read from a 3-epoch tiny spirals run: each field set, and
    set to what it means."""
    steps = [e for e in events if isinstance(e, StepLogged)]
    ends = [e for e in events if isinstance(e, EpochEnded)]
    layers = ["layers.1", "layers.3", "layers.5"]  # the 2-64-64-2 network's Linear layers
    assert all(s.batches == 10 and s.lr == 0.01 and s.memory is None for s in steps)  # no device memory off CUDA
    assert all([h.name for h in s.layers] == layers for s in steps)  # gradient health at every interval
    elapsed = [s.elapsed_s for s in steps]
    assert elapsed == sorted(elapsed) and 0 < elapsed[0] and elapsed[-1] <= events[-1].elapsed_s <= wall
    best = math.inf
    for end in ends:
        assert end.step == end.epoch * 10 and 0 <= end.train_acc <= 1 and 0 <= end.val_acc <= 1
        assert end.is_best == (end.val_loss < best)
        best = min(best, end.val_loss)
        assert [name for name, _norm in end.grad_norms] == layers
        assert [name for name, _share in end.dead_units] == ["layers.2", "layers.4"]  # after each ReLU
        # the epoch's speed, from the engine's epoch clock, agrees with its intervals' speeds (their own clock):
        # the intervals tile the epoch's training time
        mine = [s for s in steps if s.epoch == end.epoch]
        samples = [min(s.batch * 32, 320) - min(p * 32, 320) for s, p in zip(mine, [0] + [m.batch for m in mine],
                                                                                strict=False)]
        seconds = sum(n / s.samples_per_s for n, s in zip(samples, mine, strict=True))
        assert 320 / end.samples_per_s == pytest.approx(seconds, rel=0.25), (end, mine)
        assert 320 / end.samples_per_s < end.epoch_seconds < wall  # training, then validation, within the run
    boundaries = [e for e in events if isinstance(e, Boundary)]
    # a 2-D classifier's decision boundary: after epoch 1 (the first is always due), and the one it ended with
    assert boundaries and boundaries[0].epoch == 1 and boundaries[-1].epoch == 3


def test_the_reader_goes_on_from_where_it_stopped_and_skips_what_it_cannot_read(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    assert path.read_text() == header() + "\n" and writer.offset == path.stat().st_size
    reader = EventReader(path)
    for i, event in enumerate(EVERY_EVENT[:3]):  # three reads, each of what was appended since the last
        writer.emit(event)
        assert writer.offset == path.stat().st_size
        assert reader.read() == [event], i
    writer.close()
    with open(path, "a", encoding="utf-8") as fh:  # two lines no reader can use, a blank one, then an event
        fh.write("not json\n[1, 2]\n\n" + encode(EVERY_EVENT[3]) + "\n")
    assert reader.read() == [EVERY_EVENT[3]] and reader.skipped == 2
    small = EventReader(path)
    first = small.read(max_bytes=len(header()) + 2)  # the header and the start of the next line only
    assert first == [] and small.whole_offset == len(header()) + 1
    assert small.read() == EVERY_EVENT[:4]


def test_a_writer_reopened_on_a_run_goes_on_after_its_last_whole_line(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.emit(EVERY_EVENT[0])
    writer.close()
    size = path.stat().st_size
    again = EventWriter(path)  # a resumed run: no second header, and its offset is the file's end
    assert again.offset == size and path.stat().st_size == size
    again.emit(EVERY_EVENT[1])
    again.close()
    with open(path, "ab") as fh:
        fh.write(b'{"type":"StepLogged","epoch":1,"st')  # killed mid-line
    torn = EventWriter(path)  # the next writer ends the torn line first
    torn.emit(EVERY_EVENT[2])
    torn.close()
    assert torn.offset == path.stat().st_size
    lines = path.read_text().splitlines()
    assert lines[0] == header() and lines.count(header()) == 1 and len(lines) == 5
    reader = EventReader(path)
    assert reader.read() == EVERY_EVENT[:3] and reader.skipped == 1


def test_a_line_with_fields_this_version_does_not_know_still_decodes():
    row = json.loads(encode(EVERY_EVENT[3]))  # an EpochEnded
    newer = {"type": row.pop("type"), "from_a_newer_version": 1, **row}  # an unknown field before the known ones
    assert decode(json.dumps(newer)) == EVERY_EVENT[3]
    assert decode('{"epoch": 1}') is None  # no type: not an event this version knows
    with pytest.raises(ValueError, match="not an event"):
        decode("[1, 2]")
