"""Synthetic data and batching, model building, optimizers and schedules."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny
from tui_trainer.config import (
    ACTIVATIONS,
    INITS,
    OPTIMIZERS,
    SCHEDULES,
    ModelConfig,
    OptimizerConfig,
    RegularizationConfig,
)
from tui_trainer.data import LoaderBatches, TensorBatches, load_data
from tui_trainer.data.synthetic import make_classification, make_regression_toy
from tui_trainer.engine.models import MLP, build_model, count_params, format_summary, layer_summary
from tui_trainer.engine.optim import build_optimizer, build_schedule, l1_penalty, param_groups

CPU = torch.device("cpu")


@pytest.mark.parametrize("name", ["spirals", "moons", "circles", "xor", "blobs"])
def test_synthetic_classification_is_seeded_and_balanced(name):
    x, y = make_classification(name, 300, 3 if name in ("spirals", "blobs") else 2, 0.1, seed=7)
    x2, y2 = make_classification(name, 300, 3 if name in ("spirals", "blobs") else 2, 0.1, seed=7)
    assert x.shape == (300, 2) and x.dtype == torch.float32 and torch.equal(x, x2) and torch.equal(y, y2)
    counts = torch.bincount(y)
    assert counts.min() >= 300 // len(counts) - 60
    x3, _ = make_classification(name, 300, 2, 0.1, seed=8)
    assert not torch.equal(x[:, :2], x3)


def test_regression_toy_matches_the_lecture():
    x, y, xv, yv = make_regression_toy(40, 1.0, seed=0)
    assert torch.allclose(x[:, 0], torch.arange(-3, 3, 0.15), atol=1e-5)
    assert torch.allclose(yv, xv**2)  # validation on the clean x^2
    assert x.min() >= -3 and x.max() < 3


def test_split_standardises_with_train_statistics_only():
    data = load_data(tiny(), CPU)
    assert data.train.n_samples == 320 and data.val.n_samples == 80
    assert torch.allclose(data.train.x.mean(0), torch.zeros(2), atol=1e-5)
    assert not torch.allclose(data.val.x.mean(0), torch.zeros(2), atol=1e-5)


def test_tensor_batches_slice_a_seeded_permutation_and_skip():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    b = TensorBatches(x, y, 4, shuffle=True)
    assert len(b) == 3
    first = [yb.tolist() for _, yb in b.epoch(seed=1)]
    assert sorted(sum(first, [])) == list(range(10))
    assert [yb.tolist() for _, yb in b.epoch(seed=1)] == first
    assert [yb.tolist() for _, yb in b.epoch(seed=1, skip=1)] == first[1:]
    assert [yb.tolist() for _, yb in b.epoch(seed=2)] != first


def test_loader_batches_feed_the_same_samples():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    ds = torch.utils.data.TensorDataset(x, y)
    lb = LoaderBatches(ds, 4, shuffle=True, num_workers=0, device=CPU)
    got = [yb.tolist() for _, yb in lb.epoch(seed=3)]
    assert len(lb) == 3 and sorted(sum(got, [])) == list(range(10))
    assert [yb.tolist() for _, yb in lb.epoch(seed=3, skip=2)] == got[2:]


def test_lecture_mlp_parameter_count():
    model = MLP(784, [512, 512], 10)
    assert count_params(model) == (669_706, 669_706)
    rows = layer_summary(model, (1, 28, 28))
    assert rows[0].output_shape == (784,) and rows[-1].output_shape == (10,)
    assert "total params: 669,706" in format_summary(rows, model)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("init", INITS)
def test_mlp_every_activation_and_init_forward_backward(act, init):
    cfg = ModelConfig(hidden=[8, 8], activation=act, init=init, batch_norm=True, dropout=0.2)
    model = build_model(cfg, (2,), 3)
    out = model(torch.randn(5, 2))
    assert out.shape == (5, 3)
    out.sum().backward()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if init == "zeros":
        assert all(torch.count_nonzero(m.weight) == 0 for m in linears)
    if init == "normal":
        assert linears[0].weight.std() < 0.05
    for name, p in model.named_parameters():  # every parameter gets a gradient of its own shape, finite
        assert p.grad is not None and p.grad.shape == p.shape and torch.isfinite(p.grad).all(), name
    assert torch.equal(linears[-1].bias.grad, torch.full((3,), 5.0))  # d(sum of outputs)/d(output bias) = batch size
    hidden = [m.weight.grad.abs().sum().item() for m in linears[:-1]]
    if init == "zeros":  # the lesson of zero init: the hidden layers get no gradient at all, so they never learn
        assert hidden == [0.0, 0.0]
    else:  # every layer is reached by the gradient (an activation that cut the graph would leave one at zero)
        assert all(g > 1e-3 for g in hidden), hidden


def test_weight_decay_only_on_weight_matrices():
    model = MLP(2, [4], 2, batch_norm=True)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4  # 2 biases + bn weight + bn bias


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_reduces_a_simple_loss(name):
    torch.manual_seed(0)
    model = MLP(2, [8], 1)
    lr = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.1}.get(name, 0.01)
    opt = build_optimizer(model, OptimizerConfig(name=name, lr=lr), RegularizationConfig(), CPU)
    x = torch.randn(64, 2)
    y = x.sum(1, keepdim=True)
    first = None
    for _ in range(50):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.7, (name, first, loss.item())


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_changes_or_holds_the_lr_as_it_should(schedule):
    model = MLP(2, [4], 1)
    ocfg = OptimizerConfig(name="sgd", lr=0.1, schedule=schedule, step_size=1, gamma=0.5, plateau_patience=0)
    opt = build_optimizer(model, ocfg, RegularizationConfig(), CPU)
    sched = build_schedule(opt, ocfg, epochs=3, steps_per_epoch=4)
    lrs = []
    for _epoch in range(3):
        for _ in range(4):
            opt.step()
            sched.step_batch()
        sched.step_epoch(metric=1.0)  # a flat metric: plateau decays
        lrs.append(opt.param_groups[0]["lr"])
    if schedule == "none":
        assert lrs == [0.1, 0.1, 0.1]
    else:
        assert len(set(lrs)) > 1, (schedule, lrs)
    assert sched.per_step == (schedule in ("one-cycle", "cyclic"))


def test_l1_penalty_sums_absolute_weights_only():
    model = MLP(2, [3], 1)
    expected = sum(p.abs().sum() for p in model.parameters() if p.dim() >= 2)
    assert torch.allclose(l1_penalty(model), expected)


def test_lecture_gradient_worked_example():
    """The lecture's 1-2-1 sigmoid network at x=1, y=3: d loss / d output bias = -3.3142."""
    model = MLP(1, [2], 1, act="sigmoid")
    lin1, lin2 = model.layers[1], model.layers[3]
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        lin1.bias.copy_(torch.tensor([1.0, 2.0]))
        lin2.weight.copy_(torch.tensor([[1.0, 2.0]]))
        lin2.bias.copy_(torch.tensor([-1.0]))
    loss = torch.nn.functional.mse_loss(model(torch.tensor([[1.0]])), torch.tensor([[3.0]]))
    loss.backward()
    assert lin2.bias.grad.item() == pytest.approx(-3.3142, abs=1e-4)
    assert lin2.weight.grad.squeeze().tolist() == pytest.approx([-2.9191, -2.4229], abs=1e-4)
    assert lin1.bias.grad.tolist() == pytest.approx([-0.3480, -1.3032], abs=1e-4)


@pytest.mark.timeout(120)
def test_loader_with_workers_is_built_once_and_reseeded_every_epoch():
    x, y = torch.arange(12.0)[:, None], torch.arange(12)
    lb = LoaderBatches(torch.utils.data.TensorDataset(x, y), 4, shuffle=True, num_workers=1, device=CPU)
    first = [yb.tolist() for _, yb in lb.epoch(seed=5)]
    loader = lb._loader
    other = [yb.tolist() for _, yb in lb.epoch(seed=6)]
    again = [yb.tolist() for _, yb in lb.epoch(seed=5)]
    assert lb._loader is loader and loader.persistent_workers  # workers spawned once, not per epoch
    assert again == first and other != first
    assert sorted(sum(first, [])) == list(range(12))
    # both batching paths shuffle identically, and a resumed epoch skips batches without loading them
    assert first == [yb.tolist() for _, yb in TensorBatches(x, y, 4, shuffle=True).epoch(seed=5)]
    assert [yb.tolist() for _, yb in lb.epoch(seed=5, skip=2)] == first[2:]
