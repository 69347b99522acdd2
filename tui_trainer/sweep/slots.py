"""Where trials run side by side: a slot is a place for one trial, on a GPU of its own (or a share of one), or on
the CPU with a share of its cores. Stdlib only: the sweep process never imports torch.

* GPUs: one trial per GPU by default (``--per-gpu N`` for N), each trial seeing only its GPU through
  ``CUDA_VISIBLE_DEVICES`` (so ``train.device = "auto"`` picks it as ``cuda:0``) and at most 2 CPU threads. The GPUs
  are those the sweep may see: ``CUDA_VISIBLE_DEVICES`` when it is set, else what ``nvidia-smi`` lists.
* CPU: at most one trial per usable core. Each trial is a run process, whose thread policy (run/threads.py,
  ``train.threads = 0``) shares the cores among the live runs, so trials do not fight for them
  (benchmarks/RESULTS.md, "Runs that share a machine": two runs with torch's default threads on 2 cores did a
  fifth of the work of one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from tui_trainer.errors import ConfigError
from tui_trainer.run.notify import NOTIFY_ENV
from tui_trainer.run.threads import GPU_THREADS, usable_cores


@dataclass(frozen=True)
class Slot:
    """A place for one trial."""

    index: int
    gpu: str | None = None
    """The GPU it sees (an index or UUID as CUDA_VISIBLE_DEVICES names it); None on the CPU."""
    threads: int | None = None
    """The CPU threads a trial will take: what its run's thread policy (run/threads.py) gives it while every slot
    is busy. Said in the sweep's lines; the run process decides."""

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The trial process's environment: ``base`` (this process's) with its GPU. Its threads are its run's
        thread policy's (the trials register as live runs, so they share the cores). No notify hook: thirty
        trials would ring thirty times; the sweep is one thing that ends."""
        env = dict(os.environ if base is None else base)
        env.pop(NOTIFY_ENV, None)
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env

    def describe(self) -> str:
        """``GPU 1`` or ``CPU, 2 threads``."""
        if self.gpu is not None:
            return f"GPU {self.gpu}"
        return f"CPU, {self.threads} thread{'s' if self.threads != 1 else ''}"


def visible_gpus(env: dict[str, str] | None = None) -> list[str]:
    """The GPUs trials may use: CUDA_VISIBLE_DEVICES when it is set (empty: none), else nvidia-smi's list (none
    when there is no NVIDIA driver)."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        return [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip() and not g.strip().startswith("-")]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


def plan_slots(device: str, parallel: int | None, per_gpu: int | None, gpus: list[str] | None = None,
               cores: int | None = None) -> list[Slot]:
    """The slots of a sweep: one per trial that may run at once. ``device`` is the preset's train.device (cpu
    keeps trials off the GPUs); ``parallel`` None means one per GPU slot, else 1 on the CPU. ConfigError (one
    line) when more are asked than the machine has room for."""
    gpus = (visible_gpus() if gpus is None else gpus) if device in ("auto", "cuda") else []
    if device == "cuda" and not gpus:
        raise ConfigError("train.device = 'cuda' but no GPU is visible here (CUDA_VISIBLE_DEVICES, nvidia-smi); "
                          "allowed here: auto, cpu")
    if parallel is not None and parallel < 1:
        raise ConfigError(f"--parallel {parallel}: allowed: 1 or more")
    if gpus:
        if per_gpu is None:
            per_gpu = max(1, -(-(parallel or len(gpus)) // len(gpus)))  # --parallel 4 on 2 GPUs: 2 per GPU
        if per_gpu < 1:
            raise ConfigError(f"--per-gpu {per_gpu}: allowed: 1 or more")
        room = [Slot(0, gpu) for _k in range(per_gpu) for gpu in gpus]  # GPU after GPU, then a second round
        if parallel is not None and parallel > len(room):
            raise ConfigError(f"--parallel {parallel}: {len(gpus)} GPU(s) x {per_gpu} trial(s) per GPU make "
                              f"{len(room)} slots; allowed: 1..{len(room)} (or raise --per-gpu)")
        chosen = room[:parallel or len(room)]
        threads = min(GPU_THREADS, max(1, (cores or usable_cores()) // len(chosen)))
        return [Slot(i, s.gpu, threads) for i, s in enumerate(chosen)]
    if per_gpu is not None:
        raise ConfigError("--per-gpu: no GPU is visible here (or train.device is cpu); trials run on the CPU, "
                          "--parallel of them")
    cores = cores or usable_cores()
    parallel = parallel or 1
    if parallel > cores:
        raise ConfigError(f"--parallel {parallel}: this machine lets the sweep use {cores} core(s); trials on the "
                          f"CPU run at most one per core: allowed: 1..{cores}")
    return [Slot(i, None, cores // parallel) for i in range(parallel)]
