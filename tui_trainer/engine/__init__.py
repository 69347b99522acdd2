"""The training engine: ``fit(config, sink, controls, run_dir, resume_path) -> FitResult``.

``loop.py`` is the loop (read it top to bottom); what it calls: ``steps.py`` how one step runs,
``steering.py`` the commands and the pause, ``checkpoint.py`` the checkpoints, ``dist.py`` the
data-parallel strategy, ``watch.py`` diagnostics and hints, ``progress.py`` where a fit is;
``parts.py`` the small pieces (setup, validation, seeds). The engine only emits events: the run
folder's files are written by ``run/recorder.py`` (the loop writes checkpoints).
"""

from __future__ import annotations

from tui_trainer.engine.loop import Fit, FitResult, fit
from tui_trainer.engine.parts import (
    EarlyStopping,
    build_loss,
    config_from_checkpoint,
    describe_model,
    epoch_seed,
    evaluate,
    loss_for,
    prepare,
    warm_up,
)
from tui_trainer.run.controls import Controls

__all__ = ["Controls", "EarlyStopping", "Fit", "FitResult", "build_loss", "config_from_checkpoint", "describe_model",
           "epoch_seed", "evaluate", "fit", "loss_for", "prepare", "warm_up"]
