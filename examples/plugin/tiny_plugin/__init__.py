"""A tiny package that gives tui-trainer a model through the entry point group ``tui_trainer.models``.

    pip install examples/plugin
    tui-trainer train spirals-mlp --set model.arch='"plugin:tiny-mlp"'
"""

from __future__ import annotations

import math

from torch import nn


def build(*, input_shape: tuple[int, ...], num_outputs: int, hidden: int = 32) -> nn.Module:
    """A tiny MLP from a plugin: flatten, one hidden layer of tanh units, a linear output."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.Tanh(),
                         nn.Linear(hidden, num_outputs))
