"""The console script: a bare ``tui-trainer`` opens the app without importing typer (~0.1 s of
first frame on 2 cores); ``tui-trainer --preset P ...`` (the app's own options, no command) is
``tui-trainer ui --preset P ...``; anything else goes to the typer commands in ``cli/app.py``."""

from __future__ import annotations

import os
import sys

from tui_trainer.errors import USER_ERRORS

HELP_OPTIONS = ("--help", "-h")


def app_options_as_ui(args: list[str]) -> list[str]:
    """The bare command takes the app's options: ``--preset P --set k=v`` with no command is the ``ui`` command."""
    if args and args[0].startswith("-") and args[0] not in HELP_OPTIONS:
        return ["ui", *args]
    return args


def entry() -> None:
    """The console script: the app (bare command) or the typer CLI, then leave without torch's
    interpreter teardown.

    Measured here: a process that imported torch spends 0.65 s (1.1 s once the optimizer
    has pulled in torch._dynamo) tearing down after the last line of work. Every file we write
    is closed and fsynced before this point.
    """
    code = 0
    try:
        if len(sys.argv) <= 1:
            from tui_trainer.cli.common import DEFAULT_PRESET, DEFAULT_RUNS_DIR, fail, launch_ui

            try:
                launch_ui(DEFAULT_PRESET, [], None, DEFAULT_RUNS_DIR)
            except USER_ERRORS as exc:
                fail(str(exc))
        else:
            from tui_trainer.cli.app import main

            main(app_options_as_ui(sys.argv[1:]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
