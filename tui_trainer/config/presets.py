"""Presets: the built-in ones shipped in the package and the user's own, found by name or path, loaded through the
validator, and written back as TOML. Stdlib only."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

from tui_trainer.config.paths import user_preset_dir
from tui_trainer.config.schema import RunConfig
from tui_trainer.config.validate import did_you_mean, from_dict
from tui_trainer.errors import ConfigError

# ---------------------------------------------------------------------------
# presets


def builtin_preset_dir() -> Path:
    """Presets shipped inside the package (found by an installed, not only editable, tui-trainer)."""
    return Path(__file__).parent.parent / "presets"


def list_presets() -> dict[str, Path]:
    """Preset name -> file; the user's presets shadow built-ins of the same name."""
    found: dict[str, Path] = {}
    for folder in (builtin_preset_dir(), user_preset_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = path
    return dict(sorted(found.items()))


def resolve_preset(name_or_path: str) -> Path:
    """A preset name or a path to a .toml file -> an existing file, or ConfigError."""
    candidate = Path(name_or_path).expanduser()
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        if candidate.is_file():
            return candidate
        raise ConfigError(f"preset file not found: {name_or_path}")
    presets = list_presets()
    if name_or_path in presets:
        return presets[name_or_path]
    raise ConfigError(
        f"unknown preset '{name_or_path}'{did_you_mean(name_or_path, list(presets))}; "
        f"allowed: {', '.join(presets)} or a path to a .toml file"
    )


def load_preset(name_or_path: str) -> RunConfig:
    """Load and validate a preset by name or path."""
    path = resolve_preset(name_or_path)
    return from_dict(read_preset_file(path), source=str(path), base=path.parent)


def read_preset_file(path: Path) -> dict[str, Any]:
    """A preset file's tables as read (its ``name`` the file's stem unless it sets one), not yet validated:
    ConfigError naming the file when it cannot be read or is not TOML. Paths in it are relative to its folder
    (``from_dict(..., base=path.parent)``)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    raw.setdefault("name", path.stem)
    return raw


def preset_description(path: Path) -> str:
    """The one-line description of a preset file ('' if unreadable)."""
    try:
        return str(tomllib.loads(path.read_text(encoding="utf-8")).get("description", ""))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return "(unreadable)"


# ---------------------------------------------------------------------------
# TOML writing (tomllib only reads)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (model.init_weights)
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(cfg: RunConfig) -> str:
    """Serialise a config as a preset file that ``load_preset`` reads back to an equal config."""
    return dict_to_toml(cfg.to_dict())


def _toml_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted."""
    return key if key and all(c.isalnum() and c.isascii() or c in "-_" for c in key) else _toml_value(key)


def dict_to_toml(raw: dict[str, Any]) -> str:
    """Nested dicts of TOML values as a TOML document: the top level's plain keys first, then one ``[table]`` per
    nested dict (in order, a blank line before each). Values ``_toml_value`` cannot write raise TypeError."""
    lines: list[str] = []

    def table(values: dict[str, Any], path: list[str]) -> None:
        if path:
            lines.extend(["", f"[{'.'.join(map(_toml_key, path))}]"])
        for key, value in values.items():
            if not isinstance(value, dict):
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, value in values.items():
            if isinstance(value, dict):
                table(value, [*path, key])

    table(raw, [])
    return "\n".join(lines) + "\n"


def _free_name(name: str) -> str:
    """``name-mine`` (or ``name-mine-2``, ...): a name no built-in or user preset has."""
    taken = set(list_presets())
    candidate, n = f"{name}-mine", 2
    while candidate in taken:
        candidate, n = f"{name}-mine-{n}", n + 1
    return candidate


def save_user_preset(cfg: RunConfig, name: str) -> Path:
    """Write ``cfg`` as the user's preset ``name``; returns the file."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ConfigError(f"preset name {name!r}: use letters, digits, '-' and '_' only")
    if (builtin_preset_dir() / f"{name}.toml").is_file():
        raise ConfigError(f"preset name {name!r} is taken by a built-in preset; choose another, e.g. '{_free_name(name)}'")
    folder = user_preset_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    cfg = dataclasses.replace(cfg, name=name)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(to_toml(cfg), encoding="utf-8")
    os.replace(tmp, path)
    return path
