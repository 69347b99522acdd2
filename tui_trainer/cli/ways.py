"""The ways to run a training from the command line: in the foreground (Ctrl+C stops and saves), detached (a run
process of its own), data parallel through torchrun (followed here), as one rank of a torchrun the user launched,
on a machine other than node 0, and a dry run of one step. Each ends in ``outcome``: the one place where how a run
ended becomes a line and an exit code (0 done, 1 failed, 2 bad config, 130 interrupted after saving)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tui_trainer.cli.busy import Busy
from tui_trainer.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, fail
from tui_trainer.config import RunConfig, apply_overrides
from tui_trainer.run.client import Nodes
from tui_trainer.run.controls import Controls
from tui_trainer.run.events import Reason
from tui_trainer.run.folder import resume_hint
from tui_trainer.run.formats import format_number


def outcome(reason: str | Reason, message: str, run_path: Path | str | None, last_checkpoint: Path | str | None = None,
            interrupted: bool = False, best: tuple[str, float] | None = None) -> int:
    """How a run ended, as one line (stdout when it ended as asked, stderr when not) and the exit code. A config
    problem found while setting up is ``fail`` (exit 2); the caller has removed a folder that trained nothing."""
    reason = Reason.parse(reason) if isinstance(reason, str) else reason
    if reason is Reason.INVALID:
        fail(message)
    if interrupted and reason is Reason.STOPPED:
        print(f"interrupted: {message}; saved {last_checkpoint or '(no checkpoint written)'}")
        if last_checkpoint:
            print(resume_hint(last_checkpoint))
        return EXIT_INTERRUPTED
    if reason.as_asked:
        shown = f", best {best[0]} {format_number(best[1])}" if best is not None else ""
        print(f"done: {message}{shown}; run directory {run_path}")
        return EXIT_OK
    print(f"error: {message}", file=sys.stderr)
    if last_checkpoint:
        print(f"last good checkpoint: {last_checkpoint}", file=sys.stderr)
    return EXIT_FAILED


def install_stop_signals(controls: Controls) -> dict:
    """First SIGINT/SIGTERM (and SIGHUP, unless nohup already ignores it): stop within one step and save.
    A second one: exit at once."""
    state = {"count": 0, "signal": None}

    def handler(signum: int, _frame: Any) -> None:
        state["count"] += 1
        state["signal"] = signum
        if state["count"] > 1:
            os._exit(EXIT_INTERRUPTED)  # a second Ctrl+C: leave now (saves are atomic, nothing is torn)
        controls.request_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # under nohup: keep ignoring it, train on
        signal.signal(signal.SIGHUP, handler)
    return state


def run_foreground(cfg: RunConfig, runs_dir: Path, resume: Path | None = None) -> int:
    """Train in this process with console output and signal handling; returns the exit code."""
    from tui_trainer.cli.console import ConsoleSink
    from tui_trainer.run.folder import prepare_run, run_of_checkpoint

    fresh = resume is None or run_of_checkpoint(resume) is None  # a new folder: removed if nothing trains
    run = prepare_run(cfg, runs_dir, resume)  # ConfigError (exit 2) before anything trains
    controls = Controls()
    state = install_stop_signals(controls)
    with Busy("loading torch, the data and the model…") as busy:  # cleared before the run's first line
        from tui_trainer.runner import run_here

        result = run_here(run, controls, resume, console=ConsoleSink(before_output=busy.stop))
    if result.reason is Reason.INVALID and fresh:
        import shutil

        shutil.rmtree(run.path, ignore_errors=True)  # nothing trained: leave nothing behind
    best = (cfg.regularization.monitor, result.best_metric) if result.best_metric is not None else None
    return outcome(result.reason, result.message, result.run_dir, result.last_checkpoint,
                   interrupted=state["signal"] is not None, best=best)


def run_launched(cfg: RunConfig, runs_dir: Path, nodes: Nodes, resume: Path | None = None) -> int:
    """A data-parallel run in the foreground: torchrun starts the ranks (in a session of their own); this
    process follows rank 0's events on the console. Ctrl+C (or SIGTERM) asks the run to stop and save."""
    from tui_trainer.cli.console import ConsoleSink, follow_run
    from tui_trainer.run.client import start
    from tui_trainer.run.endpoint import EndpointError

    handle = start(cfg, runs_dir, resume, nodes=nodes)
    asked: dict[str, int | None] = {"signal": None}

    def stop(signum: int, _frame: Any) -> None:
        if asked["signal"] is not None:
            os.killpg(handle.process.pid, signal.SIGKILL)  # a second Ctrl+C: end every rank now
            return
        asked["signal"] = signum
        try:
            handle.send("stop", timeout=2.0)
        except EndpointError:
            os.killpg(handle.process.pid, signal.SIGTERM)  # torchrun passes it to every rank: they stop and save

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    finished = follow_run(handle.run, ConsoleSink())
    code = handle.process.wait()
    status = handle.run.read_status()
    if status.get("reason") == Reason.INVALID.value:
        handle.discard()
        fail(status.get("message") or "invalid configuration")
    if finished is None:
        print(f"error: the ranks ended without finishing (torchrun exit code {code}); see {handle.run.log_path}",
              file=sys.stderr)
        return EXIT_FAILED
    return outcome(finished.reason, finished.message, handle.run.path, finished.last_checkpoint,
                   interrupted=asked["signal"] is not None)


def run_as_rank(cfg: RunConfig, runs_dir: Path) -> int:
    """One rank of ``torchrun ... -m tui_trainer train PRESET``: rank 0 makes the run's folder and prints the
    progress; the others train and write nothing."""
    from tui_trainer.cli.console import ConsoleSink
    from tui_trainer.run.folder import prepare_run
    from tui_trainer.runner import join_world, run_here

    main_rank = os.environ.get("RANK", "0") == "0"
    with tempfile.TemporaryDirectory(prefix="tui-trainer-rank-") as tmp:
        run = prepare_run(cfg, runs_dir) if main_rank else prepare_run(cfg, folder=tmp)
        controls = Controls()
        install_stop_signals(controls)
        world = join_world(run)
        try:
            result = run_here(run, controls, console=ConsoleSink() if main_rank else None, world=world)
        finally:
            world.close()
    if not main_rank:
        return EXIT_OK if result.ok else EXIT_FAILED
    return outcome(result.reason, result.message, run.path, result.last_checkpoint)


def run_other_node(cfg: RunConfig, nodes: Nodes) -> int:
    """A machine other than node 0 of a several-node run: start its ranks and wait; they train and write
    nothing (rank 0, on node 0, writes the run's folder)."""
    from tui_trainer.run.client import run_command
    from tui_trainer.run.folder import prepare_run

    with tempfile.TemporaryDirectory(prefix="tui-trainer-node-") as tmp:
        run = prepare_run(cfg, folder=tmp)
        print(f"node {nodes.rank} of {nodes.count}: {cfg.train.nproc} rank(s) here; node 0 writes the run's folder")
        proc = subprocess.run(run_command(run.path, None, cfg.train.nproc, nodes), check=False)
    return EXIT_OK if proc.returncode == 0 else EXIT_FAILED


def start_detached(cfg: RunConfig, runs_dir: Path, resume: Path | None = None, nodes: Nodes | None = None) -> int:
    """Start the run process, print its folder at once, wait until it trains (or fails at setup) and leave."""
    from tui_trainer.run.client import start

    handle = start(cfg, runs_dir, resume, nodes=nodes)
    run = handle.run
    print(f"run folder {run.name}: {run.path}", flush=True)
    with Busy("waiting for the run to start: its process loads torch and the data…"):
        state = handle.wait_started()
    if state in ("running", "paused", "finished", "stopped"):
        print(f"started {run.name}")
        print(f"  follow: tui-trainer attach {run.path}")
        print(f"  stop:   tui-trainer stop {run.path}")
        return EXIT_OK
    status = run.read_status()
    message = status.get("message") or f"the run process ended at start-up (see {run.log_path})"
    if status.get("reason") == Reason.INVALID.value:
        handle.discard()
    return outcome(status.get("reason") or Reason.ERROR, message, run.path)


def dry_run(cfg: RunConfig) -> int:
    """One step of ``cfg`` in a temporary folder, removed afterwards."""
    from tui_trainer.cli.console import ConsoleSink
    from tui_trainer.run.events import Event, StepLogged

    cfg = apply_overrides(cfg, ["train.log_every=1", "train.diagnostics=false"])
    controls = Controls()

    class StopAfterOne(ConsoleSink):
        def emit(self, event: Event) -> None:
            super().emit(event)
            if isinstance(event, StepLogged):
                controls.request_stop()

    # the spinner is cleared before the run's first line, and whatever happens
    with Busy("loading torch, the data and the model…") as busy, \
            tempfile.TemporaryDirectory(prefix="tui-trainer-dry-run-") as tmp:
        from tui_trainer.engine import fit

        result = fit(cfg, StopAfterOne(before_output=busy.stop), controls, runs_dir=tmp)
    if result.reason is Reason.INVALID:
        fail(result.message)
    if result.reason not in (Reason.STOPPED, Reason.COMPLETED):  # a one-step preset completes before the stop
        return outcome(result.reason, result.message, None)
    print(f"dry run: one step of {cfg.name} trained; nothing kept")
    return EXIT_OK
