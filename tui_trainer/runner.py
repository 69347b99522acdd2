"""The run process: ``python -m tui_trainer.runner RUN_DIR [--resume CKPT] [--paused]``, the one seam where a
run process meets the engine.

Started by ``run.client.start`` in its own session with stdin closed and its stderr in run.log,
so a closed terminal, an SSH drop or a crashed app leaves it training. It trains the config in
RUN_DIR/config.toml through ``engine.fit``, whose events its ``RunRecorder`` writes (events.jsonl,
metrics.jsonl, status.json), and serves the control endpoint. SIGTERM and SIGINT stop it (it saves
last.pt); SIGHUP is ignored. A run whose folder is removed, or whose record cannot be written (a
full disk), stops: the recorder says so to the engine (``RecordLost``), and nothing more is written
into a folder that is no longer the run's. At its end, after the last event and status, it runs the notify
hook if ``TUI_TRAINER_NOTIFY`` is set (``train --notify COMMAND``; run/notify.py), rank 0 alone. ``run_here`` is
the same run in the calling process: the foreground ``tui-trainer train``.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

from tui_trainer.config import RunConfig, load_preset
from tui_trainer.engine import FitResult, fit
from tui_trainer.engine.dist import World, world_from_env
from tui_trainer.engine.loop import failed_setup
from tui_trainer.errors import USER_ERRORS, first_line
from tui_trainer.run.controls import Controls
from tui_trainer.run.endpoint import ControlServer, EndpointError
from tui_trainer.run.events import LogMessage, NullSink, Reason, RecordLost, RunFinished, Sink, TeeSink
from tui_trainer.run.folder import RunDir, proc_start, process_started
from tui_trainer.run.notify import notify_command, notify_end
from tui_trainer.run.recorder import RunRecorder, recording
from tui_trainer.run.threads import ThreadPolicy

EXIT_CODES = {Reason.COMPLETED: 0, Reason.EARLY_STOPPED: 0, Reason.STOPPED: 0, Reason.INVALID: 2}


def run_here(run: RunDir, controls: Controls, resume: Path | None = None, console: Sink | None = None,
             world: World | None = None) -> FitResult:
    """Train the run in ``run`` in this process: status, events, control endpoint, then the fit.
    Returns the engine's FitResult (its ``reason`` says how it ended). Under DDP only rank 0 writes the
    run directory and serves the endpoint; the other ranks train and say nothing."""
    world = world or World()
    if not world.main:  # its threads too: the ranks on one box share its cores as runs do
        cfg = load_preset(str(run.config_path))
        threads = start_threads(cfg, run)
        try:
            return fit(cfg, NullSink(), controls, run, resume, world=world, threads=threads)
        finally:
            threads.stop()
    command = notify_command()
    result: FitResult | None = None
    try:
        result = _run_main(run, controls, resume, console, world)
        return result
    finally:
        if command is not None:  # after the last event and status: the hook reads a finished folder
            _call_hook(run, command, result, sys.exc_info()[1])


def _run_main(run: RunDir, controls: Controls, resume: Path | None, console: Sink | None, world: World) -> FitResult:
    """Rank 0's run: it writes the folder and serves the endpoint."""
    with recording(run, controls) as recorder:
        return _serve_and_fit(run, recorder, controls, resume, console, world)


def _serve_and_fit(run: RunDir, recorder: RunRecorder, controls: Controls, resume: Path | None, console: Sink | None,
                   world: World) -> FitResult:
    sink: Sink = TeeSink(recorder, console) if console is not None else recorder
    server = threads = None
    try:
        recorder.update_status(state="starting", pid=os.getpid(), host=socket.gethostname(),
                               proc_start=proc_start(os.getpid()), started=time.time(), ended=None, reason=None,
                               message=None, control=None, launcher_pid=os.getppid() if world.distributed else None)
        try:
            server = ControlServer(run, controls)
            recorder.update_status(control=str(server.address))
        except (OSError, EndpointError) as exc:  # the run still trains; it just cannot be steered from outside
            sink.emit(LogMessage("warning", f"no control endpoint ({exc}); stop this run with SIGTERM "
                                            f"(kill {os.getpid()})"))
        try:
            cfg = load_preset(str(run.config_path))
        except USER_ERRORS as exc:  # config.toml edited by hand since the run was created
            return failed_setup(sink, run, Reason.INVALID, str(exc))
        for line in run.read_status().get("code_changed") or []:  # a resume whose code is not what it was
            sink.emit(LogMessage("warning", line))
        threads = start_threads(cfg, run)
        return fit(cfg, sink, controls, run, resume, world=world, threads=threads, process_start=process_started())
    except RecordLost as lost:  # before the engine began: its status could not be written
        return failed_setup(sink, run, Reason.ERROR, lost.message)
    finally:
        if threads is not None:
            threads.stop()
        if server is not None:  # before the recorder closes: the status says the endpoint is gone
            server.close(f"the run has ended ({run.state()})")
            recorder.update_status(control=None)


def _call_hook(run: RunDir, command: str, result: FitResult | None, exc: BaseException | None) -> None:
    """The notify hook (run/notify.py) for how the run ended: its result, or the exception that ended this process's
    run ("crashed")."""
    monitor = "val_loss"
    try:
        monitor = load_preset(str(run.config_path)).regularization.monitor
    except USER_ERRORS:
        pass
    if result is not None:
        notify_end(run, command, result.reason.state, result.reason.value, result.message, result.epoch,
                   result.best_metric, monitor, result.last_checkpoint)
    else:
        why = first_line(exc) if exc is not None else "the run process ended without a result"
        notify_end(run, command, "crashed", Reason.ERROR.value, why, 0, None, monitor, run.last_good_checkpoint())


def start_threads(cfg: RunConfig, what: RunDir | str) -> ThreadPolicy:
    """The thread policy (run/threads.py) of a run (or of ``what`` else trains: an LR sweep), registered among the
    live runs and applied before the data and model are built (their loading is work on the cores too)."""
    from tui_trainer.engine.device import pick_device
    from tui_trainer.engine.loop import apply_threads

    try:
        kind = pick_device(cfg.train.device).type
    except USER_ERRORS:
        kind = "cpu"  # the fit reports the config problem itself
    policy = ThreadPolicy(cfg.train.threads, kind)
    apply_threads(policy.start(what.path if isinstance(what, RunDir) else what))
    return policy


def main(argv: list[str] | None = None) -> int:
    """The run process's entry point; its exit code is 0 as asked, 1 failed, 2 invalid."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print("usage: python -m tui_trainer.runner RUN_DIR [--resume CKPT] [--paused]", file=sys.stderr)
        return 2
    run = RunDir(Path(args[0]).resolve())
    resume = Path(args[args.index("--resume") + 1]) if "--resume" in args else None
    controls = Controls()
    if "--paused" in args:  # start held before the first step, then take one: a net shown one step at a time
        controls.send("pause")
        controls.send("step")
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0 and run.last_good_checkpoint() is not None:
        resume = run.last_good_checkpoint()  # torchrun restarted the ranks after a failure: go on from there
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal that started us is not ours
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: controls.request_stop())
    try:
        world = join_world(run)
    except Exception as exc:  # noqa: BLE001 - no process group: say why in the run's folder, once (rank 0)
        if os.environ.get("RANK", "0") == "0":
            recorder = RunRecorder(run)
            recorder.emit(RunFinished(Reason.INVALID.value, f"cannot start data-parallel training: {first_line(exc)}",
                                      0, 0, None, str(run.path)))
            recorder.close()
        return 2
    try:
        result = run_here(run, controls, resume, world=world)
    finally:
        world.close()
    return EXIT_CODES.get(result.reason, 1)


def join_world(run: RunDir) -> World:
    """This process's rank when torchrun started it (one rank otherwise), on the config's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    from tui_trainer.engine.device import pick_device

    try:
        kind = pick_device(load_preset(str(run.config_path)).train.device).type
    except USER_ERRORS:
        kind = "cpu"  # the fit reports the config problem itself
    return world_from_env(kind)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip torch's interpreter teardown; every file we wrote is closed
