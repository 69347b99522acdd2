"""The console script and the app's launch, without typer.

A bare ``tui-trainer`` (the README's quick start) opens the app straight from here: importing
typer and building the command tree cost ~0.1 s of the first frame on 2 cores. Everything else
goes through the typer CLI in ``cli.py``, which imports its helpers from here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tui_trainer.config import RunConfig, apply_overrides, load_preset
from tui_trainer.errors import USER_ERRORS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_PRESET = "spirals-mlp"


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def build_config(preset: str, overrides: list[str] | None = None, epochs: int | None = None,
                 device: str | None = None, seed: int | None = None) -> RunConfig:
    """Preset + overrides + the CLI's shortcuts, all validated by the same rules."""
    cfg = load_preset(preset)
    extra = list(overrides or [])
    if epochs is not None:
        extra.append(f"train.epochs={epochs}")
    if device is not None:
        extra.append(f'train.device="{device}"')
    if seed is not None:
        extra.append(f"train.seed={seed}")
    return apply_overrides(cfg, extra) if extra else cfg


def launch_ui(preset: str, overrides: list[str], device: str | None, runs_dir: Path, resume_from: Path | None) -> None:
    """Validate the start-up arguments, then run the Textual app (imported only now)."""
    cfg = build_config(preset, overrides, device=device)
    if resume_from is not None and not resume_from.is_file():
        fail(f"checkpoint not found: {resume_from}")
    from tui_trainer.ui.app import run_app

    raise SystemExit(run_app(cfg, runs_dir=runs_dir, resume=resume_from))


def entry() -> None:
    """The console script: the app (bare command) or the typer CLI, then leave without torch's
    interpreter teardown.

    Measured here: a process that imported torch spends 0.65 s (1.1 s once the optimizer
    has pulled in torch._dynamo) tearing down after the last line of work; that kept quit
    over its 2 s promise. Every file we write is closed and fsynced before this point.
    """
    code = 0
    try:
        if len(sys.argv) <= 1:
            try:
                launch_ui(DEFAULT_PRESET, [], None, Path("runs"), None)
            except USER_ERRORS as exc:
                fail(str(exc))
        else:
            from tui_trainer.cli import main

            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
