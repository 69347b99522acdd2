"""``python -m tui_trainer ...``: the console script (``torchrun ... -m tui_trainer train PRESET`` launches ranks)."""

from tui_trainer.cli.launch import entry

entry()
