"""What the bare ``tui-trainer`` (no typer) and the typer commands share: exit codes, one-line
errors, building a config from a preset and overrides, and launching the app."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tui_trainer.config import RunConfig, apply_overrides, load_preset

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_PRESET = "spirals-mlp"
DEFAULT_RUNS_DIR = Path("runs")


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def build_config(preset: str, overrides: list[str] | None = None, epochs: int | None = None,
                 device: str | None = None, seed: int | None = None) -> RunConfig:
    """Preset + overrides + the CLI's shortcuts, all validated by the same rules."""
    return with_shortcuts(load_preset(preset), overrides, epochs, device, seed)


def with_shortcuts(cfg: RunConfig, overrides: list[str] | None, epochs: int | None = None, device: str | None = None,
                   seed: int | None = None) -> RunConfig:
    """``cfg`` with the overrides, then the shortcut options (--epochs, --device, --seed) as overrides."""
    extra = list(overrides or [])
    if epochs is not None:
        extra.append(f"train.epochs={epochs}")
    if device is not None:
        extra.append(f'train.device="{device}"')
    if seed is not None:
        extra.append(f"train.seed={seed}")
    return apply_overrides(cfg, extra) if extra else cfg


def launch_ui(preset: str, overrides: list[str], device: str | None, runs_dir: Path, resume_from: Path | None = None,
              attach: Path | None = None) -> None:
    """Validate the start-up arguments, then run the Textual app (imported only now)."""
    if attach is not None and not tracked(Path(attach)):  # the panels show the run's own config
        cfg = load_preset(str(Path(attach) / "config.toml"))
    elif attach is not None:  # a user's own loop: its config is not a preset's; the panels keep theirs
        cfg = build_config(preset, overrides, device=device)
    elif resume_from is not None:
        cfg = resume_config(resume_from, overrides, device)
    else:
        cfg = build_config(preset, overrides, device=device)
    notify_end = notify_end_from_env()
    from tui_trainer.ui.app import run_app

    raise SystemExit(run_app(cfg, runs_dir=runs_dir, resume=resume_from, attach=attach, notify_end=notify_end))


def notify_end_from_env() -> bool:
    """Whether the app rings and notifies when the run it follows ends (``TUI_TRAINER_NOTIFY_END``); exit 2 on a
    value it does not take."""
    from tui_trainer.ui.alert import NOTIFY_END_ENV, notify_end_setting

    try:
        return notify_end_setting(os.environ.get(NOTIFY_END_ENV))
    except ValueError as exc:
        fail(str(exc))


def resume_config(checkpoint: Path, overrides: list[str] | None = None, device: str | None = None,
                  epochs: int | None = None) -> RunConfig:
    """The config a checkpoint continues with: its run's config.toml beside it (no torch needed), else the
    checkpoint's own copy; then the overrides. ConfigError/CheckpointError name what is wrong."""
    from tui_trainer.errors import CheckpointError
    from tui_trainer.run.folder import not_a_checkpoint, run_of_checkpoint

    if not checkpoint.exists():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")
    if checkpoint.is_dir():
        raise CheckpointError(not_a_checkpoint(checkpoint))
    run = run_of_checkpoint(checkpoint)
    if run is not None and tracked(run.path):
        raise CheckpointError(own_loop_checkpoint(checkpoint))
    if run is not None:
        cfg = load_preset(str(run.config_path))
    else:
        from tui_trainer.engine import config_from_checkpoint
        from tui_trainer.engine.checkpoint import load_checkpoint

        ck = load_checkpoint(checkpoint)
        if ck.get("source") == "track":
            raise CheckpointError(own_loop_checkpoint(checkpoint))
        cfg = config_from_checkpoint(ck)
    return with_shortcuts(cfg, overrides, epochs, device)


def tracked(run_path: Path) -> bool:
    """The run in ``run_path`` was trained by a user's own loop (run/track.py), not by the tool's engine."""
    from tui_trainer.run.folder import RunDir

    return RunDir(run_path).source == "track"


def own_loop_checkpoint(checkpoint: Path) -> str:
    """Why a checkpoint of a user's own loop is not resumed here, and what to do instead (one line)."""
    return (f"{checkpoint} was saved by your own training loop (run/track.py): tui-trainer resumes only the runs it "
            "trains; go on from your script (load it with torch.load(path, weights_only=True))")
