"""The machine beside the curve: what the GPUs of the run shown and its process are doing, sampled from the app's
side (never in the training loop: the run pays nothing for it; benchmarks/machine_cost.py measures that).

Per GPU of the run, through NVML (nvidia-ml-py, ``import pynvml``: the optional ``gpu`` extra): utilisation,
memory used/total, power and its limit, temperature and the clock event (throttle) reasons. Never ``nvidia-smi``:
a process per sample slowed training ~10x in a Lightning report. The GPUs of the run are its visible devices
(``CUDA_VISIBLE_DEVICES`` read from the run process's own environment; every GPU when unset), the first ``nproc``
of them: a process trains on ``cuda:0`` of what it sees, torchrun's ranks on ``cuda:LOCAL_RANK``. An index there
is taken as NVML's index (the same unless ``CUDA_DEVICE_ORDER`` differs from PCI bus order); a ``GPU-...`` UUID is
looked up by UUID.

Of the run process (and its children: torchrun's ranks, DataLoader workers), through psutil: CPU % (100 = one
core) and resident memory. psutil is a dependency: it reads the process tree on Linux and macOS (an MPS laptop has
no /proc), and its per-process CPU times make a % between two samples without our own bookkeeping.

Without NVML the sample says why in one word (``no NVML``, ``no GPU``, ``CPU run``) and the CPU side still works.
Stdlib, psutil and pynvml only: no Textual (the widget is ui/widgets/machine.py).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LOW_UTIL = 50.0  # % GPU busy, averaged over the window, below which steps wait on something else
LOW_UTIL_WINDOW = 10  # samples (5-10 s at 1-2 Hz): one slow validation pass is not an alarm
MEMORY_FULL = 0.95  # used / total from which memory is "nearly full"
GIB = 1024 ** 3


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment (None: NVML cannot say it on this GPU)."""

    label: str  # as the run sees it: "0", "1" (its cuda:N)
    name: str
    util: float | None  # % of the last sample period a kernel ran
    mem_used: int | None  # bytes
    mem_total: int | None
    power_w: float | None
    power_limit_w: float | None
    temp_c: float | None
    throttle: tuple[str, ...] = ()  # why its clocks are held down now: "thermal", "power cap", "power brake"

    @property
    def mem_fraction(self) -> float | None:
        """Memory used / total."""
        if self.mem_used is None or not self.mem_total:
            return None
        return self.mem_used / self.mem_total


@dataclass(frozen=True)
class MachineSample:
    """The run's process tree and GPUs at ``t`` (time.monotonic())."""

    t: float
    cpu_percent: float | None  # the process tree's, 100 = one core; None: not measured yet or no process
    rss: int | None  # bytes, the process tree's
    gpus: tuple[GpuSample, ...] = ()
    gpu_word: str | None = None  # why there are no GPU numbers, in a word: "no NVML", "no GPU", "CPU run"
    processes: int = 0  # processes in the tree (the run, its ranks, its workers)


# -- GPUs through NVML ----------------------------------------------------------------------------------------------


THROTTLE_BITS = (  # pynvml constant name (the ClocksEvent spelling first, the older ClocksThrottle one), word
    (("nvmlClocksEventReasonSwThermalSlowdown", "nvmlClocksThrottleReasonSwThermalSlowdown"), "thermal"),
    (("nvmlClocksEventReasonHwThermalSlowdown", "nvmlClocksThrottleReasonHwThermalSlowdown"), "thermal"),
    (("nvmlClocksEventReasonHwPowerBrakeSlowdown", "nvmlClocksThrottleReasonHwPowerBrakeSlowdown"), "power brake"),
    (("nvmlClocksEventReasonSwPowerCap", "nvmlClocksThrottleReasonSwPowerCap"), "power cap"),
)


def visible_devices(environ: dict[str, str]) -> list[str] | None:
    """The devices CUDA_VISIBLE_DEVICES names (None: unset, every GPU). CUDA stops at the first invalid entry."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    out = []
    for part in value.split(","):
        part = part.strip()
        if not part or part.startswith("-"):
            break
        out.append(part)
    return out


def process_environ(pid: int) -> dict[str, str]:
    """A process's environment (Linux /proc, same user); empty when it cannot be read."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


class Nvml:
    """NVML through pynvml, initialised once; ``word`` says why not when it cannot be used."""

    def __init__(self, module: Any = None) -> None:
        self.nv: Any = None
        self.word: str | None = None
        try:
            if module is None:
                import pynvml as module  # the optional gpu extra: pip install 'tui-trainer[gpu]'
            module.nvmlInit()
        except ImportError:
            self.word = "no NVML"
            return
        except Exception:  # noqa: BLE001 - pynvml.NVMLError (no driver, no libnvidia-ml.so): the same word
            self.word = "no NVML"
            return
        self.nv = module
        try:
            if int(module.nvmlDeviceGetCount()) == 0:
                self.word = "no GPU"
        except Exception:  # noqa: BLE001 - NVMLError
            self.word = "no GPU"

    def handles(self, devices: list[str] | None, count: int) -> list[tuple[str, Any]]:
        """(label, handle) of the first ``count`` of ``devices`` (None: every GPU in NVML's order)."""
        if self.nv is None:
            return []
        nv = self.nv
        if devices is None:
            devices = [str(i) for i in range(int(nv.nvmlDeviceGetCount()))]
        out = []
        for label, device in enumerate(devices[:max(count, 1)]):
            try:
                handle = (nv.nvmlDeviceGetHandleByUUID(device) if device.startswith(("GPU-", "MIG-"))
                          else nv.nvmlDeviceGetHandleByIndex(int(device)))
            except Exception:  # noqa: BLE001 - NVMLError or ValueError: a UUID prefix, or an index NVML does not know
                continue
            out.append((str(label), handle))
        return out

    def sample(self, label: str, handle: Any) -> GpuSample:
        """One GPU's numbers now; a number NVML cannot give (not supported on this GPU) is None."""
        nv = self.nv

        def ask(fn: str, *args: Any) -> Any:
            try:
                return getattr(nv, fn)(handle, *args)
            except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends: that number is unknown
                return None

        name = ask("nvmlDeviceGetName")
        util = ask("nvmlDeviceGetUtilizationRates")
        memory = ask("nvmlDeviceGetMemoryInfo")
        power = ask("nvmlDeviceGetPowerUsage")  # milliwatts
        limit = ask("nvmlDeviceGetEnforcedPowerLimit")  # milliwatts
        temp = ask("nvmlDeviceGetTemperature", getattr(nv, "NVML_TEMPERATURE_GPU", 0))
        reasons = ask("nvmlDeviceGetCurrentClocksEventReasons")
        if reasons is None:
            reasons = ask("nvmlDeviceGetCurrentClocksThrottleReasons")  # drivers before the rename
        return GpuSample(
            label=label, name=name.decode() if isinstance(name, bytes) else str(name or "GPU"),
            util=float(util.gpu) if util is not None else None,
            mem_used=int(memory.used) if memory is not None else None,
            mem_total=int(memory.total) if memory is not None else None,
            power_w=power / 1000.0 if power is not None else None,
            power_limit_w=limit / 1000.0 if limit is not None else None,
            temp_c=float(temp) if temp is not None else None,
            throttle=throttle_words(nv, reasons))

    def close(self) -> None:
        """Shut NVML down (once)."""
        if self.nv is not None:
            try:
                self.nv.nvmlShutdown()
            except Exception:  # noqa: BLE001 - already shut down
                pass
            self.nv = None


def throttle_words(nv: Any, reasons: int | None) -> tuple[str, ...]:
    """The words for the bits of a clock event reasons mask that mean the GPU is held down (not idle)."""
    if not reasons:
        return ()
    words: list[str] = []
    for names, word in THROTTLE_BITS:
        bit = next((getattr(nv, n) for n in names if hasattr(nv, n)), 0)
        if bit and reasons & bit and word not in words:
            words.append(word)
    return tuple(words)


# -- the process tree through psutil ----------------------------------------------------------------------------------


class ProcessTree:
    """CPU % and RSS of a process and its descendants, between two calls (psutil's own per-process clocks)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._known: dict[int, Any] = {}  # pid -> psutil.Process, kept so cpu_percent() measures since the last call
        try:
            import psutil
        except ImportError:  # installed without it: the pane says so
            self.psutil = None
            return
        self.psutil = psutil

    def sample(self) -> tuple[float | None, int | None, int]:
        """(CPU %, RSS bytes, processes) now; CPU % is None at the first call (nothing to measure from yet) and
        everything is None when the process is gone."""
        ps = self.psutil
        if ps is None:
            return None, None, 0
        try:
            root = self._known.get(self.pid) or ps.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
            return None, None, 0
        cpu, rss = 0.0, 0
        alive: dict[int, Any] = {}
        for proc in tree:
            proc = self._known.get(proc.pid, proc)
            try:
                with proc.oneshot():
                    percent = proc.cpu_percent(None)  # since this Process object's last call; 0.0 at its first
                    rss += proc.memory_info().rss
            except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                continue
            cpu += percent  # a child new since the last call adds 0.0 (its first reading): counted from the next
            alive[proc.pid] = proc
        first = self.pid not in self._known
        self._known = alive
        if not alive:
            return None, None, 0
        return (None if first else cpu), rss, len(alive)


# -- the sampler the app runs ---------------------------------------------------------------------------------------


class MachineSampler:
    """Samples one run: its process tree and its GPUs. Made in a worker thread (NVML's init can take a moment);
    ``sample()`` is a few ms (a worker's job at 1-2 Hz, never the UI thread's)."""

    def __init__(self, pid: int | None, device: str, nproc: int = 1, nvml: Nvml | None = None,
                 environ: dict[str, str] | None = None) -> None:
        self.tree = ProcessTree(pid) if pid else None
        self.nvml: Nvml | None = None
        self.handles: list[tuple[str, Any]] = []
        self.gpu_word: str | None = None
        if device in ("cpu", "mps"):
            self.gpu_word = "CPU run" if device == "cpu" else "MPS"
            return
        self.nvml = nvml or Nvml()
        self.gpu_word = self.nvml.word
        if self.gpu_word is None:
            env = process_environ(pid) if environ is None and pid else (environ or {})
            self.handles = self.nvml.handles(visible_devices(env), nproc)
            if not self.handles:
                self.gpu_word = "no GPU"

    def sample(self) -> MachineSample:
        """Now."""
        cpu, rss, processes = self.tree.sample() if self.tree is not None else (None, None, 0)
        gpus = tuple(self.nvml.sample(label, h) for label, h in self.handles) if self.nvml is not None else ()
        return MachineSample(time.monotonic(), cpu, rss, gpus, self.gpu_word if not gpus else None, processes)

    def close(self) -> None:
        """Let NVML go."""
        if self.nvml is not None:
            self.nvml.close()


def device_kind(device_line: str) -> str:
    """cuda, mps or cpu from the run's device line ("cuda: NVIDIA H100 ...", "cpu: 2 threads ...")."""
    head = device_line.split(":", 1)[0].strip().lower()
    return head if head in ("cuda", "mps", "cpu") else "cuda"


# -- words ------------------------------------------------------------------------------------------------------------


def size_text(n: int | None) -> str:
    """Bytes in GiB (MiB below one)."""
    if n is None:
        return "?"
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 1024 ** 2:.0f} MiB"


def machine_line(sample: MachineSample | None) -> str:
    """The short line beside the device: "GPU0 87% 41.2/80.0 GiB 312 W 71°C · CPU 104% 2.3 GiB"."""
    if sample is None:
        return ""
    parts = []
    for g in sample.gpus:
        bits = [f"GPU{g.label}"]
        bits.append(f"{g.util:.0f}%" if g.util is not None else "?%")
        if g.mem_used is not None and g.mem_total:
            bits.append(f"{g.mem_used / GIB:.1f}/{g.mem_total / GIB:.1f} GiB")
        if g.power_w is not None:
            bits.append(f"{g.power_w:.0f} W")
        if g.temp_c is not None:
            bits.append(f"{g.temp_c:.0f}°C")
        parts.append(" ".join(bits))
    if sample.gpu_word:
        parts.append(sample.gpu_word)
    cpu = f"{sample.cpu_percent:.0f}%" if sample.cpu_percent is not None else "…"
    if sample.rss is not None:
        parts.append(f"CPU {cpu} {size_text(sample.rss)}")
    return " · ".join(parts)


def machine_alarms(samples: Sequence[MachineSample], steps_running: bool) -> list[tuple[str, str]]:
    """(kind, words) for what needs the person's eye now: a GPU mostly idle while steps run (averaged over the
    last ``LOW_UTIL_WINDOW`` samples), memory within 5% of full, clocks held down by heat or power."""
    if not samples:
        return []
    last = samples[-1]
    out: list[tuple[str, str]] = []
    window = samples[-LOW_UTIL_WINDOW:]
    for g in last.gpus:
        utils = [s.util for sample in window for s in sample.gpus if s.label == g.label and s.util is not None]
        if steps_running and len(utils) >= LOW_UTIL_WINDOW and sum(utils) / len(utils) < LOW_UTIL:
            mean = sum(utils) / len(utils)
            out.append((f"util{g.label}", f"GPU{g.label} busy {mean:.0f}% while training: the steps wait on data or "
                        "the host. Keep the data on the GPU (data.device_resident=always), raise data.num_workers "
                        "when streaming, or a larger data.batch_size"))
        fraction = g.mem_fraction
        if fraction is not None and fraction >= MEMORY_FULL:
            out.append((f"mem{g.label}", f"GPU{g.label} memory {100 * fraction:.0f}% full "
                        f"({size_text(g.mem_used)} of {size_text(g.mem_total)}): a larger batch or model will not fit; "
                        "train.amp=bf16 or a smaller data.batch_size frees some"))
        if g.throttle:
            temp = f" at {g.temp_c:.0f}°C" if g.temp_c is not None and not math.isnan(g.temp_c) else ""
            out.append((f"throttle{g.label}", f"GPU{g.label} throttled ({', '.join(g.throttle)}){temp}: its clocks "
                        "are held down, steps run slower"))
    return out


def this_host(host: str | None) -> bool:
    """Whether a run's status names this machine (only a run here can be sampled)."""
    import socket

    return not host or host == socket.gethostname() or host == os.uname().nodename
