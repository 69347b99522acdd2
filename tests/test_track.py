"""A user's own loop as a run (run/track.py, run/lightning.py): real loops in their own processes, followed by the one
follower, steered through the real endpoint, and read by runs, compare, export, evaluate and the app.

Two loops are used: examples/plain_loop.py (the lecture's Fashion-MNIST MLP on a small synthetic set, with its model
and optimizer handed over) and OWN_LOOP below, a loop without torch that hands nothing over (it starts in a
fraction of a second, and proves the API needs no torch). Lightning's tests skip when it is not installed.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.test_cli import run_main
from tui_trainer.run.endpoint import send
from tui_trainer.run.eventlog import EventReader
from tui_trainer.run.events import (
    CheckpointSaved,
    EpochEnded,
    LogMessage,
    LrChanged,
    Paused,
    RunFinished,
    RunStarted,
    StepLogged,
)
from tui_trainer.run.folder import RunDir, list_runs
from tui_trainer.run.follow import Ended, Events, Lost, follow

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent
PLAIN = ROOT / "examples" / "plain_loop.py"
LIGHTNING = ROOT / "examples" / "lightning_loop.py"

OWN_LOOP = '''
import sys, time
from tui_trainer.run import track

mode, runs = sys.argv[1], sys.argv[2]
folder = sys.argv[3] if len(sys.argv) > 3 else None

def on_save(path):
    with open(path, "w") as fh:
        fh.write("my own checkpoint")
    return path

run = track.init("own", config={"mode": mode, "hidden": [8, 4], "note": None}, runs_dir=runs, log_every=2,
                 on_save=on_save if mode == "hook" else None, steps_per_epoch=10, folder=folder)
step, loss = 0, 2.0
while not run.should_stop:
    step += 1
    loss *= 0.99
    run.log(step, loss=loss, lr=0.5, seen=float(step))
    if step % 10 == 0:
        run.epoch(step // 10, train_loss=loss, val_loss=loss * 1.1, val_acc=min(0.5 + step / 1000, 1.0))
    time.sleep(0.01)  # its "training step"
run.finish()
'''


# -- helpers ---------------------------------------------------------------------------------


def start(tmp_path: Path, args: list[str], runs: Path, name: str) -> tuple[subprocess.Popen, RunDir]:
    """A loop in its own process (its own session: conftest ends it if a test fails half-way), once it trains; its
    run is the folder under ``runs`` whose name ends with ``name``."""
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - the child's output, read when a test fails
    proc = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    found = wait_for(lambda: [r for r in list_runs(runs) if r.name.endswith(name)] or proc.poll() is not None,
                     what=f"{name}'s run folder")
    assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
    run = found[0]
    wait_for(lambda: run.state() == "running", what=f"{name} running")
    return proc, run


def own_loop(tmp_path: Path, mode: str, runs: Path, folder: Path | None = None) -> tuple[subprocess.Popen, RunDir]:
    """OWN_LOOP in its own process: ``mode`` hook (an on_save) or none; in ``folder`` if given."""
    script = tmp_path / "own_loop.py"
    script.write_text(OWN_LOOP)
    more = [str(folder)] if folder is not None else []
    return start(tmp_path, [str(script), mode, str(runs), *more], runs, folder.name if folder is not None else "own")


class Follower:
    """The one follower (run/follow.py) on a thread: every event it yields, and how it ended."""

    def __init__(self, run: RunDir) -> None:
        self.events: list = []
        self.end: Ended | Lost | None = None
        self._stop = False
        self.thread = threading.Thread(target=self._follow, args=(run,), daemon=True)
        self.thread.start()

    def _follow(self, run: RunDir) -> None:
        for update in follow(run, cancelled=lambda: self._stop, period=0.05):
            if isinstance(update, Events):
                self.events.extend(update.events)
            elif isinstance(update, (Ended, Lost)):
                self.end = update

    def of(self, kind: type) -> list:
        return [e for e in list(self.events) if isinstance(e, kind)]

    def close(self) -> None:
        self._stop = True
        self.thread.join(5)


def clean_events(run: RunDir) -> list:
    """Every event of the run, asserting that no line of events.jsonl is torn or unreadable."""
    reader = EventReader(run.events_path)
    events = reader.read()
    assert reader.skipped == 0 and reader.whole_offset == run.events_path.stat().st_size
    return events


# -- a plain loop with its model and optimizer handed over --------------------------------------


@pytest.mark.slow
def test_the_example_loop_is_followed_and_every_key_acts_in_it(tmp_path, capsys):
    runs = tmp_path / "runs"
    proc, run = start(tmp_path, [str(PLAIN), "--synthetic", "1200", "--epochs", "1000", "--batch-size", "40",
                                 "--log-every", "3", "--runs-dir", str(runs), "--name", "steered"], runs, "steered")
    follower = Follower(run)
    try:
        wait_for(lambda: follower.of(StepLogged), what="a logged step")
        started = follower.of(RunStarted)[0]
        assert started.source == "track" and started.preset == "plain_loop.py" and started.n_params == 669_706
        assert started.steps_per_epoch == 24 and started.epochs == 1000

        reply = send(run, "set_lr", lr=0.0123)  # l: every group, logged, marked, visible in the next logged lr
        assert reply["ok"] and reply["message"].startswith("learning rate set to 0.0123 "), reply
        mark = wait_for(lambda: follower.of(LrChanged), what="the lr mark")[0]
        assert mark.lr == 0.0123
        after = wait_for(lambda: [e for e in follower.of(StepLogged) if e.step > mark.step], what="a step after it")
        assert after[0].lr == 0.0123
        assert all(s.lr == 0.001 for s in follower.of(StepLogged) if s.step <= mark.step)
        assert after[0].layers and [layer.name for layer in after[0].layers] == ["0", "2", "4"]

        reply = send(run, "save")  # c: the weights, as the tool writes them; evaluate reads them
        assert reply["ok"], reply
        path = Path(reply["path"])
        assert path.parent == run.checkpoints and path.name.startswith("manual-")
        from tui_trainer.engine.checkpoint import load_checkpoint

        ck = load_checkpoint(path)  # weights_only=True
        assert ck["source"] == "track" and ck["config"]["name"] == "steered" and ck["config"]["lr"] == 0.001
        assert sorted(ck["model"]) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]
        assert ck["optimizer"]["param_groups"][0]["lr"] == 0.0123
        code, out, err = run_main(capsys, "evaluate", str(path))
        assert code == 0, err
        assert "saved by your own loop (plain_loop.py)" in out and "669,706 in 6 tensors, all finite" in out
        code, out, err = run_main(capsys, "resume", str(path))  # what cannot apply says so in one line
        assert code == 2 and "saved by your own training loop" in err and len(err.splitlines()) == 1

        reply = send(run, "pause")  # p: the loop waits in run.log
        assert reply["ok"] and "paused" in reply["message"]
        held = wait_for(lambda: follower.of(Paused), what="Paused")[0]
        wait_for(lambda: run.state() == "paused", what="status paused")
        reply = send(run, "step")  # n: one step, then it holds again
        assert reply["ok"] and reply["message"].startswith("one step"), reply
        again = wait_for(lambda: [p for p in follower.of(Paused) if p.paused and p.step > held.step], what="held again")
        assert again[0].step == held.step + 1
        assert any(s.step == held.step + 1 for s in follower.of(StepLogged))  # each single step is drawn
        reply = send(run, "resume")
        assert reply["ok"], reply
        wait_for(lambda: [s for s in follower.of(StepLogged) if s.step > held.step + 3], what="training again")

        reply = send(run, "stop")  # s: the loop ends where it checks should_stop; last.pt saved
        assert reply["ok"] and "should_stop" in reply["message"], reply
        assert proc.wait(120) == 0, (tmp_path / "steered.log").read_text()
        wait_for(lambda: follower.end is not None, what="the follower's end")
    finally:
        follower.close()
        if proc.poll() is None:
            proc.kill()
    assert isinstance(follower.end, Ended) and follower.end.finished.reason == "stopped"
    assert run.state() == "stopped" and run.last.is_file()
    assert load_checkpoint(run.last)["kind"] == "last"
    events = clean_events(run)
    assert [e.kind for e in events if isinstance(e, CheckpointSaved)] == ["manual", "last"]
    assert run.read_status()["last_checkpoint"] == str(run.last)


# -- a loop that hands nothing over (and imports no torch) ----------------------------------------


@pytest.mark.parametrize("mode", ["hook", "none"])
def test_a_loop_without_model_saves_its_own_way_or_says_it_cannot(tmp_path, mode):
    runs = tmp_path / "runs"
    proc, run = own_loop(tmp_path, mode, runs)
    try:
        wait_for(lambda: any(isinstance(e, StepLogged) for e in run.read_events()[0]), what="a step")
        reply = send(run, "save")
        if mode == "hook":  # on_save(path): the loop's own checkpoint, recorded like the tool's
            assert reply["ok"] and Path(reply["path"]).read_text() == "my own checkpoint"
        else:
            assert not reply["ok"] and reply["message"] == ("no model and no on_save were handed to track.init: this "
                                                            "loop saves its own way")
        reply = send(run, "set_lr", lr=0.1)
        assert not reply["ok"] and "no optimizer was handed to track.init" in reply["message"]
        assert send(run, "stop")["ok"]
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert run.state() == "stopped"
    events = clean_events(run)
    saved = [e for e in events if isinstance(e, CheckpointSaved)]
    assert [e.kind for e in saved] == (["manual", "last"] if mode == "hook" else [])
    assert run.last.is_file() == (mode == "hook")
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert all(s.lr == 0.5 and dict(s.extra)["seen"] == s.step for s in steps)  # the loop's own numbers
    assert [s.step for s in steps][:3] == [1, 2, 4]  # log_every=2: the first call, then each interval's first


def test_a_killed_loop_reads_crashed_and_says_where_to_go_on(tmp_path, capsys):
    runs = tmp_path / "runs"
    proc, run = own_loop(tmp_path, "none", runs)
    wait_for(lambda: any(isinstance(e, EpochEnded) for e in run.read_events()[0]), what="an epoch")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert run.state() == "crashed"
    code, out, _ = run_main(capsys, "runs", "--runs-dir", str(runs))
    assert code == 0 and "crashed" in out
    assert f"{run.name} crashed (its process is gone without an end): it was trained by your own loop: go on from " \
           "your script" in out
    code, out, _ = run_main(capsys, "attach", str(run.path), "--plain")
    assert code == 1 and f"{run.name}: crashed" in out and "tracking your own loop own_loop.py" in out


def test_a_script_that_raises_reads_failed_and_one_that_returns_finished(tmp_path):
    """No finish() and no with block: the script's end decides (an uncaught exception: failed, with its line)."""
    script = tmp_path / "ends.py"
    script.write_text("import sys\nfrom tui_trainer.run import track\n"
                      "run = track.init('ends', runs_dir=sys.argv[2])\n"
                      "for step in range(1, 6):\n    run.log(step, loss=1.0)\n"
                      "if sys.argv[1] == 'raise':\n    raise ZeroDivisionError('division by zero in my loop')\n")
    for how, state in (("raise", "failed"), ("return", "finished")):
        runs = tmp_path / how
        proc = subprocess.run([sys.executable, str(script), how, str(runs)], capture_output=True, text=True)
        assert proc.returncode == (1 if how == "raise" else 0), proc.stderr
        run = list_runs(runs)[0]
        assert run.state() == state
        end = [e for e in clean_events(run) if isinstance(e, RunFinished)][0]
        if how == "raise":
            assert end.reason == "error" and end.message.endswith("ZeroDivisionError: division by zero in my loop")
        else:
            assert end.reason == "completed" and end.message == "your loop ended in epoch 1 (0 complete), step 5"


# -- bad input --------------------------------------------------------------------------------------


def test_bad_input_is_one_line_in_the_loop_and_never_a_corrupt_events_file(tmp_path):
    from tui_trainer.run import track
    from tui_trainer.run.compare import load_run

    with pytest.raises(track.TrackError, match=r"^runs directory .* is not writable: Not a directory; pass another "
                                               r"runs_dir to track.init$"):
        (tmp_path / "a-file").write_text("")
        track.init("x", runs_dir=tmp_path / "a-file" / "runs")
    with pytest.raises(track.TrackError, match="log_every must be a whole number >= 1, not 0"):
        track.init("x", runs_dir=tmp_path / "runs", log_every=0)
    with track.init("bad", config={"lr": 0.1}, runs_dir=tmp_path / "runs", log_every=1, steps_per_epoch=4) as run:
        with pytest.warns(track.TrackWarning, match=r"run.log: loss is nan: left out"):
            run.log(1, loss=float("nan"), acc=0.5)
        run.log(2, loss=1.0, acc=0.6)
        with pytest.raises(track.TrackError, match=r"^run.log: step 1 after step 2: steps only go forward"):
            run.log(1, loss=1.0)
        with pytest.raises(track.TrackError, match=r"^run.log: acc was logged as a number before, now as a str: a "
                                                   r"name keeps one type$"):
            run.log(3, acc="high")
        with pytest.raises(track.TrackError, match=r"^run.log: speed must be a number or a one-element tensor, not a "
                                                   r"list$"):
            run.log(4, speed=[1, 2])
        with pytest.warns(track.TrackWarning, match="val_loss is inf"):
            run.epoch(1, train_loss=1.0, val_loss=float("inf"))
        with pytest.raises(track.TrackError, match=r"^run.epoch\(1\): epochs count 1, 2, 3, ... and go up"):
            run.epoch(1, train_loss=1.0, val_loss=1.0)
        with pytest.raises(track.TrackError, match="epoch_seconds is the run's own column"):
            run.epoch(2, train_loss=1.0, val_loss=1.0, epoch_seconds=3.0)
        run.log(8, loss=0.5, acc=0.7)
        run.epoch(2, train_loss=0.5, val_loss=0.6, val_acc=0.7, recall=0.4)
        pid = os.fork()
        if pid == 0:  # the child: a process that inherited the run (a forked DataLoader worker) cannot write it
            try:
                run.log(9, loss=0.5)
            except track.TrackError as exc:
                os._exit(3 if "a child process (a DataLoader worker, multiprocessing) cannot write it" in str(exc) else 4)
            os._exit(0)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 3
    rundir = RunDir(run.path)
    events = clean_events(rundir)
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert [s.step for s in steps] == [1, 2, 8] and math.isnan(steps[0].loss) and dict(steps[0].extra) == {"acc": 0.5}
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    assert [e.epoch for e in epochs] == [2] and dict(epochs[0].extra) == {"recall": 0.4}  # epoch 1 was not finite
    assert any(isinstance(e, LogMessage) and "loss is nan" in e.text for e in events)
    data = load_run(rundir)  # the fold, compare and export read it whole
    assert [r["epoch"] for r in data.rows] == [2] and data.rows[0]["recall"] == 0.4
    assert rundir.state() == "finished"


def test_a_second_process_opening_the_same_folder_is_told_who_has_it(tmp_path):
    from tui_trainer.run import track

    folder = tmp_path / "runs" / "shared"
    proc, run = own_loop(tmp_path, "none", tmp_path / "runs", folder)
    try:
        assert run.path == folder
        with pytest.raises(track.TrackError, match=rf"^run folder {folder} is open in another process \(pid "
                                                   rf"{proc.pid}\): two writers would mix their lines"):
            track.init("again", runs_dir=tmp_path / "runs", folder=folder)
        assert send(run, "stop")["ok"] and proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with pytest.raises(track.TrackError, match=r"already holds a run \(stopped\): each run gets a folder of its own"):
        track.init("again", runs_dir=tmp_path / "runs", folder=folder)
    clean_events(run)


# -- runs, compare, export beside a preset's run -------------------------------------------------------


def test_runs_compare_and_export_read_a_tracked_loop_beside_a_presets_run(tmp_path, capsys):
    import torch
    from torch import nn

    from tui_trainer.run import track

    runs = tmp_path / "runs"
    code, _out, err = run_main(capsys, "train", "moons-mlp", "--epochs", "2", "--runs-dir", str(runs),
                               "--set", "data.n_samples=200")
    assert code == 0, err
    torch.manual_seed(0)
    x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with track.init("mine", config={"optimizer": {"lr": 0.1}, "hidden": [8]}, runs_dir=runs, model=model,
                    optimizer=optimizer, epochs=3, steps_per_epoch=4, batch_size=16, log_every=2) as run:
        step = 0
        for epoch in range(1, 4):
            for i in range(4):
                loss = nn.functional.cross_entropy(model(x[i * 16:(i + 1) * 16]), y[i * 16:(i + 1) * 16])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                run.log(step, loss=loss, grad_total=sum(p.grad.norm() for p in model.parameters()))
            with torch.no_grad():
                out = model(x)
                val_loss = nn.functional.cross_entropy(out, y)
                acc = (out.argmax(1) == y).float().mean()
            run.epoch(epoch, train_loss=loss, val_loss=val_loss, train_acc=acc, val_acc=acc, margin=0.25 * epoch)
    mine = RunDir(run.path)
    preset = next(r for r in list_runs(runs) if r.name.endswith("moons-mlp"))

    code, out, _ = run_main(capsys, "runs", "--runs-dir", str(runs))
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "finished" in rows[mine.name] and "3/3" in rows[mine.name] and "moons-mlp" in rows[preset.name]

    code, out, err = run_main(capsys, "compare", mine.name, preset.name, "--runs-dir", str(runs))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("2 classification runs, best by val_loss (*); differing: name, ")
    assert "more)" in lines[0]  # ~80 keys differ: the line names the first of them
    assert lines[2].startswith("name=mine ") and lines[3].startswith("name=moons-mlp ")  # named by a key both have
    assert "3/3" in lines[2] and "finished" in lines[2]

    code, out, err = run_main(capsys, "export", str(mine.path), "-o", str(tmp_path / "mine.csv"))
    assert code == 0, err
    import csv

    table = list(csv.DictReader((tmp_path / "mine.csv").open()))
    assert [float(r["margin"]) for r in table] == [0.25, 0.5, 0.75]  # the loop's own column
    assert [float(r["val_loss"]) for r in table] == [r["val_loss"] for r in mine.read_metrics()]
    pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    code, out, err = run_main(capsys, "export", str(mine.path), "--format", "tensorboard")
    assert code == 0, err
    tb = accumulator.EventAccumulator(str(mine.path / "tensorboard"))
    tb.Reload()
    tags = set(tb.Tags()["scalars"])
    assert {"loss/val", "accuracy/val", "lr", "step/grad_total", "epoch/margin"} <= tags
    assert [e.step for e in tb.Scalars("step/grad_total")] == [1, 2, 4, 6, 8, 10, 12]


# -- the app -------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_the_app_attached_to_a_loop_draws_its_curves_and_its_keys_act_in_it(tmp_path):
    from tests.test_ui import log_text, ready, until
    from tui_trainer.config import load_preset
    from tui_trainer.ui.app import make_app
    from tui_trainer.ui.widgets.charts import SeriesChart

    runs = tmp_path / "runs"
    proc, run = own_loop(tmp_path, "hook", runs)  # it saves last.pt when stopped: u is offered, and refuses
    try:
        app = make_app(load_preset("spirals-mlp"), runs, attach=run.path)
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await ready(pilot)
            loss = screen.query_one("#loss-chart", SeriesChart)
            acc = screen.query_one("#acc-chart", SeriesChart)
            await until(pilot, lambda: len(loss.series.get("val", ((), ()))[0]) >= 2, timeout=60)
            assert len(loss.series["train (steps)"][0]) >= 10 and len(acc.series["val"][0]) >= 2
            assert "tracking your own loop own_loop.py" in log_text(screen)
            assert "is your own loop's run: its config is in" in log_text(screen)
            assert screen.setup.cfg.name == "spirals-mlp"  # the panels keep theirs: no error, no preset loaded
            assert screen.live
            await pilot.press("s")  # s acts in the loop: it ends where it checks should_stop
            await until(pilot, lambda: screen.view.history.finished is not None, timeout=60)
            assert screen.view.history.finished.reason == "stopped"
            await pilot.press("u")  # what cannot apply says so in one line
            await until(pilot, lambda: any("this one is your own loop's" in n.message for n in app._notifications))
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


# -- Lightning ---------------------------------------------------------------------------------------------


PROBE = '''
import json, sys
sys.path.insert(0, sys.argv[1])
import lightning as L
import lightning_loop

class Probe(L.Callback):
    """Each rank's step, learning rate and stop flag after every batch and epoch (after the tracking callback's)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with open(f"rank{trainer.global_rank}.jsonl", "a") as fh:
            fh.write(json.dumps({"step": trainer.global_step, "stop": trainer.should_stop,
                                 "lr": trainer.optimizers[0].param_groups[0]["lr"]}) + "\\n")

    def on_train_epoch_end(self, trainer, pl_module):  # a command read at an epoch's end acts there
        self.on_train_batch_end(trainer, pl_module, None, None, -1)

Trainer = L.Trainer
L.Trainer = lambda *a, callbacks=(), **k: Trainer(*a, callbacks=[*callbacks, Probe()], **k)
lightning_loop.main(sys.argv[2:])
'''


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2])
def test_the_lightning_example_is_steered_on_every_rank_at_the_same_step(tmp_path, capsys, devices):
    pytest.importorskip("lightning", reason="Lightning is not installed (pip install 'tui-trainer[lightning]')")
    from tui_trainer.engine.checkpoint import load_checkpoint

    runs = tmp_path / "runs"
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    proc, run = start(tmp_path, [str(probe), str(ROOT / "examples"), "--synthetic", "800", "--epochs", "1000",
                                 "--batch-size", "40", "--log-every", "2", "--accelerator", "cpu",
                                 "--devices", str(devices), "--runs-dir", str(runs), "--name", "lit"], runs, "lit")
    try:
        wait_for(lambda: [e for e in run.read_events()[0] if isinstance(e, EpochEnded)], what="an epoch")
        reply = send(run, "set_lr", lr=0.0042)
        assert reply["ok"], reply
        lr_step = next(e for e in run.read_events()[0] if isinstance(e, LrChanged)).step
        wait_for(lambda: [e for e in run.read_events()[0] if isinstance(e, StepLogged) and e.step > lr_step],
                 what="a step after the new rate")
        reply = send(run, "save")
        assert reply["ok"], reply
        ck = load_checkpoint(reply["path"])  # Lightning's own checkpoint, with what evaluate reads
        assert ck["source"] == "track" and "state_dict" in ck and ck["model"].keys() == ck["state_dict"].keys()
        code, out, err = run_main(capsys, "evaluate", reply["path"])
        assert code == 0 and "saved by your own loop (probe.py)" in out, err  # the script that ran (it wraps the example)
        assert send(run, "stop")["ok"]
        assert proc.wait(180) == 0, (tmp_path / "lit.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert run.state() == "stopped" and run.last.is_file() and len(list_runs(runs)) == 1  # rank 0 alone writes
    events = clean_events(run)
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.world_size == devices and started.preset == "probe.py"
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert next(s for s in steps if s.step > lr_step).lr == 0.0042 and steps[-1].layers
    ranks = [[json.loads(line) for line in (tmp_path / f"rank{r}.jsonl").read_text().splitlines()]
             for r in range(devices)]
    first_new = [next(p["step"] for p in rows if p["lr"] == 0.0042) for rows in ranks]
    stopped = [next(p["step"] for p in rows if p["stop"]) for rows in ranks]
    assert len(set(first_new)) == 1 and len(set(stopped)) == 1  # every rank acted at the same step
    assert first_new[0] == lr_step  # the batch whose end took the command: every later step has the new rate
    assert all(rows[-1]["step"] == stopped[0] for rows in ranks)  # and stopped there


def test_the_tracking_api_imports_neither_torch_nor_the_app():
    code = ("import sys, warnings\nfrom tui_trainer.run import track, lightning\n"
            "print([m for m in ('torch', 'textual', 'lightning', 'typer') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_loop_with_nothing_wrong_warns_nothing(tmp_path):
    from tui_trainer.run import track

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with track.init("quiet", runs_dir=tmp_path / "runs", log_every=1) as run:
            run.log(1, loss=0.5)
            run.epoch(1, train_loss=0.5, val_loss=0.6)
    assert RunDir(run.path).state() == "finished"
