"""Every scalar parameter of a small network, by name: the one table behind the autograd lecture's numbers.

The lecture 5 notes check backpropagation by hand on a 1-2-1 sigmoid network and then print
``model.hidden.bias.grad`` and friends. A network of ``MAX_SCALARS`` values or fewer is small enough to
read that way, and two things show it so:

* the training step (``steps.StepBody``): on a watched step it stacks each trainable scalar's value,
  gradient and new value into one device table (``step_table``), read with the log interval's one
  host sync and sent as ``ParamValues`` (the app's Gradients tab);
* ``parameter_table``: the same numbers for a model in hand, after a backward pass (tests, the
  lecture benchmark), a gradient not computed yet being ``None``, as ``.grad`` is.

Both name a scalar the same way (``scalar_names``): the parameter's name and the index inside it
(``layers.1.weight[1,0]``), or the name alone for a parameter that holds one value
(``layers.3.bias``), in ``named_parameters`` order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from torch import nn

MAX_SCALARS = 64
"""Networks with at most this many scalars (trainable, for the step's table) show every one of them."""


def small_enough(n_scalars: int) -> bool:
    """Whether a network of ``n_scalars`` scalars is shown scalar by scalar (none at all: nothing to show)."""
    return 0 < n_scalars <= MAX_SCALARS


def scalar_names(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """One name per scalar of the parameters ``named``, in their order: ``name[i,j]``, or ``name`` alone for a
    parameter of one value."""
    names = []
    for name, p in named:
        if p.numel() == 1:
            names.append(name)
            continue
        for index in itertools.product(*(range(n) for n in p.shape)):
            names.append(f"{name}[{','.join(map(str, index))}]")
    return names


def step_table(params: list[nn.Parameter], before: torch.Tensor) -> torch.Tensor:
    """(3, n) device table of one optimizer step: each scalar's value ``before`` it, its gradient (0 where none
    was computed) and its value after it. No host sync: read with the log interval's."""
    grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    return torch.stack([before, grads, flat_values(params)])


def flat_values(params: list[nn.Parameter]) -> torch.Tensor:
    """Every scalar of ``params`` in one flat device tensor (a copy of the values now)."""
    return torch.cat([p.detach().flatten() for p in params])


def parameter_table(model: nn.Module) -> list[tuple[str, float, float | None]]:
    """``[(name, value, grad), ...]`` per scalar parameter (trainable or not); ``[]`` when the model has more than
    ``MAX_SCALARS``."""
    named = list(model.named_parameters())
    if not small_enough(sum(p.numel() for _, p in named)):
        return []
    values = [p.detach().reshape(-1) for _, p in named]
    grads = [p.grad.detach().reshape(-1) if p.grad is not None else torch.full_like(v, float("nan"))
             for (_, p), v in zip(named, values, strict=True)]
    # host sync: one copy of a few dozen numbers, when asked (after a step, never inside one)
    flat_v = torch.cat(values).double().tolist()
    flat_g = torch.cat(grads).double().tolist()
    present = [p.grad is not None for _, p in named for _ in range(p.numel())]
    return [(n, v, g if has else None)
            for n, v, g, has in zip(scalar_names(named), flat_v, flat_g, present, strict=True)]
