"""Detect the training device (cuda > mps > cpu) and describe it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tui_trainer.config import ConfigError


@dataclass(frozen=True)
class DeviceInfo:
    """What a device is, for the UI and ``tui-trainer devices``."""

    type: str
    name: str
    total_memory: int = 0  # bytes; 0 where unknown (cpu, mps)

    def describe(self) -> str:
        """One line: type, name and memory."""
        mem = f", {self.total_memory / 2**30:.1f} GiB" if self.total_memory else ""
        return f"{self.type}: {self.name}{mem}"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def pick_device(requested: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit choice must be available."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA GPU is available; allowed here: auto, cpu")
    if requested == "mps" and not _mps_available():
        raise ConfigError("train.device = 'mps' but MPS is not available; allowed here: auto, cpu")
    if requested not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {requested!r} not allowed; allowed: auto, cpu, cuda, mps")
    return torch.device(requested)


def describe_device(device: torch.device, threads: bool = True) -> DeviceInfo:
    """Name and memory of a device (a CPU's with torch's threads now, unless ``threads`` is False: a run's device
    line names its thread plan instead)."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return DeviceInfo("cuda", props.name, props.total_memory)
    if device.type == "mps":
        return DeviceInfo("mps", "Apple GPU (Metal)")
    import platform

    name = platform.processor() or platform.machine()
    if not threads:
        return DeviceInfo("cpu", name)
    n = torch.get_num_threads()
    return DeviceInfo("cpu", f"{name}, {n} thread{'s' if n != 1 else ''}")


def memory_in_use(device: torch.device) -> tuple[int, int] | None:
    """(allocated, free) bytes on a CUDA device, else None. Cheap: no kernel sync."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return torch.cuda.memory_allocated(device), free


def shared_gpu_note(total: int, free: int, ours: int) -> tuple[str, str] | None:
    """What a run on a GPU says at its start when other processes (other runs) already hold some of its memory:
    (level, line), a warning when under a tenth is left; None when the GPU is its own. ``ours``: bytes this
    process has reserved (its model and data, loaded by then)."""
    others = max(0, total - free - ours)
    if others < total * 0.02:  # the driver's own few hundred MiB: not another run
        return None
    gib = 2**30
    line = (f"other processes hold {others / gib:.1f} of this GPU's {total / gib:.1f} GiB; this run may use the "
            f"{free / gib:.1f} GiB free")
    if free < total * 0.1:
        return "warning", line + ": a larger batch or model may run out of memory (the error will name it)"
    return "info", line


def all_devices() -> list[DeviceInfo]:
    """Every device torch can see here."""
    found = [describe_device(torch.device("cpu"))]
    for i in range(torch.cuda.device_count()):
        found.append(describe_device(torch.device("cuda", i)))
    if _mps_available():
        found.append(describe_device(torch.device("mps")))
    return found
