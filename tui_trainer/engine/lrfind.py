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
  nothing), it is run again ``GROWTH`` (4) times as long, up to ``max_steps``; a model that learns
  nothing in that time gets no suggestion and a ``reason``.
* On a training set of at most ``SMALL_SET`` samples held as tensors, the loss after each step
  is measured on the same ``SCORED_SAMPLES`` samples instead of on the batch. That removes the
  batch noise which otherwise hides the curve (regression-toy trains with batch size 1, where one
  batch's loss ranges from 0 to about 80) for about 40% more time per step.

What it costs, and why (2-core CPU, torch 2.14.1; benchmarks/RESULTS.md, 2026-12-04). With the
defaults the sweeps are 100, 400, 1600 and 3200 steps long: spirals-mlp needs the 1600-step one
(2,100 steps in all; 3,100 when each sweep was twice the one before), regression-toy the
3200-step one (it diverges after 2,900), xor-mlp 1600, circles-mlp and fashion-mnist-mlp 400,
moons-mlp the first. Growing by 4 instead of 2 costs the same on average (a geometric search of
ratio r spends r / ln r times the length it needed: 2.89 for both) but runs at most 4 sweeps
instead of 6, and the default preset needs a third fewer steps; only xor-mlp's and
fashion-mnist-mlp's suggestions moved, and they train as well (RESULTS.md). What made
``tui-trainer lr-find spirals-mlp`` take 6-65 s (median 34 s) was not the steps but the threads:
its steps are tiny (a 2-64-64-2 MLP, batches of 32), too small for torch's second intra-op thread
to help, and with the second core busy (other processes, as on any shared machine) every step
waited for it, 4-10x slower. Models of at most ``SMALL_MODEL`` parameters on a small tensor set
on the CPU are therefore swept on one thread (restored afterwards), and a model without dropout
or batch norm is scored without switching it to eval mode and back twice a step. The whole
command now takes 4.7-6.2 s there, half of it loading torch (and torch._dynamo, which building any
optimizer imports). Training each preset with the suggestion instead of its own rate is compared
in ``benchmarks/lrfind.py``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from tui_trainer.config import RunConfig
from tui_trainer.engine.optim import build_optimizer, set_lr
from tui_trainer.run.smoothing import RunningMean

SMALL_SET = 4096
"""Training sets up to this size (held as tensors) are scored on fixed samples after every sweep step ..."""
SCORED_SAMPLES = 512
"""... on their first 512 samples (a random subset: the split is shuffled), or all of them if fewer."""
GROWTH = 4
"""Each sweep after the first is this many times as long as the one before (see the module docstring)."""
SMALL_MODEL = 100_000
"""A model of at most this many parameters, on such a small set on the CPU, is swept on one thread (see the module
docstring: its steps are too small for a second thread to help, and a busy second core made them 4-10x slower)."""


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
    """Sweeps run: each one after the first is ``GROWTH`` times as long as the one before."""


@dataclass(frozen=True)
class SweepProgress:
    """Where the finder is, after one step of a sweep (for a progress line)."""

    sweep: int
    """This sweep's number, from 1."""
    max_sweeps: int
    """Sweeps there can be at most (each one after the first is ``GROWTH`` times as long as the one before)."""
    step: int
    """Steps done in this sweep."""
    steps: int
    """Steps this sweep is planned to take (it ends sooner if the loss diverges)."""
    lr: float
    """The rate of the step just taken."""
    loss: float
    """The smoothed loss after it."""
    steps_done: int
    """Steps done in all sweeps so far, this one included."""


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


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block (unchanged when None), restored after it."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _mode_free(model: torch.nn.Module) -> bool:
    """Whether train() and eval() compute the same thing (no dropout, no batch norm): then scoring the fixed samples
    need not switch modes twice a step (16% of a small model's step)."""
    modal = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._NormBase)
    return not any(isinstance(m, modal) for m in model.modules())


def sweep(cfg: RunConfig, start: float, end: float, steps: int, beta: float = 0.98, diverge: float = 4.0,
          should_stop: Callable[[], bool] = lambda: False,
          on_step: Callable[[int, float, float], None] | None = None) -> Sweep:
    """One exponential sweep from ``start`` to ``end`` over ``steps`` batches on a fresh model. ``on_step(i, lr,
    smoothed loss)`` is called after each step (a progress line)."""
    from tui_trainer.engine import epoch_seed, loss_for, prepare

    device, data, model = prepare(cfg)
    model.train()
    optimizer = build_optimizer(model, cfg.optimizer, cfg.regularization, device)
    loss_fn = loss_for(cfg, data.task)
    baseline = _ConstantBaseline(data.task, data.n_classes, cfg.regularization.label_smoothing)
    train = data.train
    scored = None  # fixed samples that score each step instead of its batch, on small sets
    if getattr(train, "resident", False) and hasattr(train, "x") and train.n_samples <= SMALL_SET:
        scored = train.x[:SCORED_SAMPLES], train.y[:SCORED_SAMPLES]
    switch_modes = scored is not None and not _mode_free(model)
    small = scored is not None and device.type == "cpu" and sum(p.numel() for p in model.parameters()) <= SMALL_MODEL
    factor = (end / start) ** (1 / max(steps - 1, 1))
    warm = warm_up(steps)
    lrs: list[float] = []
    losses: list[float] = []
    mean, best = RunningMean(beta), math.inf
    epoch, ended = 0, "done"
    batches = iter(())
    with torch_threads(1 if small else None):
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
                    if switch_modes:
                        model.eval()
                    loss = loss_fn(model(scored[0]).float(), scored[1])
                    if switch_modes:
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
            if on_step is not None:
                on_step(i + 1, lr, smooth)
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
            max_steps: int | None = None, min_drop: float = 0.2,
            progress: Callable[[SweepProgress], None] | None = None) -> LRFindResult:
    """Sweep the learning rate on fresh models built from ``cfg``, first over ``steps`` batches, then ``GROWTH``
    times as many each time the loss did not yet fall below that of a constant prediction, up to ``max_steps``
    (default 32 x ``steps``) in one sweep. ``should_stop`` is polled before each batch (the app cancels a
    sweep when it quits); ``progress`` is called after every step with where the finder is."""
    plan = sweep_lengths(steps, max_steps if max_steps is not None else 32 * steps)
    done = 0
    for sweeps, n in enumerate(plan, start=1):
        on_step = None
        if progress is not None:
            def on_step(i: int, lr: float, loss: float, n: int = n, sweep_no: int = sweeps, before: int = done) -> None:
                progress(SweepProgress(sweep_no, len(plan), i, n, lr, loss, before + i))
        result = sweep(cfg, start, end, n, beta, diverge, should_stop, on_step)
        done += len(result.lrs)
        suggestion, reason = judge(result.lrs, result.smoothed, result.baseline, min_drop)
        if suggestion is not None or result.ended == "stopped":
            break
    if result.ended == "stopped" and suggestion is None:
        reason = "the sweep was stopped before the loss fell"
    elif suggestion is None:
        reason = (f"{reason} in {sweeps} sweeps of up to {n} steps: the model may not learn this problem at any "
                  "rate in that time (vanishing gradients?), or it needs a longer sweep")
    return LRFindResult(tuple(result.lrs), tuple(result.losses), tuple(result.smoothed), suggestion, reason,
                        result.baseline, sweeps)


def sweep_lengths(first: int, limit: int) -> list[int]:
    """The sweeps' planned lengths: ``first``, then ``GROWTH`` times the one before, the last one ``limit`` (100, 400,
    1600, 3200 with the defaults)."""
    lengths = [first]
    while lengths[-1] < limit:
        lengths.append(min(lengths[-1] * GROWTH, limit))
    return lengths
