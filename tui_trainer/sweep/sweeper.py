"""The sweep's loop: ask the study for parameters, start each trial as a run process in a free slot, report its
epochs to the study, stop it through its endpoint when the pruner says so, tell the study how it ended, and go on
until the study has its trials. Only this thread talks to Optuna; each trial's run folder is followed on a thread of
its own (``trial.py``) that hands updates over a queue.

Counting. The study numbers its trials 0, 1, 2, ... as they are asked (the storage does it atomically, for every
worker sharing it); a sweep of N trials runs numbers 0 .. N-1, whatever state each ends in (as Optuna's n_trials
counts). A worker asks only while the study has fewer than N trials; if two workers race for the last one, the one
that gets number N tells it failed at once, marked ``surplus``, and stops asking: no trial runs twice.

Taking back (a resume after a stop or a crash). The trials still "running" in the study that this sweep started
(its id in their ``sweep`` attribute; on the sweep's own journal, also one asked but not yet marked) are taken back,
each in the way its run folder says: still training (the sweep was killed, its trials were not: they are their own
processes) -> followed again; ended meanwhile -> read and told; stopped with the sweep or crashed -> resumed from its
last.pt in its own folder; no checkpoint or no folder -> run again from the start (its empty folder removed).
"""

from __future__ import annotations

import math
import queue
import shutil
import socket
from pathlib import Path
from typing import Any

from tui_trainer.config import ConfigError, load_preset
from tui_trainer.errors import USER_ERRORS
from tui_trainer.run.client import RunHandle, attach, start
from tui_trainer.run.controls import stop_why
from tui_trainer.run.events import EpochEnded
from tui_trainer.run.folder import LIVE_STATES, RunDir
from tui_trainer.run.follow import Ended, Events, Lost, Snapshot, Update
from tui_trainer.sweep.events import SweepLog
from tui_trainer.sweep.folder import SweepDir
from tui_trainer.sweep.slots import Slot
from tui_trainer.sweep.spec import SweepSpec, save_best
from tui_trainer.sweep.study import config_values, distributions, importances, optuna_module
from tui_trainer.sweep.trial import PRUNED_AT, SWEEP_STOPPED, Active, Outcome, lost, metric_of, outcome

FAILURES_BEFORE_GIVING_UP = 3
"""Trials that fail in a row, before any has completed, after which the sweep stops asking: the preset (or the
machine) is broken, and 30 failures would only say so 30 times."""


class Sweeper:
    """One sweep process's work on its study."""

    def __init__(self, sweep: SweepDir, spec: SweepSpec, study: Any, log: SweepLog) -> None:
        self.sweep, self.spec, self.study, self.log = sweep, spec, study, log
        self.optuna = optuna_module()
        self.states = self.optuna.trial.TrialState
        self.dists = distributions(spec)
        self.updates: queue.Queue[tuple[int, Update]] = queue.Queue()
        self.active: dict[int, Active] = {}
        self.free: list[Slot] = list(spec.slots)
        self.pending: list[Any] = []  # FrozenTrials to take back as slots free up
        self.stop_asked = 0  # stop signals received (the handler only counts: it may run between any two lines)
        self.stopping = False
        self.budget_spent = False
        self.gave_up: str | None = None
        self.failed_in_a_row = 0
        self.best_number: int | None = None
        self.owner = {"id": spec.id, "host": socket.gethostname(), "dir": str(sweep.path)}

    # == the loop ===========================================================================

    def run(self) -> tuple[str, str]:
        """Until the study has its trials and ours have ended (or a stop); returns the sweep's (state, message)."""
        self.pending = [t for t in self.study.get_trials(deepcopy=False, states=(self.states.RUNNING,))
                        if self._mine(t)]
        while True:
            if self.stop_asked and not self.stopping:
                self.begin_stop()
            if self.stop_asked > 1:  # a second stop: leave now; the trials finish their own stop
                break
            if not self.stopping:
                self.fill()
            if not self.active:
                break
            try:
                number, update = self.updates.get(timeout=0.25)  # wakes for a stop signal too
            except queue.Empty:
                continue
            if number in self.active:
                self.on_update(self.active[number], update)
        return self.ending()

    def ask_stop(self) -> None:
        """SIGTERM/SIGINT: stop every trial (each saves last.pt), then end; a second one: end now."""
        self.stop_asked += 1

    def _mine(self, frozen: Any) -> bool:
        owner = frozen.user_attrs.get("sweep")
        if isinstance(owner, dict):
            return owner.get("id") == self.spec.id
        return self.spec.storage is None  # asked but not yet marked, on this sweep's own journal: only ours

    # == starting trials =====================================================================

    def fill(self) -> None:
        """Start trials in the free slots: those to take back first, then new ones while the study wants more."""
        while self.free and not self.stopping:
            if self.pending:
                slot = self.free.pop(0)
                if not self.take_back(self.pending.pop(0), slot):
                    self.free.insert(0, slot)
                continue
            if self.budget_spent or self.gave_up:
                return
            trial = self.ask()
            if trial is None:
                self.budget_spent = True
                return
            slot = self.free.pop(0)
            if not self.start_new(trial, slot):
                self.free.insert(0, slot)

    def ask(self) -> Any:
        """A new trial of the study, or None when it has its trials."""
        if len(self.study.get_trials(deepcopy=False)) >= self.spec.trials:
            return None
        trial = self.study.ask(self.dists)
        trial.set_user_attr("sweep", self.owner)
        if trial.number >= self.spec.trials:  # another worker asked for the last one at the same moment
            trial.set_user_attr("reason", f"surplus: the study had its {self.spec.trials} trials when this worker "
                                          "asked (another worker took the last one); never run")
            self.study.tell(trial, state=self.states.FAIL)
            return None
        return trial

    def start_new(self, trial: Any, slot: Slot, how: str = "new") -> bool:
        """Start ``trial``'s run process in ``slot``; a config that breaks a rule fails the trial instead."""
        values = config_values(self.spec, trial.params)
        try:
            cfg = self.spec.trial_config(values, trial.number, self.sweep.name)
            handle = start(cfg, self.sweep.trials, env=slot.env(), label=f"{cfg.name}-t{trial.number:03d}")
        except ConfigError as exc:
            self.tell(trial, Outcome("failed", None, str(exc)), values, None, 0)
            return False
        trial.set_user_attr("run_dir", str(handle.path))
        self.begin(trial, handle, slot, values, how)
        return True

    def begin(self, trial: Any, handle: RunHandle, slot: Slot, values: dict[str, Any], how: str,
              reported: set[int] | None = None, pruned_at: int | None = None) -> None:
        """Hold the running trial and follow its run."""
        active = Active(trial.number, trial, handle, slot, reported=set(reported or ()), pruned_at=pruned_at)
        self.active[trial.number] = active
        self.log.emit("trial", number=trial.number, state="running", params=values, run=str(handle.path),
                      slot=slot.describe(), how=how)
        active.follow(self.updates)
        self.write_status()

    def take_back(self, frozen: Any, slot: Slot) -> bool:
        """A trial of this sweep left running by a stop or a crash, taken back as its run folder says."""
        trial = self.optuna.trial.Trial(self.study, frozen._trial_id)  # noqa: SLF001 - the id Trial() takes
        values = config_values(self.spec, frozen.params)
        reported = set(frozen.intermediate_values)
        run = self._run_of(frozen)
        if run is None:
            return self.start_new(trial, slot, how="run again: it had not started its run when the sweep ended")
        status = run.read_status()
        state = run.state(status)
        why = stop_why(status.get("message")) or ""
        if state in LIVE_STATES:
            self.begin(trial, attach(run), slot, values, "followed again: its run outlived the sweep process", reported)
            return True
        if state in ("finished", "failed") or why.startswith(PRUNED_AT):
            pruned_at = int(why.rsplit(" ", 1)[-1]) if why.startswith(PRUNED_AT) else None
            self.begin(trial, attach(run), slot, values, f"read back: its run ended ({state}) while the sweep was away",
                       reported, pruned_at)
            return True
        checkpoint = run.last_good_checkpoint()
        if checkpoint is None:  # it trained nothing it kept: its folder goes, the trial starts over
            shutil.rmtree(run.path, ignore_errors=True)
            return self.start_new(trial, slot, how=f"run again from the start: its run {state} before its first "
                                                   "checkpoint")
        try:
            handle = start(load_preset(str(run.config_path)), self.sweep.trials, resume=checkpoint, env=slot.env())
        except USER_ERRORS as exc:
            self.tell(trial, Outcome("failed", None, f"could not resume: {exc}"), values, str(run.path), 0)
            return False
        epoch = status.get("epoch", "?")
        self.begin(trial, handle, slot, values, f"resumed from {checkpoint.name} at epoch {epoch} in its own folder",
                   reported)
        return True

    def _run_of(self, frozen: Any) -> RunDir | None:
        """The trial's run folder: as its attribute names it, else by its number (started, not yet marked)."""
        named = frozen.user_attrs.get("run_dir")
        if named and Path(named, "config.toml").is_file():
            return RunDir(named)
        if not self.sweep.trials.is_dir():
            return None
        found = sorted(p for p in self.sweep.trials.iterdir() if p.name.endswith(f"-t{frozen.number:03d}")
                       and (p / "config.toml").is_file())
        return RunDir(found[-1]) if found else None

    # == following trials ====================================================================

    def on_update(self, active: Active, update: Update) -> None:
        """One update of a trial's run: epochs reported (and the pruner asked), or its end told."""
        match update:
            case Snapshot(history=history):
                for row in history.rows:
                    self.epoch(active, int(row.get("epoch", 0)), metric_of(row, self.spec.metric))
            case Events(events=events):
                for event in events:
                    if isinstance(event, EpochEnded):
                        self.epoch(active, event.epoch, metric_of(event.metrics(), self.spec.metric))
            case Ended(finished=finished):
                self.finish(active, outcome(active, finished, self.spec.metric, self.stopping), finished.epoch)
            case Lost(why=why):
                self.finish(active, lost(why), max(active.values, default=0))

    def epoch(self, active: Active, epoch: int, value: float | None) -> None:
        """An epoch's metric: to the study once, then the pruner's verdict (a stop with the why if it prunes)."""
        if value is None or epoch < 1:
            return
        active.values[epoch] = value
        if epoch in active.reported:
            return
        active.trial.report(value, epoch)
        active.reported.add(epoch)
        self.log.emit("report", number=active.number, epoch=epoch, value=value)
        if active.pruned_at is None and not self.stopping and active.trial.should_prune():
            active.pruned_at = epoch
            active.send_stop(f"{PRUNED_AT} {epoch}")
            self.log.emit("trial", number=active.number, state="pruning", reason=f"{PRUNED_AT} {epoch}")

    def finish(self, active: Active, out: Outcome, epochs: int) -> None:
        """A trial's run has ended: free its slot and tell the study (an interrupted one stays running)."""
        active.cancel.set()
        del self.active[active.number]
        self.free.append(active.slot)
        self.free.sort(key=lambda s: s.index)
        self.tell(active.trial, out, None, str(active.handle.path), epochs)

    def tell(self, trial: Any, out: Outcome, values: dict[str, Any] | None, run: str | None, epochs: int) -> None:
        """The study told (and the events written) how a trial ended."""
        trial.set_user_attr("reason", out.reason)
        trial.set_user_attr("epochs", epochs)
        if out.state == "interrupted":
            self.log.emit("trial", number=trial.number, state="interrupted", reason=out.reason, epochs=epochs, run=run)
            return
        state = {"complete": self.states.COMPLETE, "pruned": self.states.PRUNED, "failed": self.states.FAIL}[out.state]
        frozen = self.study.tell(trial, out.value if out.state == "complete" else None, state=state,
                                 skip_if_finished=True)
        self.log.emit("trial", number=trial.number, state=out.state, value=frozen.value, epochs=epochs,
                      reason=out.reason, run=run, **({"params": values} if values else {}))
        if out.state == "failed":
            self.failed_in_a_row += 1
            if self.failed_in_a_row >= FAILURES_BEFORE_GIVING_UP and not self._completed():
                self.gave_up = (f"the first {self.failed_in_a_row} trials failed (the last: {out.reason}); fix the "
                                f"preset and resume: tui-trainer resume {self.sweep.path}")
        else:
            self.failed_in_a_row = 0
        if out.state == "complete":
            self.note_best()
        self.write_status()

    def _completed(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False, states=(self.states.COMPLETE,))

    def note_best(self) -> None:
        """A best trial that changed: an event and the status say so."""
        best = self.best()
        if best is not None and best["number"] != self.best_number:
            self.best_number = best["number"]
            self.log.emit("best", **best)

    def best(self) -> dict[str, Any] | None:
        """The study's best trial (any worker's), as plain values."""
        try:
            frozen = self.study.best_trial
        except ValueError:
            return None
        return {"number": frozen.number, "value": frozen.value, "params": config_values(self.spec, frozen.params),
                "run": frozen.user_attrs.get("run_dir")}

    # == stopping and ending ==================================================================

    def begin_stop(self) -> None:
        """Stop every running trial (each saves last.pt and says the sweep was stopped); what is taken back later
        goes on from there."""
        self.stopping = True
        self.sweep.write_status(state="stopping")
        self.log.emit("stopping", running=sorted(self.active))
        for active in self.active.values():
            active.send_stop(SWEEP_STOPPED)

    def counts(self) -> dict[str, int]:
        """The study's trials by state (every worker's)."""
        counts: dict[str, int] = {}
        for t in self.study.get_trials(deepcopy=False):
            word = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(t.state.name, t.state.name.lower())
            counts[word] = counts.get(word, 0) + 1
        order = ("complete", "pruned", "failed", "running", "waiting")
        return dict(sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))

    def write_status(self, **extra: Any) -> None:
        """Counts, the running trials and the best one, for ``sweeps`` and the app."""
        counts = self.counts()
        done = sum(counts.get(k, 0) for k in ("complete", "pruned", "failed"))
        self.sweep.write_status(done=done, trials=self.spec.trials, counts=counts, running=sorted(self.active),
                                best=self.best(), **extra)

    def ending(self) -> tuple[str, str]:
        """The sweep's end: (state, message); the best saved as a preset when asked."""
        counts = self.counts()
        told = ", ".join(f"{n} {k}" for k, n in counts.items())
        if self.stopping:
            left = sorted(self.active)
            still = f" (trials {left} were still stopping)" if left else ""
            ended = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "running") or "none ended yet"
            return "stopped", (f"{counts.get('running', 0)} trial(s) interrupted{still}, each saving last.pt; "
                               f"trials ended: {ended}; resume with: tui-trainer resume {self.sweep.path}")
        if self.gave_up:
            return "failed", self.gave_up
        best = self.best()
        if best is None:
            return "failed", f"no trial completed ({told})"
        shown = " ".join(f"{k}={_short(v)}" for k, v in best["params"].items())
        message = f"{told}; best trial {best['number']}: {self.spec.metric} {best['value']:.4g} ({shown})"
        if self.spec.save_best:
            message += "; " + self.save_best(self.spec.save_best)
        weights = importances(self.study)
        if weights:
            message += "; importance " + ", ".join(f"{k} {w:.2f}" for k, w in weights.items())
        return "finished", message

    def save_best(self, name: str) -> str:
        """The best trial's config as the user's preset ``name``: what was written, or why not."""
        best = self.best()
        if best is None:
            return "no best trial to save"
        try:
            _best, _spec, path = save_best(self.sweep, name, best)
        except (ConfigError, OSError) as exc:
            return f"the best was not saved as {name!r}: {exc}"
        return f"saved as preset {name} ({path})"


def _short(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.3g}"
    return str(value).replace(" ", "")
