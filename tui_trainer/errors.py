"""Errors that reach the user as one line and exit code 2 (stdlib only, importable before torch)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A preset, override or field value that breaks a rule."""


class DataError(ValueError):
    """Data that cannot be loaded: says which and how to fix it."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or written."""


USER_ERRORS = (ConfigError, DataError, CheckpointError)
