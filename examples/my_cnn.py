"""A small CNN of your own, trained by tui-trainer: ``model.arch = "custom"``, ``model.factory = "my_cnn.py:build"``.

tui-trainer calls ``build(input_shape=(C, H, W), num_outputs=N, **model.args)`` and trains the module it returns:
its outputs are logits, one per class (cross-entropy is the loss).

    tui-trainer train examples/custom.toml          # this model on the data of npy_data.py
    tui-trainer summary examples/custom.toml        # its layers, and one batch through it
"""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Two convolution blocks and a linear head."""

    def __init__(self, channels: int, side: int, num_outputs: int, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * width * (side // 4) * (side // 4), num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def build(*, input_shape: tuple[int, ...], num_outputs: int, width: int = 8) -> nn.Module:
    """A small CNN of my own: two conv blocks (width, 2 x width channels) and a linear head."""
    channels, side, _ = input_shape
    return SmallCNN(channels, side, num_outputs, width)
