"""Runs that share a machine: the thread policy, the registry of live runs, and a container's quota."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tui_trainer.run.threads as threads_mod
from tui_trainer.run.threads import (
    GPU_THREADS,
    CpuSample,
    Registry,
    ThreadPolicy,
    _cgroup_quota,
    busy_elsewhere,
    cpu_sample,
    plan,
    usable_cores,
)


@pytest.fixture
def quiet(monkeypatch):
    """The other processes' load read as none: the tests of the registry and the share do not depend on what else
    this machine runs."""
    monkeypatch.setattr(threads_mod, "busy_elsewhere", lambda *a: 0.0)


def test_the_cores_are_shared_equally_and_never_below_one():
    assert plan(0, "cpu", 1, cores=8).threads == 8
    assert plan(0, "cpu", 2, cores=8).threads == 4
    assert plan(0, "cpu", 3, cores=8).threads == 2
    assert plan(0, "cpu", 4, cores=2).threads == 1
    assert plan(0, "cpu", 2, cores=2).describe() == "1 thread: 2 runs share 2 cores"
    assert plan(0, "cpu", 1, cores=2).describe() == "2 threads: alone on 2 cores"


def test_cores_other_processes_keep_busy_are_left_to_them():
    assert plan(0, "cpu", 1, cores=2, busy=1.0).describe() == "1 thread: alone on 2 cores, 1.0 busy with other work"
    assert plan(0, "cpu", 1, cores=2, busy=0.3).threads == 2  # a terminal, an app: not worth a core
    assert plan(0, "cpu", 1, cores=8, busy=5.6).threads == 2
    assert plan(0, "cpu", 2, cores=8, busy=2.0).threads == 4  # the share is less than the idle cores: the share
    assert plan(0, "cpu", 1, cores=2, busy=9.0).threads == 1  # never none
    assert plan(2, "cpu", 1, cores=2, busy=2.0).threads == 2  # a pin is a pin


def test_busy_elsewhere_is_the_machine_s_busy_time_less_this_process_s(monkeypatch):
    monkeypatch.setattr(threads_mod.os, "cpu_count", lambda: 2)
    assert busy_elsewhere(CpuSample(0.0, 10.0, 1.0), CpuSample(2.0, 13.0, 2.0), 2) == 1.0  # 3 s busy, 1 of it ours
    assert busy_elsewhere(CpuSample(0.0, 10.0, 1.0), CpuSample(2.0, 11.0, 2.0), 2) == 0.0  # all of it ours
    monkeypatch.setattr(threads_mod.os, "cpu_count", lambda: 64)
    assert busy_elsewhere(CpuSample(0.0, 0.0, 0.0), CpuSample(1.0, 32.0, 0.0), 2) == 1.0  # half of 64: half of our 2
    assert busy_elsewhere(None, CpuSample(1.0, 1.0, 1.0), 2) == 0.0
    first = cpu_sample()
    spent = time.process_time() + 0.2
    while time.process_time() < spent:  # this process busy for 0.2 s: not counted as another's
        pass
    second = cpu_sample()
    assert first is not None and second is not None and second.mine - first.mine >= 0.19
    assert 0.0 <= busy_elsewhere(first, second, usable_cores()) <= usable_cores()


def test_a_gpu_run_takes_the_threads_its_host_side_needs_and_a_pin_is_a_pin():
    assert plan(0, "cuda", 1, cores=64).threads == GPU_THREADS
    assert plan(0, "cuda", 64, cores=64).threads == 1
    assert plan(3, "cpu", 5, cores=2).describe() == "3 threads: set by train.threads"
    assert plan(-1, "cpu", 5, cores=6).threads == 6  # torch's own default: every core


def test_a_containers_quota_bounds_the_cores(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert _cgroup_quota(cpu_max) == 2  # 1.5 cores of quota: 2 threads can use them
    cpu_max.write_text("max 100000\n")
    assert _cgroup_quota(cpu_max) is None
    assert _cgroup_quota(tmp_path / "missing") is None
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


def test_the_registry_counts_live_processes_only_and_drops_the_dead(tmp_path):
    registry = Registry(tmp_path / "live")
    registry.join(tmp_path / "run-a", "cpu")
    assert registry.count() == 1
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (tmp_path / "live" / f"{other.pid}.json").write_text(json.dumps({"pid": other.pid, "proc_start": None}))
        assert registry.count() == 2  # a second run is alive
    finally:
        other.communicate(b"")
    assert registry.count() == 1  # it ended without leaving: its entry is stale and goes
    assert not (tmp_path / "live" / f"{other.pid}.json").exists()
    (tmp_path / "live" / "99999999.json").write_text(json.dumps({"pid": os.getpid(), "proc_start": "1"}))
    assert registry.count() == 1  # our pid with another start time: a recycled pid, not a run
    registry.leave()
    assert not list((tmp_path / "live").glob("*.json"))


def test_the_policy_rebalances_when_a_run_starts_or_ends(tmp_path, monkeypatch, quiet):
    import tui_trainer.run.threads as threads

    registry = Registry(tmp_path / "live")
    policy = ThreadPolicy(0, "cpu", registry, cores=2)
    assert policy.start(tmp_path / "run").threads == 2
    assert policy.rebalance() is None  # looked a moment ago: not again yet
    monkeypatch.setattr(threads, "REBALANCE_EVERY", 0.0)
    assert policy.rebalance() is None  # nothing changed
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (tmp_path / "live" / f"{other.pid}.json").write_text(json.dumps({"pid": other.pid, "proc_start": None}))
        new = policy.rebalance()
        assert new is not None and new.describe() == "1 thread: 2 runs share 2 cores"
    finally:
        other.communicate(b"")
    back = policy.rebalance()
    assert back is not None and back.threads == 2
    policy.stop()
    assert not list((tmp_path / "live").glob("*.json"))


class _Second:
    """A sink that starts a second live run (a registry entry of a live process) at the run's first step."""

    def __init__(self, live: Path) -> None:
        self.live, self.events, self.other = live, [], None

    def emit(self, event) -> None:
        from tui_trainer.run.events import StepLogged

        self.events.append(event)
        if isinstance(event, StepLogged) and self.other is None:
            self.other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
            (self.live / f"{self.other.pid}.json").write_text(json.dumps({"pid": self.other.pid, "proc_start": None}))


def test_a_run_says_its_threads_and_takes_its_share_when_another_starts(tmp_path, monkeypatch, runs, quiet):
    """The device line names the plan; a run that starts beside it is seen at a log interval and torch's threads
    follow (the run's own thread: OpenMP's count is per thread)."""
    import torch

    import tui_trainer.run.threads as threads
    from tests.conftest import tiny
    from tui_trainer.engine import fit
    from tui_trainer.run.events import LogMessage, RunStarted, StepLogged

    monkeypatch.setattr(threads, "REBALANCE_EVERY", 0.0)
    registry = Registry(tmp_path / "live")
    policy = ThreadPolicy(0, "cpu", registry, cores=2)
    before = torch.get_num_threads()
    sink = _Second(tmp_path / "live")
    try:
        torch.set_num_threads(policy.start(tmp_path / "run").threads)
        result = fit(tiny("train.epochs=2", "train.log_every=2"), sink, runs_dir=runs, threads=policy)
        during = torch.get_num_threads()
    finally:
        policy.stop()
        torch.set_num_threads(before)
        if sink.other is not None:
            sink.other.communicate(b"")
    assert result.reason == "completed"
    started = next(e for e in sink.events if isinstance(e, RunStarted))
    assert started.device.endswith(" · 2 threads: alone on 2 cores"), started.device
    said = [e.text for e in sink.events if isinstance(e, LogMessage) and e.text.startswith("threads now")]
    assert said == ["threads now 1 thread: 2 runs share 2 cores"]
    first_step = next(i for i, e in enumerate(sink.events) if isinstance(e, StepLogged))
    assert sink.events.index(next(e for e in sink.events if isinstance(e, LogMessage) and e.text in said)) > first_step
    assert during == 1  # the run trained on its share


@pytest.mark.slow
def test_a_run_process_beside_a_live_run_says_it_took_its_share(tmp_path, runs):
    """Two runs at once through the registry in the user's state folder (TUI_TRAINER_HOME, set per test): the second
    run process's device line says what it took and why."""
    from tests.conftest import tiny
    from tui_trainer.config.paths import user_state_dir
    from tui_trainer.run.client import start
    from tui_trainer.run.events import RunStarted

    live = user_state_dir() / "live"
    live.mkdir(parents=True, exist_ok=True)
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (live / f"{other.pid}.json").write_text(json.dumps({"pid": other.pid, "proc_start": None}))
        handle = start(tiny("train.epochs=1"), runs)
        assert handle.wait(120) == "finished"
    finally:
        other.communicate(b"")
    started = next(e for e in handle.run.read_events()[0] if isinstance(e, RunStarted))
    cores = usable_cores()
    share = max(1, cores // 2)  # or fewer, when other processes keep cores busy (this machine runs other tests)
    said = re.search(rf" · (\d+) threads?: 2 runs share {cores} cores?(, [\d.]+ busy with other work)?$",
                     started.device)
    assert said and 1 <= int(said[1]) <= share, started.device
    assert not (live / f"{handle.process.pid}.json").exists()  # it left the registry when it ended


def test_a_gpu_run_says_what_other_processes_hold_of_its_gpu():
    from tui_trainer.engine.device import shared_gpu_note

    gib = 2**30
    assert shared_gpu_note(80 * gib, 79 * gib, 1 * gib) is None  # its own: nothing to say
    assert shared_gpu_note(80 * gib, int(79.5 * gib), 0) is None  # the driver's few hundred MiB
    assert shared_gpu_note(80 * gib, 50 * gib, 2 * gib) == (
        "info", "other processes hold 28.0 of this GPU's 80.0 GiB; this run may use the 50.0 GiB free")
    level, line = shared_gpu_note(80 * gib, 4 * gib, 1 * gib)
    assert level == "warning" and line.startswith("other processes hold 75.0 of this GPU's 80.0 GiB; this run may "
                                                  "use the 4.0 GiB free: a larger batch")
