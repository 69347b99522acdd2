"""Benchmarks never download: a torchvision dataset that is not on disk (cache or Debian's
Fashion-MNIST files) is replaced by synthetic data of the same shape, size and dtype, each class
a fixed random pattern plus noise, so it can be learned. ``install()`` patches the data module
for this process; ``synthetic_names`` says which datasets were replaced."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from tui_trainer.data import real
from tui_trainer.errors import DataError

SIZES = {"fashion-mnist": (60_000, 10_000), "mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}
synthetic_names: set[str] = set()
_real_ensure, _real_tensors = real.ensure_dataset, real._tensors


def _ensure(name: str, root: Path, download: bool = True) -> Path:
    try:
        _real_ensure(name, root, download=False)
        synthetic_names.discard(name)
    except DataError:
        if name not in synthetic_names:
            print(f"{name} is not on disk here: synthetic data of the same shape", file=sys.stderr)
        synthetic_names.add(name)
    return root


def _tensors(name: str, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if name not in synthetic_names:
        return _real_tensors(name, root, train)
    shape = real.TORCHVISION[name][2]
    n = SIZES[name][0 if train else 1]
    g = torch.Generator().manual_seed(0)
    patterns = torch.rand((10, *shape), generator=g) * 255  # one fixed pattern per class, both splits
    g.manual_seed(1 if train else 2)
    y = torch.randint(0, 10, (n,), generator=g)
    noise = torch.randn((n, *shape), generator=g) * 48
    return (0.75 * patterns[y] + 32 + noise).clamp(0, 255).to(torch.uint8), y


def install() -> None:
    """Route this process's torchvision datasets through the offline rule above (idempotent)."""
    real.ensure_dataset = _ensure  # type: ignore[assignment]
    real._tensors = _tensors  # type: ignore[assignment]
