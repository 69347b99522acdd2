"""Run folders written by tests, and a fake run client for UI tests that are about what is drawn, not processes.

``write_run`` writes a whole run folder at once from made-up numbers (the snapshot tests draw them).

``FakeClient`` is what ``make_app(client=...)`` takes in place of run/client.py: ``start`` creates the run's folder
as a run process would (``prepare_run``: config.toml, status.json) and writes its first events, but starts no
process; the test then writes the rest of the run's events with ``FakeRun`` (``step``, ``epoch``, ``emit``,
``finish``). The app follows that folder with its real follower, exactly as it follows a run process's. A
``FakeHandle`` answers commands the way a run does, with the events a run writes for them (pause, resume, step,
save, stop), so keys that steer a run can be tested without one.

Status files name another host and a pid above Linux's pid_max: a state is read as written, never checked against
a process (and the tests' clean-up never signals one).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tui_trainer.config import RunConfig
from tui_trainer.run.client import RunHandle
from tui_trainer.run.eventlog import EventWriter
from tui_trainer.run.events import (
    CheckpointSaved,
    EpochEnded,
    Event,
    LayerHealth,
    Paused,
    RunFinished,
    RunStarted,
    StepLogged,
)
from tui_trainer.run.folder import RunDir, prepare_run

FAKE_HOST = "fake-host (no process: tests/fakes.py)"
NO_PID = 2**22 + 1  # above Linux's pid_max: never a process
STARTED = 1_767_225_600.0  # 2026-01-01 00:00 UTC: every time in a status file counts from here
BATCHES, LOG_EVERY, SAMPLES = 10, 5, 320  # 320 training samples in batches of 32, logged twice an epoch


def write_run(runs: Path, name: str, cfg: RunConfig, epochs_done: int, finished: bool, lr_scale: float = 1.0) -> RunDir:
    """A run folder as a run process leaves it, from made-up numbers: ``epochs_done`` epochs of falling loss,
    and half of the next one unless ``finished``."""
    run = RunDir(runs / name)
    run.checkpoints.mkdir(parents=True)
    prepare_run(cfg, folder=run.path)
    writer = EventWriter(run.events_path)
    epochs = cfg.train.epochs
    writer.emit(RunStarted(
        run_dir=str(run.path), device="cpu: 2 cores (snapshot)", n_params=4482, n_trainable=4482, epochs=epochs,
        start_epoch=0, steps_per_epoch=BATCHES, train_samples=SAMPLES, val_samples=80, task="classification",
        summary="(model summary)", preset=cfg.name))
    seconds = 0.0
    best = math.inf
    for epoch in range(1, epochs_done + 2):
        last = epoch == epochs_done + 1
        if last and finished:
            break
        for batch in range(LOG_EVERY, BATCHES + 1, LOG_EVERY):
            if last and batch > LOG_EVERY:
                break
            x = epoch - 1 + batch / BATCHES
            seconds += 0.25
            writer.emit(StepLogged(
                epoch=epoch, step=(epoch - 1) * BATCHES + batch, batch=batch, batches=BATCHES,
                loss=round(0.7 * math.exp(-0.35 * lr_scale * x) + 0.05 * math.sin(3 * x) ** 2, 4), lr=0.01 * lr_scale,
                samples_per_s=640.0, elapsed_s=seconds,
                layers=(LayerHealth("layers.1", 0.5 / x, 4.0, 1e-3), LayerHealth("layers.3", 0.3 / x, 6.0, 8e-4))))
        if last:
            break
        val_loss = round(0.65 * math.exp(-0.3 * lr_scale * epoch) + 0.04, 4)
        end = EpochEnded(
            epoch=epoch, step=epoch * BATCHES, train_loss=round(0.7 * math.exp(-0.35 * lr_scale * epoch) + 0.02, 4),
            val_loss=val_loss, train_acc=round(min(0.5 + 0.08 * lr_scale * epoch, 0.99), 4),
            val_acc=round(min(0.48 + 0.075 * lr_scale * epoch, 0.98), 4), lr=0.01 * lr_scale, epoch_seconds=0.5,
            samples_per_s=640.0, is_best=val_loss < best)
        best = min(best, val_loss)
        writer.emit(end)
        run.append_metrics(end.metrics())
        writer.emit(CheckpointSaved(str(run.last), "last", epoch, epoch * BATCHES))
    # another host: its state is read as written, its pid (above Linux's pid_max: no process) never looked up
    status = {"state": "running", "host": "snapshot-host (not this machine)", "pid": NO_PID, "preset": cfg.name,
              "epochs": epochs, "epoch": epochs_done, "monitor": "val_loss", "best": best, "created": STARTED,
              "started": STARTED, "updated": STARTED + seconds, "elapsed_s": seconds}
    if finished:
        end_event = RunFinished("completed", f"completed {epochs_done} epochs", epochs_done, epochs_done * BATCHES, best,
                                str(run.path), str(run.last), seconds)
        writer.emit(end_event)
        status.update(state="finished", reason="completed", message=end_event.message, ended=STARTED + seconds)
    writer.close()
    run.replace_status(status)
    return run


class FakeRun:
    """A run folder written by the test the way a run process writes it."""

    def __init__(self, run: RunDir, cfg: RunConfig) -> None:
        self.run, self.cfg = run, cfg
        self.writer = EventWriter(run.events_path)
        self.epoch_no, self.step_no, self.epochs_done, self.elapsed = 1, 0, 0, 0.0
        self.paused = False
        self.layers: tuple[str, ...] = ()

    # -- what a run process writes ----------------------------------------------------------

    def emit(self, *events: Event) -> None:
        """Append events to events.jsonl."""
        for event in events:
            self.writer.emit(event)

    def set_state(self, state: str, **status: Any) -> None:
        """status.json, as the run process replaces it."""
        current = self.run.read_status()
        self.run.replace_status({**current, "state": state, "host": FAKE_HOST, "pid": NO_PID, **status})

    def begin(self, layers: tuple[str, ...] = ("layers.1", "layers.3"), device: str = "cpu: fake (tests/fakes.py)") -> None:
        """The run is set up and trains: RunStarted (on ``device``, its device line), status running."""
        self.layers = layers
        self.set_state("running", started=0.0)
        self.emit(RunStarted(
            run_dir=str(self.run.path), device=device, n_params=4482, n_trainable=4482,
            epochs=self.cfg.train.epochs, start_epoch=0, steps_per_epoch=BATCHES, train_samples=320, val_samples=80,
            task=self.cfg.task, summary="(fake model summary)", preset=self.cfg.name))

    def step(self, n: int = 1) -> StepLogged:
        """``n`` logged steps of the epoch under way (the loss falls); returns the last."""
        for _ in range(n):
            self.step_no += 1
            batch = (self.step_no - 1) % BATCHES + 1
            self.epoch_no = (self.step_no - 1) // BATCHES + 1
            self.elapsed += 0.1
            x = self.step_no / BATCHES
            last = StepLogged(
                epoch=self.epoch_no, step=self.step_no, batch=batch, batches=BATCHES,
                loss=round(0.7 * math.exp(-0.3 * x) + 0.02, 4), lr=self.cfg.optimizer.lr, samples_per_s=640.0,
                elapsed_s=self.elapsed,
                layers=tuple(LayerHealth(name, 0.5 / x, 4.0, 1e-3) for name in self.layers))
            self.emit(last)
        return last

    def epoch(self) -> EpochEnded:
        """Steps to the end of the epoch under way, then its EpochEnded (and last.pt's CheckpointSaved)."""
        e = self.epochs_done + 1
        if e * BATCHES > self.step_no:
            self.step(e * BATCHES - self.step_no)
        end = EpochEnded(epoch=e, step=self.step_no, train_loss=round(0.6 * math.exp(-0.3 * e) + 0.02, 4),
                         val_loss=round(0.65 * math.exp(-0.3 * e) + 0.04, 4), train_acc=round(min(0.5 + 0.08 * e, 0.99), 4),
                         val_acc=round(min(0.48 + 0.075 * e, 0.98), 4), lr=self.cfg.optimizer.lr, epoch_seconds=1.0,
                         samples_per_s=640.0, grad_norms=tuple((name, 0.5 / e) for name in self.layers))
        self.emit(end, CheckpointSaved(str(self.run.last), "last", e, self.step_no))
        self.run.append_metrics(end.metrics())
        self.epochs_done = e
        self.set_state("running", epoch=e)
        return end

    def finish(self, reason: str = "completed", message: str | None = None) -> RunFinished:
        """The run's end: RunFinished, then its status (the order a run process writes them)."""
        done = self.epochs_done
        end = RunFinished(reason, message or f"{reason} {done} epochs", done, self.step_no, None, str(self.run.path),
                          str(self.run.last), self.elapsed)
        self.emit(end)
        self.writer.close()
        self.set_state({"completed": "finished", "stopped": "stopped"}.get(reason, "failed"), reason=reason,
                       message=end.message)
        return end

    # -- its control endpoint ----------------------------------------------------------------------

    def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        """What a run answers to ``cmd``, having written the events it writes for it."""
        if cmd in ("pause", "resume"):
            self.paused = cmd == "pause"
            self.emit(Paused(self.paused, self.epoch_no, self.step_no))
            self.set_state("paused" if self.paused else "running")
            return {"ok": True, "message": f"{cmd}d at step {self.step_no}"}
        if cmd == "step" and self.paused:
            self.step()
            self.emit(Paused(True, self.epoch_no, self.step_no))
            return {"ok": True, "message": f"stepped to {self.step_no}"}
        if cmd == "save":
            path = self.run.manual(self.epoch_no, self.step_no)
            self.emit(CheckpointSaved(str(path), "manual", self.epoch_no, self.step_no))
            return {"ok": True, "message": f"saved {path.name}", "path": str(path)}
        if cmd == "stop":
            self.finish("stopped", f"stopped in epoch {self.epoch_no} at step {self.step_no}")
            return {"ok": True, "message": f"stopping at step {self.step_no}; saving last.pt"}
        return {"ok": False, "error": f"the fake run does not know {cmd!r}"}


class FakeHandle(RunHandle):
    """A handle on a FakeRun: commands go to it, not to an endpoint."""

    def __init__(self, fake: FakeRun, resumed: bool = False) -> None:
        super().__init__(fake.run, None, resumed)
        self.fake = fake
        self.sent: list[str] = []

    def send(self, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        self.sent.append(cmd)
        return self.fake.command(cmd, **args)

    def stop(self, timeout: float = 60.0) -> tuple[str, str]:
        said = str(self.send("stop").get("message", ""))
        return self.state(), said


class FakeClient:
    """``make_app(client=FakeClient())``: runs started by the app are FakeRuns (``runs``, in order)."""

    def __init__(self, layers: tuple[str, ...] = ("layers.1", "layers.3"), device: str = "cpu: fake (tests/fakes.py)") -> None:
        self.layers = layers  # the layers whose gradient norms the fake runs log
        self.device = device  # the device line of the fake runs' RunStarted
        self.runs: list[FakeRun] = []

    def start(self, cfg: RunConfig, runs_dir: Path | str, resume: Path | None = None, *,
              paused: bool = False) -> FakeHandle:
        fake = FakeRun(prepare_run(cfg, runs_dir, resume), cfg)
        fake.begin(self.layers, self.device)
        if paused:  # as the runner's --paused: one step, then it holds
            fake.step()
            fake.command("pause")
        self.runs.append(fake)
        return FakeHandle(fake, resumed=resume is not None)

    def attach(self, run: RunDir) -> RunHandle:
        for fake in self.runs:
            if fake.run.path == run.path:
                return FakeHandle(fake)
        return RunHandle(run)

    @property
    def last(self) -> FakeRun:
        """The run started last."""
        return self.runs[-1]
