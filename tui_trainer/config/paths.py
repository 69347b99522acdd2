"""The user's folders, one rule for all: ``$TUI_TRAINER_HOME/<kind>`` when it is set, else the XDG folder of each
kind, under tui-trainer (presets under the config home, the app's state under the state home, datasets under the
cache home). Stdlib only."""

from __future__ import annotations

import os
from pathlib import Path

XDG = {"presets": ("XDG_CONFIG_HOME", ".config", "presets"), "state": ("XDG_STATE_HOME", ".local/state", ""),
       "datasets": ("XDG_CACHE_HOME", ".cache", "datasets")}
"""kind -> (its XDG variable, that variable's default under the home folder, the folder under tui-trainer)."""


def user_dir(kind: str) -> Path:
    """The folder of ``kind`` ("presets", "state" or "datasets"): ``$TUI_TRAINER_HOME/<kind>`` when set, else
    ``$XDG_..._HOME/tui-trainer[/<kind>]``."""
    home = os.environ.get("TUI_TRAINER_HOME")
    if home:
        return Path(home) / kind
    variable, default, below = XDG[kind]
    base = Path(os.environ.get(variable) or Path.home() / default) / "tui-trainer"
    return base / below if below else base


def user_preset_dir() -> Path:
    """Where the user's own presets live (``$TUI_TRAINER_HOME/presets`` or the XDG config dir)."""
    return user_dir("presets")


def user_state_dir() -> Path:
    """Where the app keeps its own logs (``$TUI_TRAINER_HOME/state`` or the XDG state dir)."""
    return user_dir("state")


def dataset_cache_dir(configured: str = "") -> Path:
    """Where datasets are looked for and downloaded: ``data.cache_dir`` when given, else the user's cache folder."""
    return Path(configured).expanduser() if configured else user_dir("datasets")
