"""``python -m tui_trainer.sweep SWEEP_DIR``: the sweep process (``process.py``)."""

import os
import sys

from tui_trainer.sweep.process import main

code = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)  # no interpreter teardown of Optuna's and SQLAlchemy's threads; every file we wrote is closed
