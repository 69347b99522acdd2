"""Word when a run ends, from the run process itself (stdlib only): the ``--notify COMMAND`` hook.

The hook is a shell command the run process runs once, after its last event and status are written, whatever the
end: finished, early-stopped, stopped, diverged (non-finite loss), out of memory, failed, or an exception in the
run process itself ("crashed"). So it works with nothing attached. What it is told is in its environment:

    TUI_TRAINER_RUN_DIR     the run's folder (absolute)        TUI_TRAINER_RUN      its name
    TUI_TRAINER_STATE       finished, stopped, failed, crashed TUI_TRAINER_REASON   completed, early_stopped, stopped,
                                                                                      non_finite_loss, out_of_memory,
                                                                                      error, invalid
    TUI_TRAINER_MESSAGE     the end's one line                 TUI_TRAINER_EPOCH    epochs done
    TUI_TRAINER_BEST        the best monitored metric, or ""   TUI_TRAINER_MONITOR  its name (val_loss, val_acc)
    TUI_TRAINER_CHECKPOINT  the last good checkpoint, or ""

Where the setting lives: the environment variable ``TUI_TRAINER_NOTIFY`` of the run process (``train --notify CMD``
and ``resume --notify CMD`` set it for the run they start; set it in a shell profile and every run started there,
from the app too, calls it). Not a config key: config.toml is copied into presets, checkpoints, sweeps and other
people's machines, and a shell command there would run wherever the preset is trained (the same reason config
strings never name arbitrary imports); nor is the hook a property of the experiment (``compare`` would name it as
a difference between runs).

The hook never holds up the end for long: it runs in a session of its own, and after ``HOOK_TIMEOUT_S`` its whole
process group is killed. A hook that cannot start, exits non-zero or times out is one warning line in the run's
log (run.log) and on stderr; the run's own end (status, exit code) is unchanged.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tui_trainer.run.folder import RunDir

NOTIFY_ENV = "TUI_TRAINER_NOTIFY"
HOOK_TIMEOUT_S = 10.0
HOOK_VARS = ("RUN_DIR", "RUN", "STATE", "REASON", "MESSAGE", "EPOCH", "BEST", "MONITOR", "CHECKPOINT")


def notify_command(environ: dict[str, str] | None = None) -> str | None:
    """The hook this process runs at a run's end, or None (unset or blank)."""
    command = (os.environ if environ is None else environ).get(NOTIFY_ENV, "").strip()
    return command or None


def check_command(command: str) -> str:
    """``command`` stripped; ValueError (one line: what is wrong, what is allowed) for an unusable one."""
    stripped = command.strip()
    if not stripped:
        raise ValueError("--notify: the command is empty; allowed: a shell command run when the run ends, "
                         "e.g. --notify 'notify-send \"$TUI_TRAINER_RUN\" \"$TUI_TRAINER_STATE\"'")
    if any(c in stripped for c in "\n\r\0"):
        raise ValueError("--notify: the command has a line break or NUL; allowed: one line of shell")
    return stripped


def hook_env(run: RunDir, state: str, reason: str, message: str, epoch: int, best: float | None, monitor: str,
             checkpoint: Path | str | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The hook's environment: ``base`` (this process's, without the hook setting itself) and the run's end."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k != NOTIFY_ENV}
    shown_best = "" if best is None or not math.isfinite(best) else repr(float(best))
    env.update({
        "TUI_TRAINER_RUN_DIR": str(run.path), "TUI_TRAINER_RUN": run.name, "TUI_TRAINER_STATE": state,
        "TUI_TRAINER_REASON": reason, "TUI_TRAINER_MESSAGE": " ".join(message.split()),
        "TUI_TRAINER_EPOCH": str(epoch), "TUI_TRAINER_BEST": shown_best, "TUI_TRAINER_MONITOR": monitor,
        "TUI_TRAINER_CHECKPOINT": str(checkpoint or ""),
    })
    return env


def run_hook(command: str, env: dict[str, str], cwd: Path, timeout: float = HOOK_TIMEOUT_S) -> str | None:
    """Run ``command`` through the shell with ``env``; None when it exited 0, else why not (one line). Its output
    goes where this process's goes (run.log for a run process)."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(command, shell=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    except OSError as exc:
        return f"could not start ({exc.strerror or exc})"
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the shell and whatever it started
        except ProcessLookupError:
            pass
        proc.wait()
        return f"killed after {timeout:g} s (the hook must end by then)"
    if code != 0:
        return f"exited with code {code} after {time.monotonic() - started:.1f} s"
    return None


def notify_end(run: RunDir, command: str, state: str, reason: str, message: str, epoch: int, best: float | None,
               monitor: str, checkpoint: Path | str | None, timeout: float = HOOK_TIMEOUT_S) -> str | None:
    """Run the hook for the end of ``run``; a failure is one warning line in run.log (and on stderr when that is
    not run.log: a foreground run), returned too. Never raises."""
    try:
        env = hook_env(run, state, reason, message, epoch, best, monitor, checkpoint)
        why = run_hook(command, env, run.path if run.path.is_dir() else Path.cwd(), timeout)
    except Exception as exc:  # noqa: BLE001 - the end of a run is never lost to its hook
        why = f"{type(exc).__name__}: {exc}"
    if why is None:
        return None
    line = f"warning: notify hook {command!r} {why}; the run ended {state} ({reason})"
    _log_line(run, line)
    return line


def _log_line(run: RunDir, line: str) -> None:
    """``line`` in run.log, and on stderr unless stderr is run.log already (a detached run's)."""
    logged = False
    try:
        if run.path.is_dir():
            with open(run.log_path, "a", encoding="utf-8") as log:
                log.write(line + "\n")
            logged = _same_file(run.log_path)
    except OSError:
        pass
    if not logged:
        print(line, file=sys.stderr, flush=True)


def _same_file(path: Path) -> bool:
    """Whether this process's stderr is ``path``."""
    try:
        sys.stderr.flush()
        mine, theirs = os.fstat(sys.stderr.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)
