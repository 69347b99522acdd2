"""Shared fixtures: tiny synthetic configs, an isolated runs dir and user preset dir."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tui_trainer.config import RunConfig, apply_overrides, load_preset

ROOT = Path(__file__).resolve().parent.parent

if os.environ.get("MUTANT_UNDER_TEST"):  # under mutmut (mutation/README.md): it reads its config from the working
    from mutmut.configuration import config  # directory, which every test changes: read it now, once

    config()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """User presets and caches go to a temporary folder, never the real home; child processes
    (CLI, pty and import tests) import this source tree, not whatever tui_trainer is installed."""
    monkeypatch.setenv("TUI_TRAINER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.chdir(tmp_path)
    yield
    _end_runs_left_under(tmp_path)


def _end_runs_left_under(folder: Path) -> None:
    """A test that failed half-way may leave a run training: end its whole process group (the runner, or
    torchrun and its ranks), so it cannot slow down or disturb the tests after it."""
    import json
    import signal

    from tui_trainer.run.folder import pid_alive

    for status_path in folder.rglob("status.json"):
        try:
            status = json.loads(status_path.read_text())
        except (OSError, ValueError):
            continue
        if status.get("state") not in ("starting", "running", "paused"):
            continue
        for key in ("launcher_pid", "pid"):
            pid = status.get(key)
            if not pid or not pid_alive(int(pid), status.get("proc_start") if key == "pid" else None):
                continue
            try:
                group = os.getpgid(int(pid))
                # a run of its own session, never the tests' own process group (nor group 0: killpg(0) means ours)
                if group > 0 and group != os.getpgid(0):
                    os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def tiny(*overrides: str, preset: str = "spirals-mlp") -> RunConfig:
    """A seconds-fast config: few samples, small batches, CPU."""
    base = ["data.n_samples=400", "data.batch_size=32", "train.epochs=2", 'train.device="cpu"', "train.log_every=5"]
    return apply_overrides(load_preset(preset), base + list(overrides))


@pytest.fixture
def runs(tmp_path):
    """A runs directory for the test."""
    return tmp_path / "runs"


def screen_text(app) -> str:
    """What the app's screen shows now, as plain text rows (the compositor's full frame, as a terminal gets it)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, color_system="truecolor",
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def wait_for(condition, timeout: float = 120.0, what: str = "condition"):
    """Poll files another process writes until ``condition()`` holds (its value), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        time.sleep(0.05)  # another process's files: nothing to wait on but the file system
