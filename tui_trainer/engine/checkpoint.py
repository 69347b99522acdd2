"""Checkpoints: the file (atomic save, safe load) and a fit's collaborator that writes and restores them.

Save: write to a temporary file in the same directory, fsync it, ``os.replace`` it over the
target and fsync the directory, so the path always holds the old or the new complete file
(a ``kill -9`` or power loss mid-write leaves no truncated checkpoint behind). A failed write
(a full disk, a folder removed) is one ``CheckpointError`` naming the path and the cause; the
folder's parents are never created again.

Load: ``torch.load(..., weights_only=True)``, so a checkpoint from a stranger cannot run code;
every failure becomes a one-line ``CheckpointError``.

``Checkpoints`` is what the loop calls: the payload (everything needed to continue the run
exactly), writing last.pt / best.pt / a manual save on rank 0 (a failed write is said, with what
was kept, and the run goes on), and restoring a fit from a payload. The format is unchanged
since version 1: ``"partial"`` stays a dict (``EpochTotals`` converts at this boundary) and
``"history"`` the list of epoch rows.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tui_trainer.config import RunConfig
from tui_trainer.engine.models import state_mismatch
from tui_trainer.engine.optim import Schedule, load_optimizer_state, optimizer_state
from tui_trainer.engine.progress import EpochTotals, Progress
from tui_trainer.engine.stopping import EarlyStopping
from tui_trainer.errors import CheckpointError, first_line
from tui_trainer.run.events import CheckpointSaved, LogMessage, Sink
from tui_trainer.run.files import why_not_written
from tui_trainer.run.folder import RunDir, not_a_checkpoint

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "model", "config", "epoch", "step")


__all__ = ["CheckpointError", "Checkpoints", "load_checkpoint", "save_checkpoint"]


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
    """Write ``payload`` to ``path`` atomically; on failure the old file is untouched and CheckpointError says why."""
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(exist_ok=True)  # the run's checkpoints/, never its parents (a removed run stays removed)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
        cause = os_error(exc)
        if cause is not None:
            raise CheckpointError(f"could not write {path}: {why_not_written(cause)}") from None
        raise
    _fsync_dir(path.parent)
    return path


def os_error(exc: BaseException) -> OSError | None:
    """The OSError behind a failed write: ``exc`` itself, or the one torch's zip writer was handling when it raised
    its own RuntimeError ("[enforce fail at inline_container.cc] unexpected pos ...", which names no cause)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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


class Checkpoints:
    """A fit's checkpoints: the payload, writing it (``writes``: rank 0 only, every rank holds the same state),
    restoring a fit from one, and what was kept. ``folder`` is the run's, given when training starts (a fit is
    set up before its folder is made, so a setup that fails leaves none)."""

    def __init__(self, cfg: RunConfig, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule,
                 stopper: EarlyStopping, device: torch.device, progress: Progress, sink: Sink, writes: bool) -> None:
        self.cfg, self.model, self.optimizer, self.schedule, self.stopper = cfg, model, optimizer, schedule, stopper
        self.device, self.progress, self.sink, self.writes = device, progress, sink, writes
        self.folder: RunDir | None = None
        self.last: Path | None = None  # last.pt, once this process wrote it
        self.written: dict[Path, tuple[int, int]] = {}  # (epoch, step) of each file this process wrote
        self.resumed_from: Path | None = None

    def payload(self, kind: str) -> dict[str, Any]:
        """Everything needed to continue the run exactly (weights_only-loadable types only)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        p = self.progress
        return {
            "format": FORMAT_VERSION, "kind": kind, "model": self.model.state_dict(),
            "optimizer": optimizer_state(self.optimizer), "scheduler": self.schedule.state_dict(),
            "epoch": p.epoch, "step": p.step, "batch_in_epoch": p.batch_in_epoch, "partial": p.totals.to_dict(),
            "rng": rng, "early_stopping": self.stopper.state_dict(), "history": list(p.rows),
            "config": self.cfg.to_dict(), "run_dir": str(self.folder.path if self.folder else ""), "saved_at": time.time(),
            "elapsed_s": p.clock.elapsed(),
        }

    def save(self, kind: str, payload: dict[str, Any] | None = None) -> Path | None:
        """Write last.pt, best.pt or (any other ``kind``) a manual save named by the epoch the progress line shows;
        its path, or None on the ranks that do not write and when the write failed (said, with what was kept: the
        run goes on)."""
        if not self.writes or self.folder is None:
            return None
        run, p = self.folder, self.progress
        path = {"last": run.last, "best": run.best}.get(kind) or run.manual(p.shown_epoch, p.step)
        try:
            save_checkpoint(payload or self.payload(kind), path)
        except CheckpointError as exc:
            self.sink.emit(LogMessage("error", f"{exc}; {self._kept_instead(path)}"))
            return None
        self.written[path] = (p.epoch, p.step)
        if kind == "last":
            self.last = path
        self.sink.emit(CheckpointSaved(str(path), kind, p.epoch, p.step))
        return path

    def _kept_instead(self, path: Path) -> str:
        """What a failed write of ``path`` left in its place."""
        if path in self.written:
            epoch, step = self.written[path]
            return f"the previous {path.name} (epoch {epoch}, step {step}) is intact"
        try:
            there = path.is_file()
        except OSError:
            there = False
        return f"the previous {path.name} is intact" if there else f"there is no {path.name} yet"

    def kept(self) -> str:
        """The last good checkpoint, for a run that has to end without writing one."""
        latest = max(self.written.items(), key=lambda item: (item[1][1], item[0].name == "last.pt"), default=None)
        if latest is not None:
            path, (epoch, step) = latest
            return f"the last good checkpoint is {path} (epoch {epoch}, step {step})"
        if self.resumed_from is not None:
            return f"the last good checkpoint is {self.resumed_from}, which this run resumed from"
        return "no checkpoint was written"

    def restore(self, ck: dict[str, Any], path: Path | str) -> None:
        """Continue from ``ck`` (read from ``path``): weights, optimizer, schedule, where the run was, early stopping,
        its epoch rows, its clock and the random state. CheckpointError when the weights do not fit the model."""
        why = state_mismatch(self.model, ck["model"])
        if why:
            raise CheckpointError(f"checkpoint does not match the {self.cfg.model.arch} model of its config: {why}")
        try:
            self.model.load_state_dict(ck["model"])
            if ck.get("optimizer"):
                load_optimizer_state(self.optimizer, ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint does not match the {self.cfg.model.arch} model of its config: "
                                  f"{first_line(exc)}") from None
        self.schedule.load_state_dict(ck.get("scheduler") or {})
        p = self.progress
        p.epoch, p.step = int(ck["epoch"]), int(ck["step"])
        p.batch_in_epoch = int(ck.get("batch_in_epoch", 0))
        self.stopper.load_state_dict(ck.get("early_stopping") or {})
        p.rows = list(ck.get("history") or [])
        p.totals = EpochTotals.from_dict(ck.get("partial"))
        p.clock.before = float(ck.get("elapsed_s") or 0.0)
        rng = ck.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.resumed_from = Path(path)
