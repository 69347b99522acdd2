"""The record of a user's own loop on disk: its run folder, as the tool's own runs have it (``track.py`` is the API).

``Record`` is what rank 0 of the loop writes: a folder made by ``folder.new_run_folder`` (or one given), locked
for this process (``flock``: the kernel drops the lock when the process dies, and a second writer is told instead
of mixing its lines into events.jsonl), config.toml (the loop's config under ``[config]``, ``source = "track"``),
events.jsonl through the tool's own ``RunRecorder``, metrics.jsonl, status.json with this process's pid (a killed
loop reads as crashed), and the control endpoint (``endpoint.py``). Also here: the loop's config as plain TOML
values, the exception that ends a script (so a run it ends reads as failed), and what ``evaluate`` says of a
checkpoint of a user's loop. Stdlib only.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tui_trainer.config.presets import dict_to_toml
from tui_trainer.errors import ConfigError
from tui_trainer.run.controls import Controls
from tui_trainer.run.endpoint import ControlServer, EndpointError
from tui_trainer.run.events import Event, LogMessage
from tui_trainer.run.files import atomic_write
from tui_trainer.run.folder import RunDir, new_run_folder, proc_start
from tui_trainer.run.recorder import RunRecorder

SOURCE = "track"
"""``source`` of a run written by a user's own loop (RunStarted, config.toml, status.json, its checkpoints)."""


class TrackError(ValueError):
    """Bad input to the tracking API, in one line: what was wrong and what is allowed."""


class TrackWarning(UserWarning):
    """Something the tracking API left out (a value that is not finite) or can no longer do (write the folder)."""


class Record:
    """What rank 0 of a user's loop writes. A write that fails (a full disk) is said once, as a warning in the loop,
    and the run is recorded no further: the loop goes on."""

    def __init__(self, run: RunDir, lock: int, recorder: RunRecorder) -> None:
        self.run, self._lock_fd, self.recorder = run, lock, recorder
        self.server: ControlServer | None = None
        self._lock = threading.Lock()
        self.broken = False

    @classmethod
    def open(cls, name: str, config: dict[str, Any], controls: Controls, runs_dir: str | Path,
             folder: str | Path | None, **status: Any) -> Record:
        """The run's folder with its config, status "starting" (``status``: preset, epochs, monitor ...) and
        endpoint up. TrackError (one line) if it cannot be written or another process has it."""
        script = script_path()
        label = str(status.get("preset"))
        text = dict_to_toml({"name": name, "description": f"your own training loop ({label}), tracked through "
                             "tui_trainer.run.track", "source": SOURCE, "script": script, "config": config})
        run, lock = open_folder(name, text, runs_dir, folder, {**status, "source": SOURCE, "script": script})
        try:
            run.write_status(state="starting", pid=os.getpid(), host=socket.gethostname(),
                             proc_start=proc_start(os.getpid()), started=time.time(), ended=None, reason=None,
                             message=None, control=None)
            record = cls(run, lock, RunRecorder(run))
        except OSError as exc:
            os.close(lock)
            raise TrackError(f"run folder {run.path} cannot be written: {exc.strerror or exc}") from None
        try:
            record.server = ControlServer(run, controls)
            run.write_status(control=str(record.server.address))
        except (OSError, EndpointError) as exc:  # the loop is still watched; it just cannot be steered
            record.emit(LogMessage("warning", f"no control endpoint ({exc}): this run can be watched, not steered"))
        catch_uncaught()
        return record

    def emit(self, event: Event) -> None:
        """One event, a whole line, from this process alone (the loop's thread and an exit hook may both end it)."""
        with self._lock:
            if self.broken:
                return
            try:
                self.recorder.emit(event)
            except OSError as exc:
                self._broken(exc)

    def append_metrics(self, row: dict) -> None:
        """One epoch's row of metrics.jsonl."""
        with self._lock:
            if self.broken:
                return
            try:
                self.run.append_metrics(row)
            except OSError as exc:
                self._broken(exc)

    def _broken(self, exc: OSError) -> None:
        self.broken = True
        warnings.warn(f"tui-trainer: cannot write {self.run.path} ({exc.strerror or exc}): this run is recorded no "
                      "further; your loop goes on", TrackWarning, stacklevel=5)

    def close(self) -> None:
        """Answer what still waits, close the endpoint and events.jsonl, unlock the folder."""
        if self.server is not None:
            self.server.close(f"the run has ended ({self.run.state()})")
            try:
                self.run.write_status(control=None)
            except OSError:
                pass
        try:
            self.recorder.close()
        except OSError:
            pass
        os.close(self._lock_fd)


def open_folder(name: str, text: str, runs_dir: str | Path, folder: str | Path | None,
                status: dict[str, Any]) -> tuple[RunDir, int]:
    """The run's folder, locked for this process: a new one under ``runs_dir``, or ``folder`` (new, or made for this
    run and not yet written: a sweep's trial). TrackError if it cannot be written or another process has it."""
    if folder is None:
        try:
            run = new_run_folder(runs_dir, name, text, hint="pass another runs_dir to track.init", **status)
        except ConfigError as exc:
            raise TrackError(str(exc)) from None
        return run, lock_folder(run)
    path = Path(folder).expanduser().resolve()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackError(f"run folder {path} cannot be made: {exc.strerror or exc}; pass another folder") from None
    run = RunDir(path)
    lock = lock_folder(run)
    try:
        if run.events_path.exists() and run.events_path.stat().st_size:
            raise TrackError(f"run folder {path} already holds a run ({run.state()}): each run gets a folder of its "
                             "own (leave out folder= for a new one)")
        run.checkpoints.mkdir(exist_ok=True)
        atomic_write(run.config_path, text)
        run.write_status(state="starting", epoch=0, **status, created=time.time())
    except OSError as exc:
        os.close(lock)
        raise TrackError(f"run folder {path} cannot be written: {exc.strerror or exc}; pass another folder") from None
    except TrackError:
        os.close(lock)
        raise
    return run, lock


def lock_folder(run: RunDir) -> int:
    """An exclusive lock on the run folder for as long as this process writes it; TrackError naming the other
    process when it has the lock."""
    fd = os.open(run.path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        pid = run.read_status().get("pid", "?")
        raise TrackError(f"run folder {run.path} is open in another process (pid {pid}): two writers would mix their "
                         "lines in events.jsonl; give each process a folder of its own") from None
    return fd


def plain_config(config: Any, depth: int = 0) -> dict[str, Any]:
    """The loop's config as plain TOML values (a Namespace or a dataclass as its fields, None as "None", any other
    object as its str): what config.toml and the checkpoints keep. TrackError for a config of another kind."""
    if config is None:
        return {}
    if isinstance(config, argparse.Namespace):
        config = vars(config)
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TrackError(f"track.init: config must be a dict (or an argparse Namespace, a dataclass), not "
                         f"{type(config).__name__}")
    return {str(k): _plain(v, depth + 1) for k, v in config.items()}


def _plain(value: Any, depth: int) -> Any:
    if depth > 32:
        return str(value)
    if value is None:
        return "None"
    if isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        return value if -2**63 <= value < 2**63 else str(value)  # TOML holds 64-bit integers
    if isinstance(value, (Mapping, argparse.Namespace)) or (dataclasses.is_dataclass(value)
                                                             and not isinstance(value, type)):
        return plain_config(value, depth)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in value]
    return str(value)


def script_path() -> str:
    """The loop's script, as started (``python -c`` or a notebook: what Python says it ran)."""
    arg = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if arg and arg not in ("-c", "-m") and Path(arg).exists():
        return str(Path(arg).resolve())
    return arg or "python"


UNCAUGHT: list[BaseException] = []
"""The exception that ends the script, as ``sys.excepthook`` saw it (before the exit hooks run)."""


def catch_uncaught() -> None:
    """Remember an exception that ends the script (hooked once per process), so a run it ends reads as failed."""
    previous = sys.excepthook
    if getattr(previous, "_tui_trainer", False):
        return

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        UNCAUGHT.append(exc)
        previous(kind, exc, tb)

    hook._tui_trainer = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def describe_checkpoint(ck: Mapping[str, Any], path: str | Path) -> str:
    """What ``tui-trainer evaluate`` says of a checkpoint of a user's own loop: where it was taken, its weights
    (counted, checked finite), the loop's last epoch, and how to load it (the tool cannot rebuild the model)."""
    tensors = [t for t in (ck.get("model") or {}).values() if hasattr(t, "numel")]
    weights = sum(int(t.numel()) for t in tensors)
    finite = all(bool(t.isfinite().all()) for t in tensors if t.is_floating_point())
    rows = ck.get("history") or []
    last = rows[-1] if rows else {}
    metrics = " ".join(f"{k} {last[k]:.4g}" for k in ("val_loss", "val_acc") if isinstance(last.get(k), (int, float)))
    script = Path(str(ck.get("script") or "your loop")).name
    return "\n".join([
        f"{path}: epoch {ck.get('epochs_done', ck.get('epoch'))} step {ck.get('step')}, saved by your own loop "
        f"({script}) through "
        "tui_trainer.run.track",
        f"weights: {weights:,} in {len(tensors)} tensors, {'all finite' if finite else 'SOME NOT FINITE'}"
        + (f"; its last epoch: {metrics}" if metrics else ""),
        "tui-trainer rebuilds only its own presets' models, so it does not evaluate this one again; load it in your "
        "loop: model.load_state_dict(torch.load(path, weights_only=True)[\"model\"])",
    ])
