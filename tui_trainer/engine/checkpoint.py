"""Atomic save and safe load of a self-describing checkpoint.

Save: write to a temporary file in the same directory, fsync it, ``os.replace`` it over the
target and fsync the directory, so the path always holds the old or the new complete file
(a ``kill -9`` or power loss mid-write leaves no truncated checkpoint behind).

Load: ``torch.load(..., weights_only=True)``, so a checkpoint from a stranger cannot run code;
every failure becomes a one-line ``CheckpointError``.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from tui_trainer.errors import CheckpointError
from tui_trainer.run.folder import not_a_checkpoint

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "model", "config", "epoch", "step")


__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(payload: dict[str, Any], path: Path) -> Path:
    """Write ``payload`` to ``path`` atomically; on failure the old file is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CheckpointError(f"could not write {path}: {exc.strerror or exc}") from None
        raise
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (weights_only); CheckpointError names what is wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(not_a_checkpoint(path))
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        match = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", text)
        if match:
            raise CheckpointError(
                f"{path}: refused to load: it would import {match.group(1)}, which a plain-weights checkpoint "
                "never needs (only load checkpoints you trust)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: UnpicklingError)") from None
    except Exception as exc:  # noqa: BLE001 - random bytes can fail in any parser layer; all mean "corrupt"
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: {type(exc).__name__})") from None
    if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not a tui-trainer checkpoint (missing model, config, epoch or step)")
    if payload["format"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer tui-trainer (format {payload['format']}); upgrade to read it")
    return payload
