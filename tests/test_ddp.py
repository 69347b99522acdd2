"""Data-parallel training through torchrun, on the CPU with the gloo backend: real processes, 2 ranks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import faulty_runner
from tests.conftest import tiny, wait_for
from tests.test_cli import run_main
from tests.test_engine import assert_step_losses_average_to_train_loss
from tests.test_runs import events_of
from tui_trainer.run import client as session
from tui_trainer.run.endpoint import send
from tui_trainer.run.events import EpochEnded, RunFinished, RunStarted, StepLogged
from tui_trainer.run.folder import RunDir, list_runs

pytestmark = pytest.mark.timeout(240)
EXACT = ("data.n_samples=640", "train.epochs=3", "model.dropout=0.0", "train.log_every=2")  # 512 train samples


def cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui_trainer.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def overrides(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


@pytest.mark.slow
def test_two_ranks_at_32_give_the_steps_of_one_process_at_64(tmp_path):
    one = cli("train", "spirals-mlp", "--runs-dir", str(tmp_path / "one"), *overrides(*EXACT, "data.batch_size=64"))
    assert one.returncode == 0, one.stderr
    two = cli("train", "spirals-mlp", "--runs-dir", str(tmp_path / "two"), "--nproc-per-node", "2",
              *overrides(*EXACT, "data.batch_size=32"))
    assert two.returncode == 0, two.stdout + two.stderr
    single, ddp = RunDir(next((tmp_path / "one").iterdir())), RunDir(next((tmp_path / "two").iterdir()))
    assert events_of(ddp, RunStarted)[0].world_size == 2 and "x 2 ranks" in two.stdout
    rows_1, rows_2 = single.read_metrics(), ddp.read_metrics()
    assert [r["step"] for r in rows_2] == [r["step"] for r in rows_1] == [8, 16, 24]
    for a, b in zip(rows_1, rows_2, strict=True):
        for key in ("train_loss", "val_loss", "train_acc", "val_acc"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (key, a["epoch"])
    assert [e.epoch for e in events_of(ddp, EpochEnded)] == [1, 2, 3]  # rank 0 alone wrote the events
    # the live loss too: the same steps, the same losses, and each epoch's step losses average to its train loss
    steps_1, steps_2 = events_of(single, StepLogged), events_of(ddp, StepLogged)
    assert [(s.epoch, s.batch) for s in steps_2] == [(s.epoch, s.batch) for s in steps_1] == [
        (epoch, batch) for epoch in (1, 2, 3) for batch in (2, 4, 6, 8)]
    assert [s.loss for s in steps_2] == pytest.approx([s.loss for s in steps_1], rel=1e-5, abs=1e-6)
    for run in (single, ddp):
        assert_step_losses_average_to_train_loss(run.read_events()[0], 64)


def start_two(tmp_path: Path, *extra: str, env: dict | None = None) -> session.RunHandle:
    cfg = tiny("train.epochs=1000", "train.nproc=2", "train.log_every=2", *extra)
    handle = faulty_runner.start(cfg, tmp_path / "runs", "slow@0.01", env=env)
    assert handle.wait_started(timeout=120) == "running", handle.run.log_path.read_text()
    return handle


@pytest.mark.slow
def test_a_stop_reaches_both_ranks_at_one_step_and_a_two_rank_checkpoint_resumes_on_one(tmp_path, capsys):
    handle = start_two(tmp_path)
    run = handle.run
    wait_for(lambda: len(events_of(run, EpochEnded)) >= 1, what="an epoch")
    reply = send(run, "stop")
    assert reply["ok"] and reply["message"].startswith(("stopping in epoch", "stopping after epoch"))
    assert handle.process.wait(60) == 0  # both ranks left cleanly: a rank that stopped at another step would hang
    end = events_of(run, RunFinished)[-1]
    assert end.reason == "stopped" and run.state() == "stopped"
    assert sorted(p.name for p in run.checkpoints.iterdir()) in (["best.pt", "last.pt"], ["last.pt"])
    from tui_trainer.engine.checkpoint import load_checkpoint

    ck = load_checkpoint(run.last)
    assert ck["step"] == end.step and not any(k.startswith("module.") for k in ck["model"])  # the unwrapped model
    code, out, err = run_main(capsys, "resume", str(run.last), "--epochs", str(ck["epoch"] + 2), "--nproc-per-node", "1")
    assert code == 0, err
    assert [r["epoch"] for r in run.read_metrics()] == list(range(1, ck["epoch"] + 3))
    starts = events_of(run, RunStarted)
    assert [s.world_size for s in starts] == [2, 1]


def _ranks(handle: session.RunHandle) -> list[int]:
    """The runner processes torchrun started."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:]
            if int(line.split()[1]) == handle.process.pid and faulty_runner.MODULE in line]


@pytest.mark.slow
def test_a_rank_killed_ends_every_rank_with_a_clear_reason(tmp_path):
    handle = start_two(tmp_path, env={"TUI_TRAINER_DIST_TIMEOUT": "30"})
    run = handle.run
    wait_for(lambda: events_of(run, StepLogged), what="a step")
    rank0 = run.read_status()["pid"]
    other = next(pid for pid in wait_for(lambda: _ranks(handle) if len(_ranks(handle)) == 2 else None) if pid != rank0)
    os.kill(other, signal.SIGKILL)
    # the bound is the wait itself (TimeoutExpired fails the test): the survivor gives up within the 30 s collective
    # timeout set above, with room for torchrun to end, never the default 600 s
    code = handle.process.wait(75)
    assert code != 0
    status = run.read_status()
    assert run.state() == "failed" and status["reason"] == "error"
    assert "another rank of this data-parallel run failed or was killed" in status["message"]
    assert events_of(run, RunFinished)[-1].reason == "error"


@pytest.mark.slow
def test_two_torchrun_invocations_with_two_nodes_form_one_run(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = ["--nproc-per-node", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}",
              *overrides(*EXACT, "data.batch_size=32")]
    env = {**os.environ}
    node0 = subprocess.Popen([sys.executable, "-m", "tui_trainer.cli", "train", "spirals-mlp", "--runs-dir",
                              str(tmp_path / "runs"), "--node-rank", "0", *common], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    node1 = subprocess.Popen([sys.executable, "-m", "tui_trainer.cli", "train", "spirals-mlp", "--runs-dir",
                              str(tmp_path / "other"), "--node-rank", "1", *common], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    out0, err0 = node0.communicate(timeout=200)
    out1, err1 = node1.communicate(timeout=60)
    assert node0.returncode == 0 and node1.returncode == 0, err0[-2000:] + err1[-2000:]
    runs = list_runs(tmp_path / "runs")
    assert len(runs) == 1 and not (tmp_path / "other").exists()  # node 1 wrote nothing
    assert events_of(runs[0], RunStarted)[0].world_size == 2
    assert [r["epoch"] for r in runs[0].read_metrics()] == [1, 2, 3]
    assert "node 1 of 2" in out1


@pytest.mark.slow
async def test_the_app_attached_to_a_two_rank_run_shows_it_and_stops_it(tmp_path):
    from tests.test_ui import ready, until
    from tui_trainer.config import load_preset
    from tui_trainer.ui.app import make_app

    handle = start_two(tmp_path)
    app = make_app(load_preset(str(handle.run.config_path)), tmp_path / "runs", attach=handle.path)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await ready(pilot)
        await until(pilot, lambda: screen.view.history.last_step is not None)
        assert screen.view.history.started.world_size == 2
        assert "x 2 ranks" in "\n".join(screen.view.log_lines)
        await pilot.press("s")
        await until(pilot, lambda: screen.view.history.finished is not None, timeout=60)
        assert screen.view.history.finished.reason == "stopped"
    assert handle.process.wait(60) == 0


@pytest.mark.slow
def test_torchrun_launched_by_hand_trains_one_run(tmp_path):
    """`torchrun --nproc-per-node 2 --standalone -m tui_trainer train PRESET`, as the README shows."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m",
                           "tui_trainer", "train", "spirals-mlp", "--runs-dir", str(tmp_path / "runs"),
                           *overrides(*EXACT, "data.batch_size=32")], capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list_runs(tmp_path / "runs")
    assert len(runs) == 1 and events_of(runs[0], RunStarted)[0].world_size == 2
    assert [r["epoch"] for r in runs[0].read_metrics()] == [1, 2, 3]
    assert proc.stdout.count("done: completed 3 epochs") == 1  # rank 0 alone speaks


GATHER = """
import sys, torch, torch.distributed as dist, torch.multiprocessing as mp
from tui_trainer.engine.dist import World

def main(rank, path):
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    world = World(rank=rank, size=2, device=torch.device("cpu"))
    got = world.gather_memory((rank * 2**30 + 7, (70 - rank) * 2**30))
    assert world.gather_memory(None) == ()  # off CUDA every rank passes None: no collective
    if rank == 0:
        print(got)
    dist.barrier()
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(main, args=(sys.argv[1],), nprocs=2)
"""


@pytest.mark.slow
def test_every_ranks_memory_is_gathered_in_rank_order(tmp_path):
    script = tmp_path / "gather.py"
    script.write_text(GATHER)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "store")], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(((7, 70 * 2**30), (2**30 + 7, 69 * 2**30)))
