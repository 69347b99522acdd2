"""Seeing inside training: per-layer gradient health, dead units, alarms and curve hints.

Statistics are computed on the device with multi-tensor kernels and stay there until the
engine's log-interval sync, so watching gradients adds no host sync to the training steps.
The alarms and hints are plain functions of host numbers, each with a concrete remedy from
the lecture notes.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn

from tui_trainer.engine.losses import predicted_class
from tui_trainer.run.events import LayerHealth  # what a run says about a layer: stdlib, so the app reads it without torch
from tui_trainer.run.formats import format_column

VANISHING_RATIO = 1e-2  # first layer's gradient norm below 1% of the last layer's: two orders of magnitude
EXPLODING_NORM = 1e3
DEAD_SHARE = 0.5  # half of a layer's units never firing: worth a word only when the loss also stalls
STALL_EPOCHS = 3  # the training loss "stopped falling": its last 3 epochs gained under STALL_GAIN on the best before
STALL_GAIN = 0.02
RISE = 0.1  # "too high": the epoch's training loss is 10% above the best before it ...
GIVE_BACK = 0.25  # ... and gave back a quarter of the progress made since the first epoch
DIVERGED = 1.5  # the loss 1.5x its first epoch's: overrides an earlier "too low" hint


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


def health_rows(names: list[str], table: list[list[float]]) -> tuple[LayerHealth, ...]:
    """Host rows from the synced (layers, 3) table."""
    return tuple(LayerHealth(n, *row) for n, row in zip(names, table, strict=True))


def weight_layers(rows: tuple[LayerHealth, ...]) -> list[LayerHealth]:
    """The layers that carry weight matrices or kernels (normalisation layers left out)."""
    return [r for r in rows if not any(k in r.name.lower() for k in ("norm", "bn"))] or list(rows)


def _vanishing_remedy(activation: str | None) -> str:
    """What to try against vanishing gradients, for the network's hidden activation (None: not known)."""
    if activation == "relu":
        # a ReLU does not saturate: an early layer without gradient means its units are dead (every
        # input lands on the flat side), which a too-high learning rate causes; "try ReLU" would be wrong
        return ("in a ReLU network that means dead units (every input on their flat side), usually after a "
                "learning rate too high: lower it, try leaky_relu, batch norm or kaiming init")
    if activation in ("sigmoid", "tanh"):
        return f"{activation} saturates: try ReLU, batch norm, residual connections or another init"
    if activation is not None:
        return "try batch norm, residual connections or another init"
    return "with sigmoid or tanh try ReLU; else batch norm, residual connections or another init"


def gradient_alarms(rows: tuple[LayerHealth, ...], activation: str | None = None) -> list[tuple[str, str]]:
    """(kind, message) for vanishing, exploding or non-finite gradients.

    ``activation`` is the network's hidden activation (``cfg.model.activation``); it picks the remedy
    for vanishing gradients, so a ReLU network is never told to try ReLU. None (unknown) gives advice
    that holds for any activation.
    """
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
            ratio = first.grad_norm / last.grad_norm
            alarms.append(("vanishing", f"vanishing gradients: {first.name} gets {first.grad_norm:.2e}, "
                                        f"{last.name} {last.grad_norm:.2e} "
                                        f"({f'{ratio:.0e}x' if ratio > 0 else 'none at all'}); "
                                        f"{_vanishing_remedy(activation)}"))
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


def loss_stalled(history: list[dict], epochs: int = STALL_EPOCHS, gain: float = STALL_GAIN) -> bool:
    """True when the last ``epochs`` epochs' best training loss is not ``gain`` below the best before them."""
    if len(history) <= epochs:
        return False
    losses = [r["train_loss"] for r in history]
    return min(losses[-epochs:]) > (1 - gain) * min(losses[:-epochs])


def loss_poor(history: list[dict]) -> bool:
    """True when the training loss is still above half its early level (the median of the first three
    epochs: a first epoch that blew up does not make a stuck loss look like progress)."""
    early = sorted(r["train_loss"] for r in history[:3])
    return bool(history) and history[-1]["train_loss"] > 0.5 * early[len(early) // 2]


def dead_alarm(shares: dict[str, float], history: list[dict] | None = None) -> str | None:
    """A hint when dead ReLUs (units that never fire on the validation probe) are likely to hurt.

    Dead units alone are no symptom: spirals-mlp at its own rate keeps 52-56% of its second layer's
    64 units dead from the first epoch to the last, measured on the whole validation set (the
    engine's probe: one validation batch, all 400 samples for the synthetic presets) as on the whole
    training set, and still reaches val_acc 1.000; circles-mlp keeps half of its 16. The network
    simply does not need them. So the hint needs the harm as well:

    * a layer whose units are *all* dead: the output no longer depends on the input (always); or
    * ``DEAD_SHARE`` of a layer dead while the training loss has stalled (``loss_stalled``: three
      epochs without a 2% gain) at a poor level (``loss_poor``: above half its early value). That
      needs ``history``, the epoch rows including the current one; without it only the first case
      is checked.

    Spirals-mlp at lr 0.1 (97% dead, loss stuck near 0.52, val_acc 0.66) or lr 5 (92% dead, loss at
    chance) is told; the shipped presets at their own rates are not.
    """
    worst = max(shares.items(), key=lambda kv: kv[1], default=None)
    if worst is None:
        return None
    name, share = worst
    if share >= 1.0:
        return (f"dead ReLUs: every unit after {name} is off for every validation input, so the output no longer "
                "depends on the input; the learning rate was probably too high: lower it, try leaky_relu or kaiming init")
    if share >= DEAD_SHARE and history and loss_stalled(history) and loss_poor(history):
        return (f"dead ReLUs: {share:.0%} of the units after {name} never fire on the validation data and the training "
                f"loss has stopped falling at {history[-1]['train_loss']:.4g}; the learning rate is probably too high: "
                "lower it, try leaky_relu or kaiming init")
    return None


def _vanishing_now(row: dict) -> bool:
    """The epoch row's gradient norms (first and last weight layer) say the early layers get almost nothing."""
    norms = [v for k, v in (row.get("grad_norms") or {}).items() if not any(n in k.lower() for n in ("norm", "bn"))]
    return len(norms) >= 2 and norms[-1] > 0 and norms[0] < VANISHING_RATIO * norms[-1]


def _overfitting(history: list[dict]) -> str | None:
    """Validation loss rose three epochs in a row while training loss fell, by a rise that matters: at least
    0.5% of the first epoch's validation loss (a net at 1e-4 drifting to 1.5e-4 is not overfitting)."""
    if len(history) < 4:
        return None
    val = [r["val_loss"] for r in history[-4:]]
    train = [r["train_loss"] for r in history[-4:]]
    scale = abs(history[0]["val_loss"]) if math.isfinite(history[0]["val_loss"]) else 0.0
    if (all(b > a for a, b in pairwise(val)) and all(b < a for a, b in pairwise(train))
            and val[-1] - val[0] >= 0.005 * scale):
        return (f"overfitting: validation loss rose for 3 epochs ({val[0]:.4g} -> {val[-1]:.4g}) while training loss "
                "fell; try early stopping, dropout, L2, more data or augmentation")
    return None


def _flat_start(history: list[dict], lowered: bool) -> tuple[str, str] | None:
    """After epoch 3, a training loss that has not moved: (kind, message) by its likely cause."""
    if len(history) != 3:
        return None
    losses = [r["train_loss"] for r in history]
    if max(losses) > 1.02 * min(losses) or losses[2] < 0.99 * losses[0]:
        return None
    first, last = format_column([losses[0], losses[2]])  # one format: a loss of 4e-5 is not 0.0000
    flat = f"training loss is flat from the start ({first} -> {last} over 3 epochs)"
    name, share = max((history[-1].get("dead_relu") or {}).items(), key=lambda kv: kv[1], default=("", 0.0))
    if share >= DEAD_SHARE:  # flat because the units are dead: a too-high rate, not a too-low one
        return "dead", (f"{flat} and {share:.0%} of the units after {name} never fire: dead ReLUs, probably from a "
                        "learning rate too high; lower it, try leaky_relu or kaiming init")
    if _vanishing_now(history[-1]):
        return "flat", (f"{flat}: the first layers get almost no gradient (see the vanishing-gradient warning); "
                        "a larger learning rate will not fix that")
    if lowered:  # an earlier hint said to lower the rate: do not now say it may be too low
        return None
    return "flat", f"{flat}: the learning rate may be too low (the LR finder suggests one), or the model too small"


def _rising(history: list[dict], best: float, raised: bool) -> str | None:
    """The last epoch's training loss climbed back: 10% above the best before it and a quarter of the progress
    since the first epoch given back (``best``: the lowest training loss before the last epoch)."""
    if len(history) < 2:
        return None
    first, last = history[0]["train_loss"], history[-1]["train_loss"]
    progress = max(first - best, 0.0)
    if last - best < RISE * best or last - best < GIVE_BACK * progress:
        return None
    if raised and last < DIVERGED * first:  # an earlier hint said the rate may be too low
        return None
    given_back = f", giving back {(last - best) / progress:.0%} of the progress since the first epoch" if progress else ""
    return f"training loss rose to {last:.4g} from its best {best:.4g}{given_back}: the learning rate is probably too high"


def curve_hints(history: list[dict]) -> list[tuple[str, str]]:
    """(kind, message) hints read from the epoch rows so far (each row as in metrics.jsonl), for the last epoch.

    The rules, and why they stay silent on the shipped presets that train well:

    * overfitting: validation loss rose three epochs in a row while training loss fell.
    * flat (after epoch 3): the first three epochs' training losses lie within 2% of each other and
      did not fall 1%. The cause decides the advice: dead units (kind "dead": a too-high rate),
      vanishing gradients in the row's grad_norms (no rate helps), else a rate that may be too low.
    * too_high: an epoch's training loss is 10% above the best before it *and* gives back a quarter
      of the progress made since the first epoch. A converged run's wobble (moons, xor and
      regression-toy move 10-30% from epoch to epoch at a loss 10x below where they started) is far
      below a quarter of their progress; a loss that climbs back up is not. The old rule (two rises
      in four epochs) fired on all three of them.
    * dead: see ``dead_alarm`` (the rows carry the dead shares).

    Advice never contradicts itself within a run: the rows are replayed epoch by epoch, and once a
    hint said the rate may be too low, "too high" needs the loss at 1.5x its first epoch's and the
    dead-unit hint (which says to lower it) is held back; once a hint said to lower the rate, a flat
    start is not read as a rate too low.
    """
    lowered = raised = False  # advice given at earlier epochs: lower the rate / it may be too low
    best = math.inf  # lowest training loss before epoch k
    hints: list[tuple[str, str]] = []
    for k in range(1, len(history) + 1):
        rows = history[:k] if k < len(history) else history
        hints = []
        text = _overfitting(rows)
        if text:
            hints.append(("overfitting", text))
        flat = _flat_start(rows, lowered)
        if flat:
            hints.append(flat)
        text = _rising(rows, best, raised)
        if text:
            hints.append(("too_high", text))
        shares = rows[-1].get("dead_relu") or {}
        if shares and not raised and not (flat and flat[0] == "dead"):
            text = dead_alarm(shares, rows)
            if text:
                hints.append(("dead", text))
        lowered = lowered or any(kind in ("too_high", "dead") for kind, _ in hints)
        raised = raised or any(kind == "flat" and "too low" in text for kind, text in hints)
        best = min(best, rows[-1]["train_loss"])
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
    classes = predicted_class(model(grid))
    model.train(was_training)
    step = max(1, len(x) // max_points)
    pts = torch.cat([x[::step], y[::step, None].float()], dim=1)
    # host sync: once per epoch, a few thousand numbers
    return ((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])), classes.tolist(),
            [(a, b, int(c)) for a, b, c in pts.tolist()])
