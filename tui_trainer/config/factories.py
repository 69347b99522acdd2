"""The user's own code, as the config names it (stdlib only: nothing here imports or runs that code).

A factory is named three ways: ``package.module:function`` (an importable module), ``path/to/file.py:function``
(a file; a relative path in a preset is relative to the preset file, on the command line and in the app to the
current folder; made absolute when the config is read, so a run folder's config.toml names the file it ran), or an
installed package's entry point (``model.arch = "plugin:NAME"`` in the group ``tui_trainer.models``,
``data.dataset = "plugin:NAME"`` in ``tui_trainer.datasets``). Here: the syntax check, the paths, the installed
entry points (their metadata: listing them runs nothing), what a run records about the code it imports (module,
file and its sha256) and whether that file changed since, and the switch ``tui-trainer serve`` uses to refuse
code named in a browser.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

from tui_trainer.config.schema import PLUGIN_PREFIX, RunConfig
from tui_trainer.errors import ConfigError

GROUPS = {"model": "tui_trainer.models", "data": "tui_trainer.datasets"}
NO_CODE_ENV = "TUI_TRAINER_NO_CODE"  # set by `tui-trainer serve` without --allow-code: fields may not name code
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EXAMPLE = "'my_model.py:build' or 'mypackage.models:build'"


def split_factory(value: str) -> tuple[str, str]:
    """``'target:function'`` -> (target, function); the target is a module or a ``.py`` file."""
    target, _, function = value.rpartition(":")
    return target, function


def shown_factory(value: str) -> str:
    """A factory as errors and summaries name it: ``my_cnn.py:build`` (a file by its name), ``pkg.mod:build``."""
    target, function = split_factory(value)
    return f"{Path(target).name}:{function}" if is_file(target) else value


def is_file(target: str) -> bool:
    """Whether a factory's target names a file (else a module)."""
    return target.endswith(".py") or "/" in target or os.sep in target


def check_factory(name: str, value: str) -> str:
    """The syntax of ``model.factory`` / ``data.factory`` ('' allowed: none); ConfigError saying what is allowed."""
    if value == "":
        return value
    if code_forbidden():
        raise ConfigError(f"{name} = {value!r}: naming code is off in this server (tui-trainer serve was started "
                          "without --allow-code); allowed: the built-in architectures and datasets")
    target, function = split_factory(value)
    if not target or not _NAME.match(function):
        raise ConfigError(f"{name} = {value!r}: expected 'module:function' or 'file.py:function', e.g. {EXAMPLE}")
    if not is_file(target) and not _MODULE.match(target):
        raise ConfigError(f"{name} = {value!r}: {target!r} is neither a module name nor a .py file; e.g. {EXAMPLE}")
    return value


def absolute_factory(value: str, base: Path) -> str:
    """A file factory with its path made absolute against ``base`` (a module factory as it is)."""
    target, function = split_factory(value)
    if not value or not is_file(target):
        return value
    path = Path(target).expanduser()
    return f"{(path if path.is_absolute() else base / path).resolve()}:{function}"


def code_forbidden() -> bool:
    """Whether this process may not name code (a browser session of ``tui-trainer serve`` without --allow-code)."""
    return os.environ.get(NO_CODE_ENV) == "1"


def names_code(cfg: RunConfig) -> bool:
    """Whether the config runs the user's own code (a factory or an installed entry point)."""
    return cfg.model.arch == "custom" or cfg.data.dataset == "custom" or cfg.model.arch.startswith(PLUGIN_PREFIX) \
        or cfg.data.dataset.startswith(PLUGIN_PREFIX) or bool(cfg.model.loss)


# ---------------------------------------------------------------------------
# entry points


def installed(kind: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The installed entry points of a kind ("model" or "data") by name; reading them imports nothing."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUPS[kind])}


def check_plugin(name: str, value: str, kind: str) -> str:
    """``plugin:NAME`` must be an installed entry point of the kind's group."""
    from tui_trainer.config.validate import did_you_mean

    if code_forbidden():
        raise ConfigError(f"{name} = {value!r}: naming code is off in this server (tui-trainer serve was started "
                          "without --allow-code); allowed: the built-in choices")
    found = installed(kind)
    plugin = value[len(PLUGIN_PREFIX):]
    if plugin not in found:
        allowed = ", ".join(PLUGIN_PREFIX + n for n in found) or "none installed"
        raise ConfigError(f"{name} = {value!r}: no installed package registers {plugin!r} in the entry point group "
                          f"{GROUPS[kind]}{did_you_mean(plugin, list(found))}; allowed: {allowed}")
    return value


# ---------------------------------------------------------------------------
# what a run imported


def sha256(path: Path | str) -> str:
    """The file's sha256 (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _module_file(module: str) -> str | None:
    """Where a module's source is, without running it (its parent packages are imported, as any import does)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def imported_code(cfg: RunConfig) -> list[dict[str, Any]]:
    """What the config's factories import: one record each with ``what`` (model or data), ``factory`` (as named),
    ``module``, ``file`` and ``sha256`` of the file (None where it cannot be found)."""
    named: list[tuple[str, str]] = []
    for what, choice, factory in (("model", cfg.model.arch, cfg.model.factory),
                                  ("data", cfg.data.dataset, cfg.data.factory)):
        if choice == "custom" and factory:
            named.append((what, factory))
        elif choice.startswith(PLUGIN_PREFIX):
            ep = installed(what).get(choice[len(PLUGIN_PREFIX):])
            if ep is not None:
                named.append((what, ep.value))
    if cfg.model.loss:
        named.append(("loss", cfg.model.loss))
    records = []
    for what, factory in named:
        target, _function = split_factory(factory)
        if is_file(target):
            file: str | None = target
            module = Path(target).stem
        else:
            module, file = target, _module_file(target)
        digest = sha256(file) if file and Path(file).is_file() else None
        records.append({"what": what, "factory": factory, "module": module, "file": file, "sha256": digest})
    return records


def code_label(records: list[dict[str, Any]] | None) -> str:
    """The user's code a run imported, short, for ``runs`` and ``compare``: "my_cnn.py:build@1a2b3c4d" (the file's
    name, the factory, the first 8 of its sha256), or the module for an installed package; "" for none."""
    shown = []
    for rec in records or []:
        factory = str(rec.get("factory", ""))
        function = factory.rsplit(":", 1)[1] if ":" in factory else factory
        file, digest = rec.get("file"), rec.get("sha256")
        where = f"{Path(file).name}:{function}" if file else factory
        shown.append(f"{where}@{digest[:8]}" if digest else where)
    return ", ".join(shown)


def changed_code(records: list[dict[str, Any]]) -> list[str]:
    """One warning line for each recorded file that is now different (or gone)."""
    lines = []
    for rec in records:
        file, before = rec.get("file"), rec.get("sha256")
        if not file or not before:
            continue
        now = sha256(file) if Path(file).is_file() else None
        if now is None:
            lines.append(f"{file} ({rec['what']} factory) is gone since this run started")
        elif now != before:
            lines.append(f"{file} ({rec['what']} factory) changed since this run started "
                         f"(sha256 {before[:12]} then, {now[:12]} now): resuming with the code as it is now")
    return lines
