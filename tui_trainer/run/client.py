"""Start, follow, steer and leave run processes (stdlib only: the app uses this without torch).

``start`` creates the run directory (absolute, 0700) and launches ``python -m tui_trainer.runner``
(``RUN_MODULE``) in its own session with stdin closed and its output in run.log. ``RunHandle`` is what a client
holds: the run's folder, its state, ``send`` for commands, ``wait_started`` and ``wait``.
Nothing here trains; a client that goes away leaves the run as it was.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_trainer.config import RunConfig
from tui_trainer.run.endpoint import EndpointError
from tui_trainer.run.endpoint import send as send_command
from tui_trainer.run.folder import LIVE_STATES, RunDir, prepare_run

START_TIMEOUT = 600.0  # seconds a run may spend loading data and building its model before it trains
RUN_MODULE = "tui_trainer.runner"
"""What a run process runs (``python -m RUN_MODULE RUN_DIR ...``, each rank's under torchrun). Tests point it at
``tests.faulty_runner``, which puts a fault into the steps and then runs ``tui_trainer.runner.main``."""


class RunHandle:
    """A client's hold on one run (started here or attached to)."""

    def __init__(self, run: RunDir, process: subprocess.Popen | None = None, resumed: bool = False) -> None:
        self.run, self.process = run, process
        self.resumed = resumed  # launched to continue its run from a checkpoint (its folder holds earlier sessions)

    @property
    def path(self) -> Path:
        """The run directory."""
        return self.run.path

    def state(self) -> str:
        """starting, running, paused, finished, stopped, failed or crashed."""
        if self.process is not None:
            self.process.poll()  # reap our own child, so a finished run is not a zombie that looks alive
        return self.run.state()

    def send(self, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        """One command and the run's reply (EndpointError if it cannot be reached)."""
        return send_command(self.run, cmd, timeout=timeout, **args)

    def stop(self, timeout: float = 60.0) -> tuple[str, str]:
        """Stop the run (it saves last.pt) and wait for its end: (state, what it said). A run still loading
        torch has no endpoint yet: it is asked again until it has one. A live run whose endpoint cannot be
        reached gets SIGTERM, which stops it the same way."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.run.read_status()
            state = self.run.state(status)
            if state not in LIVE_STATES:
                return state, f"it had ended ({state})"
            try:
                reply = self.send("stop", timeout=min(10.0, max(1.0, deadline - time.monotonic())))
                said = str(reply.get("message") or reply.get("error") or "")
                break
            except EndpointError as exc:
                if state == "starting" and not status.get("control") and time.monotonic() < deadline:
                    time.sleep(0.2)  # loading torch: its endpoint comes up before its first step
                    continue
                pid = status.get("pid")
                if not pid or self.run.state() not in LIVE_STATES:
                    return self.run.state(), str(exc)
                try:
                    os.kill(int(pid), signal.SIGTERM)
                except ProcessLookupError:  # it ended a moment ago
                    return self.run.state(), str(exc)
                said = f"{exc}; sent SIGTERM to {pid}"
                break
        return self.wait(max(0.0, deadline - time.monotonic())), said

    def discard(self, timeout: float = 30.0) -> None:
        """Remove the folder of a run that never trained (it failed while setting up): wait for its process first,
        so its last status write cannot land in a half-removed folder. Never for a resumed run (its folder holds
        its earlier sessions)."""
        if self.resumed:
            return
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.path, ignore_errors=True)

    def exited(self) -> int | None:
        """The run process's exit code if we started it and it has exited."""
        return self.process.poll() if self.process is not None else None

    def wait_started(self, timeout: float = START_TIMEOUT, poll: float = 0.05) -> str:
        """Block until the run trains (returns "running"), or ends or fails first (returns its state)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            code = self.exited()
            if state not in ("starting",) or code is not None:
                return self.run.state() if code is not None and state == "starting" else state
            if time.monotonic() > deadline:
                return state
            time.sleep(poll)  # polling a file another process writes; there is nothing to wait on

    def wait(self, timeout: float | None = None, poll: float = 0.1) -> str:
        """Block until the run is no longer live; returns its state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.state()
            if state not in LIVE_STATES:
                return state
            if deadline is not None and time.monotonic() > deadline:
                return state
            time.sleep(poll)  # see wait_started


@dataclass(frozen=True)
class Nodes:
    """Where the ranks of a data-parallel run live (torchrun's own flags): ``count`` machines, this one
    ``rank``, meeting at ``endpoint`` (host:port of node 0)."""

    count: int = 1
    rank: int = 0
    endpoint: str | None = None
    max_restarts: int = 0


def run_command(run_path: Path, resume: Path | None, nproc: int = 1, nodes: Nodes | None = None,
                paused: bool = False) -> list[str]:
    """The command line of a run process: the runner itself, or torchrun starting ``nproc`` runners here
    (``torch.distributed.run``: PyTorch's own launcher with its elastic rendezvous)."""
    tail = ["-m", RUN_MODULE, str(run_path)] + (["--resume", str(Path(resume).resolve())] if resume else [])
    tail += ["--paused"] if paused else []
    nodes = nodes or Nodes()
    if nproc <= 1 and nodes.count <= 1:
        return [sys.executable, *tail]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--max-restarts={nodes.max_restarts}"]
    if nodes.count > 1:
        # torchrun's static rendezvous at node 0's address: ranks are numbered by node rank, so rank 0 (which
        # writes the run's folder) is on node 0, where the user reads it. c10d numbers nodes by arrival.
        host, _, port = (nodes.endpoint or "").rpartition(":")
        cmd += [f"--nnodes={nodes.count}", f"--node-rank={nodes.rank}", f"--master-addr={host}", f"--master-port={port}"]
    else:
        cmd += ["--standalone"]
    return cmd + tail


def start(cfg: RunConfig, runs_dir: Path | str = "runs", resume: Path | None = None,
          env: dict[str, str] | None = None, nodes: Nodes | None = None, paused: bool = False,
          label: str | None = None) -> RunHandle:
    """Create the run directory and launch the run process (torchrun when ``cfg.train.nproc`` > 1 or several
    nodes); ConfigError (nothing started) if the runs directory cannot be written. ``resume``: a checkpoint;
    the run continues in its own folder. ``paused``: it takes one step, then holds (step on with "step").
    ``label``: the new folder's name after its time stamp (default: the preset's name)."""
    run = prepare_run(cfg, runs_dir, resume, label=label)
    cmd = run_command(run.path, resume, cfg.train.nproc, nodes, paused)
    with open(run.log_path, "ab") as log:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                   close_fds=True, cwd=os.getcwd(), env=env)
    return RunHandle(run, process, resumed=resume is not None)


def attach(run: RunDir) -> RunHandle:
    """A handle on a run started elsewhere."""
    return RunHandle(run)
