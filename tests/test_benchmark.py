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


@pytest.mark.timeout(600)
def test_throughput_benchmark_quick_mode_runs_every_mode(tmp_path):
    result = run_benchmark(tmp_path, "throughput.py", "--quick", "--modes", "abc", "--steps", "20")
    rates = result["samples_per_s"]
    assert set(rates) == {"a_lecture_loop", "b_engine_headless", "c_engine_with_app"}
    assert all(rate > 0 for rate in rates.values())
    assert result["ratio_to_lecture"]["a_lecture_loop"] == 1.0
    assert result["app_over_headless"] > 0 and len(result["app_over_headless_pairs"]) == 1
    assert result["app"]["events"] > 0  # the run process's events reached the app's screen
    assert result["app"]["replots"] > 0  # and its charts were drawn


@pytest.mark.timeout(600)
def test_events_cost_benchmark_quick_mode_times_the_recorder(tmp_path):
    result = run_benchmark(tmp_path, "events_cost.py", "--quick")
    assert result["events_per_epoch"] >= 2  # StepLogged(s), EpochEnded, CheckpointSaved
    assert result["events_jsonl_bytes"] > 0
    assert all(ms > 0 for ms in result["sink_ms_per_epoch"])
    assert "EpochEnded" in result["sink_ms_per_epoch_by_kind"]
    assert 0 < result["direct_share"] < 1 and result["recorder_over_none"] > 0


@pytest.mark.timeout(600)
def test_attach_benchmark_paints_every_epoch_of_a_long_run(tmp_path):
    result = run_benchmark(tmp_path, "attach.py", "--epochs", "1000")
    assert result["snapshot"]  # 6,003 events: the run leaves history.json, and the app is drawn from it
    attempt = result["attempts"][0]
    assert attempt["val_points"] == 1000  # the loss chart holds every epoch of the history
    assert attempt["step_points"] == 1000 * result["steps_per_epoch"]
    assert attempt["folded_s"] > 0 and 0 < attempt["replotted_s"] <= attempt["painted_s"]


@pytest.mark.timeout(300)
def test_ddp_cost_benchmark_times_the_step_and_each_collective(tmp_path):
    result = run_benchmark(tmp_path, "ddp_cost.py", "--steps", "5", "--warmup", "2")
    assert result["nproc"] == 2 and result["device"] == "cpu"
    for name in ("step", "plain_step", "share_commands", "gather_memory", "all_reduce"):
        assert result[f"{name}_ms"] > 0, name
    assert result["share_commands_per_step"] == pytest.approx(result["share_commands_ms"] / result["step_ms"])
