"""How many CPU threads a run takes, knowing what else runs: runs that share a machine do not fight.

Measured on a 2-core VM (benchmarks/RESULTS.md, "Runs that share a machine"): with torch's default (a thread per
core, each spinning while it waits for work) two runs of spirals-mlp at once did a fifth of the work of one; with a
thread each they did twice the work of one. A passive wait policy cured the fight too but cost a lone run 40%. So
each run sizes its threads from what it may use and what else is running:

* the cores this process may use: its CPU affinity, and a container's CPU quota (cgroup v2 ``cpu.max``);
* the live runs of this user on this machine: each run process registers itself, while it lives, as a small file in
  the user's state folder (``live/<pid>.json``, with the kernel's start time of the pid so a recycled pid is never
  counted); a run counts the entries whose process is alive, itself included, and removes stale ones;
* other processes' load (a build, a test suite, another user's job, the other runs): a run takes no more threads
  than the cores left idle, from /proc/stat against this process's own CPU time (an OpenMP thread that waits for a
  core stalls the others at every barrier: 2 threads beside a busy test suite on 2 cores trained 8x slower than 1);
* a CPU run takes an equal share of the cores (at least 1); a run on a GPU needs the CPU only for the host side of
  its steps and for data (which stays on the device for the built-in datasets), so it takes at most ``GPU_THREADS``
  of its share;
* ``train.threads = N`` pins it (0, the default, is this policy; -1 leaves torch's own default, a thread per core);
* the share is looked at again every ``REBALANCE_EVERY`` seconds at a log interval, as runs start and end
  (``torch.set_num_threads`` may change while a run trains).

Stdlib only: the policy is plain numbers; the run process applies them to torch.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tui_trainer.config.paths import user_state_dir
from tui_trainer.run.files import atomic_write
from tui_trainer.run.folder import pid_alive, proc_start

GPU_THREADS = 2
"""Threads a run on a GPU takes at most: the host side of its steps and its data, not its arithmetic."""
REBALANCE_EVERY = 2.0
"""Seconds between looks at the live runs (at log intervals): a run that starts is seen within this."""
START_SAMPLE = 0.2
"""Seconds over which a run looks at how busy the cores are before it chooses its threads."""


@dataclass(frozen=True)
class ThreadPlan:
    """What a run takes and why, in words for the device line."""

    threads: int
    why: str

    def describe(self) -> str:
        """``1 thread: 2 runs share 2 cores``."""
        return f"{self.threads} thread{'s' if self.threads != 1 else ''}: {self.why}"


def usable_cores() -> int:
    """The cores this process may use: its affinity, and a container's CPU quota when it sets one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """The CPU quota of this cgroup (v2) in whole cores, rounded up; None when unlimited or unknown."""
    try:
        limit, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if limit == "max":
        return None
    try:
        return max(1, -(-int(limit) // int(period)))
    except (ValueError, ZeroDivisionError):
        return None


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds so far: busy on the whole machine (/proc/stat), and of this process (every thread of it)."""

    at: float
    machine_busy: float
    mine: float


def cpu_sample() -> CpuSample | None:
    """Now's CPU seconds; None where /proc/stat is not there (not Linux)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle and iowait
    return CpuSample(time.monotonic(), (sum(values) - idle) / os.sysconf("SC_CLK_TCK"), time.process_time())


def busy_elsewhere(before: CpuSample | None, after: CpuSample | None, cores: int) -> float:
    """Cores of this process's ``cores`` kept busy by other processes between two samples (other runs and
    whatever else: a build, a test suite, another user's job). The machine's busy time is spread over its CPUs, so
    in a container allowed some of them, its share of the others' work is counted (a guess that the load spreads)."""
    if before is None or after is None or after.at - before.at < 0.05:
        return 0.0
    seconds = after.at - before.at
    others = max(0.0, (after.machine_busy - before.machine_busy) - (after.mine - before.mine)) / seconds
    machine = os.cpu_count() or cores
    return min(float(cores), others * cores / max(machine, cores))


def plan(requested: int, device_type: str, live_runs: int, cores: int | None = None, busy: float = 0.0) -> ThreadPlan:
    """The threads of a run on ``device_type`` while ``live_runs`` runs (itself included) share ``cores`` of which
    ``busy`` are kept busy by other processes: an equal share of the cores, and no more than the idle ones (an
    OpenMP thread that must wait for a core stalls all the others at the next barrier: measured, 2 threads beside
    a busy test suite on 2 cores trained 8x slower than 1)."""
    cores = cores or usable_cores()
    if requested > 0:
        return ThreadPlan(requested, "set by train.threads")
    if requested < 0:
        return ThreadPlan(cores, "torch's default (train.threads = -1): one per core, whatever else runs")
    live_runs = max(1, live_runs)
    share = max(1, cores // live_runs)
    sharing = (f"{live_runs} runs share {cores} core{'s' if cores != 1 else ''}" if live_runs > 1
               else f"alone on {cores} core{'s' if cores != 1 else ''}")
    idle = max(1, round(cores - busy))
    if idle < share:
        share, sharing = idle, f"{sharing}, {busy:.1f} busy with other work"
    if device_type != "cpu":
        return ThreadPlan(min(share, GPU_THREADS), f"the host side of a {device_type} run; {sharing}")
    return ThreadPlan(share, sharing)


class Registry:
    """The live runs of this user on this machine: one file per run process in ``folder``, there while it lives."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or user_state_dir() / "live"
        self.entry: Path | None = None

    def join(self, run_dir: Path | str, device_type: str) -> None:
        """Register this process (a failure to write leaves the run alone in its count, never stops it)."""
        pid = os.getpid()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.entry = self.folder / f"{pid}.json"
            atomic_write(self.entry, json.dumps({"pid": pid, "proc_start": proc_start(pid), "run_dir": str(run_dir),
                                                 "device": device_type, "since": time.time()}), durable=False)
        except OSError:
            self.entry = None

    def leave(self) -> None:
        """Unregister this process."""
        if self.entry is not None:
            self.entry.unlink(missing_ok=True)
            self.entry = None

    def count(self) -> int:
        """Live runs registered now, this one included (stale entries, of processes gone, are removed)."""
        live = 0
        try:
            entries = list(self.folder.glob("*.json"))
        except OSError:
            return 1
        for path in entries:
            try:
                info = json.loads(path.read_text())
                alive = pid_alive(int(info["pid"]), info.get("proc_start"))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written, or not ours to judge
            if alive:
                live += 1
            else:
                path.unlink(missing_ok=True)
        return max(live, 1)


class ThreadPolicy:
    """A run's threads over its life: the plan at the start, and a new one when the live runs change."""

    def __init__(self, requested: int, device_type: str, registry: Registry | None = None,
                 cores: int | None = None) -> None:
        self.requested, self.device_type = requested, device_type
        self.registry = registry or Registry()
        self.cores = cores or usable_cores()
        self._looked = 0.0
        self._sample: CpuSample | None = None
        self.current: ThreadPlan | None = None

    def start(self, run_dir: Path | str) -> ThreadPlan:
        """Join the registry (every run does: a pinned one still takes its cores from the others' share) and make
        the first plan, from the live runs and what the cores did in the last ``START_SAMPLE`` seconds."""
        self.registry.join(run_dir, self.device_type)
        busy = 0.0
        if self.requested == 0:
            first = cpu_sample()
            time.sleep(START_SAMPLE)  # a sampling interval, not a wait for anything
            self._sample = cpu_sample()
            busy = busy_elsewhere(first, self._sample, self.cores)
        self._looked = time.monotonic()
        self.current = plan(self.requested, self.device_type, self.registry.count(), self.cores, busy)
        return self.current

    def rebalance(self) -> ThreadPlan | None:
        """A new plan when the live runs or the other processes' load changed the share since the last look (at
        most every REBALANCE_EVERY seconds), else None. Cheap: a directory listing and a few small reads."""
        if self.requested != 0 or time.monotonic() - self._looked < REBALANCE_EVERY:
            return None
        self._looked = time.monotonic()
        sample = cpu_sample()
        busy = busy_elsewhere(self._sample, sample, self.cores)
        self._sample = sample
        new = plan(self.requested, self.device_type, self.registry.count(), self.cores, busy)
        if self.current is not None and new.threads == self.current.threads:
            self.current = new  # the words may differ (3 runs instead of 2 on 2 cores): one thread either way
            return None
        self.current = new
        return new

    def stop(self) -> None:
        """Leave the registry."""
        self.registry.leave()
