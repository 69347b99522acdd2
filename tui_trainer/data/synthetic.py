"""Synthetic datasets generated on the fly from a seed: the lecture's toy problems.

2-D classification (spirals, moons, circles, xor, blobs) and the lecture's regression toy
``y = x^2 + x * noise`` on [-3, 3) with validation on the clean ``x^2``. Randomness comes from
the generator passed in, or from torch's global generator when it is None (a notebook's
``torch.manual_seed(0)`` followed by ``torch.normal(...)``).
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


Seed = int | torch.Generator | None


def _generator(seed: Seed) -> torch.Generator | None:
    """A private generator for an int seed; a generator as given; None: torch's global generator."""
    return torch.Generator().manual_seed(seed) if isinstance(seed, int) else seed


def make_classification(
    name: str, n: int, n_classes: int, noise: float, seed: Seed
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (n, 2) float32 and labels (n,) int64 of a 2-D toy dataset."""
    g = _generator(seed)
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


def make_regression_toy(n: int, noise: float, seed: Seed, val_points: int = 24) -> tuple[torch.Tensor, ...]:
    """The lecture's toy: train on ``x^2 + x * N(0, noise)`` over [-3, 3), validate on clean ``x^2``
    at ``val_points`` evenly spaced points of [-3, 3).

    With n = 40 and noise = 1 the training data are exactly the notes' ``X = torch.arange(-3, 3, 0.15)``
    and ``y = X ** 2 + X * torch.normal(0, 1, (40,))`` (same floats, same draws); with 6 validation
    points, their ``X_valid = torch.arange(-3.0, 3.0)``.
    """
    x = torch.arange(-3.0, 3.0, 6.0 / n)[:n]
    y = x**2 + x * torch.randn(n, generator=_generator(seed)) * noise
    xv = torch.arange(-3.0, 3.0, 6.0 / val_points)[:val_points]
    return x[:, None], y[:, None], xv[:, None], (xv**2)[:, None]
