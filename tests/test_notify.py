"""Word when a run ends: the run process's notify hook (run/notify.py) and the app's bell and desktop notification
(ui/alert.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import tiny
from tui_trainer.run.controls import Controls
from tui_trainer.run.folder import RunDir, prepare_run
from tui_trainer.run.notify import NOTIFY_ENV, check_command, run_hook


def _hook_writing(out: Path) -> str:
    """A hook that writes its TUI_TRAINER_* environment as JSON to ``out``."""
    script = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items() if k.startswith('TUI_TRAINER_')}, "
              "open(sys.argv[1], 'w'))")
    return f"{sys.executable} -c \"{script}\" {out}"


def _run_in_process(runs: Path, monkeypatch, command: str, *overrides: str, stop_first: bool = False):
    from tui_trainer.runner import run_here

    monkeypatch.setenv(NOTIFY_ENV, command)
    run = prepare_run(tiny(*overrides), runs)
    controls = Controls()
    if stop_first:
        controls.request_stop()
    return run, run_here(run, controls)


def test_hook_gets_the_end_of_a_completed_run(runs, tmp_path, monkeypatch):
    out = tmp_path / "hook.json"
    run, result = _run_in_process(runs, monkeypatch, _hook_writing(out), "regularization.monitor=\"val_acc\"")
    env = json.loads(out.read_text())
    assert env["TUI_TRAINER_RUN_DIR"] == str(run.path)
    assert env["TUI_TRAINER_RUN"] == run.name
    assert (env["TUI_TRAINER_STATE"], env["TUI_TRAINER_REASON"]) == ("finished", "completed")
    assert env["TUI_TRAINER_MESSAGE"] == result.message
    assert env["TUI_TRAINER_EPOCH"] == "2"
    assert env["TUI_TRAINER_MONITOR"] == "val_acc"
    assert float(env["TUI_TRAINER_BEST"]) == pytest.approx(result.best_metric)
    assert 0.0 < float(env["TUI_TRAINER_BEST"]) <= 1.0
    assert env["TUI_TRAINER_CHECKPOINT"].endswith(".pt") and Path(env["TUI_TRAINER_CHECKPOINT"]).is_file()
    assert NOTIFY_ENV not in env  # the hook is not told to call itself
    assert not run.log_path.exists()  # a foreground run has no run.log; nothing went wrong to write there


def test_hook_gets_the_end_of_a_stopped_run(runs, tmp_path, monkeypatch):
    out = tmp_path / "hook.json"
    run, result = _run_in_process(runs, monkeypatch, _hook_writing(out), stop_first=True)
    env = json.loads(out.read_text())
    assert (env["TUI_TRAINER_STATE"], env["TUI_TRAINER_REASON"]) == ("stopped", "stopped")
    assert run.state() == "stopped" and result.reason.value == "stopped"


def test_failing_hook_is_one_warning_line_and_the_run_ends_as_it_would(runs, monkeypatch, capsys):
    run, result = _run_in_process(runs, monkeypatch, "echo from-the-hook; exit 3")
    assert result.ok and run.state() == "finished"
    lines = [ln for ln in run.log_path.read_text().splitlines() if "notify hook" in ln]
    assert lines == ["warning: notify hook 'echo from-the-hook; exit 3' exited with code 3 after "
                     + lines[0].split(" after ")[1]]
    assert lines[0].endswith("; the run ended finished (completed)")
    assert "warning: notify hook" in capsys.readouterr().err  # a foreground run: stderr is not run.log


def test_hook_that_hangs_is_killed_with_whatever_it_started(tmp_path):
    started = time.monotonic()
    why = run_hook("sleep 30 & echo $! > bg.pid; sleep 30", {"PATH": "/usr/bin:/bin"}, tmp_path, timeout=0.5)
    assert why == "killed after 0.5 s (the hook must end by then)"
    assert time.monotonic() - started < 5
    background = int((tmp_path / "bg.pid").read_text())  # what the hook started in the background died with it
    deadline = time.monotonic() + 5
    while _alive(background) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling another process's exit: nothing to wait on (it is not our child)
    assert not _alive(background)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and not yet reaped by init, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_hook_that_cannot_start(tmp_path):
    assert run_hook("true", {}, tmp_path / "missing-folder") == "could not start (No such file or directory)"


def test_blank_or_multiline_commands_are_refused():
    assert check_command("  notify-send done ") == "notify-send done"
    with pytest.raises(ValueError, match="--notify: the command is empty"):
        check_command("   ")
    with pytest.raises(ValueError, match="line break"):
        check_command("a\nb")


def test_sweep_trials_call_no_hook(monkeypatch):
    from tui_trainer.sweep.slots import Slot

    monkeypatch.setenv(NOTIFY_ENV, "echo ring")
    assert NOTIFY_ENV not in Slot(0).env()


@pytest.mark.slow
def test_cli_notify_reaches_a_detached_run_process(tmp_path):
    """`train --detach --notify`: the run process, with nothing attached, calls the hook at its end."""
    out = tmp_path / "hook.json"
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "tui_trainer.cli", "train", "spirals-mlp", "--detach", "--epochs", "1",
                           "--set", "data.n_samples=200", "--device", "cpu", "--runs-dir", str(runs),
                           "--notify", _hook_writing(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = RunDir(next(runs.iterdir()))
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the run process is not ours to wait on: it is detached
    env = json.loads(out.read_text())
    assert env["TUI_TRAINER_RUN_DIR"] == str(run.path)
    assert env["TUI_TRAINER_STATE"] == "finished"


def test_cli_refuses_an_empty_notify(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tui_trainer.cli", "train", "spirals-mlp", "--notify", " ",
                           "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --notify: the command is empty")
    assert not (tmp_path / "runs").exists()


# -- the attached app: bell, OSC 9 and OSC 777 ----------------------------------------------------------------------


def test_terminal_alert_is_the_bell_then_osc_9_and_777_with_control_characters_removed():
    from tui_trainer.ui.alert import terminal_alert

    text = terminal_alert("tui-trainer: run finished", "r1: done\x1b]evil\x07; best 0.9")
    assert text == ("\a\x1b]9;tui-trainer: run finished: r1: done ]evil ; best 0.9\x07"
                    "\x1b]777;notify;tui-trainer: run finished;r1: done ]evil ; best 0.9\x07")
    wrapped = terminal_alert("t;x", "b", tmux=True)
    assert wrapped == ("\a\x1bPtmux;\x1b\x1b]9;t;x: b\x07\x1b\\" "\x1bPtmux;\x1b\x1b]777;notify;t,x;b\x07\x1b\\")


def test_the_end_alert_setting_takes_on_or_off_words_only():
    from tui_trainer.ui.alert import notify_end_setting

    assert [notify_end_setting(v) for v in (None, "", "0", "off", "1", "On", "yes")] == [False] * 4 + [True] * 3
    with pytest.raises(ValueError, match=r"TUI_TRAINER_NOTIFY_END='loud': allowed 1/on/true/yes"):
        notify_end_setting("loud")


def test_a_bad_end_alert_setting_is_one_line_and_exit_2(tmp_path):
    import os

    env = {**os.environ, "TUI_TRAINER_NOTIFY_END": "loud"}
    proc = subprocess.run([sys.executable, "-m", "tui_trainer.cli", "ui"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: TUI_TRAINER_NOTIFY_END='loud': allowed 1/on/true/yes (bell and desktop notification when the "
        "followed run ends) or 0/off/false/no (default)"]


@pytest.mark.slow
@pytest.mark.parametrize("enabled", [True, False])
async def test_the_app_rings_and_notifies_when_the_followed_run_ends(tmp_path, enabled):
    from tests.fakes import FakeClient
    from tests.test_ui import ready, until
    from tui_trainer.ui.app import make_app

    client = FakeClient()
    app = make_app(tiny("train.epochs=50"), tmp_path / "runs", client=client, notify_end=enabled)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        written: list[str] = []
        app._driver.write = written.append  # what reaches the terminal (the headless driver drops it)
        await pilot.press("r")
        await until(pilot, lambda: client.runs and screen.live)
        client.last.epoch()
        client.last.finish("completed", "completed 1 epochs")
        await until(pilot, lambda: not screen.live)
        await pilot.pause()
        alerts = [w for w in written if "\x1b]9;" in w]
        if not enabled:
            assert alerts == []
            return
        name = client.last.run.name
        assert alerts == [f"\a\x1b]9;tui-trainer: run finished: {name}: finished: completed 1 epochs\x07"
                          f"\x1b]777;notify;tui-trainer: run finished;{name}: finished: completed 1 epochs\x07"]


async def test_attaching_to_a_run_that_ended_before_rings_nothing(tmp_path):
    from tests.fakes import write_run
    from tests.test_ui import ready, until
    from tui_trainer.ui.app import make_app

    run = write_run(tmp_path / "runs", "old-run", tiny("train.epochs=3"), 3, finished=True)
    status = run.read_status()
    run.replace_status({**status, "ended": time.time() - 3600})
    app = make_app(tiny(), tmp_path / "runs", attach=run.path, notify_end=True)
    async with app.run_test(size=(120, 36)) as pilot:
        written: list[str] = []
        app._driver.write = written.append
        screen = await ready(pilot)
        await until(pilot, lambda: screen.view.finished is not None and not screen.live)
        await until(pilot, lambda: any("finished" in str(n.message) for n in app._notifications))  # its end was read
        assert not [w for w in written if "\x1b]9;" in w]


def test_hook_says_diverged_and_crashed(runs, tmp_path, monkeypatch):
    """How the runner words the ends the engine reports (a non-finite loss) and an exception in the run process."""
    from tui_trainer import runner
    from tui_trainer.engine import FitResult
    from tui_trainer.run.events import Reason

    out = tmp_path / "hook.json"
    monkeypatch.setenv(NOTIFY_ENV, _hook_writing(out))
    run = prepare_run(tiny(), runs)
    diverged = FitResult(Reason.NON_FINITE_LOSS, "loss became nan at epoch 2, step 17: lower the learning rate", 1, 17,
                         0.41, run.path)
    monkeypatch.setattr(runner, "_run_main", lambda *a: diverged)
    assert runner.run_here(run, Controls()) is diverged
    env = json.loads(out.read_text())
    assert (env["TUI_TRAINER_STATE"], env["TUI_TRAINER_REASON"], env["TUI_TRAINER_BEST"]) == (
        "failed", "non_finite_loss", "0.41")
    assert env["TUI_TRAINER_MESSAGE"] == diverged.message

    def crash(*a):
        raise RuntimeError("the disk went away\nand more")

    monkeypatch.setattr(runner, "_run_main", crash)
    with pytest.raises(RuntimeError):
        runner.run_here(run, Controls())
    env = json.loads(out.read_text())
    assert (env["TUI_TRAINER_STATE"], env["TUI_TRAINER_REASON"]) == ("crashed", "error")
    assert env["TUI_TRAINER_MESSAGE"] == "the disk went away"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
async def test_the_app_rings_when_the_followed_run_crashes_not_when_it_had_crashed_before(tmp_path):
    import socket

    from tests.fakes import FakeClient
    from tests.test_ui import ready, until
    from tui_trainer.ui.app import make_app

    client = FakeClient()
    app = make_app(tiny("train.epochs=50"), tmp_path / "runs", client=client, notify_end=True)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        written: list[str] = []
        app._driver.write = written.append
        await pilot.press("r")
        await until(pilot, lambda: client.runs and screen.live)
        client.last.step()
        await until(pilot, lambda: screen._live_when_caught_up is True)  # it saw the run alive: the crash comes after
        client.last.set_state("running", host=socket.gethostname(), pid=_dead_pid(), proc_start=None)  # gone, no end
        await until(pilot, lambda: any("\x1b]9;" in w for w in written), timeout=30)
        alert = next(w for w in written if "\x1b]9;" in w)
        assert alert.startswith("\a\x1b]9;tui-trainer: run crashed: ") and "\x1b]777;notify;tui-trainer: run crashed;" in alert
        crashed = client.last.run.path
        # the progress line says so, and keeps saying it when the width changes (not the last "epoch 1/50 ETA ...")
        for size in ((100, 30), (120, 36)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.3)
            line = str(app.train_screen.view.query_one("#progress").render())
            assert "ETA" not in line and "crashed" in line, line  # the progress line itself, not a notification

    app = make_app(tiny(), tmp_path / "runs", attach=crashed, notify_end=True)
    async with app.run_test(size=(120, 36)) as pilot:
        written = []
        app._driver.write = written.append
        screen = await ready(pilot)
        await until(pilot, lambda: not screen.live)  # it reads as crashed
        await pilot.pause(0.5)
        assert not [w for w in written if "\x1b]9;" in w]
