"""Errors that reach the user as one line and exit code 2 (stdlib only, importable before torch)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A preset, override or field value that breaks a rule."""


class DataError(ValueError):
    """Data that cannot be loaded: says which and how to fix it."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or written."""


class ProtocolError(ValueError):
    """An events file this version cannot read (newer protocol, not an events file)."""


USER_ERRORS = (ConfigError, DataError, CheckpointError, ProtocolError)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), at most ``limit`` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"
