"""Engine: learning, early stopping, controls within one step, checkpoints, resume, failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny
from tui_trainer.checkpoint import load_checkpoint
from tui_trainer.config import apply_overrides, load_preset
from tui_trainer.engine import Controls, config_from_checkpoint, fit, prepare
from tui_trainer.engine.steps import StepBody
from tui_trainer.events import (
    CheckpointSaved,
    EpochEnded,
    ListSink,
    LogMessage,
    LrChanged,
    RunFinished,
    RunStarted,
    StepLogged,
)
from tui_trainer.history import describe

METRIC_KEYS = {"epoch", "step", "train_loss", "val_loss", "train_acc", "val_acc", "lr", "epoch_seconds", "samples_per_s"}


def test_fit_learns_moons_and_writes_the_run_directory(runs):
    sink = ListSink()
    cfg = tiny("train.epochs=8", preset="moons-mlp")
    result = fit(cfg, sink, runs_dir=runs)
    assert result.reason == "completed" and result.epoch == 8
    epochs = sink.of(EpochEnded)
    assert [e.epoch for e in epochs] == list(range(1, 9))
    assert epochs[-1].val_acc >= 0.85, epochs[-1]
    assert epochs[-1].train_loss < epochs[0].train_loss
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and METRIC_KEYS <= set(rows[0])
    assert rows[-1]["val_acc"] == pytest.approx(epochs[-1].val_acc)
    assert (result.run_dir / "config.toml").read_text().count("[optimizer]") == 1
    assert (result.run_dir / "checkpoints" / "last.pt").exists()
    assert (result.run_dir / "checkpoints" / "best.pt").exists()
    started = sink.of(RunStarted)[0]
    assert started.n_params == sum(p.numel() for p in prepare(cfg)[2].parameters())
    assert isinstance(sink.events[-1], RunFinished)


def test_step_events_report_interval_loss_without_per_batch_sync(runs):
    sink = ListSink()
    fit(tiny("train.epochs=1", "train.log_every=3"), sink, runs_dir=runs)
    steps = sink.of(StepLogged)
    # 320 train samples / 32 = 10 batches: logs after 3, 6, 9 and the epoch's last batch
    assert [s.step for s in steps] == [3, 6, 9, 10]
    assert all(s.loss > 0 and s.samples_per_s > 0 for s in steps)
    assert all(s.memory is None for s in steps)  # device memory is reported on CUDA only


def test_regression_toy_fits_and_early_stops(runs):
    sink = ListSink()
    result = fit(load_preset("regression-toy"), sink, runs_dir=runs)
    assert result.reason == "early_stopped"
    ends = sink.of(EpochEnded)
    assert ends[-1].val_acc is None and min(e.val_loss for e in ends) < 1.0
    assert "did not improve for 3 epochs" in result.message


def test_early_stopping_fires_on_a_crafted_plateau(runs):
    # min_delta larger than any possible change: only epoch 1 counts as an improvement
    cfg = tiny("train.epochs=20", "regularization.early_stopping=true", "regularization.patience=2",
               "regularization.min_delta=100.0")
    result = fit(cfg, ListSink(), runs_dir=runs)
    assert result.reason == "early_stopped" and result.epoch == 3


def test_early_stopping_restores_best_weights(runs):
    cfg = tiny("train.epochs=20", "regularization.early_stopping=true", "regularization.patience=1",
               "regularization.min_delta=100.0", "optimizer.lr=0.05")
    sink = ListSink()
    result = fit(cfg, sink, runs_dir=runs)
    best = load_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    assert best["epoch"] == 1
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert last["epoch"] == 2
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in best["model"])  # training moved on
    restored = result.model.state_dict()
    assert all(torch.equal(restored[k].cpu(), best["model"][k]) for k in best["model"])  # ...and was rolled back
    no_restore = fit(apply_overrides(cfg, ["regularization.restore_best=false"]), ListSink(), runs_dir=runs)
    kept = no_restore.model.state_dict()  # same seed, same best epoch, but the last weights stay
    assert any(not torch.equal(kept[k].cpu(), best["model"][k]) for k in best["model"])


class _ActAt:
    """Sink that sets a control when a given step is logged."""

    def __init__(self, controls: Controls, step: int, what: str) -> None:
        self.controls, self.step, self.what, self.inner = controls, step, what, ListSink()

    def emit(self, event) -> None:
        self.inner.emit(event)
        if isinstance(event, StepLogged) and event.step == self.step:
            self.controls.send(self.what)


def test_stop_takes_effect_within_one_step(runs):
    controls = Controls()
    sink = _ActAt(controls, 3, "stop")
    result = fit(tiny("train.log_every=1", "train.epochs=5"), sink, controls, runs_dir=runs)
    assert result.reason == "stopped"
    assert result.step == 3  # no step ran after the one during which stop was requested
    assert result.message == "stopped in epoch 1 (0 complete), step 3"  # the epoch under way and those complete
    ck = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert ck["step"] == 3 and ck["batch_in_epoch"] == 3 and ck["epoch"] == 0


def test_save_now_writes_a_checkpoint_within_one_step_and_the_run_goes_on(runs):
    controls = Controls()
    sink = _ActAt(controls, 2, "save")
    result = fit(tiny("train.log_every=1"), sink, controls, runs_dir=runs)
    assert result.reason == "completed"
    manual = [e for e in sink.inner.of(CheckpointSaved) if e.kind == "manual"]
    assert len(manual) == 1 and manual[0].step == 2
    assert Path(manual[0].path).name == "manual-e001-s0000002.pt"  # the epoch the progress line shows (was e000)
    assert load_checkpoint(manual[0].path)["step"] == 2
    assert sink.inner.of(StepLogged)[-1].step == result.step > 2


def test_checkpoint_round_trip_restores_model_and_config(runs):
    cfg = tiny("model.hidden=[16]", "optimizer.name=\"momentum\"", "optimizer.schedule=\"step\"")
    result = fit(cfg, ListSink(), runs_dir=runs)
    ck = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert config_from_checkpoint(ck).to_dict() == cfg.to_dict()
    _dev, _data, model = prepare(cfg)
    model.load_state_dict(ck["model"])
    assert ck["epoch"] == 2 and ck["optimizer"]["state"] and ck["scheduler"]["last_epoch"] == 2
    assert len(ck["history"]) == 2


@pytest.mark.parametrize("extra", [(), ("model.dropout=0.3", 'optimizer.schedule="step"', "optimizer.step_size=1")])
def test_two_epochs_then_resume_to_four_equals_four_straight(runs, extra):
    straight = fit(tiny("train.epochs=4", *extra), ListSink(), runs_dir=runs)
    half = fit(tiny("train.epochs=2", *extra), ListSink(), runs_dir=runs)
    cfg = tiny("train.epochs=4", *extra)
    resumed = fit(cfg, ListSink(), resume_path=half.run_dir / "checkpoints" / "last.pt", runs_dir=runs)
    assert resumed.run_dir == half.run_dir
    assert resumed.history[-1]["val_loss"] == pytest.approx(straight.history[-1]["val_loss"], rel=1e-6)
    rows = (half.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3, 4]


def test_resume_extends_a_one_cycle_schedule_to_the_new_horizon(runs):
    half = fit(tiny('optimizer.schedule="one-cycle"'), ListSink(), runs_dir=runs)
    resumed = fit(tiny("train.epochs=4", 'optimizer.schedule="one-cycle"'), ListSink(),
                  resume_path=half.run_dir / "checkpoints" / "last.pt", runs_dir=runs)
    assert resumed.reason == "completed" and resumed.epoch == 4
    lrs = [row["lr"] for row in resumed.history]
    assert lrs[-1] < lrs[1]  # annealing towards the end of the longer cycle


def test_resume_from_a_mid_epoch_stop_matches_a_straight_run(runs):
    straight = fit(tiny("train.epochs=2", "train.log_every=1"), ListSink(), runs_dir=runs)
    controls = Controls()
    stopped = fit(tiny("train.epochs=2", "train.log_every=1"), _ActAt(controls, 14, "stop"), controls, runs_dir=runs)
    ck = load_checkpoint(stopped.run_dir / "checkpoints" / "last.pt")
    assert (ck["epoch"], ck["batch_in_epoch"]) == (1, 4)
    resumed = fit(tiny("train.epochs=2", "train.log_every=1"), ListSink(),
                  resume_path=stopped.run_dir / "checkpoints" / "last.pt", runs_dir=runs)
    assert resumed.step == straight.step
    assert resumed.history[-1]["val_loss"] == pytest.approx(straight.history[-1]["val_loss"], rel=1e-6)
    assert resumed.history[-1]["train_loss"] == pytest.approx(straight.history[-1]["train_loss"], rel=1e-6)


def test_seeded_runs_are_deterministic_on_cpu(runs):
    a = fit(tiny(), ListSink(), runs_dir=runs)
    b = fit(tiny(), ListSink(), runs_dir=runs)
    assert a.history[-1]["val_loss"] == b.history[-1]["val_loss"]
    c = fit(tiny("train.seed=1"), ListSink(), runs_dir=runs)
    assert c.history[-1]["val_loss"] != a.history[-1]["val_loss"]


def test_non_finite_loss_stops_and_keeps_checkpoints_clean(runs):
    sink = ListSink()
    cfg = tiny("optimizer.lr=100.0", 'optimizer.name="sgd"', "train.epochs=3", "train.log_every=1")
    result = fit(cfg, sink, runs_dir=runs)
    assert result.reason == "non_finite_loss"
    assert "step" in result.message and "lower the learning rate" in result.message
    last = result.run_dir / "checkpoints" / "last.pt"
    if last.exists():  # only a checkpoint from before the divergence may exist, and it is finite
        ck = load_checkpoint(last)
        assert all(torch.isfinite(v).all() for v in ck["model"].values())
    # the failure is said once, by the run's end, and no alarm from a later step comes before it
    assert sink.of(RunFinished)[0].message == result.message
    assert not any(m.level == "error" for m in sink.of(LogMessage))
    assert not any("non-finite gradient" in m.text for m in sink.of(LogMessage))


def test_out_of_memory_is_a_reason_not_a_crash(runs, monkeypatch):
    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(StepBody, "__call__", boom)
    result = fit(tiny("data.batch_size=64"), ListSink(), runs_dir=runs)
    assert result.reason == "out_of_memory"
    assert "batch size 64" in result.message and "data.batch_size=32" in result.message


def test_unexpected_error_becomes_reason_error(runs, monkeypatch):
    monkeypatch.setattr(StepBody, "__call__", lambda *a, **k: (_ for _ in ()).throw(ValueError("bad shape")))
    sink = ListSink()
    result = fit(tiny(), sink, runs_dir=runs)
    assert result.reason == "error" and result.message == "before epoch 1, step 0: ValueError: bad shape"
    assert isinstance(sink.events[-1], RunFinished)
    assert describe(sink.events[-1]).startswith("failed: before epoch 1, step 0: ValueError: bad shape")  # said once


def test_learning_rate_change_during_a_run(runs):
    controls = Controls()

    class Changer(ListSink):
        def emit(self, event):
            super().emit(event)
            if isinstance(event, StepLogged) and event.step == 2:
                self.command = controls.send("set_lr", lr=0.0005)

    sink = Changer()
    result = fit(tiny("train.log_every=1"), sink, controls, runs_dir=runs)
    assert result.history[-1]["lr"] == pytest.approx(0.0005)
    assert sink.of(LrChanged) == [LrChanged(epoch=1, step=2, x=0.2, lr=0.0005)]
    assert sink.command.wait(0) == {"ok": True, "message": "learning rate set to 0.0005 in epoch 1 (0 complete), step 2"}
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["optimizer"]["param_groups"][0]["lr"] == 0.0005


def test_engine_imports_no_ui_libraries():
    code = ("import sys, tui_trainer.engine, tui_trainer.data, tui_trainer.runs;"
            "bad=[m for m in ('textual','textual_plotext','plotext','typer') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(300)
def test_compile_option_trains_or_falls_back_cleanly(runs, monkeypatch):
    sink = ListSink()
    result = fit(tiny("train.compile=true", "train.epochs=1"), sink, runs_dir=runs)
    assert result.reason == "completed" and result.history[-1]["val_loss"] < 0.75
    # a capture failure (as on a device without graph support) falls back to eager and says so
    import tui_trainer.engine.steps as steps_mod

    def broken_compile(model, **kw):
        def fails(*a, **k):
            raise RuntimeError("CUDA graph capture not supported")
        return fails

    monkeypatch.setattr(steps_mod.torch, "compile", broken_compile)
    sink = ListSink()
    result = fit(tiny("train.compile=true", "train.epochs=1"), sink, runs_dir=runs)
    assert result.reason == "completed"
    assert any("compiling failed (RuntimeError: CUDA graph capture not supported); continuing eagerly" in m.text
               for m in sink.of(LogMessage))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_device_to_host_sync_inside_training_steps(runs, monkeypatch):
    """Steps between log intervals must not synchronise with the host (issue 6)."""
    from tui_trainer.engine.loop import Fit

    cfg = tiny('train.device="cuda"', "train.log_every=1000", "data.n_samples=4000", "train.epochs=1")
    original = Fit.train_epoch

    def guarded(self):
        batches = self.data.train.epoch(1)
        first = next(batches)  # the epoch's permutation is copied to the device here, before the guard
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            self.step_runner(*first, 0, True)
            for i, (xb, yb) in zip(range(1, 50), batches, strict=False):
                self.step_runner(xb, yb, i % 1000, i % 10 == 0)  # gradient statistics stay on the device too
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return original(self)

    monkeypatch.setattr(Fit, "train_epoch", guarded)
    result = fit(cfg, ListSink(), runs_dir=runs)
    assert result.reason == "completed"
