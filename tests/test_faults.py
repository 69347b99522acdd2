"""Faults and bad input: nothing lost, clear errors, no tracebacks (issue 5's cases)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import tiny
from tests.faulty_runner import install, use_in_run_processes
from tests.test_cli import run_main
from tests.test_ui import faking, ready, training, until
from tui_trainer.engine import fit
from tui_trainer.engine.checkpoint import load_checkpoint, save_checkpoint
from tui_trainer.errors import CheckpointError
from tui_trainer.run.eventlog import EventReader
from tui_trainer.run.events import EpochEnded, ListSink, LogMessage, RunFinished, RunStarted, StepLogged, TeeSink
from tui_trainer.run.folder import RunDir, prepare_run
from tui_trainer.run.history import position
from tui_trainer.run.recorder import RunRecorder
from tui_trainer.ui.app import make_app
from tui_trainer.ui.widgets.fields import ConfigField


def _one_run(capsys, tmp_path, *extra) -> Path:
    code, _out, err = run_main(capsys, "train", "moons-mlp", "--epochs", "3", "--runs-dir", str(tmp_path / "r"),
                               "--set", "data.n_samples=200", *extra)
    assert code == 0, err
    return next((tmp_path / "r").iterdir())


# -- checkpoints from elsewhere, corrupt last.pt -------------------------------------------


def test_resume_from_a_corrupt_last_offers_the_previous_good_checkpoint(capsys, tmp_path):
    run = _one_run(capsys, tmp_path)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    code, out, err = run_main(capsys, "resume", str(last), "--epochs", "5")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "truncated or corrupt" in err and f"tui-trainer resume {run / 'checkpoints' / 'best.pt'}" in err
    assert "epoch" not in out  # it did not silently start over


def test_a_checkpoint_that_does_not_match_its_architecture(capsys, tmp_path):
    run = _one_run(capsys, tmp_path)
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    ck["config"]["model"]["hidden"] = [7]
    doctored = save_checkpoint(ck, tmp_path / "doctored.pt")
    for command in (["resume", str(doctored), "--epochs", "5"], ["evaluate", str(doctored)]):
        code, _out, err = run_main(capsys, *command)
        assert code == 2 and "does not match" in err and len(err.strip().splitlines()) == 1, err


# -- writing fails ---------------------------------------------------------------------------


def test_a_failed_save_keeps_the_previous_checkpoint_and_the_run_goes_on(runs, monkeypatch):
    from tui_trainer.engine import checkpoint as engine

    calls = {"n": 0}
    real_save = engine.save_checkpoint

    def flaky(payload, path):
        calls["n"] += 1
        if calls["n"] == 3:  # a write during epoch 2: the disk is full
            raise CheckpointError(f"could not write {path}: No space left on device")
        return real_save(payload, path)

    monkeypatch.setattr(engine, "save_checkpoint", flaky)
    sink = ListSink()
    result = fit(tiny("train.epochs=3"), sink, runs_dir=runs)
    assert result.reason == "completed" and result.epoch == 3
    errors = [m.text for m in sink.of(LogMessage) if m.level == "error"]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "is intact" in errors[0]
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["epoch"] == 3
    for path in (result.run_dir / "checkpoints").iterdir():
        load_checkpoint(path)  # every file there is complete; no temp file is left behind


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the block, a real full disk (root only: the test is skipped where
    mounting is not allowed; ``test_an_event_log_that_cannot_be_written_...`` simulates the same failure)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Fill the filesystem of ``folder`` until about ``leave`` bytes are free."""
    free = shutil.disk_usage(folder).free
    (folder / "filler").write_bytes(b"x" * max(free - leave, 0))


def test_a_checkpoint_that_does_not_fit_on_the_disk_names_the_cause_and_the_run_trains_on(tmp_path):
    """Issue 20: torch's zip writer turned "No space left on device" into "RuntimeError: [enforce fail at
    inline_container.cc:672] . unexpected pos ...", which ended the run as failed."""
    cfg = tiny("train.epochs=3")
    run = prepare_run(cfg, tmp_path / "runs")
    sink = ListSink()
    with small_filesystem(run.checkpoints, "16k"):  # a checkpoint of this net is about 50 KB: none fits
        recorder = RunRecorder(run)
        try:
            result = fit(cfg, TeeSink(recorder, sink), run_dir=run)
        finally:
            recorder.close()
        left = sorted(p.name for p in run.checkpoints.iterdir())
    assert result.reason == "completed" and result.epoch == 3, result.message
    errors = [m.text for m in sink.of(LogMessage) if m.level == "error"]
    bests = sum(e.is_best for e in sink.of(EpochEnded))
    assert len(errors) == 3 + bests  # last.pt at every epoch, best.pt at each new best: each said, none fatal
    assert all(re.fullmatch(rf"could not write {run.checkpoints}/(best|last)\.pt: No space left on device; "
                            r"there is no (best|last)\.pt yet", e) for e in errors), errors
    assert left == [] and result.last_checkpoint is None  # no torn file, no temp file left behind


def test_a_full_disk_under_the_event_log_stops_the_run_with_its_last_good_checkpoint(capsys, tmp_path):
    """Issue 20's report: spirals-mlp on a 600 KB filesystem. Checkpoints that do not fit are said and the run
    trains on; once events.jsonl cannot be written the run stops, says why and what it kept, and exits 1."""
    disk = tmp_path / "disk"
    with small_filesystem(disk, "600k"):
        _fill(disk, 200_000)  # room for the folder, two checkpoints (~50 KB each) and some epochs of events
        code, out, err = run_main(capsys, "train", "spirals-mlp", "--runs-dir", str(disk / "runs"), "--epochs", "1000",
                                  "--set", "data.n_samples=400", "--set", "train.log_every=1")
        run = RunDir(next((disk / "runs").iterdir()))
        reader = EventReader(run.events_path)
        events = reader.read()
        last = load_checkpoint(run.last)
        status = run.read_status()
    assert code == 1 and "Traceback" not in err + out and "RuntimeError" not in err + out
    line = next(ln for ln in err.splitlines() if ln.startswith("error: in ") or ln.startswith("error: after "))
    assert status["state"] == "failed" and f"error: {status['message']}" == line  # written over the old status.json
    assert f"cannot write {run.events_path}: No space left on device" in line or \
        f"cannot write {run.status_path}: No space left on device" in line, line
    assert re.search(rf"the last good checkpoint is {run.checkpoints}/(last|best|manual)\S*\.pt \(epoch \d+", line), line
    assert 0 < last["epoch"] < 1000
    assert reader.skipped == 0 and len(events) > 10  # events.jsonl ends on a whole line: nothing torn was left


def test_an_event_log_that_cannot_be_written_stops_the_run_cleanly(runs, monkeypatch):
    """The same without a small filesystem: the 40th line of events.jsonl hits a full disk part-way."""
    from tui_trainer.run.eventlog import EventWriter

    cfg = tiny("train.epochs=50", "train.log_every=1")
    run = prepare_run(cfg, runs)
    real_write, lines = EventWriter._write, [0]

    def full_from_line_40(self, text):
        lines[0] += 1
        if lines[0] >= 40:
            self._fh.write(text.encode()[:7])  # the start of the line reached the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, text)

    monkeypatch.setattr(EventWriter, "_write", full_from_line_40)
    sink, recorder = ListSink(), RunRecorder(run)
    try:
        result = fit(cfg, TeeSink(recorder, sink), run_dir=run)
    finally:
        recorder.close()
    kept = load_checkpoint(run.last)
    assert result.reason == "error" and 0 < result.epoch < 50
    where = position(result.epoch, result.step - 10 * result.epoch, result.step)  # 10 steps an epoch
    assert result.message == (f"{where}: cannot write {run.events_path}: No space left on device; the last good "
                              f"checkpoint is {run.last} (epoch {kept['epoch']}, step {kept['step']})")
    assert sink.of(RunFinished)[-1].message == result.message  # the caller's sink still hears the end
    reader = EventReader(run.events_path)
    assert len(reader.read()) == 38 and reader.skipped == 0  # the header and 38 events; the torn 39th was cut
    assert run.read_status()["state"] == "failed"  # status.json could still be written: it says why


def test_a_fit_whose_folder_is_removed_stops_at_its_next_log_interval_and_makes_nothing_again(runs):
    """Issue 20: a run whose folder was removed trained on, making checkpoints/ and status.json again."""

    class RemovedAtStep4(ListSink):
        def emit(self, event) -> None:
            super().emit(event)
            if isinstance(event, StepLogged) and event.step == 4:
                shutil.rmtree(runs)  # rm -rf of the run's parent

    sink = RemovedAtStep4()
    result = fit(tiny("train.epochs=50", "train.log_every=2"), sink, runs_dir=runs)
    folder = sink.of(RunStarted)[0].run_dir
    assert result.reason == "error" and result.step == 6, result.message  # at the next log interval
    assert result.message == (f"in epoch 1 (0 complete), step 6: its folder {folder} was removed while it trained; "
                              "nothing more is written there")
    assert not runs.exists()  # no checkpoints/, status.json or events.jsonl made again
    assert sink.of(RunFinished)[-1].message == result.message


# -- non-finite loss and out of memory in the CLI and the app ---------------------------------


def test_non_finite_loss_headless_exits_1_with_a_hint(capsys, tmp_path):
    code, out, err = run_main(capsys, "train", "spirals-mlp", "--runs-dir", str(tmp_path / "r"),
                              "--set", "optimizer.lr=100.0", "--set", 'optimizer.name="sgd"', "--set", "train.log_every=1")
    assert code == 1
    assert "loss became non-finite at epoch 1, step" in err and "lower the learning rate" in err
    assert "Traceback" not in err + out


def test_out_of_memory_headless_exits_1_with_the_batch_size(capsys, tmp_path, monkeypatch):
    install("oom@1", monkeypatch)  # the foreground run trains in this process
    code, _out, err = run_main(capsys, "train", "spirals-mlp", "--runs-dir", str(tmp_path / "r"))
    assert code == 1 and "out of device memory at batch size 32" in err and "data.batch_size=16" in err


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["nan", "oom"])
async def test_app_shows_faults_and_unlocks_the_panels(tmp_path, monkeypatch, fault):
    cfg = tiny("optimizer.lr=100.0", 'optimizer.name="sgd"', "train.log_every=1", "train.epochs=50")
    if fault == "oom":
        use_in_run_processes(monkeypatch, "oom@2")  # reaches the run process
        cfg = tiny()
    async with training(cfg, tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(RunFinished))
        await pilot.pause()
        reason = rec.of(RunFinished)[0].reason
        assert reason == {"nan": "non_finite_loss", "oom": "out_of_memory"}[fault]
        log = "\n".join(screen.view.log_lines)
        expected = "lower the learning rate" if fault == "nan" else "try a smaller data.batch_size"
        assert expected in log
        said = "loss became non-finite" if fault == "nan" else "out of device memory"
        assert log.count(said) == 1  # the failure is said once
        assert any(expected in str(n.message) for n in pilot.app._notifications)
        await until(pilot, lambda: not screen.query_one("#start").disabled)
        assert not screen.setup.disabled


# -- the app's inline validation, every field --------------------------------------------------


@pytest.mark.slow
async def test_every_text_field_in_the_app_rejects_bad_input(tmp_path):
    from textual.widgets import Input

    from tests.test_config import _bad_values

    app = make_app(tiny(), tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        checked = 0
        for f in list(screen.query(ConfigField)):
            inputs = f.query(Input)
            kind = f.spec.type if isinstance(f.spec.type, str) else f.spec.type.__name__
            if not inputs or kind == "str":  # any typed text is a valid string
                continue
            box = inputs.first()
            original = box.value
            bad = next((b for b in _bad_values(f.spec) if isinstance(b, (int, float, list)) and not isinstance(b, bool)),
                       None)
            if bad is None:
                continue
            box.value = json.dumps(bad) if isinstance(bad, list) else repr(bad)
            await pilot.pause()
            assert f.has_class("-invalid"), f.dotted
            assert screen.query_one("#start").disabled, f.dotted
            assert f.dotted in screen.setup.invalid
            box.value = original
            await pilot.pause()
            assert not f.has_class("-invalid"), f.dotted
            checked += 1
        assert not screen.setup.invalid and not screen.query_one("#start").disabled
        assert checked >= 20


@pytest.mark.slow
async def test_ctrl_c_in_the_app_asks_and_can_stop_and_save(tmp_path, monkeypatch):
    use_in_run_processes(monkeypatch, "slow@0.005")
    async with training(tiny("train.epochs=500", "data.n_samples=2000"), tmp_path) as (pilot, screen, rec):
        await until(pilot, lambda: rec.of(StepLogged))
        await pilot.press("ctrl+c")
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "QuitDialog")
        await pilot.press("s")
        await until(pilot, lambda: not pilot.app.is_running)
        end = [e for e in screen.handle.run.read_events()[0] if isinstance(e, RunFinished)][-1]
    assert end.reason == "stopped"
    assert load_checkpoint(end.last_checkpoint)["step"] == end.step


@pytest.mark.slow
async def test_resizing_during_training_does_not_crash(tmp_path):
    """Resizes while a run's steps arrive (a fake run: tests/fakes.py; the steps are written between resizes)."""
    async with faking(tiny("train.epochs=500"), tmp_path) as (pilot, screen, rec, run):
        chart = screen.query_one("#loss-chart")
        for size in ((80, 24), (60, 20), (160, 50), (80, 24)):
            n = len(rec.of(StepLogged))
            run.step(2)
            await until(pilot, lambda n=n: len(rec.of(StepLogged)) > n and not chart.dirty)  # the new steps drawn
            replots = chart.replots
            await pilot.resize_terminal(*size)
            await until(pilot, lambda r=replots: chart.replots > r and not chart.dirty)  # redrawn at the new size
            await pilot.pause()
            assert screen.size == size and chart.failed is None
            assert chart.region.right <= size[0] and chart.region.bottom <= size[1]
            assert len(str(screen.query_one("#progress").render())) <= size[0]
        assert not rec.of(RunFinished) and screen.live  # all of it happened during training


# -- a real terminal: the SSH connection drops, a dumb terminal ---------------------------------


class PtyApp:
    """tui-trainer in a pseudo-terminal, its output drained so it never blocks."""

    def __init__(self, args: list[str], env: dict[str, str], cols: int = 120, rows: int = 36,
                 cwd: Path | None = None) -> None:
        module = "tests.faulty_cli" if "TUI_TRAINER_FAULT" in env else "tui_trainer.cli"  # see tests/faulty_runner.py
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            if cwd is not None:
                os.chdir(cwd)
            os.execvpe(sys.executable, [sys.executable, "-m", module, *args], env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.output = bytearray()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def send(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def expect(self, text: bytes, timeout: float = 30) -> None:
        """Wait until the terminal has been sent ``text``; fail, with what it was sent last, if it never is."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never drawn in {timeout} s; output tail: {bytes(self.output[-500:])!r}")
            time.sleep(0.05)  # the output is drained by another thread

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)  # polling a child's exit; not synchronising with it
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"app did not exit in {timeout}s; output tail: {bytes(self.output[-500:])!r}")


def _wait_for_epoch(runs: Path, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for metrics in runs.glob("*/metrics.jsonl"):
            lines = metrics.read_text().splitlines()
            if lines:
                return json.loads(lines[0])
        time.sleep(0.05)  # waiting on a file the app writes
    raise AssertionError("no epoch finished")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, TUI_TRAINER_HOME=str(tmp_path / "home"), TERM="xterm-256color", **extra)
    env.pop("TEXTUAL", None)
    return env


def _run_state(runs: Path) -> str:
    from tui_trainer.run.folder import list_runs

    found = list_runs(runs)
    return found[0].state() if found else "none"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["hangup", "sigterm", "sigkill"])
def test_the_run_outlives_the_app_and_attach_shows_all_of_it(tmp_path, how):
    """The SSH connection drops (the terminal hangs up), the app is terminated, or killed: the run process
    trains on to its end, and attach shows every epoch from the first."""
    import subprocess

    runs = tmp_path / "runs"
    from tui_trainer.run.endpoint import send
    from tui_trainer.run.folder import list_runs

    app = PtyApp(["ui", "--runs-dir", str(runs), "--set", "train.epochs=4", "--set", "data.n_samples=1000"],
                 _env(tmp_path, TUI_TRAINER_FAULT="slow@0.02"))
    app.send(b"r")
    _wait_for_epoch(runs)
    # held while the app goes, so that "it outlived the app" is seen whatever the machine's speed (it had ~2 s left)
    assert send(list_runs(runs)[0], "pause")["ok"]
    if how == "hangup":
        os.close(app.fd)  # the kernel sends SIGHUP; writes to the terminal fail
        assert app.wait(timeout=20) == 129
    else:
        os.kill(app.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        assert app.wait(timeout=20) in (143, -9)
    assert _run_state(runs) == "paused"  # its process is alive (a dead one reads "crashed"), the app is gone
    assert send(list_runs(runs)[0], "resume")["ok"]
    deadline = time.monotonic() + 120
    while _run_state(runs) == "running" and time.monotonic() < deadline:
        time.sleep(0.1)  # the run is another process; we can only watch its status file
    assert _run_state(runs) == "finished"
    proc = subprocess.run([sys.executable, "-m", "tui_trainer.cli", "attach", "--runs-dir", str(runs), "--plain"],
                          capture_output=True, text=True, timeout=60)
    epochs = [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("epoch ")]
    assert epochs == [f"{i}/4" for i in range(1, 5)], proc.stdout + proc.stderr


@pytest.mark.slow
def test_bare_command_opens_the_app_on_the_default_preset_without_typer(tmp_path):
    """`tui-trainer` alone (the quick start) skips the typer CLI; it trains, saves and quits the same."""
    import subprocess

    imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tui_trainer.cli.launch"],
                             capture_output=True, text=True, timeout=60).stderr
    assert "tui_trainer.cli.launch" in imports and "typer" not in imports
    app = PtyApp([], _env(tmp_path), cwd=tmp_path)  # no arguments: the console script's bare path
    app.send(b"r")
    first = _wait_for_epoch(tmp_path / "runs")  # ./runs, as the CLI's default
    assert first["epoch"] == 1
    app.send(b"q")  # a run is training: the app asks; s stops it
    app.expect(b"is training")  # the quit question, drawn on the terminal
    app.send(b"s")
    assert app.wait(timeout=30) == 0
    assert b"Traceback" not in app.output and b"spirals-mlp" in app.output
    assert _run_state(tmp_path / "runs") == "stopped"


@pytest.mark.parametrize("term", [{"TERM": "dumb"}, {"NO_COLOR": "1"}, {"TERM": "xterm-256color"}],
                         ids=["dumb", "no-color", "xterm"])
@pytest.mark.slow
def test_real_terminal_trains_and_quits_cleanly(tmp_path, term):
    runs = tmp_path / "runs"
    env = _env(tmp_path)
    env.update(term)
    app = PtyApp(["ui", "--runs-dir", str(runs), "--set", "train.epochs=1000"], env, cols=80, rows=24)
    app.send(b"r")
    _wait_for_epoch(runs)
    app.send(b"d")  # detach: leave at once, the run goes on (its 1000 epochs would outlast the wait below)
    assert app.wait(timeout=10) == 0
    assert b"Traceback" not in app.output
    from tui_trainer.run.endpoint import send
    from tui_trainer.run.folder import list_runs

    run = list_runs(runs)[0]
    assert run.state() == "running" and send(run, "stop")["ok"]
    assert load_checkpoint(next(runs.glob("*/checkpoints/last.pt")))["step"] > 0
    if "NO_COLOR" in term:
        # Textual renders NO_COLOR as greyscale: every 256-colour index used is a grey (16 or 232-255)
        indices = {int(n) for n in re.findall(rb"[34]8;5;(\d+)", bytes(app.output))}
        assert indices and indices <= {16, *range(232, 256)}, sorted(indices)
        assert b"38;2;" not in app.output and b"48;2;" not in app.output
