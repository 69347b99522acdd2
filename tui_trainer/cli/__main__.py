"""``python -m tui_trainer.cli``: the console script."""

from tui_trainer.cli.launch import entry

entry()
