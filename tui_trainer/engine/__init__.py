"""The training engine: ``fit(config, sink, controls, run_dir, resume_path) -> FitResult``.

``loop.py`` is the loop (read it top to bottom), ``steps.py`` how one step runs, ``parts.py``
the small pieces (setup, loss, validation, early stopping).
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
    prepare,
    warm_up,
)
from tui_trainer.run.controls import Controls

__all__ = ["Controls", "EarlyStopping", "Fit", "FitResult", "build_loss", "config_from_checkpoint", "describe_model",
           "epoch_seed", "evaluate", "fit", "prepare", "warm_up"]
