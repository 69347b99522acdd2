"""The run folder: the only meeting point between a run and whoever watches it.

``runs/<YYYYmmdd-HHMMSS>-<preset>/`` (mode 0700) holds ``config.toml``; ``events.jsonl`` and ``history.json``
(``eventlog.py``); ``metrics.jsonl`` (one row per epoch); ``status.json`` (pid, host, state, reason, times;
replaced atomically); ``run.log`` (the run process's own stderr); ``checkpoints/``; and the control endpoint
(``control.key`` and a Unix socket, see ``endpoint.py``). Here: its paths, its status and state, making a folder
for a run, and finding and listing runs. Stdlib only: listing and attaching need no torch.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_trainer.config import ConfigError, RunConfig, to_toml
from tui_trainer.config.factories import changed_code, code_label, imported_code, names_code
from tui_trainer.run.eventlog import EventReader
from tui_trainer.run.events import Event
from tui_trainer.run.files import atomic_write, json_lines

LIVE_STATES = ("starting", "running", "paused")


def proc_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), to tell a live run from a recycled pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_started(pid: int | None = None) -> float | None:
    """When process ``pid`` (this one by default) began, as a ``time.time()``: on Linux its age from the kernel's
    start tick and the boot clock (to 10 ms; psutil's create_time adds the boot time's whole seconds, up to 1 s
    off), elsewhere psutil's. None for a process that is gone."""
    pid = os.getpid() if pid is None else pid
    try:
        ticks = int(proc_start(pid) or "")
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):  # not Linux, or gone
        import psutil

        try:
            return psutil.Process(pid).create_time()
        except psutil.Error:
            return None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether ``pid`` is a live process (and, when known, the same one that wrote ``start``)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start is not None:
        now = proc_start(pid)
        if now is not None and now != start:
            return False
    try:  # a zombie (our own child that exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except (OSError, IndexError):
        pass
    return True


def read_status_file(path: Path) -> dict[str, Any]:
    """A status.json (a run's or a sweep's) as written; {} if missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def process_state(status: dict[str, Any], state: str, live: tuple[str, ...]) -> str:
    """``state`` as a status.json says it (a run's or a sweep's), unless a ``live`` one's process is gone on this host:
    then "crashed" (as is a folder created whose process has not started within a minute)."""
    if state not in live:
        return state
    if not status.get("pid"):  # created, its process not yet started: give it a minute
        return state if time.time() - float(status.get("created", 0)) < 60 else "crashed"
    if status.get("host") == socket.gethostname() and not pid_alive(int(status["pid"]), status.get("proc_start")):
        return "crashed"
    return state


class RunDir:
    """Paths, writers and readers of one run's directory."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        """The run's name: its folder name."""
        return self.path.name

    @property
    def config_path(self) -> Path:
        """The resolved config (TOML, a preset file)."""
        return self.path / "config.toml"

    @property
    def checkpoints(self) -> Path:
        """Folder of the run's checkpoints."""
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        """One JSON object per epoch."""
        return self.path / "metrics.jsonl"

    @property
    def events_path(self) -> Path:
        """Every event, one JSON line each."""
        return self.path / "events.jsonl"

    @property
    def status_path(self) -> Path:
        """pid, host, state, reason, times."""
        return self.path / "status.json"

    @property
    def log_path(self) -> Path:
        """The run process's stderr."""
        return self.path / "run.log"

    @property
    def key_path(self) -> Path:
        """The control endpoint's secret (0600)."""
        return self.path / "control.key"

    @property
    def last(self) -> Path:
        """Written every epoch and when the run stops."""
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        """Written when the monitored metric improves."""
        return self.checkpoints / "best.pt"

    def manual(self, epoch: int, step: int) -> Path:
        """A checkpoint saved on request: ``manual-e<epoch>-s<step>.pt``, ``epoch`` the number the progress line
        showed (``history.shown_epoch``: the epoch under way), ``step`` the steps done."""
        return self.checkpoints / f"manual-e{epoch:03d}-s{step:07d}.pt"

    # -- metrics ------------------------------------------------------------------

    def append_metrics(self, row: dict) -> None:
        """Append one epoch's row (flushed, so a crash loses at most the row being written)."""
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict]:
        """Every row written so far (a torn last line is skipped)."""
        return list(json_lines(self.metrics_path))

    def truncate_metrics(self, epochs_done: int) -> None:
        """Keep only rows of epochs <= epochs_done (a resume replays what came after)."""
        if not self.metrics_path.exists():
            return
        rows = [r for r in self.read_metrics() if r.get("epoch", 0) <= epochs_done]
        atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    # -- status ---------------------------------------------------------------------

    def read_status(self) -> dict[str, Any]:
        """status.json as written ({} if missing or unreadable)."""
        return read_status_file(self.status_path)

    def write_status(self, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into status.json, replaced atomically; returns the new status."""
        return self.replace_status({**self.read_status(), **changes})

    def replace_status(self, status: dict[str, Any]) -> dict[str, Any]:
        """Write ``status`` as the whole of status.json, atomically."""
        atomic_write(self.status_path, json.dumps(status, indent=1) + "\n", durable=False)
        return status

    def state(self, status: dict[str, Any] | None = None) -> str:
        """The run's state; a live state whose process is gone reads as "crashed"."""
        status = self.read_status() if status is None else status
        return process_state(status, status.get("state", "crashed" if self.events_path.exists() else "starting"),
                             LIVE_STATES)

    # -- events -----------------------------------------------------------------------

    def read_events(self) -> tuple[list[Event], int]:
        """Every event so far and the byte offset after the last whole line (a torn last line is left); none
        yet while the run process is still starting (its folder exists before its events.jsonl)."""
        reader = EventReader(self.events_path)
        try:
            return reader.read(), reader.whole_offset
        except FileNotFoundError:
            return [], 0

    @property
    def snapshot_path(self) -> Path:
        """history.json: the fold of events.jsonl up to a byte offset (recorder.py writes it for long runs)."""
        return self.path / "history.json"

    def last_good_checkpoint(self) -> Path | None:
        """last.pt, else best.pt, else the newest manual save: the checkpoint to resume a crash from."""
        for path in (self.last, self.best):
            if path.is_file():
                return path
        manual = sorted(self.checkpoints.glob("manual-*.pt")) if self.checkpoints.is_dir() else []
        return manual[-1] if manual else None

    @property
    def source(self) -> str:
        """Who trained the run: "tui-trainer" (its engine), or "track" (a user's own loop, through
        ``run/track.py``: the app cannot resume it or fill its panels from it)."""
        return str(self.read_status().get("source") or "tui-trainer")

    def resume_hint(self) -> str:
        """What to type to go on from this run's last good checkpoint, or that there is none (a user's own loop
        goes on from its own script)."""
        if self.source == "track":
            good = self.last_good_checkpoint()
            where = f" (its last checkpoint: {good})" if good else ""
            return f"it was trained by your own loop: go on from your script{where}"
        return resume_hint(self.last_good_checkpoint())


def resume_hint(checkpoint: Path | str | None) -> str:
    """What to type to go on from ``checkpoint``, or that there is none: one wording for every front end."""
    return f"resume with: tui-trainer resume {checkpoint}" if checkpoint else "it wrote no checkpoint to resume from"


def not_a_checkpoint(folder: Path | str) -> str:
    """What to say when a folder is given where a checkpoint file is needed, naming one that exists: a run's own
    (last.pt, else best.pt, else its newest manual save), the newest run's in a folder of runs, else none."""
    folder = Path(folder)
    run = RunDir(folder.parent if folder.name == "checkpoints" else folder)
    own = run.last_good_checkpoint() if run.checkpoints.is_dir() else None
    if own is not None:
        return f"{folder} is a folder; give a checkpoint file, e.g. {own}"
    try:
        newest = next((c for r in list_runs(folder) if (c := r.last_good_checkpoint()) is not None), None)
    except OSError:
        newest = None
    if newest is not None:
        return f"{folder} is a folder of runs; give a checkpoint file, e.g. the newest run's {newest}"
    return f"{folder} is a folder; give a checkpoint file (.pt), e.g. runs/<run>/checkpoints/last.pt"


# ---------------------------------------------------------------------------
# creating and finding runs


def prepare_run(cfg: RunConfig, runs_dir: Path | str | None = None, resume: Path | str | None = None,
                folder: Path | str | None = None, label: str | None = None) -> RunDir:
    """The folder a run trains in, with its config.toml written: the one writer of it. A new folder under
    ``runs_dir`` (absolute, 0700, status "starting"; named ``<stamp>-<label>``, the preset's name by default: a
    sweep's trials say their number, ``-t003``); for a resume, the checkpoint's own folder when it is still
    there (its config rewritten: epochs may have grown; its status starting again), else a new one; or ``folder``
    as it is (a scratch folder of a rank that writes nothing else). ConfigError naming the folder if it cannot be
    written, or if the run to resume is still going."""
    if folder is not None:
        run = RunDir(folder)
        _write(run, cfg)
        return run
    run = run_of_checkpoint(resume) if resume is not None else None
    if run is None:
        return _new_run_dir(Path(runs_dir or "runs"), cfg, label)
    if (state := run.state()) in LIVE_STATES:  # two resumes of one run would train twice into one folder
        raise ConfigError(f"run {run.name} is {state}: it is already going (tui-trainer attach {run.path}); "
                          "stop it before resuming it")
    changed = changed_code_lines(run)  # before the record is replaced by what the resume imports
    _write(run, cfg)
    status = {k: v for k, v in run.read_status().items() if k not in ("pid", "proc_start", "reason", "ended", "message")}
    run.replace_status({**status, "state": "starting", "epochs": cfg.train.epochs, "created": time.time(),
                        **_imports(cfg), "code_changed": changed})
    return run


def _imports(cfg: RunConfig) -> dict[str, Any]:
    """``{"imports": [...]}``: the user's code the run imports (module, file, sha256), for a status; {} if none."""
    return {"imports": imported_code(cfg)} if names_code(cfg) else {}


def changed_code_lines(run: RunDir) -> list[str]:
    """A warning line for each file of the user's code the run imported that has changed (or gone) since."""
    return changed_code(run.read_status().get("imports") or [])


def run_of_checkpoint(checkpoint: Path | str) -> RunDir | None:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.pt``), if it is still there."""
    run = RunDir(Path(checkpoint).resolve().parent.parent)
    return run if run.config_path.is_file() else None


def _new_run_dir(runs_dir: Path, cfg: RunConfig, label: str | None = None) -> RunDir:
    return new_run_folder(runs_dir, label or cfg.name, to_toml(cfg), preset=cfg.name, epochs=cfg.train.epochs,
                          monitor=cfg.regularization.monitor, **_imports(cfg))


def new_run_folder(runs_dir: Path | str, name: str, config_text: str, hint: str = "choose another with --runs-dir",
                   **status: Any) -> RunDir:
    """A new run folder ``<runs_dir>/<YYYYmmdd-HHMMSS>-<name>[-n]`` (absolute, 0700, with ``checkpoints/``), its
    config.toml (``config_text``) and a status "starting" with ``status``: one way to make a run folder, for the
    tool's runs and for a user's own loop (``track.py``). ConfigError (ending with ``hint``) if it cannot be written."""
    root = Path(runs_dir).expanduser().resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "run"
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{stamp}-{safe}"
        n = 1
        while True:
            try:
                path.mkdir(mode=0o700)
                break
            except FileExistsError:
                n += 1
                path = root / f"{stamp}-{safe}-{n}"
        os.chmod(path, 0o700)
        run = RunDir(path)
        run.checkpoints.mkdir()
        atomic_write(run.config_path, config_text)
        run.write_status(state="starting", epoch=0, **status, created=time.time())
    except OSError as exc:
        reason = exc.strerror or exc
        raise ConfigError(f"runs directory {root} is not writable: {reason}; {hint}") from None
    return run


def _write(run: RunDir, cfg: RunConfig) -> None:
    """config.toml of the run."""
    try:
        atomic_write(run.config_path, to_toml(cfg))
    except OSError as exc:
        raise ConfigError(f"cannot write {run.config_path}: {exc.strerror or exc}") from None


def list_runs(runs_dir: Path | str) -> list[RunDir]:
    """Run directories under ``runs_dir`` (those with a status or events file), newest first."""
    root = Path(runs_dir).expanduser()
    if not root.is_dir():
        return []
    found = [RunDir(p.resolve()) for p in root.iterdir()
             if p.is_dir() and ((p / "status.json").exists() or (p / "events.jsonl").exists())]
    return sorted(found, key=lambda r: r.name, reverse=True)


def resolve_run(runs_dir: Path | str, name: str | None) -> RunDir:
    """A run by folder path, by name (or unique prefix) under ``runs_dir``, or (None) the newest live run,
    else the newest run; ConfigError names what exists."""
    if name:
        direct = Path(name).expanduser()
        if direct.is_dir() and ((direct / "status.json").exists() or (direct / "events.jsonl").exists()):
            return RunDir(direct.resolve())
    runs = list_runs(runs_dir)
    if not runs:
        raise ConfigError(f"no runs in {Path(runs_dir).expanduser()}; start one with: tui-trainer train PRESET --detach "
                          "(or pass --runs-dir)")
    if not name:
        live = [r for r in runs if r.state() in LIVE_STATES]
        return (live or runs)[0]
    matches = [r for r in runs if r.name == name] or [r for r in runs if r.name.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(r.name for r in runs[:5]) + (" …" if len(runs) > 5 else "")
    if not matches:
        raise ConfigError(f"no run {name!r} in {Path(runs_dir).expanduser()}; runs there: {names}")
    raise ConfigError(f"{name!r} matches {len(matches)} runs: {', '.join(r.name for r in matches[:5])}; give more of the name")


@dataclass(frozen=True)
class RunSummary:
    """One row of ``tui-trainer runs``."""

    name: str
    path: str
    preset: str
    state: str
    epoch: int
    epochs: int
    best: float | None
    monitor: str
    started: float | None
    elapsed_s: float | None
    reason: str | None
    message: str | None = None
    """How it ended, in the engine's words (a pruned trial's: "pruned at epoch 3; stopped in epoch 4 ...")."""
    code: str = ""
    """The user's code it imported (``code_label``): "my_cnn.py:build@1a2b3c4d"; "" for none."""

    @property
    def live(self) -> bool:
        """Still training (or setting up, or paused)."""
        return self.state in LIVE_STATES


def summarize(run: RunDir) -> RunSummary:
    """The listing row of a run, from its status (no events folded)."""
    status = run.read_status()
    state = run.state(status)
    started = status.get("started") or status.get("created")
    elapsed = status.get("elapsed_s")  # the run's training clock when status.json was last written
    if state in LIVE_STATES and state != "paused" and elapsed is not None and status.get("updated"):
        elapsed += max(time.time() - status["updated"], 0.0)  # it has trained on since
    elif elapsed is None and started:
        elapsed = (status.get("ended") or time.time()) - started
    return RunSummary(name=run.name, path=str(run.path), preset=str(status.get("preset", "?")), state=state,
                      epoch=int(status.get("epoch", 0)), epochs=int(status.get("epochs", 0)), best=status.get("best"),
                      monitor=str(status.get("monitor", "val_loss")), started=started, elapsed_s=elapsed,
                      reason=status.get("reason"), message=status.get("message"), code=code_label(status.get("imports")))



def run_summaries(runs_dir: Path | str) -> list[RunSummary]:
    """Every run under ``runs_dir`` as the runs list shows it: live ones first, then newest first (OSError if the
    folder cannot be read)."""
    return sorted((summarize(r) for r in list_runs(runs_dir)), key=lambda r: (not r.live, -(r.started or 0)))
