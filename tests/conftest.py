"""Shared fixtures: tiny synthetic configs, an isolated runs dir and user preset dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tui_trainer.config import RunConfig, apply_overrides, load_preset

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """User presets and caches go to a temporary folder, never the real home; child processes
    (CLI, pty and import tests) import this source tree, not whatever tui_trainer is installed."""
    monkeypatch.setenv("TUI_TRAINER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.chdir(tmp_path)


def tiny(*overrides: str, preset: str = "spirals-mlp") -> RunConfig:
    """A seconds-fast config: few samples, small batches, CPU."""
    base = ["data.n_samples=400", "data.batch_size=32", "train.epochs=2", 'train.device="cpu"', "train.log_every=5"]
    return apply_overrides(load_preset(preset), base + list(overrides))


@pytest.fixture
def runs(tmp_path):
    """A runs directory for the test."""
    return tmp_path / "runs"
