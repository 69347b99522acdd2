"""The sweep folder: ``sweeps/<YYYYmmdd-HHMMSS>-<preset>/`` (mode 0700), the one meeting point between a sweep
process and whoever watches it, as a run folder is for a run.

* ``spec.json`` (the sweep as asked, ``spec.py``) and ``sweep.toml`` (the same as a preset file with a ``[sweep]``
  table), written once;
* ``journal.log``: the Optuna study (a JournalFileBackend: safe for several processes on one box; its lock file
  ``journal.log.lock`` comes and goes), unless the sweep uses a database URL;
* ``status.json``: pid, host, state, reason, message, times, counts and the best trial, replaced atomically; a live
  state whose process is gone reads "crashed";
* ``events.jsonl``: what the sweep did, a JSON object a line (``events.py``): the app's Sweep view and
  ``attach SWEEP`` follow it;
* ``sweep.log``: the sweep process's own output;
* ``lock``: held (flock) by the live sweep process, so two sweep processes never drive one folder;
* ``trials/``: every trial's run folder, an ordinary one (``<stamp>-<preset>-t003``): ``runs --runs-dir``,
  ``attach``, ``compare`` and ``export`` read them as any run. They live inside the sweep, not under runs/, so a
  sweep is one folder to keep, move or delete, and 30 trials do not bury the runs list.

Stdlib only: listing, attaching and stopping need neither Optuna nor torch.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_trainer.errors import ConfigError
from tui_trainer.run.files import atomic_write
from tui_trainer.run.folder import proc_start, process_state, read_status_file

LIVE = ("starting", "running", "stopping")
DEFAULT_SWEEPS_DIR = Path("sweeps")


class SweepDir:
    """Paths, status and lock of one sweep's folder."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        """The sweep's name: its folder name."""
        return self.path.name

    @property
    def spec_path(self) -> Path:
        """The sweep as asked (JSON)."""
        return self.path / "spec.json"

    @property
    def toml_path(self) -> Path:
        """The sweep as a preset file with a [sweep] table."""
        return self.path / "sweep.toml"

    @property
    def journal_path(self) -> Path:
        """Optuna's journal: the study, when no database URL was given."""
        return self.path / "journal.log"

    @property
    def status_path(self) -> Path:
        """pid, host, state, counts, best."""
        return self.path / "status.json"

    @property
    def events_path(self) -> Path:
        """What the sweep did, one JSON object a line."""
        return self.path / "events.jsonl"

    @property
    def log_path(self) -> Path:
        """The sweep process's own output."""
        return self.path / "sweep.log"

    @property
    def lock_path(self) -> Path:
        """flock'ed by the live sweep process."""
        return self.path / "lock"

    @property
    def trials(self) -> Path:
        """The trials' run folders."""
        return self.path / "trials"

    def is_sweep(self) -> bool:
        """A folder with a spec.json."""
        return self.spec_path.is_file()

    # -- status ---------------------------------------------------------------------------

    def read_status(self) -> dict[str, Any]:
        """status.json ({} if missing or unreadable)."""
        return read_status_file(self.status_path)

    def write_status(self, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into status.json, replaced atomically (only the sweep process writes it)."""
        status = {**self.read_status(), **changes, "updated": time.time()}
        atomic_write(self.status_path, json.dumps(status, indent=1) + "\n", durable=False)
        return status

    def state(self, status: dict[str, Any] | None = None) -> str:
        """starting, running, stopping, finished, stopped, failed or crashed (a live state whose process is
        gone, on this host)."""
        status = self.read_status() if status is None else status
        return process_state(status, str(status.get("state", "crashed")), LIVE)

    def mark_started(self) -> None:
        """The sweep process's first write: its pid and host, so a kill -9 reads "crashed"."""
        pid = os.getpid()
        self.write_status(state="running", pid=pid, host=socket.gethostname(), proc_start=proc_start(pid),
                          started=time.time(), ended=None, reason=None, message=None)

    # -- lock -------------------------------------------------------------------------------

    def lock(self) -> int | None:
        """Take the folder's lock for the life of this process: its fd, or None if another process holds it.
        The kernel lets go of it when the process ends, however it ends (kill -9 included)."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def locked(self) -> bool:
        """Whether a live process holds the lock now."""
        if not self.lock_path.exists():
            return False
        fd = self.lock()
        if fd is None:
            return True
        os.close(fd)
        return False


def create_sweep_dir(sweeps_dir: Path | str, preset_name: str) -> SweepDir:
    """A new, empty sweep folder (absolute, 0700) with its trials/ folder; ConfigError if it cannot be made."""
    root = Path(sweeps_dir).expanduser().resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in preset_name) or "sweep"
    try:
        root.mkdir(parents=True, exist_ok=True)
        path, n = root / f"{stamp}-{safe}", 1
        while True:
            try:
                path.mkdir(mode=0o700)
                break
            except FileExistsError:
                n += 1
                path = root / f"{stamp}-{safe}-{n}"
        os.chmod(path, 0o700)
        (path / "trials").mkdir()
    except OSError as exc:
        raise ConfigError(f"sweeps directory {root} is not writable: {exc.strerror or exc}; choose another with "
                          "--sweeps-dir") from None
    return SweepDir(path)


def list_sweeps(sweeps_dir: Path | str) -> list[SweepDir]:
    """Sweep folders under ``sweeps_dir``, newest first."""
    root = Path(sweeps_dir).expanduser()
    if not root.is_dir():
        return []
    found = [SweepDir(p.resolve()) for p in root.iterdir() if p.is_dir() and (p / "spec.json").is_file()]
    return sorted(found, key=lambda s: s.name, reverse=True)


def find_sweep(name: str | None, sweeps_dir: Path | str = DEFAULT_SWEEPS_DIR) -> SweepDir | None:
    """The sweep ``name`` names, if it names one: a sweep folder's path, or a name (or unique prefix) under
    ``sweeps_dir``; None when it names none (it may be a run). ConfigError when a prefix matches several."""
    if not name:
        return None
    direct = SweepDir(Path(name).expanduser())
    if direct.is_sweep():
        return SweepDir(direct.path.resolve())
    if os.sep in name:
        return None
    sweeps = list_sweeps(sweeps_dir)
    matches = [s for s in sweeps if s.name == name] or [s for s in sweeps if s.name.startswith(name)]
    if len(matches) > 1:
        raise ConfigError(f"{name!r} matches {len(matches)} sweeps: {', '.join(s.name for s in matches[:5])}; "
                          "give more of the name")
    return matches[0] if matches else None


def resolve_sweep(name: str | None, sweeps_dir: Path | str = DEFAULT_SWEEPS_DIR) -> SweepDir:
    """A sweep by path or name, or (None) the newest live sweep, else the newest; ConfigError names what exists."""
    found = find_sweep(name, sweeps_dir)
    if found is not None:
        return found
    sweeps = list_sweeps(sweeps_dir)
    if not sweeps:
        raise ConfigError(f"no sweeps in {Path(sweeps_dir).expanduser()}; start one with: tui-trainer sweep PRESET "
                          "--param section.key=RANGE (or pass --sweeps-dir)")
    if name:
        names = ", ".join(s.name for s in sweeps[:5]) + (" …" if len(sweeps) > 5 else "")
        raise ConfigError(f"no sweep {name!r} in {Path(sweeps_dir).expanduser()}; sweeps there: {names}")
    live = [s for s in sweeps if s.state() in LIVE]
    return (live or sweeps)[0]


@dataclass(frozen=True)
class SweepSummary:
    """One row of ``tui-trainer sweeps``."""

    name: str
    path: str
    preset: str
    state: str
    done: int
    trials: int
    best: float | None
    metric: str
    best_trial: int | None
    started: float | None


def summarize_sweep(sweep: SweepDir) -> SweepSummary:
    """The listing row of a sweep, from its status and spec (no study opened)."""
    status = sweep.read_status()
    try:
        spec = json.loads(sweep.spec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        spec = {}
    best = status.get("best") or {}
    return SweepSummary(name=sweep.name, path=str(sweep.path), preset=str(spec.get("preset", "?")),
                        state=sweep.state(status), done=int(status.get("done", 0)),
                        trials=int(spec.get("trials", 0)), best=best.get("value"),
                        metric=str(spec.get("metric", "val_loss")), best_trial=best.get("number"),
                        started=status.get("started") or status.get("created"))
