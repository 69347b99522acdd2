"""The installed console script finds its presets from any directory."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest


def installed_script() -> Path | None:
    """The tui-trainer script pip installed beside this interpreter (a venv need not be on PATH), else on PATH;
    skips when the package is not installed at all, None when it is but its script is missing."""
    try:
        importlib.metadata.distribution("tui-trainer")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the tui-trainer package is not installed in this interpreter (pip install -e .)")
    beside = Path(sysconfig.get_path("scripts")) / "tui-trainer"
    if beside.is_file():
        return beside
    found = shutil.which("tui-trainer")
    return Path(found) if found else None


def test_installed_script_lists_builtin_presets_from_anywhere(tmp_path, monkeypatch):
    script = installed_script()
    assert script is not None, f"tui-trainer is installed but its console script is in neither " \
                               f"{sysconfig.get_path('scripts')} nor on PATH"
    monkeypatch.delenv("PYTHONPATH")  # the installed package, not the source tree (conftest points there)
    proc = subprocess.run([str(script), "presets"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert "spirals-mlp" in names and "regression-toy" in names
