"""Learning-rate finder: an exponential sweep on a fresh copy of the model.

The learning rate grows from ``start`` to ``end`` over ``steps`` batches; the loss is
smoothed (debiased moving average) and the sweep stops once it diverges. The suggestion is
the rate where the smoothed loss falls fastest against log(lr). Nothing used for training
is touched: the model, optimizer and data order are built here and thrown away.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tui_trainer.config import RunConfig
from tui_trainer.optim import build_optimizer, set_lr
from tui_trainer.smoothing import RunningMean


@dataclass(frozen=True)
class LRFindResult:
    """The sweep: rates, raw and smoothed losses, and the suggested rate."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float | None


def suggest(lrs: list[float], smoothed: list[float], skip: float = 0.1, min_drop: float = 0.02) -> float | None:
    """The rate at the steepest descent of ``smoothed`` against log10(lr), looking only before the
    loss minimum; None when the loss never fell by ``min_drop`` (a sweep too short for this problem)."""
    n = len(lrs)
    if n < 5:
        return None
    lowest = min(range(n), key=smoothed.__getitem__)
    if smoothed[lowest] > (1 - min_drop) * smoothed[0]:
        return None
    logs = [math.log10(lr) for lr in lrs]
    start = max(1, int(n * skip))
    best, best_slope = None, 0.0
    for i in range(start, min(lowest + 1, n - 1)):
        slope = (smoothed[i + 1] - smoothed[i - 1]) / (logs[i + 1] - logs[i - 1])
        if slope < best_slope:
            best, best_slope = i, slope
    return lrs[best] if best is not None else None


def lr_find(cfg: RunConfig, start: float = 1e-7, end: float = 10.0, steps: int = 100, beta: float = 0.98,
            diverge: float = 4.0, should_stop: Callable[[], bool] = lambda: False) -> LRFindResult:
    """Sweep the learning rate on a fresh model built from ``cfg``; ``should_stop`` is polled before
    each batch (the app cancels a sweep when it quits)."""
    from tui_trainer.engine import Trainer, build_loss, epoch_seed

    device, data, model = Trainer().prepare(cfg)
    model.train()
    optimizer = build_optimizer(model, cfg.optimizer, cfg.regularization, device)
    loss_fn = build_loss(data.task, cfg.regularization.label_smoothing)
    factor = (end / start) ** (1 / max(steps - 1, 1))
    lrs, losses = [], []
    mean, best = RunningMean(beta), math.inf
    epoch = 0
    batches = iter(())
    for i in range(steps):
        if should_stop():
            break
        try:
            xb, yb = next(batches)
        except StopIteration:
            epoch += 1
            batches = iter(data.train.epoch(epoch_seed(cfg.train.seed, epoch)))
            xb, yb = next(batches)
        lr = start * factor**i
        set_lr(optimizer, lr)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb).float(), yb)
        loss.backward()
        optimizer.step()
        value = loss.item()  # host sync per step: fine for a 100-step diagnostic sweep
        smooth = mean.add(value)
        if not math.isfinite(smooth) or (i > 5 and smooth > diverge * best):
            mean.values.pop()  # the diverged point is not part of the curve
            break
        best = min(best, smooth)
        lrs.append(lr)
        losses.append(value)
    smoothed = mean.values
    return LRFindResult(tuple(lrs), tuple(losses), tuple(smoothed), suggest(lrs, smoothed))
