"""The LR finder: its rule on built curves, its baseline, and suggestions that train the shipped presets."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny
from tui_trainer.config import apply_overrides, load_preset
from tui_trainer.data import real
from tui_trainer.engine import fit
from tui_trainer.engine.lrfind import SweepProgress, _ConstantBaseline, judge, lr_find, suggest, sweep_lengths
from tui_trainer.run.events import ListSink

LRS = [10 ** (-7 + 8 * i / 99) for i in range(100)]


def valley_curve(lowest_at: float, start: float = 1.0, depth: float = 0.6) -> list[float]:
    """A loss that falls by ``depth`` on the way to ``lowest_at`` and blows up after it."""
    centre = math.log10(lowest_at) - 1.5
    return [start - depth / (1 + math.exp(-3 * (math.log10(lr) - centre))) + max(0.0, math.log10(lr / lowest_at)) ** 2
            for lr in LRS]


def test_the_suggestion_is_a_tenth_of_the_rate_at_the_lowest_loss():
    curve = valley_curve(1e-1)
    lowest = LRS[min(range(len(curve)), key=curve.__getitem__)]
    assert 10**-1.1 < lowest < 10**-0.9
    assert suggest(LRS, curve) == pytest.approx(lowest / 10)
    assert judge(LRS, curve) == (pytest.approx(lowest / 10), None)


def test_no_suggestion_while_the_loss_is_not_below_a_constant_prediction():
    # like xor-mlp's first phase: falling to ln 2 (0.693 for two classes) only learns the output bias
    curve = valley_curve(1e-1, start=0.90, depth=0.25)
    assert suggest(LRS, curve) is not None  # 28% below its own start ...
    suggestion, reason = judge(LRS, curve, baseline=math.log(2))
    assert suggestion is None  # ... but not 20% below what a constant prediction scores
    assert "never fell 20% below the loss of a constant prediction (0.6931" in reason
    assert judge(LRS, [1.0] * 100)[1].startswith("the loss never fell 20% below its starting value (1")
    assert "too few" in judge(LRS[:6], [1.0] * 6)[1]


def test_constant_baseline_is_the_loss_of_predicting_the_class_frequencies_or_the_mean():
    labels = torch.tensor([0, 0, 0, 1])
    base = _ConstantBaseline("classification", 2, 0.0)
    base.add(labels[:2])
    base.add(labels[2:])
    expected = torch.nn.functional.cross_entropy(torch.tensor([[0.75, 0.25]]).log().expand(4, 2), labels).item()
    assert base.value() == pytest.approx(expected)
    smoothed = _ConstantBaseline("classification", 2, 0.1)
    smoothed.add(labels)
    expected = torch.nn.functional.cross_entropy(torch.tensor([[0.75, 0.25]]).log().expand(4, 2), labels,
                                                 label_smoothing=0.1).item()
    assert smoothed.value() == pytest.approx(expected)
    targets = torch.tensor([[1.0], [2.0], [3.0], [6.0]])
    reg = _ConstantBaseline("regression", 1, 0.0)
    reg.add(targets[:3])
    reg.add(targets[3:])
    assert reg.value() == pytest.approx(torch.nn.functional.mse_loss(targets.mean().expand(4, 1), targets).item())


def test_lr_find_leaves_training_untouched_and_suggests_for_a_learnable_problem(runs):
    cfg = tiny("data.n_samples=2000", preset="moons-mlp")
    before = fit(cfg, ListSink(), runs_dir=runs).rows[-1]["val_loss"]
    result = lr_find(cfg, steps=100)
    assert len(result.lrs) >= 50 and result.suggestion is not None and result.reason is None
    assert 1e-3 < result.suggestion < 0.5
    after = fit(cfg, ListSink(), runs_dir=runs).rows[-1]["val_loss"]
    assert before == after  # the sweep used its own model, optimizer and data order


def test_sweeps_grow_4x_to_the_limit_and_progress_counts_every_step():
    assert sweep_lengths(100, 3200) == [100, 400, 1600, 3200]
    assert sweep_lengths(50, 100) == [50, 100] and sweep_lengths(100, 100) == [100]
    seen: list[SweepProgress] = []
    result = lr_find(tiny("data.n_samples=2000", preset="moons-mlp"), steps=100, progress=seen.append)
    assert seen[0] == SweepProgress(1, 4, 1, 100, pytest.approx(1e-7), pytest.approx(seen[0].loss), 1)
    assert [p.steps_done for p in seen] == list(range(1, len(seen) + 1))  # one call per step, none missed
    last = [p for p in seen if p.sweep == result.sweeps]
    assert len(last) == len(result.lrs) and [p.lr for p in last] == list(result.lrs)
    assert [p.loss for p in last] == pytest.approx(list(result.smoothed))


def test_lr_find_stops_when_asked():
    polls = []

    def stop_after_ten() -> bool:
        polls.append(1)
        return len(polls) > 10

    result = lr_find(tiny("data.n_samples=2000", preset="moons-mlp"), steps=100, should_stop=stop_after_ten)
    assert len(result.lrs) == 10 and len(polls) == 11 and result.sweeps == 1
    assert result.suggestion is None and result.reason == "the sweep was stopped before the loss fell"


@pytest.mark.slow
def test_lr_find_on_the_default_preset_suggests_a_rate_that_trains_it(runs):
    """spirals-mlp (the app's default) needs a few hundred steps at a good rate before its loss leaves
    ln 2: the 100-step sweep found nothing; the finder sweeps again, 4x longer, until it does (100, 400, 1600:
    2,100 steps, where sweeps of 100 to 1600 doubling took 3,100), on one thread (its steps are tiny)."""
    cfg = apply_overrides(load_preset("spirals-mlp"), ['train.device="cpu"'])
    seen: list[tuple[SweepProgress, int]] = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = lr_find(cfg, progress=lambda p: seen.append((p, torch.get_num_threads())))
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)
    assert {threads for _, threads in seen} == {1}
    assert result.suggestion is not None, result.reason
    assert result.sweeps == 3 and result.baseline == pytest.approx(math.log(2), abs=1e-3)
    assert [p.steps for p, _ in seen if p.step == 1] == [100, 400, 1600] and seen[-1][0].steps_done <= 2100
    assert 1e-3 <= result.suggestion <= 2e-2  # spirals-mlp trains to 1.000 from 0.003 to 0.01, 0.95 at 0.03
    trained = fit(apply_overrides(cfg, [f"optimizer.lr={result.suggestion:.3g}"]), ListSink(), runs_dir=runs)
    assert trained.rows[-1]["val_acc"] >= 0.95


@pytest.mark.slow
def test_lr_find_scores_small_sets_on_fixed_samples_so_batch_size_one_gives_a_usable_rate():
    """regression-toy trains with batch size 1: a batch's loss ranges from 0 to about 80. On its
    40-sample set the sweep scores the same samples (all of them) after each step, and the suggestion lands where
    the preset trains (val_loss about 0.4 from 0.02 to 0.05, 1.2 and worse from 0.07)."""
    result = lr_find(apply_overrides(load_preset("regression-toy"), ['train.device="cpu"']))
    assert result.suggestion is not None, result.reason
    assert 0.015 <= result.suggestion <= 0.06
    assert max(abs(b - a) for a, b in zip(result.losses[:50], result.losses[1:50], strict=False)) < 0.5  # no batch noise


def test_no_suggestion_says_why():
    cfg = apply_overrides(load_preset("deep-sigmoid-spirals"), ['train.device="cpu"', "data.n_samples=500"])
    result = lr_find(cfg, steps=50, max_steps=100)
    assert result.suggestion is None and result.sweeps == 2 and len(result.lrs) == 100
    assert result.reason.startswith("the loss never fell 20% below the loss of a constant prediction (0.69")
    assert "in 2 sweeps of up to 100 steps: the model may not learn this problem" in result.reason


@pytest.mark.skipif(not (real.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
@pytest.mark.slow
def test_lr_find_on_fashion_mnist_is_within_10x_of_the_preset(tmp_path):
    cfg = apply_overrides(load_preset("fashion-mnist-mlp"), ['train.device="cpu"', f'data.cache_dir="{tmp_path}"'])
    result = lr_find(cfg)
    assert result.suggestion is not None, result.reason
    assert cfg.optimizer.lr / 10 <= result.suggestion <= cfg.optimizer.lr * 10, result.suggestion
