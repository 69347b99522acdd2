"""Seeing inside training: per-layer gradient health, dead units, alarms and curve hints.

Statistics are computed on the device with multi-tensor kernels and stay there until the
engine's log-interval sync, so watching gradients adds no host sync to the training steps.
The alarms and hints are plain functions of host numbers, each with a concrete remedy from
the lecture notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

VANISHING_RATIO = 1e-2  # first layer's gradient norm below 1% of the last layer's: two orders of magnitude
EXPLODING_NORM = 1e3
DEAD_SHARE = 0.5


def _norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of each tensor, one multi-tensor kernel where torch has it."""
    foreach_norm = getattr(torch, "_foreach_norm", None)
    if foreach_norm is not None:
        return torch.stack(foreach_norm(tensors))
    return torch.stack([torch.linalg.vector_norm(t) for t in tensors])


class GradientMonitor:
    """Per-layer gradient norm, weight norm and update-to-weight ratio of a model.

    A "layer" is a module that owns trainable parameters directly (a Linear, a Conv2d, a
    BatchNorm); its norms combine its weight and bias.
    """

    def __init__(self, model: nn.Module) -> None:
        self.names: list[str] = []
        self.params: list[torch.Tensor] = []
        index: list[int] = []
        for name, module in model.named_modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if own:
                self.names.append(name or type(module).__name__)
                self.params += own
                index += [len(self.names) - 1] * len(own)
        device = self.params[0].device if self.params else torch.device("cpu")
        self.index = torch.tensor(index, device=device, dtype=torch.long)
        self._before: list[torch.Tensor] | None = None
        self.grad_sq: torch.Tensor | None = None

    def _per_layer(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        squares = _norms(tensors).float() ** 2
        return torch.zeros(len(self.names), device=squares.device).index_add_(0, self.index, squares).sqrt()

    def after_backward(self) -> None:
        """Record gradient norms (before clipping: what backprop produced)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.grad_sq = self._per_layer(grads)

    def before_step(self) -> None:
        """Copy the weights so the step's actual update can be measured."""
        self._before = [p.detach().clone() for p in self.params]

    def after_step(self) -> torch.Tensor:
        """(layers, 3) device tensor: gradient norm, weight norm, update norm / weight norm."""
        weights = [p.detach() for p in self.params]
        w = self._per_layer(weights)
        if self._before is not None:
            update = self._per_layer(torch._foreach_sub(weights, self._before))
        else:
            update = torch.zeros_like(w)
        self._before = None
        g = self.grad_sq if self.grad_sq is not None else torch.zeros_like(w)
        return torch.stack([g, w, update / w.clamp_min(1e-12)], dim=1)


@dataclass(frozen=True)
class LayerHealth:
    """One layer's numbers at a log interval."""

    name: str
    grad_norm: float
    weight_norm: float
    update_ratio: float


def health_rows(names: list[str], table: list[list[float]]) -> tuple[LayerHealth, ...]:
    """Host rows from the synced (layers, 3) table."""
    return tuple(LayerHealth(n, *row) for n, row in zip(names, table, strict=True))


def weight_layers(rows: tuple[LayerHealth, ...]) -> list[LayerHealth]:
    """The layers that carry weight matrices or kernels (normalisation layers left out)."""
    return [r for r in rows if not any(k in r.name.lower() for k in ("norm", "bn"))] or list(rows)


def gradient_alarms(rows: tuple[LayerHealth, ...]) -> list[tuple[str, str]]:
    """(kind, message) for vanishing, exploding or non-finite gradients."""
    alarms = []
    if any(not math.isfinite(r.grad_norm) for r in rows):
        bad = next(r.name for r in rows if not math.isfinite(r.grad_norm))
        alarms.append(("exploding", f"non-finite gradient in {bad}: lower the learning rate or set "
                                    "regularization.grad_clip"))
        return alarms
    layers = weight_layers(rows)
    if len(layers) >= 2:
        first, last = layers[0], layers[-1]
        if last.grad_norm > 0 and first.grad_norm < VANISHING_RATIO * last.grad_norm:
            alarms.append(("vanishing", f"vanishing gradients: {first.name} gets {first.grad_norm:.2e}, "
                                        f"{last.name} {last.grad_norm:.2e} ({first.grad_norm / last.grad_norm:.0e}x); "
                                        "try ReLU, batch norm, residual connections or another init"))
    big = max(rows, key=lambda r: r.grad_norm, default=None)
    if big is not None and big.grad_norm > EXPLODING_NORM:
        alarms.append(("exploding", f"exploding gradients: {big.name} gradient norm {big.grad_norm:.2e}; "
                                    "lower the learning rate or set regularization.grad_clip"))
    return alarms


@torch.no_grad()
def dead_units(model: nn.Module, batch: torch.Tensor) -> dict[str, float]:
    """Share of units of each ReLU layer that are never active on ``batch`` (a validation batch)."""
    shares: dict[str, float] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):
            def record(_m, _inp, out, name=name):
                active = out > 0  # a unit (feature or channel) is alive if it fires for any sample or position
                shares[name] = active.any(0) if out.dim() == 2 else active.flatten(2).any(2).any(0)
            hooks.append(module.register_forward_hook(record))
    if not hooks:
        return {}
    was_training = model.training
    model.eval()
    try:
        model(batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if not shares:
        return {}
    names = list(shares)
    fractions = torch.stack([1 - shares[n].float().mean() for n in names]).tolist()  # host sync: once per epoch
    return dict(zip(names, fractions, strict=True))


def dead_alarm(shares: dict[str, float]) -> str | None:
    """A hint when half or more of a ReLU layer's units never fire."""
    worst = max(shares.items(), key=lambda kv: kv[1], default=None)
    if worst and worst[1] >= DEAD_SHARE:
        return (f"dead ReLUs: {worst[1]:.0%} of the units after {worst[0]} never fire on a validation batch; "
                "lower the learning rate, try leaky_relu or kaiming init")
    return None


def curve_hints(history: list[dict]) -> list[tuple[str, str]]:
    """(kind, message) hints read from the epoch rows so far."""
    hints = []
    if len(history) >= 4:
        last = history[-4:]
        val = [r["val_loss"] for r in last]
        train = [r["train_loss"] for r in last]
        if all(b > a for a, b in zip(val, val[1:], strict=False)) and all(b < a for a, b in zip(train, train[1:], strict=False)):
            hints.append(("overfitting", f"overfitting: validation loss rose for 3 epochs ({val[0]:.4f} -> {val[-1]:.4f}) "
                                         "while training loss fell; try early stopping, dropout, L2, more data or "
                                         "augmentation"))
    if len(history) >= 3:
        first, now = history[0]["train_loss"], history[2]["train_loss"]
        if len(history) == 3 and now >= 0.99 * first:
            hints.append(("flat", f"training loss is flat from the start ({first:.4f} -> {now:.4f} over 3 epochs): "
                                  "the learning rate may be too low, or gradients vanish"))
    train = [r["train_loss"] for r in history[-4:]]
    rises = sum(b > a for a, b in zip(train, train[1:], strict=False))
    if (len(train) == 4 and rises >= 2) or (len(history) >= 3 and history[-1]["train_loss"] > 1.5 * history[0]["train_loss"]):
        hints.append(("too_high", "training loss is oscillating or rising: the learning rate is probably too high"))
    return hints


@torch.no_grad()
def decision_grid(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cols: int = 64, rows: int = 24,
                  max_points: int = 300) -> tuple[tuple[float, float], tuple[float, float], list[int], list]:
    """Predicted class over a cols x rows grid spanning the points (10% margin), and up to max_points points."""
    lo, hi = x.min(0).values, x.max(0).values
    margin = (hi - lo) * 0.1
    lo, hi = lo - margin, hi + margin
    xs = torch.linspace(float(lo[0]), float(hi[0]), cols, device=x.device)
    ys = torch.linspace(float(hi[1]), float(lo[1]), rows, device=x.device)  # top row first
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).reshape(-1, 2)
    was_training = model.training
    model.eval()
    classes = model(grid).argmax(1)
    model.train(was_training)
    step = max(1, len(x) // max_points)
    pts = torch.cat([x[::step], y[::step, None].float()], dim=1)
    # host sync: once per epoch, a few thousand numbers
    return ((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])), classes.tolist(),
            [(a, b, int(c)) for a, b, c in pts.tolist()])
