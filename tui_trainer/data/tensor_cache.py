"""Decoded tensors of the IDX datasets (Fashion-MNIST, MNIST), kept next to the data cache so a run's start skips
torchvision and the decode.

Without it every start imports torchvision (1.25 s on a 2-core CPU, with the check that the files open) and decodes
the IDX files (0.1 s); with it, one ``torch.load(mmap=True, weights_only=True)`` of uint8 tensors.
benchmarks/decode_cache.py measures the start with and without (benchmarks/RESULTS.md).

The cache is ``<cache>/.tensors/<dataset>.pt``: the train and test images (N, 1, 28, 28) and labels as torchvision
decodes them, and the size and modification time (ns) of each source file it was decoded from
(config/datafiles.py's ``TORCHVISION_FILES``). It is used only while every source file is there with the same size
and time: a file replaced, touched or removed makes it stale, and the next start decodes and writes it again.
Written to a temporary file and renamed, so a reader never meets half of one; a cache that cannot be read (torn,
another format) is decoded over, and one that cannot be written (a read-only cache folder) only costs the decode.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from tui_trainer.config.datafiles import TORCHVISION_FILES

CACHED = ("fashion-mnist", "mnist")  # the IDX datasets (CIFAR-10's pickles decode in a similar time: not worth it)
VERSION = 1
Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # train x, train y, test x, test y


def cache_file(name: str, root: Path) -> Path:
    """Where the decoded tensors of ``name`` are kept under the data cache ``root``."""
    return root / ".tensors" / f"{name}.pt"


def source_key(name: str, root: Path) -> list[list] | None:
    """[relative path, size, mtime_ns] of each source file; None if one is missing."""
    key = []
    for rel in TORCHVISION_FILES[name]:
        try:
            st = os.stat(root / rel)
        except OSError:
            return None
        key.append([rel, st.st_size, st.st_mtime_ns])
    return key


def load_cached(name: str, root: Path) -> Tensors | None:
    """The decoded tensors if a cache is there and matches its source files; None otherwise."""
    if name not in CACHED:
        return None
    path = cache_file(name, root)
    key = source_key(name, root)
    if key is None or not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - torn, truncated or another format: decode again
        return None
    if not isinstance(saved, dict) or saved.get("version") != VERSION or saved.get("sources") != key:
        return None
    try:
        tensors = tuple(saved[k] for k in ("train_x", "train_y", "test_x", "test_y"))
    except KeyError:
        return None
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        return None
    return tensors  # type: ignore[return-value]


def store(name: str, root: Path, tensors: Tensors, key: list[list] | None = None) -> Path | None:
    """Write the cache (atomically); the path, or None if it could not be written (the run goes on without).
    ``key``: the source files as they were before decoding (so a file replaced meanwhile leaves it stale)."""
    if name not in CACHED:
        return None
    key = key if key is not None else source_key(name, root)
    if key is None:
        return None
    path = cache_file(name, root)
    train_x, train_y, test_x, test_y = tensors
    payload = {"version": VERSION, "sources": key, "train_x": train_x.contiguous(), "train_y": train_y.contiguous(),
               "test_x": test_x.contiguous(), "test_y": test_y.contiguous()}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as out:
            torch.save(payload, out)
        os.replace(tmp, path)
        return path
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        return None
