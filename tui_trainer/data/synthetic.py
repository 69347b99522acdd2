"""Synthetic datasets generated on the fly from a seed: the lecture's toy problems.

2-D classification (spirals, moons, circles, xor, blobs) and the lecture's regression toy
``y = x^2 + x * noise`` on [-3, 3) with validation on the clean ``x^2``.
"""

from __future__ import annotations

import math

import torch


def _spirals(n: int, k: int, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % k
    t = torch.rand(n, generator=g) * 1.0 + 0.05  # radius in (0.05, 1.05)
    theta = y * (2 * math.pi / k) + t * 4 * math.pi + torch.randn(n, generator=g) * noise  # two full turns
    x = torch.stack([t * torch.cos(theta), t * torch.sin(theta)], dim=1)
    return x, y


def _moons(n: int, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 2
    t = torch.rand(n, generator=g) * math.pi
    upper = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
    x = torch.where(y[:, None] == 0, upper, lower)
    return x + torch.randn(n, 2, generator=g) * noise, y


def _circles(n: int, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 2
    t = torch.rand(n, generator=g) * 2 * math.pi
    r = torch.where(y == 0, 1.0, 0.5)
    x = torch.stack([r * torch.cos(t), r * torch.sin(t)], dim=1)
    return x + torch.randn(n, 2, generator=g) * noise, y


def _xor(n: int, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 2, generator=g) * 2 - 1
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    return x + torch.randn(n, 2, generator=g) * noise, y


def _blobs(n: int, k: int, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % k
    angles = torch.arange(k) * (2 * math.pi / k)
    centers = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1) * 3
    return centers[y] + torch.randn(n, 2, generator=g) * (0.5 + noise), y


def make_classification(
    name: str, n: int, n_classes: int, noise: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (n, 2) float32 and labels (n,) int64 of a 2-D toy dataset."""
    g = torch.Generator().manual_seed(seed)
    if name == "spirals":
        x, y = _spirals(n, n_classes, noise, g)
    elif name == "moons":
        x, y = _moons(n, noise, g)
    elif name == "circles":
        x, y = _circles(n, noise, g)
    elif name == "xor":
        x, y = _xor(n, noise, g)
    elif name == "blobs":
        x, y = _blobs(n, n_classes, noise, g)
    else:  # pragma: no cover - the config validator rejects other names
        raise ValueError(name)
    return x.float(), y.long()


def make_regression_toy(n: int, noise: float, seed: int) -> tuple[torch.Tensor, ...]:
    """The lecture's toy: train on ``x^2 + x * N(0, noise)`` over [-3, 3), validate on clean ``x^2``.

    With n = 40 and noise = 1 the training inputs are exactly the lecture's ``arange(-3, 3, 0.15)``.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(-3, 3, n + 1)[:-1]
    y = x**2 + x * torch.randn(n, generator=g) * noise
    xv = torch.linspace(-3, 3, 25)[:-1]
    return x[:, None], y[:, None], xv[:, None], (xv**2)[:, None]
