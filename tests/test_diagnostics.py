"""Gradient health, dead units, alarms, curve hints and the LR finder, on networks whose numbers are known."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from tests.conftest import tiny
from tui_trainer.config import apply_overrides, load_preset
from tui_trainer.data import real
from tui_trainer.diagnostics import (
    GradientMonitor,
    LayerHealth,
    curve_hints,
    dead_alarm,
    dead_units,
    gradient_alarms,
    health_rows,
)
from tui_trainer.engine import Trainer
from tui_trainer.events import ListSink, LogMessage, StepLogged
from tui_trainer.lrfind import lr_find, suggest
from tui_trainer.models import MLP


def lecture_network() -> MLP:
    """The lecture's 1-2-1 sigmoid network with its hand-set weights."""
    model = MLP(1, [2], 1, act="sigmoid")
    with torch.no_grad():
        model.layers[1].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model.layers[1].bias.copy_(torch.tensor([1.0, 2.0]))
        model.layers[3].weight.copy_(torch.tensor([[1.0, 2.0]]))
        model.layers[3].bias.copy_(torch.tensor([-1.0]))
    return model


def test_monitor_matches_the_lectures_worked_gradients():
    model = lecture_network()
    monitor = GradientMonitor(model)
    assert monitor.names == ["layers.1", "layers.3"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.mse_loss(model(torch.tensor([[1.0]])), torch.tensor([[3.0]]))
    loss.backward()
    assert model.layers[3].bias.grad.item() == pytest.approx(-3.3142, abs=1e-4)
    monitor.after_backward()
    monitor.before_step()
    opt.step()
    rows = health_rows(monitor.names, monitor.after_step().tolist())
    hidden_grad = math.sqrt(2 * (0.3480**2 + 1.3032**2))  # weight and bias gradients are equal at x = 1
    output_grad = math.sqrt(2.9191**2 + 2.4229**2 + 3.3142**2)
    assert rows[0].grad_norm == pytest.approx(hidden_grad, abs=1e-3)
    assert rows[1].grad_norm == pytest.approx(output_grad, abs=1e-3)
    assert rows[0].weight_norm == pytest.approx(math.sqrt(1 + 1 + 1 + 4) - 0, rel=0.05)  # after one small step
    # plain SGD moves each layer by lr * gradient, so the ratio is lr * |g| / |w_after|
    assert rows[1].update_ratio == pytest.approx(0.1 * output_grad / rows[1].weight_norm, rel=1e-4)


def test_alarms_on_built_rows():
    vanishing = (LayerHealth("layers.1", 1e-7, 1.0, 0.0), LayerHealth("layers.9", 0.1, 1.0, 0.0))
    assert [k for k, _ in gradient_alarms(vanishing)] == ["vanishing"]
    assert "try ReLU, batch norm, residual connections" in gradient_alarms(vanishing)[0][1]
    healthy = (LayerHealth("layers.1", 0.05, 1.0, 0.0), LayerHealth("layers.9", 0.1, 1.0, 0.0))
    assert gradient_alarms(healthy) == []
    exploding = (LayerHealth("layers.1", 5e3, 1.0, 0.0), LayerHealth("layers.9", 1e4, 1.0, 0.0))
    assert [k for k, _ in gradient_alarms(exploding)] == ["exploding"]
    nan = (LayerHealth("layers.1", float("nan"), 1.0, 0.0), LayerHealth("layers.9", 1.0, 1.0, 0.0))
    assert "non-finite gradient in layers.1" in gradient_alarms(nan)[0][1]


def test_dead_units_counts_relus_that_never_fire():
    model = MLP(2, [4], 2)
    with torch.no_grad():
        model.layers[1].weight.zero_()
        model.layers[1].bias.copy_(torch.tensor([1.0, 1.0, -1.0, -1.0]))  # two units always off
    shares = dead_units(model, torch.randn(32, 2))
    assert shares == {"layers.2": 0.5}
    assert "50% of the units after layers.2 never fire" in dead_alarm(shares)
    assert dead_alarm({"layers.2": 0.1}) is None


def _rows(train, val):
    return [{"train_loss": t, "val_loss": v} for t, v in zip(train, val, strict=True)]


def test_curve_hints():
    kinds = lambda h: [k for k, _ in curve_hints(h)]  # noqa: E731
    assert kinds(_rows([1.0, 0.8, 0.6, 0.5], [0.9, 0.95, 1.0, 1.1])) == ["overfitting"]
    assert kinds(_rows([0.69, 0.69, 0.69], [0.69, 0.69, 0.69])) == ["flat"]
    assert kinds(_rows([1.0, 1.2, 0.9, 1.3], [1.0, 1.2, 0.9, 1.3])) == ["too_high"]
    assert kinds(_rows([1.0, 0.8, 0.6, 0.5], [0.9, 0.7, 0.6, 0.55])) == []


def test_engine_records_grad_norms_and_alarms_for_deep_sigmoid_only(runs):
    sink = ListSink()
    result = Trainer(runs).fit(apply_overrides(load_preset("deep-sigmoid-spirals"), ["train.epochs=2"]), sink)
    warnings = [m.text for m in sink.of(LogMessage) if m.level == "warning"]
    assert any("vanishing gradients" in w and w.startswith("epoch 1,") for w in warnings), warnings
    rows = [json.loads(r) for r in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    norms = rows[0]["grad_norms"]
    assert list(norms) == [f"layers.{i}" for i in range(1, 18, 2)]
    assert norms["layers.1"] < 1e-2 * norms["layers.17"]
    assert sink.of(StepLogged)[0].layers[0].name == "layers.1"

    fixed = apply_overrides(load_preset("deep-sigmoid-spirals"), ["train.epochs=2", 'model.activation="relu"',
                                                                  "model.batch_norm=true"])
    sink = ListSink()
    Trainer(runs).fit(fixed, sink)
    assert not any("vanishing" in m.text for m in sink.of(LogMessage))


def test_diagnostics_can_be_turned_off(runs):
    sink = ListSink()
    result = Trainer(runs).fit(tiny("train.diagnostics=false"), sink)
    assert "grad_norms" not in result.history[-1] and sink.of(StepLogged)[0].layers == ()


def test_suggest_finds_the_steepest_descent_before_the_minimum():
    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]
    # a loss that falls fastest at lr = 1e-3 and blows up after 1e-1
    loss = [1 / (1 + math.exp(2 * (math.log10(lr) + 3))) + (max(0, math.log10(lr) + 1) ** 2) for lr in lrs]
    s = suggest(lrs, loss)
    assert 10**-3.3 < s < 10**-2.7
    assert suggest(lrs, [1.0] * 100) is None  # flat: nothing to suggest


def test_lr_find_leaves_training_untouched_and_suggests_for_a_learnable_problem(runs):
    cfg = tiny("data.n_samples=2000", preset="moons-mlp")
    before = Trainer(runs).fit(cfg, ListSink()).history[-1]["val_loss"]
    result = lr_find(cfg, steps=100)
    assert len(result.lrs) >= 50 and result.suggestion is not None
    assert 1e-5 < result.suggestion < 1.0
    after = Trainer(runs).fit(cfg, ListSink()).history[-1]["val_loss"]
    assert before == after  # the sweep used its own model, optimizer and data order


def test_lr_find_stops_when_asked():
    polls = []

    def stop_after_ten() -> bool:
        polls.append(1)
        return len(polls) > 10

    result = lr_find(tiny("data.n_samples=2000", preset="moons-mlp"), steps=100, should_stop=stop_after_ten)
    assert len(result.lrs) == 10 and len(polls) == 11


@pytest.mark.skipif(not (real.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_lr_find_on_fashion_mnist_is_within_10x_of_the_preset(tmp_path):
    cfg = apply_overrides(load_preset("fashion-mnist-mlp"), ['train.device="cpu"', f'data.cache_dir="{tmp_path}"'])
    result = lr_find(cfg)
    assert result.suggestion is not None
    assert cfg.optimizer.lr / 10 <= result.suggestion <= cfg.optimizer.lr * 10, result.suggestion


def test_running_mean_is_the_debiased_moving_average():
    from tui_trainer.smoothing import RunningMean

    values = [3.0, 1.0, 4.0, 1.0, 5.0]
    mean = RunningMean(0.9)
    got = [mean.add(v) for v in values]
    expected, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = 0.9 * avg + 0.1 * v
        expected.append(avg / (1 - 0.9**i))
    assert got == pytest.approx(expected) and mean.values == got
    assert got[0] == pytest.approx(3.0)  # debiased: the first point is not pulled towards zero
