"""The run process and its directory, with real processes: start, attach, send, kill -9, hang up."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from multiprocessing.connection import AuthenticationError, Client
from pathlib import Path

import pytest

from tests import faulty_runner
from tests.conftest import tiny, wait_for
from tests.test_cli import run_main
from tui_trainer.errors import ConfigError
from tui_trainer.run import client as session
from tui_trainer.run.endpoint import EndpointError, send
from tui_trainer.run.events import EpochEnded, RunFinished, RunStarted, StepLogged
from tui_trainer.run.folder import RunDir, list_runs, resolve_run, summarize

pytestmark = pytest.mark.timeout(180)
SLOW = "slow@0.01"  # runs that last without burning the 2 cores (tests/faulty_runner.py)


def start(tmp_path: Path, *overrides: str) -> session.RunHandle:
    handle = faulty_runner.start(tiny("train.epochs=1000", *overrides), tmp_path / "runs", SLOW)
    assert handle.wait_started(timeout=120) == "running", handle.run.log_path.read_text()
    return handle


def events_of(run: RunDir, kind: type) -> list:
    return [e for e in run.read_events()[0] if isinstance(e, kind)]


@pytest.mark.slow
def test_a_run_process_lives_in_its_own_session_and_its_folder_is_private(tmp_path):
    handle = start(tmp_path)
    status = handle.run.read_status()
    assert os.getsid(status["pid"]) == status["pid"] != os.getsid(0)  # its own session: no terminal hang-up reaches it
    assert handle.path.is_absolute() and oct(handle.path.stat().st_mode & 0o777) == "0o700"
    assert oct(handle.run.key_path.stat().st_mode & 0o777) == "0o600"
    assert Path(f"/proc/{status['pid']}/fd/0").resolve() == Path("/dev/null")  # stdin closed
    first = handle.run.events_path.read_text().splitlines()[0]
    assert json.loads(first) == {"type": "header", "protocol": 1}
    assert send(handle.run, "stop")["ok"]
    assert handle.wait(30) == "stopped"
    assert handle.run.read_status()["reason"] == "stopped" and handle.run.last.is_file()


@pytest.mark.slow
def test_every_command_is_acknowledged_and_a_malformed_one_is_refused(tmp_path):
    handle = start(tmp_path, "train.log_every=1")
    run = handle.run
    wait_for(lambda: events_of(run, StepLogged), what="a step")
    saved = send(run, "save")
    assert saved["ok"] and Path(saved["path"]).is_file()
    assert re.match(r"learning rate set to 0.0123 (in|after) epoch", send(run, "set_lr", lr=0.0123)["message"])
    for name, args, needle in (("launch", {}, "unknown command 'launch'; allowed: stop, save, set_lr, pause, resume, step"),
                               ("set_lr", {"lr": -1}, "set_lr needs lr, a number > 0"),
                               ("stop", {"now": True}, "stop takes no arguments but why (got now)")):
        reply = send(run, name, **args)
        assert reply["ok"] is False and needle in reply["error"], reply
    assert handle.state() == "running"  # the malformed stop stopped nothing
    assert send(run, "step")["message"] == "step works while paused: pause first"
    paused = send(run, "pause")
    assert paused["ok"] and re.match(r"paused (in|after) epoch", paused["message"])
    wait_for(lambda: run.read_status().get("state") == "paused", what="paused status")
    step = events_of(run, StepLogged)[-1].step
    assert send(run, "step")["ok"]
    wait_for(lambda: events_of(run, StepLogged)[-1].step == step + 1, what="one step")
    assert send(run, "resume")["ok"]
    wait_for(lambda: events_of(run, StepLogged)[-1].step > step + 5, what="training again")
    assert send(run, "stop")["ok"] and handle.wait(30) == "stopped"
    assert handle.run.read_status()["state"] == "stopped"


@pytest.mark.slow
def test_a_connection_without_the_key_gets_nothing(tmp_path):
    handle = start(tmp_path)
    address = handle.run.read_status()["control"]
    with pytest.raises((AuthenticationError, EOFError, ConnectionError, OSError)):
        with Client(address, family="AF_UNIX", authkey=b"not the key") as conn:
            conn.send_bytes(b'{"cmd": "stop"}')
            conn.recv_bytes()
    # a command sent after the refused one is acted on: had the refused stop been queued, it would have come first
    # (one queue, in order) and this save would be answered "the run is stopping"
    saved = send(handle.run, "save")
    assert saved["ok"] and Path(saved["path"]).is_file(), saved
    assert handle.state() == "running"
    assert send(handle.run, "stop")["ok"] and handle.wait(30) == "stopped"


@pytest.mark.slow
def test_sighup_is_ignored_and_sigterm_stops_and_saves(tmp_path):
    handle = start(tmp_path)
    pid = handle.run.read_status()["pid"]
    os.kill(pid, signal.SIGHUP)
    n = len(events_of(handle.run, StepLogged))
    wait_for(lambda: len(events_of(handle.run, StepLogged)) > n + 2, what="training after SIGHUP")
    assert handle.state() == "running"
    os.kill(pid, signal.SIGTERM)
    assert handle.wait(30) == "stopped"
    end = events_of(handle.run, RunFinished)[-1]
    assert end.reason == "stopped" and Path(end.last_checkpoint).is_file()


@pytest.mark.slow
def test_kill_9_reads_as_crashed_offers_the_checkpoint_and_resume_continues_the_curve(tmp_path, capsys):
    handle = start(tmp_path, "data.n_samples=200")
    run = handle.run
    wait_for(lambda: len(events_of(run, EpochEnded)) >= 2, what="two epochs")
    os.kill(run.read_status()["pid"], signal.SIGKILL)
    handle.process.wait(10)
    assert run.state() == "crashed" and summarize(run).state == "crashed"
    code, out, _ = run_main(capsys, "runs", "--runs-dir", str(tmp_path / "runs"))
    assert code == 0 and "crashed" in out and f"tui-trainer resume {run.last}" in out
    code, out, _ = run_main(capsys, "attach", str(run.path), "--plain")
    assert code == 1 and out.splitlines()[-2:] == [f"{run.name}: crashed", f"resume with: tui-trainer resume {run.last}"]
    from tui_trainer.engine.checkpoint import load_checkpoint

    ck = load_checkpoint(run.last)
    ck_epoch, ck_elapsed = ck["epoch"], ck["elapsed_s"]  # the last whole epoch saved before the kill
    assert ck_epoch >= 1 and ck_elapsed > 0
    resumed = session.start(_resume_cfg(run, ck_epoch + 2), tmp_path / "runs", resume=run.last)
    assert resumed.path == run.path
    assert resumed.wait(120) == "finished"
    assert [r["epoch"] for r in run.read_metrics()] == list(range(1, ck_epoch + 3))
    assert [s.start_epoch for s in events_of(run, RunStarted)] == [0, ck_epoch]
    # the clock continues from the checkpoint: the resumed session's steps start past its training time, and rise
    events = run.read_events()[0]
    second = [i for i, e in enumerate(events) if isinstance(e, RunStarted)][1]
    sessions = [[e.elapsed_s for e in part if isinstance(e, StepLogged)] for part in (events[:second], events[second:])]
    assert all(part and part == sorted(part) for part in sessions), sessions
    assert sessions[1][0] > ck_elapsed


def _resume_cfg(run: RunDir, epochs: int):
    from tui_trainer.cli.common import resume_config

    return resume_config(run.last, epochs=epochs)


@pytest.mark.slow
def test_two_clients_stop_at_once_and_the_run_stops_once(tmp_path):
    import threading

    handle = start(tmp_path)
    other = session.attach(RunDir(handle.path))
    replies: list = []
    clients = [threading.Thread(target=lambda h=h: replies.append(send(h.run, "stop"))) for h in (handle, other)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(30)
    assert handle.wait(30) == "stopped"
    assert len(replies) == 2 and all(isinstance(r, dict) for r in replies)  # both answered
    assert [r["ok"] for r in replies].count(True) >= 1
    ends = events_of(handle.run, RunFinished)
    assert len(ends) == 1 and ends[0].reason == "stopped"
    with pytest.raises(EndpointError, match=r"has ended \(stopped\): no control endpoint"):
        send(other.run, "stop")  # the run is gone: a clear error, not a hang


@pytest.mark.slow
def test_detach_prints_where_and_attach_plain_follows_to_the_end(tmp_path, capsys):
    code, out, err = run_main(capsys, "train", "moons-mlp", "--epochs", "3", "--set", "data.n_samples=300",
                              "--runs-dir", str(tmp_path / "runs"), "--detach")
    assert code == 0, err
    run = RunDir(Path(out.splitlines()[0].split(": ", 1)[1]))
    assert out.splitlines()[:2] == [f"run folder {run.name}: {run.path}", f"started {run.name}"]  # the folder first
    assert f"tui-trainer attach {run.path}" in out
    proc = subprocess.run([sys.executable, "-m", "tui_trainer.cli", "attach", str(run.path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [ln.split()[1] for ln in lines if ln.startswith("epoch ")] == ["1/3", "2/3", "3/3"]  # from epoch 1 on
    assert lines[-1] == f"{run.name}: finished: completed 3 epochs"  # was "finished (completed: completed 3 epochs)"
    assert proc.stdout.count("completed 3 epochs") == 1  # the end is said once


@pytest.mark.slow
def test_detach_prints_the_folder_before_the_run_has_started(tmp_path):
    """The run process takes seconds to load torch: its folder is said at once, on a line of its own."""
    proc = subprocess.Popen([sys.executable, "-m", "tui_trainer.cli", "train", "moons-mlp", "--epochs", "2", "--set",
                             "data.n_samples=200", "--runs-dir", str(tmp_path / "runs"), "--detach"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert first.startswith("run folder "), first + proc.stderr.read()
    run = RunDir(Path(first.strip().split(": ", 1)[1]))
    seen = summarize(run).state  # what the folder says while the command still waits for the run to start
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert run.path.is_dir() and out.startswith(f"started {run.name}\n") and err == ""  # no spinner in a pipe
    assert seen in ("starting", "running", "finished")


@pytest.mark.slow
def test_detach_with_a_setup_error_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys):
    code, _out, err = run_main(capsys, "train", "imagefolder-cnn", "--set", 'data.root="/nonexistent/images"',
                               "--runs-dir", str(tmp_path / "runs"), "--detach")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "/nonexistent/images" in err
    assert list((tmp_path / "runs").iterdir()) == []


def test_unwritable_runs_directory_fails_before_any_process(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_main(capsys, "train", "spirals-mlp", "--detach", "--runs-dir", str(blocker / "runs"))
    assert code == 2 and "is not writable" in err and out == ""


@pytest.mark.slow
def test_stop_command_from_a_script(tmp_path, capsys):
    handle = start(tmp_path)
    code, out, _ = run_main(capsys, "stop", handle.run.name, "--runs-dir", str(tmp_path / "runs"))
    said = re.search(r"^stopping ((in epoch (\d+) \((\d+) complete\)|after epoch (\d+)), step \d+); saving last.pt$", out,
                     re.MULTILINE)
    assert code == 0 and said, out
    if said[3]:
        assert int(said[3]) == int(said[4]) + 1  # the epoch under way and those complete agree
    end = events_of(handle.run, RunFinished)[-1]
    assert end.message == f"stopped {said[1]}"  # the same words as the acknowledgement
    assert f"{handle.run.name}: stopped {said[1]}; last checkpoint " in out
    code, _out, err = run_main(capsys, "stop", handle.run.name, "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and "is not running (state: stopped)" in err


@pytest.mark.slow
def test_runs_lists_live_runs_first_and_resolves_names(tmp_path, capsys):
    code, _out, err = run_main(capsys, "train", "moons-mlp", "--epochs", "2", "--set", "data.n_samples=200",
                               "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, err
    handle = start(tmp_path)
    code, out, _ = run_main(capsys, "runs", "--runs-dir", str(tmp_path / "runs"))
    rows = out.splitlines()[1:]
    assert rows[0].split()[0] == handle.run.name and rows[0].split()[2] == "running"
    assert rows[1].split()[2] == "finished" and rows[1].split()[3] == "2/2"
    try:
        assert resolve_run(tmp_path / "runs", None).path == handle.path  # the newest live run by default
        assert resolve_run(tmp_path / "runs", handle.run.name).path == handle.path
        with pytest.raises(ConfigError, match="matches 2 runs: .*; give more of the name"):
            resolve_run(tmp_path / "runs", handle.run.name[:8])
        with pytest.raises(ConfigError, match="no run 'nope' in .*; runs there: "):
            resolve_run(tmp_path / "runs", "nope")
    finally:
        send(handle.run, "stop")
        handle.wait(30)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["removed", "replaced-while-paused"])
def test_a_run_whose_folder_is_removed_stops_and_writes_nothing_more_there(tmp_path, how):
    """Issue 20: after `rm -rf` of its runs folder a run trained on for minutes, made checkpoints/ and status.json
    again (with no pid: `tui-trainer stop` called the live process crashed). Now it stops within a log interval
    (while paused: at its next look at its commands) and writes nothing into the path."""
    handle = start(tmp_path, "train.log_every=2")
    run = handle.run
    wait_for(lambda: events_of(run, StepLogged), what="a step")
    if how == "replaced-while-paused":
        assert send(run, "pause")["ok"]
    shutil.rmtree(tmp_path / "runs")
    if how == "replaced-while-paused":
        run.path.mkdir(parents=True)  # another folder at its path (a copy put back, another tool's)
        (run.path / "theirs.txt").write_text("not the run's")
    assert handle.process.wait(timeout=30) == 1  # it would train 1000 epochs (minutes) if it went on
    if how == "removed":
        assert not (tmp_path / "runs").exists()
    else:
        assert [p.name for p in run.path.iterdir()] == ["theirs.txt"]


@pytest.mark.slow
def test_nohup_keeps_a_foreground_run_training_through_a_hang_up(tmp_path):
    """`nohup tui-trainer train ... &`: SIGHUP is already ignored when it starts, and stays ignored."""
    env = {**os.environ, faulty_runner.FAULT_ENV: SLOW, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(["nohup", sys.executable, "-m", "tests.faulty_cli", "train", "spirals-mlp", "--epochs",
                             "1000", "--runs-dir", str(tmp_path / "runs")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    run = wait_for(lambda: list_runs(tmp_path / "runs"), what="a run folder")[0]
    wait_for(lambda: events_of(run, StepLogged), what="a step")
    proc.send_signal(signal.SIGHUP)
    n = len(events_of(run, StepLogged))
    wait_for(lambda: len(events_of(run, StepLogged)) > n + 2, what="training after the hang-up")
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130


def test_a_resume_after_a_torn_last_line_starts_its_events_on_a_line_of_their_own(tmp_path):
    from tui_trainer.run.eventlog import EventReader, EventWriter
    from tui_trainer.run.events import LogMessage, header

    path = tmp_path / "events.jsonl"
    path.write_text(header() + "\n" + '{"type":"StepLogged","epoch":1,"st')  # killed mid-write
    writer = EventWriter(path)
    writer.emit(LogMessage("info", "resumed"))
    writer.close()
    reader = EventReader(path)
    assert reader.read() == [LogMessage("info", "resumed")] and reader.skipped == 1


def test_attach_plain_to_events_of_a_newer_protocol_is_one_line_exit_2(tmp_path, capsys):
    code, _out, err = run_main(capsys, "train", "moons-mlp", "--epochs", "1", "--set", "data.n_samples=200",
                               "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, err
    run = RunDir(next((tmp_path / "runs").iterdir()))
    lines = run.events_path.read_text().splitlines()
    run.events_path.write_text("\n".join(['{"type":"header","protocol":99}', *lines[1:]]) + "\n")
    code, out, err = run_main(capsys, "attach", str(run.path), "--plain")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == ["error: events written with protocol 99, this tui-trainer reads up to 1: "
                                        "upgrade tui-trainer to read this run"]
