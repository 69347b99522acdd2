"""Shared fixtures: tiny synthetic configs, an isolated runs dir and user preset dir."""

from __future__ import annotations

import pytest

from tui_trainer.config import RunConfig, apply_overrides, load_preset


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """User presets and caches go to a temporary folder, never the real home."""
    monkeypatch.setenv("TUI_TRAINER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def tiny(*overrides: str, preset: str = "spirals-mlp") -> RunConfig:
    """A seconds-fast config: few samples, small batches, CPU."""
    base = ["data.n_samples=400", "data.batch_size=32", "train.epochs=2", 'train.device="cpu"', "train.log_every=5"]
    return apply_overrides(load_preset(preset), base + list(overrides))


@pytest.fixture
def runs(tmp_path):
    """A runs directory for the test."""
    return tmp_path / "runs"
