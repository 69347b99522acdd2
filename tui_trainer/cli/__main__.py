"""``python -m tui_trainer.cli``: the console script."""

from tui_trainer.launch import entry

entry()
