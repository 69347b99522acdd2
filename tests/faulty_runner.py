"""Test-only: training steps with a fault in them, for run processes, the CLI and in-process fits.

Production code knows nothing of faults. A fault is a spec: ``oom@3`` raises out-of-memory at the 3rd step of
the process, ``error@3`` a RuntimeError ("kaboom"), ``slow@0.01`` adds 10 ms to every step (a long run that
does not burn the 2 cores). It reaches the steps the same way everywhere, by wrapping the step object the
engine's strategy chooses (``engine.dist.OneProcess.train_step`` and ``DataParallel.train_step``), and it gets
there in one of four ways:

* a run process: ``python -m tests.faulty_runner RUN_DIR ...`` (this module) reads the spec from
  ``TUI_TRAINER_FAULT``, installs it and runs ``tui_trainer.runner.main``. ``start(...)`` launches one through
  ``run.client.start`` (its ``RUN_MODULE`` pointed here for that call); ``use_in_run_processes(monkeypatch, spec)``
  points it here for the whole test, for runs the app starts itself;
* the CLI in a subprocess: ``python -m tests.faulty_cli ...`` (both of the above for its own process);
* a fit in the test's own process: ``install(spec, monkeypatch)``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

FAULT_ENV = "TUI_TRAINER_FAULT"
MODULE = "tests.faulty_runner"


@dataclass(frozen=True)
class Fault:
    """What goes wrong, and at which step (or how slow every step is)."""

    kind: str
    arg: float

    @classmethod
    def parse(cls, spec: str) -> Fault:
        kind, _, arg = spec.partition("@")
        if kind not in ("oom", "error", "slow"):
            raise ValueError(f"{FAULT_ENV}={spec!r}: allowed: oom@STEP, error@STEP, slow@SECONDS")
        return cls(kind, float(arg or 1))


class FaultyStep:
    """A training step object with the fault before each call."""

    def __init__(self, inner: Any, fault: Fault) -> None:
        self.inner, self.fault, self.calls = inner, fault, 0

    def __call__(self, xb: Any, yb: Any, slot: int, watch: bool) -> None:
        self.calls += 1
        if self.fault.kind == "slow":
            time.sleep(self.fault.arg)  # makes the step slower; nothing waits on it
        elif self.calls == int(self.fault.arg):
            import torch

            if self.fault.kind == "oom":
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected by {FAULT_ENV})")
            raise RuntimeError(f"kaboom (injected by {FAULT_ENV})")
        self.inner(xb, yb, slot, watch)


def install(spec: str, monkeypatch: Any = None) -> None:
    """Every fit in this process from now on takes its steps through ``FaultyStep`` (undone after the test when
    ``monkeypatch`` is given)."""
    from tui_trainer.engine import dist

    fault = Fault.parse(spec)
    for cls in (dist.OneProcess, dist.DataParallel):
        real = cls.__dict__["train_step"]

        def train_step(self: Any, body: Any, schedule: Any, sink: Any, _real: Any = real) -> FaultyStep:
            return FaultyStep(_real(self, body, schedule, sink), fault)

        if monkeypatch is not None:
            monkeypatch.setattr(cls, "train_step", train_step)
        else:
            cls.train_step = train_step


def use_in_run_processes(monkeypatch: Any, spec: str) -> None:
    """Run processes started from this test (``run.client.start``: the app's Start, attach and resume too) run this
    module with ``spec``."""
    from tui_trainer.run import client

    Fault.parse(spec)
    monkeypatch.setattr(client, "RUN_MODULE", MODULE)
    monkeypatch.setenv(FAULT_ENV, spec)


def start(cfg: Any, runs_dir: Any, spec: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """``run.client.start(cfg, runs_dir, ...)`` with the run process taking the fault ``spec``."""
    from tui_trainer.run import client

    Fault.parse(spec)
    real, client.RUN_MODULE = client.RUN_MODULE, MODULE
    try:
        return client.start(cfg, runs_dir, env={**os.environ, **(env or {}), FAULT_ENV: spec}, **kwargs)
    finally:
        client.RUN_MODULE = real


def main() -> None:
    """A run process with the fault from the environment."""
    from tui_trainer import runner

    install(os.environ[FAULT_ENV])
    code = runner.main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as the runner does: skip torch's interpreter teardown


if __name__ == "__main__":
    main()
