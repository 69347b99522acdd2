"""Start, follow, stop and resume sweep processes, and say what a sweep did in lines (stdlib only: the CLI and the
app use this without Optuna or torch).

``launch`` starts ``python -m tui_trainer.sweep SWEEP_DIR`` in its own session with stdin closed and its output in
sweep.log; ``wait_started`` waits until it sweeps (or failed first); ``follow_sweep`` yields its events as they are
written until it has ended (or its process is gone without an end: crashed); ``stop_sweep`` sends SIGTERM and waits.
``line`` is how one event reads on a console.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_trainer.errors import ConfigError
from tui_trainer.run.formats import format_number
from tui_trainer.sweep.events import read_events
from tui_trainer.sweep.folder import LIVE, SweepDir

if TYPE_CHECKING:
    from tui_trainer.config import RunConfig
    from tui_trainer.sweep.spec import SweepSpec

START_TIMEOUT = 120.0
"""Seconds a sweep process may take to open its study (a database across the network) before it counts as stuck."""
QUIET = 1.0
"""Seconds without new lines after a sweep's process is gone before it counts as crashed."""


def create_sweep(spec: SweepSpec, sweeps_dir: Path | str, name: str) -> SweepDir:
    """A new sweep folder for ``spec`` (checked): spec.json, sweep.toml and its first status. ConfigError (one line)
    when the folder cannot be made or written; nothing is started (``launch`` starts its process)."""
    from tui_trainer.run.files import atomic_write
    from tui_trainer.sweep.folder import create_sweep_dir

    folder = create_sweep_dir(sweeps_dir, name)
    try:
        atomic_write(folder.spec_path, spec.to_json())
        atomic_write(folder.toml_path, spec.to_toml())
        folder.write_status(state="starting", created=time.time(), trials=spec.trials, done=0)
    except OSError as exc:
        raise ConfigError(f"cannot write the sweep's folder {folder.path}: {exc.strerror or exc}") from None
    return folder


def start_sweep(cfg: RunConfig, ranges: dict[str, str], asked: dict[str, Any], sweeps_dir: Path) -> tuple[SweepDir, str]:
    """A sweep of ``ranges`` (key -> range text, as ``--param`` takes it) over ``cfg``, as the app starts one from
    its panels: checked, its folder written, its process launched (and reaped when it ends, by a thread of this
    process) and waited for until a trial runs. ``asked``: ``trials``, ``parallel`` (None: the default) and
    ``prune``. Returns the folder and its state; ConfigError or OSError (one line) before anything started."""
    import threading

    from tui_trainer.sweep.spec import Asked, build_spec

    spec = build_spec(cfg.name, cfg, {}, Asked(params=[f"{k}={v}" for k, v in ranges.items()], trials=asked["trials"],
                                               parallel=asked["parallel"], prune=asked.get("prune") or None))
    folder = create_sweep(spec, sweeps_dir, cfg.name)
    process = launch(folder)
    threading.Thread(target=process.wait, name="reap the sweep process", daemon=True).start()  # no zombie left
    return folder, wait_started(folder, process)


def launch(sweep: SweepDir) -> subprocess.Popen:
    """Start the sweep process on ``sweep`` (new or resumed). Its status says "starting" until the process writes
    its own (a follower that looks meanwhile does not take an earlier end for this one's)."""
    sweep.write_status(state="starting", created=time.time(), pid=None, ended=None)
    with open(sweep.log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "tui_trainer.sweep", str(sweep.path)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True, close_fds=True, cwd=os.getcwd())


def wait_started(sweep: SweepDir, process: subprocess.Popen, timeout: float = START_TIMEOUT) -> str:
    """Block until the sweep process has started its first trial or ended (returns its state), or its process left
    at once (another one drives the folder: "busy")."""
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        status = sweep.read_status()
        if code == 2 and status.get("pid") != process.pid:
            return "busy"
        state = sweep.state(status)
        if status.get("pid") == process.pid and (status.get("running") or state not in LIVE):
            return state
        if code is not None and state in LIVE:
            return sweep.state()
        if time.monotonic() > deadline:
            return state
        time.sleep(0.1)  # a file another process writes: nothing to wait on but time


def follow_sweep(sweep: SweepDir, cancelled: Callable[[], bool] = lambda: False, period: float = 0.25,
                 offset: int = 0) -> Iterator[dict[str, Any]]:
    """The sweep's events from byte ``offset`` (the start), then as they come, until its process has ended (an
    ``ended`` event, or a ``crashed`` one made up here when its process is gone without one) or ``cancelled()``."""
    for batch in follow_sweep_batches(sweep, cancelled, period, offset):
        yield from batch


def follow_sweep_batches(sweep: SweepDir, cancelled: Callable[[], bool] = lambda: False, period: float = 0.25,
                         offset: int = 0) -> Iterator[list[dict[str, Any]]]:
    """``follow_sweep``'s events, a list per read of the file: a history's backlog comes as one list, and each list
    is everything there was (a follower that shows them need not wait for the next one)."""
    quiet_since, last_end = time.monotonic(), None
    while not cancelled():
        events, offset = read_events(sweep.events_path, offset)
        for event in events:
            if event.get("event") == "started":
                last_end = None
            elif event.get("event") == "ended":
                last_end = event
        if events:
            yield events
            quiet_since = time.monotonic()
            continue
        state = sweep.state()
        if state not in LIVE:
            if last_end is not None:
                return
            if time.monotonic() - quiet_since > QUIET:
                yield [{"event": "ended", "state": "crashed", "t": time.time(),
                        "message": f"the sweep process is gone without an end; its trials go on; resume with: "
                                   f"tui-trainer resume {sweep.path}"}]
                return
        time.sleep(period)  # tailing a file another process appends to


def stop_sweep(sweep: SweepDir, timeout: float = 120.0) -> str:
    """SIGTERM to the sweep process (it stops every trial, each saving last.pt) and wait for its end; its state.
    ConfigError when it is not running, or runs on another machine."""
    import socket

    status = sweep.read_status()
    state = sweep.state(status)
    if state not in LIVE:
        raise ConfigError(f"sweep {sweep.name} is not running (state: {state})")
    if status.get("host") != socket.gethostname():
        raise ConfigError(f"sweep {sweep.name} runs on {status.get('host')}; stop it there")
    try:
        os.kill(int(status["pid"]), signal.SIGTERM)
    except ProcessLookupError:
        return sweep.state()
    deadline = time.monotonic() + timeout
    while sweep.state() in LIVE and time.monotonic() < deadline:
        time.sleep(0.2)  # see wait_started
    return sweep.state()


def line(event: dict[str, Any]) -> str | None:
    """How an event reads on a console (None: not worth a line, e.g. an epoch's report)."""
    kind = event.get("event")
    if kind == "started":
        again = "resumed: " if event.get("resumed") else ""
        slots = sorted(set(event.get("slots") or []))
        slots = f"each on {slots[0]}" if len(slots) == 1 else ", ".join(slots)
        space = " ".join(f"{k}={v}" for k, v in (event.get("params") or {}).items())
        return (f"{again}sweep of {event.get('preset')}: {event.get('trials')} trials, {event.get('parallel')} at a "
                f"time ({slots}), {event.get('direction')} {event.get('metric')}, pruner {event.get('prune')}, study "
                f"{event.get('study')!r} in {event.get('storage')}; {space}")
    if kind == "trial":
        return _trial_line(event)
    if kind == "best":
        return f"best so far: trial {event['number']} {_number(event.get('value'))}"
    if kind == "stopping":
        return f"stopping: trials {event.get('running')} save last.pt"
    if kind == "ended":
        return f"{event.get('state')}: {event.get('message')}"
    if kind == "note":
        return f"note: {event.get('text')}"
    return None


def _trial_line(event: dict[str, Any]) -> str:
    number, state = event["number"], event.get("state")
    if state == "running":
        params = " ".join(f"{k}={_short(v)}" for k, v in (event.get("params") or {}).items())
        if event.get("how") not in (None, "new"):
            return f"trial {number} taken back on {event.get('slot')} ({event['how']}): {params}"
        return f"trial {number} started on {event.get('slot')}: {params}"
    if state == "pruning":
        return f"trial {number} {event.get('reason')}: stopping it"
    if state == "complete":
        return f"trial {number} complete: {_number(event.get('value'))} after {event.get('epochs')} epochs"
    if state == "pruned":
        return f"trial {number} pruned after {event.get('epochs')} epochs ({event.get('reason')})"
    return f"trial {number} {state}: {event.get('reason')}"


def _number(value: Any) -> str:
    return format_number(value) if isinstance(value, (int, float)) else "-"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace(" ", "")
