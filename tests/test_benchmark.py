"""The benchmarks run (quick mode) and report every measurement: CI fails on a crash, never on a slow machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(tmp_path: Path, script: str, *args: str) -> dict:
    """``benchmarks/<script> ARGS --json`` in a child process; its JSON result."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--json"], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path, env={**os.environ, "TUI_TRAINER_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_throughput_benchmark_quick_mode_runs_every_mode(tmp_path):
    result = run_benchmark(tmp_path, "throughput.py", "--quick", "--modes", "abc", "--steps", "20")
    rates = result["samples_per_s"]
    assert set(rates) == {"a_lecture_loop", "b_engine_headless", "c_engine_with_app"}
    assert all(rate > 0 for rate in rates.values())
    # the ratios it reports are the ratios of the rates it reports (one repeat: the pair is the median)
    for mode, rate in rates.items():
        assert result["ratio_to_lecture"][mode] == pytest.approx(rate / rates["a_lecture_loop"])
    assert result["app_over_headless"] == pytest.approx(rates["c_engine_with_app"] / rates["b_engine_headless"])
    assert result["app_over_headless_pairs"] == [pytest.approx(result["app_over_headless"])]
    assert (result["epochs"], result["steps_per_epoch"]) == (2, 20)
    # the run process's events reached the app's screen: at least a start, a step and an end of each epoch, a finish
    assert result["app"]["events"] >= 1 + 2 * 2 + 1 and result["app"]["event_messages"] >= 1
    assert result["app"]["replots"] >= 2  # and its loss and accuracy charts were drawn
    assert 0 < result["app_cpu_share"][0] < (os.cpu_count() or 1) + 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_events_cost_benchmark_quick_mode_times_the_recorder(tmp_path):
    result = run_benchmark(tmp_path, "events_cost.py", "--quick")
    # --quick: 4,000 points, 3,200 to train in batches of 32, logged every 10 steps: 10 StepLogged an epoch, its
    # end, and the last (and best) checkpoints; a decision boundary at most once a second
    assert (result["epochs"], result["batch_size"], result["log_every"]) == (2, 32, 10)
    kinds = result["sink_ms_per_epoch_by_kind"]
    assert {"StepLogged", "EpochEnded", "CheckpointSaved"} <= set(kinds) <= {*kinds, "Boundary", "LogMessage"}
    assert 10 + 1 + 1 <= result["events_per_epoch"] <= 10 + 1 + 2 + 1
    assert result["events_jsonl_bytes"] > 100 * 2 * 10  # every step line is over 100 bytes
    # the shares it reports are made of the times it reports
    (sink_ms,), (epoch_s,), (none_s,) = result["sink_ms_per_epoch"], result["epoch_s_recorder"], result["epoch_s_none"]
    assert sum(kinds.values()) == pytest.approx(sink_ms, abs=0.01)
    assert result["direct_share"] == pytest.approx(sink_ms / 1e3 / epoch_s)
    assert result["recorder_over_none"] == pytest.approx(epoch_s / none_s)
    assert 0 < result["direct_share"] < 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_attach_benchmark_paints_every_epoch_of_a_long_run(tmp_path):
    result = run_benchmark(tmp_path, "attach.py", "--epochs", "1000")
    assert result["snapshot"]  # 6,003 events: the run leaves history.json, and the app is drawn from it
    attempt = result["attempts"][0]
    assert attempt["val_points"] == 1000  # the loss chart holds every epoch of the history
    assert attempt["step_points"] == 1000 * result["steps_per_epoch"]
    assert attempt["folded_s"] > 0 and 0 < attempt["replotted_s"] <= attempt["painted_s"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_cost_benchmark_times_the_step_and_each_collective(tmp_path):
    result = run_benchmark(tmp_path, "ddp_cost.py", "--steps", "5", "--warmup", "2")
    assert result["nproc"] == 2 and result["device"] == "cpu"
    for name in ("step", "plain_step", "share_commands", "gather_memory", "all_reduce"):
        assert result[f"{name}_ms"] > 0, name
    assert result["share_commands_per_step"] == pytest.approx(result["share_commands_ms"] / result["step_ms"])


@pytest.mark.slow
def test_track_cost_benchmark_times_the_loop_with_and_without_the_tracking_lines(tmp_path):
    result = run_benchmark(tmp_path, "track_cost.py", "--quick")
    assert (result["steps"], result["repeat"], result["log_every"], result["model"]) == (40, 2, 50, True)
    for what in ("wall", "cpu"):
        r = result[what]
        assert len(r["plain_all"]) == len(r["tracked_all"]) == 2 and min(r["plain_all"] + r["tracked_all"]) > 0
        assert r["plain_s"] == sorted(r["plain_all"])[0] + (sorted(r["plain_all"])[1] - sorted(r["plain_all"])[0]) / 2
    assert 0 < result["inside_s"] < result["wall"]["tracked_s"]  # the calls took time, and less than the loop
    assert not (tmp_path / "runs").exists()  # its runs went to its own temporary folder


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_time_to_accuracy_breaks_the_wait_down_and_its_phases_add_up_to_it(tmp_path):
    result = run_benchmark(tmp_path, "time_to_accuracy.py", "moons-mlp", "0.8", "--max-epochs", "20", "--repeat", "2")
    assert len(result["runs"]) == 2
    for run in result["runs"]:
        seconds = run["seconds"]
        assert list(seconds) == ["launch", "start-up", "device", "data", "model", "first step", "epochs", "checkpoint"]
        assert run["val_acc"] >= 0.8 and run["epochs"] >= 1
        # every phase before the target epoch's line adds up to the time it took; the checkpoint comes after
        assert sum(seconds.values()) - seconds["checkpoint"] == pytest.approx(run["to_target_s"], abs=1e-6)
        assert run["to_checkpoint_s"] == pytest.approx(run["to_target_s"] + seconds["checkpoint"], abs=1e-6)
        assert seconds["start-up"] > 0.1 and all(s >= 0 for s in seconds.values())  # imports take time; none < 0
    assert result["median"]["to_checkpoint_s"] == pytest.approx(
        sorted(r["to_checkpoint_s"] for r in result["runs"])[0] / 2 + sorted(r["to_checkpoint_s"] for r in result["runs"])[1] / 2)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_startup_benchmark_times_each_phase_with_and_without_the_overlapped_import(tmp_path):
    result = run_benchmark(tmp_path, "startup.py", "circles-mlp", "--repeat", "1")
    for side in ("overlapped", "not_overlapped"):
        phases = result["median_phases"][side]
        assert list(phases) == ["device", "data", "model", "first step"] and all(s >= 0 for s in phases.values())
        assert result["median_total_s"][side] == pytest.approx(sum(phases.values()))
    # the not-overlapped side imports torch._dynamo in its optimizer: its model phase holds that import (~1 s here)
    assert result["median_phases"]["not_overlapped"]["model"] > 0.2
    assert result["median_ratio"] == pytest.approx(result["median_total_s"]["overlapped"]
                                                   / result["median_total_s"]["not_overlapped"])
