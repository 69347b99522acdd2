"""The sweep process: ``python -m tui_trainer.sweep SWEEP_DIR``.

Started by ``sweep/client.py`` in its own session with stdin closed and its output in sweep.log, like a run process:
a closed terminal or SSH connection leaves it sweeping. It takes the folder's lock first (a second sweep process on
the same folder leaves at once, exit 2, writing nothing), writes its pid to status.json (so a kill -9 reads
"crashed"), opens the study, and runs the loop (``sweeper.py``). SIGTERM and SIGINT stop it: every running trial is
stopped through its endpoint and saves last.pt, then the sweep ends "stopped" (resumable); a second one ends it at
once. SIGHUP is ignored. Started again on the same folder (``tui-trainer resume SWEEP``) it goes on where it was.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

from tui_trainer.errors import USER_ERRORS, first_line
from tui_trainer.sweep.events import SweepLog
from tui_trainer.sweep.folder import SweepDir
from tui_trainer.sweep.spec import SweepSpec, read_spec
from tui_trainer.sweep.study import open_storage, open_study, shown_url


def repair_journal(path: Path) -> bool:
    """End the sweep's own journal at its last whole line when a kill -9 tore the one being written (Optuna's
    reader accepts a torn last line, but not one with lines after it). Only under the folder's lock: no other
    process of this sweep writes it then. True when it cut something."""
    try:
        with open(path, "rb+") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return False
            fh.truncate(data.rfind(b"\n") + 1)
            return True
    except FileNotFoundError:
        return False


def main(argv: list[str] | None = None) -> int:
    """The sweep process's entry point: 0 finished or stopped, 1 failed, 2 another process drives the folder or
    its spec or storage is unusable."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m tui_trainer.sweep SWEEP_DIR", file=sys.stderr)
        return 2
    sweep = SweepDir(Path(args[0]).resolve())
    lock = sweep.lock()
    if lock is None:
        status = sweep.read_status()
        print(f"sweep {sweep.name} is already driven by process {status.get('pid', '?')}; nothing done",
              file=sys.stderr)
        return 2
    resumed = sweep.events_path.exists() and sweep.events_path.stat().st_size > 0
    sweep.mark_started()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    log = SweepLog(sweep.events_path)
    try:
        spec = read_spec(sweep.spec_path)
        if spec.storage is None and repair_journal(sweep.journal_path):
            log.emit("note", text="the journal's last line was torn (a kill); it was cut at the last whole line")
        study = open_study(spec, open_storage(spec, sweep))
    except USER_ERRORS as exc:
        return _end(sweep, log, "failed", str(exc), 2)
    from tui_trainer.sweep.sweeper import Sweeper

    sweeper = Sweeper(sweep, spec, study, log)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sweeper.ask_stop())
    log.emit("started", pid=os.getpid(), resumed=resumed, study=spec.study, storage=shown_url(spec.storage),
             trials=spec.trials, parallel=spec.parallel, slots=[s.describe() for s in spec.slots],
             metric=spec.metric, direction=spec.direction, prune=spec.prune, preset=spec.preset,
             params={p.key: p.text() for p in spec.params})
    try:
        state, message = sweeper.run()
    except Exception as exc:  # noqa: BLE001 - said in the folder; the trials train on and a resume takes them back
        traceback.print_exc()
        return _end(sweep, log, "failed", f"the sweep process failed: {first_line(exc)} (see {sweep.log_path}); "
                                          f"its trials go on; resume with: tui-trainer resume {sweep.path}", 1)
    return _end(sweep, log, state, message, 0 if state in ("finished", "stopped") else 1, spec)


def _end(sweep: SweepDir, log: SweepLog, state: str, message: str, code: int, spec: SweepSpec | None = None) -> int:
    """The sweep's last words: status.json and an ``ended`` event."""
    counts = sweep.read_status().get("counts") or {}
    sweep.write_status(state=state, reason=state, message=message, ended=time.time())
    log.emit("ended", state=state, message=message, counts=counts)
    log.close()
    return code
