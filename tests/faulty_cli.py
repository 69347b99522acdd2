"""Test-only: ``python -m tests.faulty_cli ARGS...`` is ``python -m tui_trainer.cli ARGS...`` with the fault named
in ``TUI_TRAINER_FAULT`` (see tests/faulty_runner.py) in every run it trains itself (``train`` in the foreground)
and every run process it starts (the app's Start, ``--detach``)."""

from __future__ import annotations

import os
import sys

from tests import faulty_runner
from tui_trainer.run import client

if __name__ == "__main__":
    if sys.argv[1:2] in (["train"], ["resume"]):  # may train here, in the foreground (the app never imports torch)
        faulty_runner.install(os.environ[faulty_runner.FAULT_ENV])
    client.RUN_MODULE = faulty_runner.MODULE
    from tui_trainer.cli.launch import entry

    entry()
