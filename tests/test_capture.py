"""Whole-step CUDA-graph capture (train.compile on a GPU) and checkpoints that move between
captured and eager runs. The capture tests need a CUDA device; the state tests run anywhere."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny
from tui_trainer.engine import Controls, fit
from tui_trainer.engine.checkpoint import load_checkpoint
from tui_trainer.engine.optim import Schedule, load_optimizer_state, optimizer_state
from tui_trainer.run.events import ListSink, LogMessage, StepLogged

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CAPTURED = "train.compile: the training step is captured as one CUDA graph and replayed"


def _adam_step(lr) -> tuple[torch.optim.Optimizer, torch.nn.Parameter]:
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=lr, foreach=False)
    p.sum().backward()
    opt.step()
    return opt, p


def test_saved_optimizer_state_has_plain_rates_and_loads_into_either_kind_of_optimizer():
    captured_style, _ = _adam_step(torch.tensor(0.01))  # a device-tensor rate, as under capture
    state = optimizer_state(captured_style)
    assert type(state["param_groups"][0]["lr"]) is float and state["param_groups"][0]["lr"] == pytest.approx(0.01)
    assert isinstance(captured_style.param_groups[0]["lr"], torch.Tensor)  # the live optimizer is untouched

    eager, _ = _adam_step(0.5)
    eager.param_groups[0]["foreach"] = True
    load_optimizer_state(eager, state)
    assert type(eager.param_groups[0]["lr"]) is float and eager.param_groups[0]["lr"] == pytest.approx(0.01)
    assert eager.param_groups[0]["foreach"] is True  # this optimizer's own implementation flags are kept

    tensor_lr = torch.tensor(0.5)
    other, _ = _adam_step(tensor_lr)
    load_optimizer_state(other, optimizer_state(eager))
    assert other.param_groups[0]["lr"] is tensor_lr and float(tensor_lr) == pytest.approx(0.01)  # filled, not replaced

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=torch.tensor(0.02), foreach=False)
    sched = Schedule(torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    p.sum().backward()
    opt.step()
    sched.step_epoch(0.0)
    floats = sched.state_dict()
    assert all(type(v) is float for v in floats["base_lrs"] + floats["_last_lr"])


@cuda
@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "momentum"])
def test_captured_steps_train_like_eager_ones(runs, optimizer):
    """Same seed, same data: the replayed graph follows the eager run's losses, with a one-cycle
    schedule changing the rate every step (a rate frozen into the graph would drift away)."""
    common = ('train.device="cuda"', f'optimizer.name="{optimizer}"', 'optimizer.schedule="one-cycle"',
              "optimizer.lr=0.005", "regularization.grad_clip=1.0", "regularization.weight_decay=0.001",
              "regularization.label_smoothing=0.05", "train.epochs=3", "data.n_samples=2000")
    histories, logs = [], []
    for compile_ in ("false", "true"):
        sink = ListSink()
        result = fit(tiny(*common, f"train.compile={compile_}"), sink, runs_dir=runs)
        assert result.reason == "completed", result.message
        histories.append(result.rows)
        logs.append([m.text for m in sink.of(LogMessage)])
    assert CAPTURED in logs[1] and not any("capture failed" in t for t in logs[1])
    eager, captured = histories
    for e, c in zip(eager, captured, strict=True):
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-3)
        assert c["val_loss"] == pytest.approx(e["val_loss"], rel=1e-3)
        assert c["lr"] == pytest.approx(e["lr"], rel=1e-6)


@cuda
def test_replayed_steps_do_not_sync_with_the_host(runs, monkeypatch):
    from tui_trainer.engine import capture

    original = capture.StepGraph.run
    replays = []

    def guarded(self, xb, yb, slot):
        torch.cuda.set_sync_debug_mode("error")
        try:
            original(self, xb, yb, slot)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        replays.append(slot)

    monkeypatch.setattr(capture.StepGraph, "run", guarded)
    result = fit(tiny('train.device="cuda"', "train.compile=true", "train.log_every=50",
                                    "data.n_samples=4000", "train.epochs=1"), ListSink(), runs_dir=runs)
    assert result.reason == "completed", result.message
    assert len(replays) > 50


@cuda
def test_a_rate_set_by_hand_reaches_the_captured_step(runs):
    """lr set to 0 after capture: if the graph had frozen the old rate, the weights would still move."""

    import tui_trainer.engine.loop as loop

    controls, snapshot, built = Controls(), {}, {}
    real_prepare = loop.prepare

    def probe(cfg):
        out = real_prepare(cfg)
        built["model"] = out[2]
        return out

    class Sink(ListSink):
        def emit(self, event):
            super().emit(event)
            if isinstance(event, StepLogged) and not snapshot:  # after the capture (warm-up is 3 steps)
                snapshot.update({k: v.detach().clone() for k, v in built["model"].named_parameters()})
                controls.send("set_lr", lr=1e-30)  # the smallest rate the command allows: no visible move

    loop.prepare = probe
    try:
        sink = Sink()
        result = fit(tiny('train.device="cuda"', "train.compile=true", "train.log_every=10", "train.epochs=2"),
                     sink, controls, runs_dir=runs)
    finally:
        loop.prepare = real_prepare
    assert result.reason == "completed" and CAPTURED in [m.text for m in sink.of(LogMessage)]
    for name, value in built["model"].named_parameters():
        assert torch.allclose(value.detach(), snapshot[name], rtol=0, atol=1e-20), name


@cuda
def test_a_captured_run_resumes_on_the_cpu(runs):
    first = fit(tiny('train.device="cuda"', "train.compile=true", "train.epochs=1"), ListSink(), runs_dir=runs)
    ck = load_checkpoint(first.last_checkpoint)
    assert type(ck["optimizer"]["param_groups"][0]["lr"]) is float
    resumed = fit(tiny('train.device="cpu"', "train.epochs=2"), ListSink(), resume_path=first.last_checkpoint, runs_dir=runs)
    assert resumed.reason == "completed" and resumed.epoch == 2


@cuda
def test_an_optimizer_that_cannot_be_captured_compiles_the_forward_only(runs):
    sink = ListSink()
    result = fit(tiny('train.device="cuda"', "train.compile=true", 'optimizer.name="adagrad"',
                                    "train.epochs=1"), sink, runs_dir=runs)
    texts = [m.text for m in sink.of(LogMessage)]
    assert result.reason == "completed", result.message
    assert any("adagrad keeps its step count on the host, so the step cannot be captured; compiling the forward pass only"
               in t for t in texts)
    assert CAPTURED not in texts


def test_capture_is_on_by_default_on_cuda_wherever_it_is_exact():
    """The choice itself (no GPU needed): auto captures on CUDA with an optimizer that keeps its state on the
    device, in one process; never on a CPU, with Adagrad, under DDP, or when switched off."""
    from tui_trainer.engine.steps import capture_possible

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert tiny().train.compile == "auto"
    assert capture_possible(tiny(), cuda)
    assert capture_possible(tiny("train.compile=true"), cuda)  # true is read as on
    assert not capture_possible(tiny(), cpu)
    assert not capture_possible(tiny('optimizer.name="adagrad"'), cuda)
    assert not capture_possible(tiny("train.nproc=2"), cuda)
    assert not capture_possible(tiny('train.compile="off"'), cuda)
    assert not capture_possible(tiny("train.compile=false"), cuda)


def test_on_a_cpu_steps_run_eagerly_and_say_why(runs):
    sink = ListSink()
    result = fit(tiny("train.epochs=1"), sink, runs_dir=runs)
    assert result.reason == "completed"
    assert "steps run eagerly (train.compile = auto: a CPU: capture is for CUDA)" in [m.text for m in sink.of(LogMessage)]
