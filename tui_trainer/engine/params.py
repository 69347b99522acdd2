"""Every scalar parameter of a small model with its value and gradient: the autograd lecture's table.

The lecture 5 notes check backpropagation by hand on a 1-2-1 sigmoid network and then print
``model.hidden.bias.grad`` and friends. ``parameter_table`` gives the same numbers for any model
small enough to read (``MAX_SCALARS`` values or fewer), one row per scalar, named after the
parameter and the index inside it (``layers.1.weight[1,0]``), in ``named_parameters`` order.
A gradient that has not been computed yet (no backward pass) is ``None``, as ``.grad`` is.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

MAX_SCALARS = 64


def count_scalars(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def parameter_table(model: nn.Module, limit: int = MAX_SCALARS) -> list[tuple[str, float, float | None]]:
    """``[(name, value, grad), ...]`` per scalar parameter; ``[]`` when the model has more than ``limit``."""
    if count_scalars(model) > limit:
        return []
    names, values, grads = [], [], []
    for name, p in model.named_parameters():
        for index in itertools.product(*(range(n) for n in p.shape)):
            names.append(f"{name}[{','.join(map(str, index))}]" if index else name)
        values.append(p.detach().reshape(-1))
        grads.append(p.grad.detach().reshape(-1) if p.grad is not None else torch.full_like(values[-1], float("nan")))
    if not names:
        return []
    # host sync: one copy of a few dozen numbers, when asked (after a step, never inside one)
    flat_v = torch.cat(values).double().tolist()
    flat_g = torch.cat(grads).double().tolist()
    present = [p.grad is not None for _, p in model.named_parameters() for _ in range(p.numel())]
    return [(n, v, g if has else None) for n, v, g, has in zip(names, flat_v, flat_g, present, strict=True)]
