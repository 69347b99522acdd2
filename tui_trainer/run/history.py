"""How a run's events are folded: one fold behind the console, the app and replay from events.jsonl.

Stdlib only. ``RunHistory.apply(event)`` folds one event into series (epochs, smoothed step loss,
per-layer gradient norms, learning-rate marks), the log, the latest progress and the outcome, and
returns which parts changed; ``describe(event)`` is the one human line an event makes, and
``progress_line(history, width)`` the progress text that fits ``width`` columns, whole-run
progress and ETA first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tui_trainer.run.controls import stop_why
from tui_trainer.run.events import (
    Boundary,
    CheckpointSaved,
    ClassResults,
    EpochEnded,
    Event,
    LogMessage,
    LrChanged,
    ParamValues,
    Paused,
    Reason,
    RunFinished,
    RunStarted,
    StartupTimed,
    StepLogged,
    decode,
    encode,
)
from tui_trainer.run.formats import format_number
from tui_trainer.run.smoothing import RunningMean


def hms(seconds: float) -> str:
    """0:00:00."""
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# -- one wording for where a run is and how it ended (the console, attach, stop, the app, checkpoint names) -------


def shown_epoch(complete: int, batch_in_epoch: int) -> int:
    """The epoch number the progress line shows: the epoch under way (``complete + 1``) once a step of it is
    done, else the epoch just completed (its line reads 100%), or epoch 1 before the first step."""
    return complete + 1 if batch_in_epoch or not complete else complete


def position(complete: int, batch_in_epoch: int, step: int | None = None) -> str:
    """Where a run is, said the same way everywhere: "in epoch 214 (213 complete), step 42600" while an epoch is
    under way, "after epoch 213, step 42560" between two epochs, "before epoch 1" before any step."""
    at = f", step {step}" if step is not None else ""
    if batch_in_epoch:
        return f"in epoch {complete + 1} ({complete} complete){at}"
    return f"after epoch {complete}{at}" if complete else f"before epoch 1{at}"


def end_line(reason: str, message: str) -> str:
    """How a run ended, in one line that never says its reason twice: "finished: completed 20 epochs",
    "failed: <message>", "stopped in epoch 214 (213 complete), step 42600" (a message that starts with the
    state word is the whole line, and so is a stop's why: "pruned at epoch 3; stopped in epoch 4 ...")."""
    state = Reason.parse(reason).state if reason in {r.value for r in Reason} else reason
    if message.split(" ", 1)[0].rstrip(":") == state or (state == "stopped" and stop_why(message)):
        return message
    return f"{state}: {message}"


@dataclass
class Series:
    """Epoch-level curves (one point per epoch)."""

    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)

    def add(self, row: dict) -> None:
        """One epoch's metrics row."""
        self.epochs.append(int(row["epoch"]))
        self.train_loss.append(float(row["train_loss"]))
        self.val_loss.append(float(row["val_loss"]))
        if row.get("val_acc") is not None:  # a user's loop may give val_acc alone: nan keeps the lists aligned
            self.train_acc.append(float(row["train_acc"]) if row.get("train_acc") is not None else float("nan"))
            self.val_acc.append(float(row["val_acc"]))

    def truncate(self, epochs_done: int) -> None:
        """Forget epochs after ``epochs_done`` (a resume from an earlier checkpoint replays them)."""
        keep = sum(1 for e in self.epochs if e <= epochs_done)
        acc_keep = keep if len(self.val_acc) == len(self.epochs) else min(keep, len(self.val_acc))
        del self.epochs[keep:], self.train_loss[keep:], self.val_loss[keep:]
        del self.train_acc[acc_keep:], self.val_acc[acc_keep:]


class RunHistory:
    """Everything the events of one run say so far."""

    def __init__(self, smoothing: float = 0.9) -> None:
        self.started: RunStarted | None = None
        self.series = Series()
        self.rows: list[dict] = []  # metrics rows, as in metrics.jsonl
        self.step_n: list[int] = []
        self.step_x: list[float] = []
        self.step_lr: list[float] = []  # the learning rate at each log interval
        self.step_elapsed: list[float] = []  # the run's training clock at each log interval
        self.step_loss = RunningMean(smoothing)
        self.grads: dict[str, tuple[list[float], list[float]]] = {}
        self.scalars: dict[str, tuple[list[int], list[float]]] = {}  # a user's loop's own step scalars: (steps, values)
        self.lr_marks: list[tuple[float, float]] = []
        self.log: list[tuple[str, str]] = []  # (level, line)
        self.alarms: list[str] = []
        self.last_step: StepLogged | None = None
        self.boundary: Boundary | None = None
        self.results: ClassResults | None = None
        self.params: ParamValues | None = None
        self.paused = False
        self.finished: RunFinished | None = None
        self.last_checkpoint: str | None = None
        self.device = ""
        self._session_start: tuple[float, float] | None = None  # (elapsed, done) when this process started

    # -- folding -------------------------------------------------------------------

    def apply(self, event: Event) -> set[str]:
        """Fold one event; returns the parts that changed (started, steps, epochs, grads, lr, log,
        alarms, boundary, results, params, paused, finished)."""
        changed = set()
        match event:
            case RunStarted():
                self._started(event)
                changed |= {"started", "steps", "epochs", "grads", "lr"}
            case StepLogged():
                self._step(event)
                changed.add("steps")
                if event.layers:
                    changed.add("grads")
            case EpochEnded():
                row = event.metrics()
                self.rows.append(row)
                self.series.add(row)
                changed.add("epochs")
            case LrChanged():
                self.lr_marks.append((event.x, event.lr))
                changed.add("lr")
            case Paused():
                self.paused = event.paused
                changed.add("paused")
            case Boundary():
                self.boundary = event
                changed.add("boundary")
            case ClassResults():
                self.results = event
                changed.add("results")
            case ParamValues():
                self.params = event
                changed.add("params")
            case CheckpointSaved():
                if event.kind == "last":
                    self.last_checkpoint = event.path
            case RunFinished():
                self.finished = event
                self.paused = False
                if event.last_checkpoint:
                    self.last_checkpoint = event.last_checkpoint
                changed.add("finished")
            case LogMessage() if event.level == "warning":
                self.alarms.append(event.text)
                changed.add("alarms")
        line = describe(event, self.started.epochs if self.started else None)
        if line is not None:
            self.log.append((getattr(event, "level", "info"), line))
            changed.add("log")
        return changed

    def _started(self, e: RunStarted) -> None:
        self.started, self.finished, self.paused = e, None, False
        self.device = e.device
        self.series.truncate(e.start_epoch)
        self.rows = [r for r in self.rows if r.get("epoch", 0) <= e.start_epoch]
        if not self.rows and e.prior:  # resumed into a fresh folder: the checkpoint brought the curve
            for row in e.prior:
                if row.get("epoch", 0) <= e.start_epoch:
                    self.rows.append(dict(row))
                    self.series.add(row)
        keep = sum(1 for n in self.step_n if n <= e.start_step)
        del self.step_n[keep:], self.step_x[keep:], self.step_lr[keep:], self.step_elapsed[keep:]
        self.step_loss.truncate(keep)
        for xs, ys in self.grads.values():
            del xs[keep:], ys[keep:]
        for steps, values in self.scalars.values():
            kept = sum(1 for n in steps if n <= e.start_step)
            del steps[kept:], values[kept:]
        until = self.step_x[-1] if keep else float(e.start_epoch)
        self.lr_marks = [(x, lr) for x, lr in self.lr_marks if x <= until]
        self.last_step = None
        self._session_start = None

    def _step(self, e: StepLogged) -> None:
        self.last_step = e
        x = e.epoch - 1 + e.batch / max(e.batches, 1)
        self.step_n.append(e.step)
        self.step_x.append(x)
        self.step_lr.append(e.lr)
        self.step_elapsed.append(e.elapsed_s)
        self.step_loss.add(e.loss)
        for layer in e.layers:
            xs, ys = self.grads.setdefault(layer.name, ([], []))
            xs.append(x)
            ys.append(layer.grad_norm)
        for name, value in e.extra:
            steps, values = self.scalars.setdefault(name, ([], []))
            steps.append(e.step)
            values.append(value)
        if self._session_start is None:
            self._session_start = (e.elapsed_s, self.done_epochs() or 0.0)

    # -- a snapshot of the fold (history.json: attaching to a long run reads it, not every event) ---------

    _EVENTS = ("started", "last_step", "boundary", "results", "params", "finished")
    _PLAIN = ("rows", "step_n", "step_x", "step_lr", "step_elapsed", "lr_marks", "log", "alarms", "paused",
              "last_checkpoint", "device",
              "_session_start")

    def to_dict(self) -> dict[str, Any]:
        """Everything folded so far, as JSON-ready values (events in their own codec): ``from_dict`` of it
        folds on exactly as this history does."""
        out: dict[str, Any] = {name: getattr(self, name) for name in self._PLAIN}
        out.update({name: None if (e := getattr(self, name)) is None else encode(e) for name in self._EVENTS})
        out["series"] = vars(self.series)
        out["grads"] = self.grads
        out["scalars"] = self.scalars
        out["step_loss"] = {"beta": self.step_loss.beta, "avg": self.step_loss.average, "values": self.step_loss.values}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunHistory:
        """The history ``to_dict`` described (ValueError or KeyError on anything else)."""
        history = cls(smoothing=float(data["step_loss"]["beta"]))
        for name in cls._PLAIN:
            setattr(history, name, data[name])
        history.rows = [dict(r) for r in data["rows"]]
        history.lr_marks = [tuple(m) for m in data["lr_marks"]]
        history.log = [tuple(line) for line in data["log"]]
        history._session_start = tuple(data["_session_start"]) if data["_session_start"] else None
        for name in cls._EVENTS:
            setattr(history, name, None if data[name] is None else decode(data[name]))
        history.series = Series(**data["series"])
        history.grads = {k: (list(xs), list(ys)) for k, (xs, ys) in data["grads"].items()}
        history.scalars = {k: (list(xs), list(ys)) for k, (xs, ys) in data.get("scalars", {}).items()}
        history.step_loss.average = float(data["step_loss"]["avg"])
        history.step_loss.values = list(data["step_loss"]["values"])
        return history

    # -- reading -----------------------------------------------------------------------

    def done_epochs(self) -> float | None:
        """Epochs done, with the fraction of the current one (None before the first step)."""
        s = self.last_step
        if s is None:
            return float(self.series.epochs[-1]) if self.series.epochs else None
        return s.epoch - 1 + s.batch / max(s.batches, 1)

    def eta(self) -> float | None:
        """Seconds left for the whole run, from this process's own pace (None until it can tell)."""
        s, st, start = self.last_step, self.started, self._session_start
        done = self.done_epochs()
        if s is None or st is None or start is None or done is None or st.epochs <= 0:
            return None
        spent, progressed = s.elapsed_s - start[0], done - start[1]
        if progressed <= 0 or spent <= 0:
            return None
        return spent / progressed * max(st.epochs - done, 0.0)

    def best(self) -> tuple[str, float] | None:
        """(monitor, best value) so far."""
        monitor = self.started.monitor if self.started else "val_loss"
        values = self.series.val_acc if monitor == "val_acc" else self.series.val_loss
        if not values:
            return None
        return monitor, (max(values) if monitor == "val_acc" else min(values))


def describe(event: Event, epochs: int | None = None) -> str | None:
    """The line an event adds to the log (None for events that only feed charts); ``epochs``: the run's
    total, shown beside each epoch's number."""
    match event:
        case RunStarted() if event.source == "track":
            return f"tracking your own loop {event.preset} on {event.device}: {event.n_params:,} params -> {event.run_dir}"
        case RunStarted():
            verb = "resuming" if event.start_epoch or event.start_step else "training"
            ranks = f" x {event.world_size} ranks" if event.world_size > 1 else ""
            return (f"{verb} {event.preset} on {event.device}{ranks}: {event.n_params:,} params, "
                    f"{event.train_samples:,} train / {event.val_samples:,} val samples -> {event.run_dir}")
        case EpochEnded():
            n = format_number  # 4 significant digits, never cut: a regression loss of 4.19e-05 is not 0.0000
            acc = f" train_acc {n(event.train_acc)} val_acc {n(event.val_acc)}" if event.val_acc is not None else ""
            best = " *" if event.is_best else ""
            of = f"/{epochs}" if epochs else ""  # 0: a user's loop that did not say
            lr = f" lr {event.lr:.3g}" if math.isfinite(event.lr) else ""  # a user's loop may not say its rate
            speed = f" {event.samples_per_s:,.0f} samples/s" if event.samples_per_s > 0 else ""  # nor its batch size
            return (f"epoch {event.epoch}{of} train_loss {n(event.train_loss)} val_loss {n(event.val_loss)}{acc}"
                    f"{lr} {event.epoch_seconds:.2f}s{speed}{best}")
        case LogMessage():
            return event.text if event.level == "info" else f"{event.level}: {event.text}"
        case CheckpointSaved() if event.kind == "manual":
            return f"checkpoint saved: {event.path}"
        case StartupTimed():  # "first step 3.21 s after start: start-up 1.80, device 0.00, data 0.52, ..."
            since = "start" if event.phases and event.phases[0][0] == "start-up" else "setup began"
            parts = ", ".join(f"{name} {seconds:.2f}" for name, seconds in event.phases)
            return f"first step {event.total:.2f} s after {since}: {parts} (seconds)"
        case LrChanged():
            return f"learning rate set to {event.lr:g} at step {event.step}"
        case Paused():
            return f"{'paused' if event.paused else 'resumed'} at epoch {event.epoch}, step {event.step}"
        case RunFinished():
            where = f"; last checkpoint {event.last_checkpoint}" if event.last_checkpoint else ""
            return f"{end_line(event.reason, event.message)}{where}"
    return None


def memory_line(step: StepLogged | None) -> str | None:
    """Device memory at the last log interval: "1.20 GiB in use, 70.1 GiB free" on one GPU; under DDP
    every rank's GPU in rank order, short enough for 8 beside the buttons: "GiB in use 1.20 1.19, free
    ≥ 70.1" (the least free of them). None off CUDA."""
    if step is None or step.memory is None:
        return None
    if len(step.memory_ranks) > 1:
        used = " ".join(f"{u / 2**30:.2f}" for u, _ in step.memory_ranks)
        return f"GiB in use {used}, free ≥ {min(f for _, f in step.memory_ranks) / 2**30:.1f}"
    used, free = step.memory
    return f"{used / 2**30:.2f} GiB in use, {free / 2**30:.1f} GiB free"


def _bar(fraction: float, width: int) -> str:
    full = int(max(0.0, min(fraction, 1.0)) * width)
    return "█" * full + "░" * (width - full)


def progress_line(history: RunHistory, width: int = 120, bar: bool = True) -> str:
    """The progress text for ``width`` columns: the whole run's progress and ETA first; the loss, speed,
    elapsed time and this epoch's share are dropped, in that order from the end, as space runs out."""
    st, s = history.started, history.last_step
    if history.finished is not None:
        f = history.finished
        best = history.best()
        parts = [end_line(f.reason, f.message), f"best {best[0]} {format_number(best[1])}" if best else "",
                 "r: new run"]
        return _fit_parts([p for p in parts if p], width)
    if st is None:
        return "starting…"
    of = f"/{st.epochs}" if st.epochs > 0 else ""  # 0: a user's own loop that did not say how many
    if s is None:
        return _fit([f"epoch {st.start_epoch + 1}{of}", "setting up…" if not history.paused else "paused"], width)
    done = history.done_epochs() or 0.0
    eta = history.eta()
    frac = s.batch / max(s.batches, 1)
    head = f"epoch {s.epoch}{of}"
    pct = f"{done / max(st.epochs, 1):4.0%}" if st.epochs > 0 else f"step {s.step}"
    parts = [head]
    optional = [f"ETA {hms(eta)}" if eta is not None else "ETA …", f"loss {format_number(s.loss)}",
                f"{s.samples_per_s:,.0f} samples/s", f"elapsed {hms(s.elapsed_s)}", f"this epoch {frac:.0%}"]
    if s.samples_per_s <= 0:  # a user's own loop that did not say its batch size
        optional.remove(optional[2])
    if st.epochs <= 0:
        optional.remove(optional[0])
    if history.paused:
        optional.insert(0, "PAUSED")
    fixed = len(head) + len(pct) + 2
    bar_width = 20 if width >= 100 else 10 if width >= 60 else 0
    for part in optional:
        if fixed + bar_width + 3 + len(part) + 2 > width:
            break
        parts.append(part)
        fixed += len(part) + 2
    run = f"{_bar(done / max(st.epochs, 1), bar_width)} {pct}" if bar and bar_width and st.epochs > 0 else pct.strip()
    return _fit([parts[0], run, *parts[1:]], width)


def _fit_parts(parts: list[str], width: int) -> str:
    """The first part, then as many of the others as fit whole."""
    kept = parts[:1]
    for part in parts[1:]:
        if len("  ".join([*kept, part])) <= width:
            kept.append(part)
    return _fit(kept, width)


def _fit(parts: list[str], width: int) -> str:
    text = "  ".join(parts)
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
