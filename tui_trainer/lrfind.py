"""Learning-rate finder: exponential sweeps on fresh copies of the model.

The learning rate grows from ``start`` to ``end`` over ``steps`` batches (Smith's range test);
the loss is smoothed (debiased moving average) and a sweep stops once it diverges. The
suggestion is a tenth of the rate at the lowest smoothed loss (fastai's "minimum / 10"): the
loss still falls fast there, and a tenth of it leaves room for the longer, noisier training that
follows. The old rule, the steepest descent, was read off noise on the small presets (xor-mlp:
6e-7). Nothing used for training is touched: model, optimizer and data order are built here and
thrown away.

Two changes make the finder work on the tiny synthetic presets as well as on Fashion-MNIST:

* A sweep only counts when its loss gets ``min_drop`` (20%) below the loss of the best
  *constant* prediction (class frequencies for cross-entropy, the mean for squared error).
  Getting down to that level only learns the output bias (xor-mlp starts at 0.80 and drops to
  ln 2 = 0.69 without using its inputs), and a minimum read just past it marks where the first,
  easy descent is fastest: regression-toy's 5%-past sweep gives 0.084, where it trains to
  val_loss 1.2 instead of 0.33. When a sweep is too short to get there (spirals-mlp needs a few
  hundred steps at a good rate before its loss leaves ln 2; the single 100-step sweep suggested
  nothing), it is run again twice as long, up to ``max_steps``; a model that learns nothing in
  that time gets no suggestion and a ``reason``.
* On a training set of at most ``SMALL_SET`` samples held as tensors, the loss after each step
  is measured on the same ``SCORED_SAMPLES`` samples instead of on the batch. That removes the
  batch noise which otherwise hides the curve (regression-toy trains with batch size 1, where one
  batch's loss ranges from 0 to about 80) for about 40% more time per step.

With the defaults (first sweep 100 steps) spirals-mlp needs sweeps up to 1600 steps (5 sweeps,
3,100 steps in all), regression-toy up to 3200 (2,900 done before it diverged), xor-mlp 800,
circles-mlp 400, moons-mlp and the Fashion-MNIST presets one or two sweeps. Training each with the
suggestion instead of its own rate is compared in ``benchmarks/lrfind.py`` (table in
benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tui_trainer.config import RunConfig
from tui_trainer.optim import build_optimizer, set_lr
from tui_trainer.smoothing import RunningMean

SMALL_SET = 4096
"""Training sets up to this size (held as tensors) are scored on fixed samples after every sweep step ..."""
SCORED_SAMPLES = 512
"""... on their first 512 samples (a random subset: the split is shuffled), or all of them if fewer."""


@dataclass(frozen=True)
class LRFindResult:
    """The (last) sweep: rates, raw and smoothed losses, the suggested rate, and why there is none."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float | None
    reason: str | None = None
    """Why there is no suggestion (None when there is one)."""
    baseline: float | None = None
    """Loss of the best constant prediction on the sweep's training batches."""
    sweeps: int = 1
    """Sweeps run: each one after the first is twice as long as the one before."""


@dataclass(frozen=True)
class Sweep:
    """One sweep's curve, how it ended (``"done"``, ``"diverged"`` or ``"stopped"``) and its baseline."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    ended: str
    baseline: float | None


def warm_up(steps: int) -> int:
    """Steps at the start of a sweep whose smoothed loss averages too few batches to trust (a tenth, 5 to 50)."""
    return max(5, min(50, steps // 10))


class _ConstantBaseline:
    """Loss of the best constant prediction on the targets seen so far (accumulated on the device)."""

    def __init__(self, task: str, n_classes: int, label_smoothing: float) -> None:
        self.task, self.n_classes, self.eps = task, n_classes, label_smoothing
        self.counts: torch.Tensor | None = None
        self.sums: torch.Tensor | None = None  # regression: count, sum and sum of squares per output

    def add(self, y: torch.Tensor) -> None:
        """Fold in one batch of targets."""
        if self.task == "classification":
            counts = torch.bincount(y.reshape(-1), minlength=self.n_classes)
            self.counts = counts if self.counts is None else self.counts + counts
        else:
            y = y.detach().double().reshape(len(y), -1)
            sums = torch.stack([torch.full_like(y[0], len(y)), y.sum(0), (y * y).sum(0)])
            self.sums = sums if self.sums is None else self.sums + sums

    def value(self) -> float | None:
        """Cross-entropy of predicting the class frequencies, or the variance of the targets (MSE of the mean)."""
        if self.counts is not None:
            p = self.counts.double() / self.counts.sum()
            log_p = p.clamp_min(1e-12).log()
            smoothing_term = -log_p.mean()  # label smoothing spreads eps over all classes
            per_class = -(1 - self.eps) * log_p + self.eps * smoothing_term
            return float((p * per_class).sum())
        if self.sums is not None:
            n, s, ss = self.sums
            return float((ss / n - (s / n) ** 2).mean())
        return None


def sweep(cfg: RunConfig, start: float, end: float, steps: int, beta: float = 0.98, diverge: float = 4.0,
          should_stop: Callable[[], bool] = lambda: False) -> Sweep:
    """One exponential sweep from ``start`` to ``end`` over ``steps`` batches on a fresh model."""
    from tui_trainer.engine import build_loss, epoch_seed, prepare

    device, data, model = prepare(cfg)
    model.train()
    optimizer = build_optimizer(model, cfg.optimizer, cfg.regularization, device)
    loss_fn = build_loss(data.task, cfg.regularization.label_smoothing, cfg.model.head)
    baseline = _ConstantBaseline(data.task, data.n_classes, cfg.regularization.label_smoothing)
    train = data.train
    scored = None  # fixed samples that score each step instead of its batch, on small sets
    if getattr(train, "resident", False) and hasattr(train, "x") and train.n_samples <= SMALL_SET:
        scored = train.x[:SCORED_SAMPLES], train.y[:SCORED_SAMPLES]
    factor = (end / start) ** (1 / max(steps - 1, 1))
    warm = warm_up(steps)
    lrs: list[float] = []
    losses: list[float] = []
    mean, best = RunningMean(beta), math.inf
    epoch, ended = 0, "done"
    batches = iter(())
    for i in range(steps):
        if should_stop():
            ended = "stopped"
            break
        try:
            xb, yb = next(batches)
        except StopIteration:
            epoch += 1
            batches = iter(train.epoch(epoch_seed(cfg.train.seed, epoch)))
            xb, yb = next(batches)
        lr = start * factor**i
        set_lr(optimizer, lr)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb).float(), yb)
        loss.backward()
        optimizer.step()
        baseline.add(yb)
        if scored is not None:  # the loss after the step on the same samples every time: no batch noise
            with torch.no_grad():
                model.eval()
                loss = loss_fn(model(scored[0]).float(), scored[1])
                model.train()
        value = loss.item()  # host sync per step: fine for a diagnostic sweep
        smooth = mean.add(value)
        # the first smoothed points average a handful of batches: a lucky low one would make "best"
        # too low and end a noisy sweep long before the loss really diverges
        if not math.isfinite(smooth) or (i >= warm and smooth > diverge * best):
            mean.values.pop()  # the diverged point is not part of the curve
            ended = "diverged"
            break
        if i >= warm:
            best = min(best, smooth)
        lrs.append(lr)
        losses.append(value)
    return Sweep(lrs, losses, list(mean.values), ended, baseline.value())


def judge(lrs: list[float], smoothed: list[float], baseline: float | None = None,
          min_drop: float = 0.2) -> tuple[float | None, str | None]:
    """(suggestion, reason): a tenth of the rate at the lowest smoothed loss, once the loss got ``min_drop``
    below ``baseline`` (the best constant prediction; the loss at the start of the sweep when None is given
    or that is lower); else None and why."""
    n = len(lrs)
    if n < 10:
        return None, f"the sweep ended after {n} steps: too few to read a curve (the loss diverged at once?)"
    warm = min(warm_up(n), n - 1)
    first = smoothed[warm]
    level = first if baseline is None else min(baseline, first)
    lowest = min(range(warm, n), key=smoothed.__getitem__)
    if smoothed[lowest] > (1 - min_drop) * level:
        what = "its starting value" if baseline is None or first <= baseline else "the loss of a constant prediction"
        return None, (f"the loss never fell {min_drop:.0%} below {what} ({level:.4g}; lowest {smoothed[lowest]:.4g} "
                      f"at lr {lrs[lowest]:.3g})")
    return lrs[lowest] / 10, None


def suggest(lrs: list[float], smoothed: list[float], baseline: float | None = None,
            min_drop: float = 0.2) -> float | None:
    """The suggested rate of one sweep's curve, or None (see :func:`judge`)."""
    return judge(lrs, smoothed, baseline, min_drop)[0]


def lr_find(cfg: RunConfig, start: float = 1e-7, end: float = 10.0, steps: int = 100, beta: float = 0.98,
            diverge: float = 4.0, should_stop: Callable[[], bool] = lambda: False, *,
            max_steps: int | None = None, min_drop: float = 0.2) -> LRFindResult:
    """Sweep the learning rate on fresh models built from ``cfg``, first over ``steps`` batches, then twice as
    many each time the loss did not yet fall below that of a constant prediction, up to ``max_steps``
    (default 32 x ``steps``) in one sweep. ``should_stop`` is polled before each batch (the app cancels a
    sweep when it quits)."""
    limit = max_steps if max_steps is not None else 32 * steps
    n, sweeps = steps, 0
    while True:
        result = sweep(cfg, start, end, n, beta, diverge, should_stop)
        sweeps += 1
        suggestion, reason = judge(result.lrs, result.smoothed, result.baseline, min_drop)
        if suggestion is not None or result.ended == "stopped" or 2 * n > limit:
            break
        n *= 2
    if result.ended == "stopped" and suggestion is None:
        reason = "the sweep was stopped before the loss fell"
    elif suggestion is None:
        reason = (f"{reason} in {sweeps} sweeps of up to {n} steps: the model may not learn this problem at any "
                  "rate in that time (vanishing gradients?), or it needs a longer sweep")
    return LRFindResult(tuple(result.lrs), tuple(result.losses), tuple(result.smoothed), suggestion, reason,
                        result.baseline, sweeps)
