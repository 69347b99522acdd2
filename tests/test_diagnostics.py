"""Gradient health, dead units, alarms, curve hints and the LR finder, on networks whose numbers are known."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from tests.conftest import tiny
from tui_trainer.config import apply_overrides, load_preset
from tui_trainer.engine import fit
from tui_trainer.engine.diagnostics import (
    GradientMonitor,
    LayerHealth,
    curve_hints,
    dead_alarm,
    dead_units,
    gradient_alarms,
    health_rows,
)
from tui_trainer.engine.models import MLP
from tui_trainer.run.events import ListSink, LogMessage, StepLogged


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
    healthy = (LayerHealth("layers.1", 0.05, 1.0, 0.0), LayerHealth("layers.9", 0.1, 1.0, 0.0))
    assert gradient_alarms(healthy) == []
    exploding = (LayerHealth("layers.1", 5e3, 1.0, 0.0), LayerHealth("layers.9", 1e4, 1.0, 0.0))
    assert [k for k, _ in gradient_alarms(exploding)] == ["exploding"]
    nan = (LayerHealth("layers.1", float("nan"), 1.0, 0.0), LayerHealth("layers.9", 1.0, 1.0, 0.0))
    assert "non-finite gradient in layers.1" in gradient_alarms(nan)[0][1]


@pytest.mark.parametrize(("activation", "says", "never"), [
    ("sigmoid", "sigmoid saturates: try ReLU, batch norm, residual connections", "dead"),
    ("tanh", "tanh saturates: try ReLU", "dead"),
    ("relu", "in a ReLU network that means dead units", "try ReLU"),
    ("leaky_relu", "try batch norm, residual connections or another init", "ReLU"),
    ("gelu", "try batch norm, residual connections or another init", "ReLU"),
    (None, "with sigmoid or tanh try ReLU; else batch norm", "dead"),
])
def test_vanishing_remedy_fits_the_activation(activation, says, never):
    rows = (LayerHealth("layers.1", 0.0, 1.0, 0.0), LayerHealth("layers.5", 0.7, 1.0, 0.0))  # lr = 5 on spirals-mlp
    (kind, text), = gradient_alarms(rows, activation)
    assert kind == "vanishing" and says in text and never not in text
    assert "layers.1 gets 0.00e+00, layers.5 7.00e-01 (none at all)" in text


def test_dead_units_counts_relus_that_never_fire():
    model = MLP(2, [4], 2)
    with torch.no_grad():
        model.layers[1].weight.zero_()
        model.layers[1].bias.copy_(torch.tensor([1.0, 1.0, -1.0, -1.0]))  # two units always off
    shares = dead_units(model, torch.randn(32, 2))
    assert shares == {"layers.2": 0.5}
    with torch.no_grad():
        model.layers[1].bias.fill_(-1.0)  # every unit off: the output no longer depends on the input
    assert dead_units(model, torch.randn(32, 2)) == {"layers.2": 1.0}


def _rows(train, val=None, **extra):
    val = val or train
    return [{"train_loss": t, "val_loss": v, **{k: x[i] for k, x in extra.items()}}
            for i, (t, v) in enumerate(zip(train, val, strict=True))]


# spirals-mlp's own run (val_acc 1.000) and two that are not: lr 0.1 (val_acc 0.66) and lr 5 (chance)
SPIRALS_OWN = [0.678, 0.645, 0.608, 0.545, 0.495, 0.396, 0.295, 0.182, 0.125, 0.088, 0.059, 0.042, 0.033, 0.042, 0.037]
SPIRALS_LR_01 = [0.776, 0.635, 0.596, 0.512, 0.539, 0.540, 0.522, 0.492, 0.505, 0.503, 0.546, 0.541]
SPIRALS_LR_5 = [3597.0, 1.289, 0.824, 0.788, 0.765, 0.711, 0.801, 0.743, 0.817, 0.748, 0.819]


def test_dead_alarm_needs_a_stalled_poor_loss_or_a_whole_dead_layer():
    assert dead_alarm({"layers.4": 0.56}) is None  # no history: half dead says nothing about harm
    assert "every unit after layers.4 is off" in dead_alarm({"layers.4": 1.0})
    assert dead_alarm({"layers.4": 0.56}, _rows(SPIRALS_OWN)) is None  # trains well: silent at every epoch
    assert all(dead_alarm({"layers.4": 0.56}, _rows(SPIRALS_OWN[:k])) is None for k in range(1, 16))
    first = next(k for k in range(1, 13) if dead_alarm({"layers.4": 0.95}, _rows(SPIRALS_LR_01[:k])))
    assert first == 7  # 0.539, 0.540, 0.522: no 2% gain on 0.512, still above half of 0.635
    assert "95% of the units after layers.4 never fire" in dead_alarm({"layers.4": 0.95}, _rows(SPIRALS_LR_01[:7]))
    assert dead_alarm({"layers.4": 0.4}, _rows(SPIRALS_LR_01)) is None  # stalled, but not for want of units
    # a first epoch that blew up (3597) does not make the stuck loss look like progress
    assert "stopped falling at 0.817" in dead_alarm({"layers.4": 0.92}, _rows(SPIRALS_LR_5[:9]))


def replay(history: list[dict]) -> list[tuple[int, str, str]]:
    """(epoch, kind, text) as the engine emits them: curve_hints after every epoch, each kind once."""
    emitted, seen = [], set()
    for k in range(1, len(history) + 1):
        for kind, text in curve_hints(history[:k]):
            if kind not in seen:
                seen.add(kind)
                emitted.append((k, kind, text))
    return emitted


def kinds(history: list[dict]) -> list[str]:
    return [kind for _, kind, _ in replay(history)]


def test_curve_hints_fire_on_built_histories():
    assert kinds(_rows([1.0, 0.8, 0.6, 0.5], [0.9, 0.95, 1.0, 1.1])) == ["overfitting"]
    flat = replay(_rows([0.69, 0.69, 0.69]))
    assert [(e, k) for e, k, _ in flat] == [(3, "flat")] and "learning rate may be too low" in flat[0][2]
    assert kinds(_rows([1.0, 1.2, 0.9, 1.3])) == ["too_high"]
    (epoch, kind, text), = replay(_rows([1.0, 0.4, 0.3, 0.5]))
    assert (epoch, kind) == (4, "too_high") and "rose to 0.5 from its best 0.3, giving back 29%" in text
    assert kinds(_rows([1.0, 0.4, 0.3, 0.45])) == []  # gives back 21% of the progress: a wobble
    assert kinds(_rows([1.0, 0.8, 0.6, 0.5], [0.9, 0.7, 0.6, 0.55])) == []
    # spirals-mlp at epoch 80: val loss 0.68 at first, then 1.29e-4 -> 1.48e-4 at val_acc 1.0: a drift, not overfitting
    assert kinds(_rows([0.9, 0.01, 0.009, 0.008, 0.007], [0.68, 1.29e-4, 1.35e-4, 1.41e-4, 1.48e-4])) == []


def test_a_flat_start_is_read_by_its_cause():
    dead = replay(_rows([0.69, 0.69, 0.69], dead_relu=[{"layers.4": 0.9}] * 3))
    assert [k for _, k, _ in dead] == ["dead"] and "probably from a learning rate too high" in dead[0][2]
    vanishing = {"layers.1": 1e-8, "layers.17": 0.1}
    (_, kind, text), = replay(_rows([0.69, 0.69, 0.69], grad_norms=[vanishing] * 3))
    assert kind == "flat" and "almost no gradient" in text and "too low" not in text


def test_converged_wobble_is_not_a_rate_too_high():
    # moons-mlp, xor-mlp and regression-toy at their own rates: the last epochs move 10-30% at a loss
    # 10x below the first epoch's; the old rule (two rises in four epochs) called that "too high"
    moons = [0.378, 0.292, 0.271, 0.249, 0.176, 0.108, 0.074, 0.053, 0.042, 0.059, 0.051, 0.038, 0.043, 0.034,
             0.036, 0.034, 0.044, 0.034, 0.041, 0.037]
    regression = [14.98, 12.19, 11.92, 11.55, 10.80, 10.04, 9.59, 9.97, 8.68, 7.86, 7.26, 6.68, 6.20, 5.79, 5.24,
                  5.04, 4.70, 4.26, 4.31, 4.31, 4.11, 3.79, 3.78, 4.31, 3.57, 3.68, 3.62, 3.72]
    assert kinds(_rows(moons)) == [] and kinds(_rows(regression)) == []


def test_hints_never_contradict_within_a_run():
    # deep-sigmoid-spirals: flat from the start, then +-1% noise; it used to hear "too low", then "too high"
    deep = [0.6966, 0.6996, 0.6971, 0.7018, 0.6987, 0.6967, 0.699, 0.7002, 0.7012, 0.6975, 0.6988, 0.6968]
    assert kinds(_rows(deep)) == ["flat"]
    # after "may be too low", a 20% rise is not enough to say "too high" ...
    assert kinds(_rows([0.69, 0.69, 0.69, 0.83])) == ["flat"]
    # ... climbing to 1.5x the first epoch is
    assert kinds(_rows([0.69, 0.69, 0.69, 1.1])) == ["flat", "too_high"]
    # after "dead units: lower the rate", a flat start is not read as a rate too low
    lowered = _rows([0.69, 0.69, 0.69], dead_relu=[{"layers.4": 0.3}, {"layers.4": 1.0}, {"layers.4": 0.3}])
    assert kinds(lowered) == ["dead"]
    # after "may be too low", the dead-unit hint (which says to lower it) is held back
    raised = _rows([0.69, 0.69, 0.69, 0.69, 0.69, 0.69, 0.69], dead_relu=[{"layers.4": 0.2}] * 3 + [{"layers.4": 0.6}] * 4)
    assert kinds(raised) == ["flat"]
    # a run whose units die and whose loss stalls hears one diagnosis, from both rules
    lr_01 = replay(_rows(SPIRALS_LR_01, dead_relu=[{"layers.4": 0.9}] * len(SPIRALS_LR_01)))
    assert [(e, k) for e, k, _ in lr_01] == [(7, "dead")]


def test_engine_records_grad_norms_and_alarms_for_deep_sigmoid_only(runs):
    sink = ListSink()
    result = fit(apply_overrides(load_preset("deep-sigmoid-spirals"), ["train.epochs=2"]), sink, runs_dir=runs)
    warnings = [m.text for m in sink.of(LogMessage) if m.level == "warning"]
    assert any("vanishing gradients" in w and w.startswith("epoch 1,") and "sigmoid saturates: try ReLU" in w
               for w in warnings), warnings  # the remedy for this network's activation
    rows = [json.loads(r) for r in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    norms = rows[0]["grad_norms"]
    assert list(norms) == [f"layers.{i}" for i in range(1, 18, 2)]
    assert norms["layers.1"] < 1e-2 * norms["layers.17"]
    assert sink.of(StepLogged)[0].layers[0].name == "layers.1"

    fixed = apply_overrides(load_preset("deep-sigmoid-spirals"), ["train.epochs=2", 'model.activation="relu"',
                                                                  "model.batch_norm=true"])
    sink = ListSink()
    fit(fixed, sink, runs_dir=runs)
    assert not any("vanishing" in m.text for m in sink.of(LogMessage))


def warnings_of(sink: ListSink) -> list[str]:
    return [m.text for m in sink.of(LogMessage) if m.level == "warning"]


@pytest.mark.parametrize("preset", ["spirals-mlp", "moons-mlp", "circles-mlp", "xor-mlp", "regression-toy"])
def test_shipped_presets_that_train_well_hear_no_alarm(runs, preset):
    """Each small synthetic preset as shipped (its own epochs, on the CPU): it trains well, and no
    alarm or hint fires, though spirals-mlp and circles-mlp keep half a layer's ReLUs dead."""
    sink = ListSink()
    result = fit(apply_overrides(load_preset(preset), ['train.device="cpu"']), sink, runs_dir=runs)
    last = result.rows[-1]
    if last["val_acc"] is not None:
        assert last["val_acc"] >= 0.95, last
    else:
        assert min(r["val_loss"] for r in result.rows) < 0.5, last
    if preset in ("spirals-mlp", "circles-mlp"):
        assert max(last["dead_relu"].values()) >= 0.5  # what the old 50% rule alarmed on
    assert warnings_of(sink) == []


def test_deep_sigmoid_hears_one_consistent_diagnosis(runs):
    sink = ListSink()
    fit(apply_overrides(load_preset("deep-sigmoid-spirals"), ['train.device="cpu"']), sink, runs_dir=runs)
    warnings = warnings_of(sink)
    assert len(warnings) == 2, warnings
    assert "vanishing gradients" in warnings[0] and "sigmoid saturates: try ReLU" in warnings[0]
    assert warnings[1].startswith("after epoch 3: training loss is flat from the start")
    assert "almost no gradient" in warnings[1]
    assert not any("too high" in w or "too low" in w for w in warnings)


def test_a_relu_network_at_a_huge_rate_hears_dead_units_never_try_relu(runs):
    sink = ListSink()
    cfg = apply_overrides(load_preset("spirals-mlp"), ['train.device="cpu"', "optimizer.lr=5", "train.epochs=3"])
    fit(cfg, sink, runs_dir=runs)
    warnings = warnings_of(sink)
    assert any("vanishing gradients" in w and "in a ReLU network that means dead units" in w for w in warnings), warnings
    assert not any("try ReLU" in w or "too low" in w for w in warnings)


def test_diagnostics_can_be_turned_off(runs):
    sink = ListSink()
    result = fit(tiny("train.diagnostics=false"), sink, runs_dir=runs)
    assert "grad_norms" not in result.rows[-1] and sink.of(StepLogged)[0].layers == ()


def test_running_mean_is_the_debiased_moving_average():
    from tui_trainer.run.smoothing import RunningMean

    values = [3.0, 1.0, 4.0, 1.0, 5.0]
    mean = RunningMean(0.9)
    got = [mean.add(v) for v in values]
    expected, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = 0.9 * avg + 0.1 * v
        expected.append(avg / (1 - 0.9**i))
    assert got == pytest.approx(expected) and mean.values == got
    assert got[0] == pytest.approx(3.0)  # debiased: the first point is not pulled towards zero
