"""Engine: learning, early stopping, controls within one step, checkpoints, resume, failures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tui_trainer
from tests.conftest import tiny
from tui_trainer.config import apply_overrides, load_preset
from tui_trainer.engine import Controls, config_from_checkpoint, epoch_seed, fit, prepare
from tui_trainer.engine.checkpoint import load_checkpoint
from tui_trainer.engine.steps import StepBody
from tui_trainer.run.events import (
    CheckpointSaved,
    EpochEnded,
    ListSink,
    LogMessage,
    LrChanged,
    Paused,
    RunFinished,
    RunStarted,
    StartupTimed,
    StepLogged,
)
from tui_trainer.run.history import describe

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


# -- the numbers a person reads equal an independent computation of them ----------------------------


def assert_step_losses_average_to_train_loss(events: list, batch_size: int) -> None:
    """Each epoch's logged step losses, weighted by the samples behind each, average to its train loss.

    ``batch_size``: the global batch (per rank times ranks). The samples behind a StepLogged are the batches
    done since the one before it in its epoch; the last batch of an epoch may be short."""
    n = next(e for e in events if isinstance(e, RunStarted)).train_samples
    ends = [e for e in events if isinstance(e, EpochEnded)]
    assert ends
    for end in ends:
        steps = [s for s in events if isinstance(s, StepLogged) and s.epoch == end.epoch]
        done = [0] + [s.batch for s in steps]
        weights = [min(b * batch_size, n) - min(a * batch_size, n) for a, b in zip(done, done[1:], strict=False)]
        assert sum(weights) == n, (end.epoch, done)  # the epoch's every sample is behind one StepLogged
        mean = sum(w * s.loss for w, s in zip(weights, steps, strict=True)) / n
        assert mean == pytest.approx(end.train_loss, rel=1e-6), (end.epoch, [s.loss for s in steps])


def test_an_epochs_step_losses_weighted_by_their_samples_average_to_its_train_loss(runs):
    # 320 training samples in batches of 48: six of 48 and a last of 32, logged after batches 2, 4, 6 and 7
    sink = ListSink()
    fit(tiny("train.epochs=2", "data.batch_size=48", "train.log_every=2"), sink, runs_dir=runs)
    assert [(s.epoch, s.batch) for s in sink.of(StepLogged)] == [(1, 2), (1, 4), (1, 6), (1, 7),
                                                                 (2, 2), (2, 4), (2, 6), (2, 7)]
    assert_step_losses_average_to_train_loss(sink.events, 48)


def test_the_first_logged_loss_is_the_untrained_models_loss_on_the_first_batch(runs):
    """The live loss is the loss: computed here without the engine, from the same seed and the same epoch order."""
    cfg = tiny("train.log_every=1", "train.epochs=1")
    sink = ListSink()
    fit(cfg, sink, runs_dir=runs)
    _device, data, model = prepare(cfg)  # seeded as the fit was: the same data and starting weights
    xb, yb = next(iter(data.train.epoch(epoch_seed(cfg.train.seed, 1))))
    with torch.no_grad():
        expected = F.cross_entropy(model(xb), yb).item()
    first = sink.of(StepLogged)[0]
    assert (first.step, first.batch) == (1, 1)
    assert first.loss == pytest.approx(expected, rel=1e-6)
    assert sink.of(StepLogged)[1].loss != pytest.approx(expected, rel=1e-6)  # the weights moved after that step


def test_logged_validation_numbers_equal_an_independent_evaluation_on_the_validation_split(runs):
    cfg = tiny("train.epochs=3", preset="moons-mlp")
    sink = ListSink()
    result = fit(cfg, sink, runs_dir=runs)
    _device, data, _model = prepare(cfg)  # the same seeded splits
    model = result.model.eval()  # the weights the last validation saw (no early stopping: nothing restored)

    def loss_and_accuracy(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            out = model(x)
        return F.cross_entropy(out, y).item(), (out.argmax(1) == y).sum().item() / len(y)

    val_loss, val_acc = loss_and_accuracy(data.val.x, data.val.y)
    last = sink.of(EpochEnded)[-1]
    assert len(data.val.y) == sink.of(RunStarted)[0].val_samples == 80
    assert last.val_loss == pytest.approx(val_loss, rel=1e-5)
    assert last.val_acc == val_acc
    train_loss, _train_acc = loss_and_accuracy(data.train.x, data.train.y)
    assert train_loss != pytest.approx(val_loss, rel=1e-3)  # the splits differ: this test tells them apart


def test_with_the_weights_held_still_the_logged_train_numbers_are_the_models_own(runs):
    """At a learning rate of 1e-7 the model does not move (to 5 digits), so what the run logs for the training split (each
    interval's loss, the epoch's loss and accuracy) can be recomputed here, batch by batch, from the first weights."""
    cfg = tiny('optimizer.name="sgd"', "optimizer.lr=1e-7", "train.epochs=2", "train.log_every=3", "data.batch_size=48",
               'optimizer.schedule="plateau"', "optimizer.plateau_patience=0")
    sink = ListSink()
    fit(cfg, sink, runs_dir=runs)
    _device, data, model = prepare(cfg)
    for epoch in (1, 2):  # each epoch's own order, and its own totals (nothing carried over from the one before)
        sums, hits, sizes = [], 0, []
        with torch.no_grad():
            for xb, yb in data.train.epoch(epoch_seed(cfg.train.seed, epoch)):
                out = model(xb)
                sums.append(F.cross_entropy(out, yb, reduction="sum").item())
                hits += (out.argmax(1) == yb).sum().item()
                sizes.append(len(yb))
        assert sizes == [48] * 6 + [32]
        steps = [s for s in sink.of(StepLogged) if s.epoch == epoch]
        assert [s.batch for s in steps] == [3, 6, 7]
        for step, lo in zip(steps, (0, 3, 6), strict=True):
            hi = step.batch
            assert step.loss == pytest.approx(sum(sums[lo:hi]) / sum(sizes[lo:hi]), rel=1e-5), step
        end = sink.of(EpochEnded)[epoch - 1]
        assert end.train_loss == pytest.approx(sum(sums) / 320, rel=1e-5)
        assert end.train_acc == hits / 320
    # the validation loss stayed flat: the plateau schedule, fed it after each epoch, halved the rate once
    assert [e.lr for e in sink.of(EpochEnded)] == [1e-7, 5e-8]


@pytest.mark.parametrize("decay_biases", [False, True])
def test_one_sgd_step_with_l1_and_gradient_clipping_is_the_step_written_by_hand(runs, decay_biases):
    cfg = tiny('optimizer.name="sgd"', "optimizer.lr=0.5", "regularization.l1=0.01", "regularization.grad_clip=0.05",
               "train.log_every=1", f"regularization.decay_biases={str(decay_biases).lower()}")
    controls = Controls()
    result = fit(cfg, _ActAt(controls, 1, "stop"), controls, runs_dir=runs)
    assert result.reason == "stopped" and result.step == 1
    _device, data, model = prepare(cfg)
    xb, yb = next(iter(data.train.epoch(epoch_seed(cfg.train.seed, 1))))
    params = list(model.parameters())
    l1 = sum(p.abs().sum() for p in params if p.dim() >= 2 or decay_biases)  # weight matrices, and biases if asked
    grads = torch.autograd.grad(F.cross_entropy(model(xb), yb) + 0.01 * l1, params)
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    assert norm > 0.05  # the clipping acts
    expected = [p.detach() - 0.5 * g * (0.05 / norm) for p, g in zip(params, grads, strict=True)]
    for (name, got), want in zip(result.model.named_parameters(), expected, strict=True):
        assert torch.allclose(got.detach(), want, rtol=1e-5, atol=1e-7), name


def test_the_non_finite_message_names_the_same_step_whatever_the_log_interval(runs):
    """The step a loss went non-finite at is found inside the log interval; one step per interval tells it directly."""
    said, logged = [], []
    for log_every in (1, 4):
        controls = Controls()
        cfg = tiny("optimizer.lr=0.05", 'optimizer.name="sgd"', "train.epochs=3", f"train.log_every={log_every}")
        sink = DivergeInEpoch2(controls)
        result = fit(cfg, sink, controls, runs_dir=runs)
        assert result.reason == "non_finite_loss"
        said.append(result.message.split(",")[1].split(":")[0].strip())
        logged.append(sink.of(StepLogged)[-1].step)
    # logging every step, every finite step was logged: the first non-finite one is the next
    assert said == [f"step {logged[0] + 1}"] * 2, (said, logged)
    assert logged[1] < logged[0]  # logging every 4 steps, the diverging step is found inside its interval


SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
"""Tensor methods that read a value back to the host: on CUDA each one waits for the device."""


def test_no_host_sync_inside_training_steps_on_any_device(runs, monkeypatch):
    """Issue 6's promise, counted on the CPU too: between log intervals the engine's own code reads nothing back
    from a tensor (every call of ``SYNCS`` made from tui_trainer's files is counted, with where it came from)."""
    from tui_trainer.engine.loop import Fit

    package = str(Path(tui_trainer.__file__).parent)
    calls: list[tuple[str, str, int]] = []
    inside_step = [False]

    def counted(name: str):
        real = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            caller = sys._getframe(1).f_code
            if caller.co_filename.startswith(package):
                calls.append((name, Path(caller.co_filename).name, sys._getframe(1).f_lineno, inside_step[0]))
            return real(self, *args, **kwargs)

        return wrapper

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counted(name))
    original = Fit.train_epoch

    def watched_epoch(self):
        train_step = self.train_step

        def step(*args):
            inside_step[0] = True
            try:
                train_step(*args)
            finally:
                inside_step[0] = False

        self.train_step = step
        try:
            original(self)
        finally:
            self.train_step = train_step

    monkeypatch.setattr(Fit, "train_epoch", watched_epoch)
    marks: list[tuple[str, int]] = []

    class Marks(ListSink):
        def emit(self, event) -> None:
            super().emit(event)
            marks.append((type(event).__name__, len(calls)))

    sink = Marks()
    # 1600 samples in batches of 32: 50 steps an epoch, two log intervals of 25 (gradient statistics on: watched steps)
    result = fit(tiny("data.n_samples=2000", "train.log_every=25", "train.epochs=1", "train.diagnostics=true"), sink,
                 runs_dir=runs)
    assert result.reason == "completed" and result.step == 50
    assert [s.step for s in sink.of(StepLogged)] == [25, 50]
    assert [c for c in calls if c[3]] == []  # nothing read back inside a step
    started = next(n for kind, n in marks if kind == "RunStarted")
    first, second = (n for kind, n in marks if kind == "StepLogged")
    between = [calls[started:first], calls[first:second]]
    # one read per log interval: the interval's totals in one transfer (loop.py, _flush)
    assert [[(name, where) for name, where, _line, _step in part] for part in between] == [[("tolist", "loop.py")]] * 2


def test_regression_toy_fits_and_early_stops(runs):
    sink = ListSink()
    result = fit(load_preset("regression-toy"), sink, runs_dir=runs)
    assert result.reason == "early_stopped"
    ends = sink.of(EpochEnded)
    assert all(e.val_acc is None and e.train_acc is None for e in ends) and min(e.val_loss for e in ends) < 1.0
    best = min(ends, key=lambda e: e.val_loss)
    assert result.message == (f"early stop at epoch {ends[-1].epoch}: val_loss did not improve for 3 epochs "
                              f"(best {best.val_loss:.4g} at epoch {best.epoch}); best weights restored")


def test_best_follows_the_monitored_metric(runs):
    for monitor in ("val_loss", "val_acc"):
        sink = ListSink()
        fit(tiny("train.epochs=6", f'regularization.monitor="{monitor}"', "optimizer.lr=0.003"), sink, runs_dir=runs)
        ends = sink.of(EpochEnded)
        values = [e.val_acc if monitor == "val_acc" else -e.val_loss for e in ends]  # higher is better
        assert [e.is_best for e in ends] == [v > max(values[:i], default=-math.inf) for i, v in enumerate(values)]
        assert len(set(e.is_best for e in ends)) == 2, monitor  # some epochs improved, some did not


def test_where_the_seconds_before_the_first_step_went_is_said_once_between_the_start_and_the_first_log(runs):
    sink = ListSink()
    t0 = time.time()
    result = fit(tiny("train.epochs=2", "train.log_every=4"), sink, runs_dir=runs, process_start=t0 - 100.0)
    waited = time.time() - t0
    assert result.reason == "completed"
    kinds = [type(e) for e in sink.events]
    assert kinds.count(StartupTimed) == 1  # once, not once per epoch
    assert kinds.index(RunStarted) < kinds.index(StartupTimed) < kinds.index(StepLogged)
    said = sink.of(StartupTimed)[0]
    names = [n for n, _ in said.phases]
    assert names == ["start-up", "device", "data", "model", "first step"]
    seconds = dict(said.phases)
    assert 100.0 <= seconds["start-up"] < 100.0 + waited  # from the process start it was given to the setup
    assert all(s >= 0 for s in seconds.values()) and said.total - seconds["start-up"] < waited
    assert describe(said).startswith(f"first step {said.total:.2f} s after start: start-up {seconds['start-up']:.2f}, ")

    resumed = ListSink()
    fit(tiny("train.epochs=3", "train.log_every=4"), resumed, resume_path=result.run_dir / "checkpoints" / "last.pt")
    names = [n for n, _ in resumed.of(StartupTimed)[0].phases]
    assert names == ["checkpoint", "device", "data", "model", "first step"]  # no process start given: no start-up
    assert describe(resumed.of(StartupTimed)[0]).startswith("first step ")
    assert " after setup began: checkpoint " in describe(resumed.of(StartupTimed)[0])


def test_a_pause_before_the_first_step_is_not_counted_as_the_steps_time(runs):
    controls = Controls()
    held = 1.0

    class Resumes(ListSink):
        def emit(self, event) -> None:
            super().emit(event)
            if isinstance(event, Paused) and event.paused:  # held before the first step: resume a second later
                threading.Timer(held, controls.send, ("resume",)).start()

    controls.send("pause")
    sink = Resumes()
    t0 = time.perf_counter()
    assert fit(tiny("train.epochs=1"), sink, controls, runs_dir=runs).reason == "completed"
    assert time.perf_counter() - t0 >= held and [p.paused for p in sink.of(Paused)] == [True, False]
    assert dict(sink.of(StartupTimed)[0].phases)["first step"] < held / 2  # the held second is left out


def test_a_single_step_while_paused_is_logged_at_once_whatever_the_log_interval(runs):
    controls = Controls()

    class GoOn(ListSink):
        def emit(self, event) -> None:
            super().emit(event)
            if isinstance(event, Paused) and event.paused and event.step == 1:
                controls.send("resume")  # held again after the single step: go on

    controls.send("pause")
    controls.send("step")  # as the run process's --paused does: held before the first step, then one step
    sink = GoOn()
    result = fit(tiny("train.epochs=1", "train.log_every=100"), sink, controls, runs_dir=runs)
    assert result.reason == "completed"
    assert [s.step for s in sink.of(StepLogged)] == [1, 10]  # the single step, then the epoch's end
    assert [(p.paused, p.step) for p in sink.of(Paused)] == [(True, 0), (True, 1), (False, 1)]


def test_a_metrics_file_that_cannot_be_written_is_an_error_line_and_the_run_goes_on(runs, monkeypatch):
    import errno

    from tui_trainer.run.folder import RunDir

    def full(self, row):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RunDir, "append_metrics", full)
    sink = ListSink()
    result = fit(tiny(), sink, runs_dir=runs)
    assert result.reason == "completed" and result.epoch == 2
    on_disk = RunDir(result.run_dir).read_events()[0]  # the recorder's own lines are in the run's log
    errors = [(m.level, m.text) for m in on_disk if isinstance(m, LogMessage) and m.level == "error"]
    assert errors == [("error", f"could not append to {result.run_dir / 'metrics.jsonl'}: No space left on device")] * 2


def test_a_validation_loss_that_goes_non_finite_stops_the_run_with_a_hint(runs, monkeypatch):
    import tui_trainer.engine.loop as loop

    monkeypatch.setattr(loop, "evaluate", lambda *args, **kwargs: (math.inf, 0.5))
    result = fit(tiny(), ListSink(), runs_dir=runs)
    assert result.reason == "non_finite_loss"
    assert result.message == ("validation loss became non-finite at epoch 1: lower the learning rate or set "
                              "regularization.grad_clip")


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
    assert resumed.rows[-1]["val_loss"] == pytest.approx(straight.rows[-1]["val_loss"], rel=1e-6)
    rows = (half.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3, 4]


def test_resume_extends_a_one_cycle_schedule_to_the_new_horizon(runs):
    half = fit(tiny('optimizer.schedule="one-cycle"'), ListSink(), runs_dir=runs)
    resumed = fit(tiny("train.epochs=4", 'optimizer.schedule="one-cycle"'), ListSink(),
                  resume_path=half.run_dir / "checkpoints" / "last.pt", runs_dir=runs)
    assert resumed.reason == "completed" and resumed.epoch == 4
    lrs = [row["lr"] for row in resumed.rows]
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
    assert resumed.rows[-1]["val_loss"] == pytest.approx(straight.rows[-1]["val_loss"], rel=1e-6)
    assert resumed.rows[-1]["train_loss"] == pytest.approx(straight.rows[-1]["train_loss"], rel=1e-6)


def test_seeded_runs_are_deterministic_on_cpu(runs):
    a = fit(tiny(), ListSink(), runs_dir=runs)
    b = fit(tiny(), ListSink(), runs_dir=runs)
    assert a.rows[-1]["val_loss"] == b.rows[-1]["val_loss"]
    c = fit(tiny("train.seed=1"), ListSink(), runs_dir=runs)
    assert c.rows[-1]["val_loss"] != a.rows[-1]["val_loss"]


class DivergeInEpoch2(ListSink):
    """Epoch 1 trains well; then a learning rate of 100 sends the loss to infinity within epoch 2."""

    def __init__(self, controls: Controls) -> None:
        super().__init__()
        self.controls = controls

    def emit(self, event) -> None:
        super().emit(event)
        if isinstance(event, EpochEnded) and event.epoch == 1:
            self.controls.send("set_lr", lr=100.0)


def test_non_finite_loss_stops_and_keeps_checkpoints_clean(runs):
    controls = Controls()
    sink = DivergeInEpoch2(controls)
    cfg = tiny("optimizer.lr=0.05", 'optimizer.name="sgd"', "train.epochs=3", "train.log_every=1")
    result = fit(cfg, sink, controls, runs_dir=runs)
    assert result.reason == "non_finite_loss" and result.epoch == 1
    assert "epoch 2, step" in result.message and "lower the learning rate" in result.message
    # last.pt is epoch 1's, written before the divergence and never overwritten by it: finite, and resumable
    ck = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert ck["epoch"] == 1 and ck["step"] == 10
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    assert result.last_checkpoint == result.run_dir / "checkpoints" / "last.pt"
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
    assert result.rows[-1]["lr"] == pytest.approx(0.0005)
    assert sink.of(LrChanged) == [LrChanged(epoch=1, step=2, x=0.2, lr=0.0005)]
    assert sink.command.wait(0) == {"ok": True, "message": "learning rate set to 0.0005 in epoch 1 (0 complete), step 2"}
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["optimizer"]["param_groups"][0]["lr"] == 0.0005


@pytest.mark.slow
def test_engine_imports_no_ui_libraries():
    code = ("import sys, tui_trainer.engine, tui_trainer.data, tui_trainer.run.folder;"
            "bad=[m for m in ('textual','textual_plotext','plotext','typer') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_compile_option_trains_or_falls_back_cleanly(runs, monkeypatch):
    sink = ListSink()
    result = fit(tiny("train.compile=true", "train.epochs=1"), sink, runs_dir=runs)
    assert result.reason == "completed" and result.rows[-1]["val_loss"] < 0.75
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
            self.train_step(*first, 0, True)
            for i, (xb, yb) in zip(range(1, 50), batches, strict=False):
                self.train_step(xb, yb, i % 1000, i % 10 == 0)  # gradient statistics stay on the device too
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return original(self)

    monkeypatch.setattr(Fit, "train_epoch", guarded)
    result = fit(cfg, ListSink(), runs_dir=runs)
    assert result.reason == "completed"
