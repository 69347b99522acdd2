"""Benchmarks never download: a torchvision dataset that is not on disk (cache or Debian's
Fashion-MNIST files) is replaced by synthetic data of the same shape, size and dtype, each class
a fixed random pattern plus noise, so it can be learned. ``install()`` patches the data module
for this process; ``synthetic_names`` says which datasets were replaced. A run process
(``python -m tui_trainer.runner``) is not patched: ``for_run_process(cfg, scratch)`` writes the
same synthetic data to disk as torchvision's raw files and points the config's ``data.cache_dir``
at them, so the child finds them the way it finds real files."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from tui_trainer.config import RunConfig, apply_overrides
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


def _write_idx(path: Path, t: torch.Tensor) -> None:
    """A uint8 tensor as an IDX file (the MNIST format torchvision reads from ``raw/``)."""
    header = (0x0800 | t.dim()).to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in t.shape)
    path.write_bytes(header + t.to(torch.uint8).contiguous().numpy().tobytes())


def for_run_process(cfg: RunConfig, scratch: Path) -> RunConfig:
    """``cfg`` unchanged if its torchvision dataset is on disk; else the synthetic stand-in written under
    ``scratch`` as torchvision's raw files and ``data.cache_dir`` pointing there (MNIST formats only)."""
    name = cfg.data.dataset
    if name not in real.TORCHVISION:
        return cfg
    if _ensure(name, real.cache_dir(cfg), download=False) and name not in synthetic_names:
        return cfg
    if name not in ("mnist", "fashion-mnist"):
        raise SystemExit(f"{name} is not on disk and a run process cannot be given synthetic {name}: "
                         "put torchvision's files in the cache, or benchmark an MNIST-format preset")
    root = scratch / "datasets"
    raw = root / real.TORCHVISION[name][1] / "raw"
    if not (raw / "t10k-labels-idx1-ubyte").is_file():
        raw.mkdir(parents=True, exist_ok=True)
        for train, prefix in ((True, "train"), (False, "t10k")):
            x, y = _tensors(name, root, train)
            _write_idx(raw / f"{prefix}-images-idx3-ubyte", x[:, 0])
            _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    return apply_overrides(cfg, [f'data.cache_dir="{root}"'])
