"""The installed console script finds its presets from any directory."""

from __future__ import annotations

import shutil
import subprocess

import pytest


@pytest.mark.skipif(shutil.which("tui-trainer") is None, reason="tui-trainer is not installed")
def test_installed_script_lists_builtin_presets_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH")  # the installed package, not the source tree (conftest points there)
    proc = subprocess.run(["tui-trainer", "presets"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert "spirals-mlp" in names and "regression-toy" in names
