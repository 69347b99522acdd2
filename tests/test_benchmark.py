"""The benchmark runs (quick mode) and reports every mode: CI fails on a crash, never on a slow machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_throughput_benchmark_quick_mode_runs_every_mode(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick", "--json",
                           "--modes", "abce", "--steps", "50"], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**__import__("os").environ, "TUI_TRAINER_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    rates = result["samples_per_s"]
    assert set(rates) == {"a_lecture_loop", "b_engine_headless", "c_engine_in_app",
                          "b_engine_headless_child", "e_engine_beside_app"}
    assert all(rate > 0 for rate in rates.values())
    assert result["ratio_to_lecture"]["a_lecture_loop"] == 1.0
    assert result["app"]["posts"] > 0
    assert result["beside_app"]["posts"] > 0  # the child's events reached the app's screen
