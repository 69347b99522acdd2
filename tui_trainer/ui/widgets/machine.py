"""The Machine tab: the run's GPUs and process tree over the last minutes (ui/machine.py samples them).

The tab owns its sampler and timer: while a run of this machine is live it samples every ``1 / hz`` seconds in a
thread worker (NVML and psutil calls, a few ms, never on the UI thread; never in the run's process) and keeps the
last ``HISTORY`` samples. Each sample redraws the tab's charts (the same SeriesChart as the curves: GPU busy %,
memory, CPU %) and its text, and posts ``MachineTab.Sampled`` with the short line and the alarms, which the run
view puts beside the device and on its alarm line. The timer samples while the tab is hidden too: the short line
and the alarms are for the person looking at the curves.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.containers import Horizontal
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static, TabPane
from textual.worker import get_current_worker

from tui_trainer.run.folder import LIVE_STATES, RunDir
from tui_trainer.ui.guard import Guarded
from tui_trainer.ui.machine import (
    GIB,
    MachineSample,
    MachineSampler,
    device_kind,
    machine_alarms,
    machine_line,
    process_environ,
    size_text,
    this_host,
)

if TYPE_CHECKING:
    from tui_trainer.ui.widgets.charts import SeriesChart

HISTORY = 600  # samples kept: 5 minutes at 2 Hz, 10 at 1 Hz
SAMPLE_HZ = 1.0
IDLE_HINT = "the machine is sampled while a run of this machine trains"


@dataclass
class Sampled(Message, bubble=False):
    """One sample of the followed run's machine, or ``sample`` None with ``why`` (the run is not sampled)."""

    path: str
    sample: MachineSample | None
    why: str = ""
    ended: bool = False  # the run is no longer live: sampling stops until it (or another run) starts again


class MachineTab(Guarded, TabPane):
    """GPU utilisation, memory, power and temperature of the run's GPUs; CPU % and RSS of its process tree."""

    @dataclass
    class Updated(Message):
        """What the run view shows of the machine: the short line and the alarms of the last sample."""

        line: str
        alarms: list[tuple[str, str]]

    def __init__(self, title: str, *, hz: float = SAMPLE_HZ, max_hz: float = 2.0, id: str | None = None) -> None:
        super().__init__(title, id=id)
        self.hz, self.max_hz = hz, max_hz
        self.samples: deque[MachineSample] = deque(maxlen=HISTORY)
        self.run: RunDir | None = None
        self.device: str | None = None  # the run's device line (RunStarted): which kind of sampler
        self.training = False  # steps are running (not paused, not loading): low GPU use means something
        self._sampler: MachineSampler | None = None
        self._sampler_for: tuple[str, str, object] | None = None  # (run path, device, pid) the sampler was made for
        self._timer: Timer | None = None
        self._lock = threading.Lock()  # the sampler: one worker at a time, and not under unmount
        self._charts: tuple[SeriesChart, SeriesChart, SeriesChart] | None = None
        self._text: Static | None = None

    async def fill(self) -> None:
        """Mount the text and the charts (after the first frame, as the other tabs)."""
        from tui_trainer.ui.widgets.charts import SeriesChart

        hz = self.max_hz
        util = SeriesChart("GPU busy %", "%", hint="no GPU numbers", max_hz=hz, id="machine-util")
        memory = SeriesChart("memory GiB", "GiB", hint=IDLE_HINT, max_hz=hz, id="machine-mem")
        cpu = SeriesChart("CPU % (100 = a core)", "%", hint=IDLE_HINT, max_hz=hz, id="machine-cpu")
        for chart in (util, memory, cpu):
            chart.xlabel = "seconds"
        text = Static(IDLE_HINT, id="machine-text")
        await self.mount_all([text, Horizontal(util, memory, cpu, id="machine-charts")])
        self._charts, self._text = (util, memory, cpu), text
        self._timer = self.set_interval(1.0 / self.hz, self._tick)

    # -- what is sampled ----------------------------------------------------------------------

    def follow(self, path: str | None) -> None:
        """Sample the run in ``path`` from now on (None: none); its history starts afresh."""
        self.run = RunDir(Path(path)) if path else None
        self.device = None
        self.samples.clear()
        self._show(None, IDLE_HINT)

    def set_device(self, device_line: str) -> None:
        """The run's device line, once it has started: CPU only, or its GPUs too."""
        self.device = device_line

    def _tick(self) -> None:
        if self.run is not None and self.device is not None:
            self._sample(self.run, self.device)

    @work(thread=True, exclusive=True, group="machine", exit_on_error=False, description="sample the machine")
    def _sample(self, run: RunDir, device: str) -> None:
        """One sample, in a worker thread: the sampler is made (NVML initialised) on the first. One sample at a
        time (the lock: a slow one is not overtaken by the next tick, and unmounting waits for it)."""
        with self._lock:
            if get_current_worker().is_cancelled:
                return
            self._sample_locked(run, device)

    def _sample_locked(self, run: RunDir, device: str) -> None:
        status = run.read_status()
        path = str(run.path)
        state = run.state(status)  # a live state whose process is gone reads as crashed: not sampled
        if state not in LIVE_STATES:
            self._drop_sampler()
            self.post_message(Sampled(path, None, f"the run is {state}: not sampled", ended=True))
            return
        if not this_host(status.get("host")):
            self.post_message(Sampled(path, None, f"the run trains on {status.get('host')}: only a run of this "
                                                  "machine is sampled"))
            return
        pid = status.get("launcher_pid") or status.get("pid")  # torchrun's launcher: every rank is its child
        if (path, device, pid) != self._sampler_for:
            self._drop_sampler()
            nproc = _nproc(run)
            environ = process_environ(int(status["pid"])) if status.get("pid") else {}  # rank 0's: what it sees
            self._sampler = MachineSampler(int(pid) if pid else None, device_kind(device), nproc, environ=environ)
            self._sampler_for = (path, device, pid)
        assert self._sampler is not None
        self.post_message(Sampled(path, self._sampler.sample()))

    def _drop_sampler(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
        self._sampler, self._sampler_for = None, None

    def on_sampled(self, message: Sampled) -> None:
        if self.run is None or message.path != str(self.run.path) or self.device is None:
            return  # a sample of a run no longer shown, or taken before its end was read (sampling has stopped)
        if message.sample is None:
            self._show(None, message.why)
            if message.ended:
                self.device = None  # no more samples until it (or another run) starts again
            self.post_message(self.Updated("", []))  # no numbers of a moment gone beside the device
            return
        self.samples.append(message.sample)
        self._show(message.sample, "")
        self.post_message(self.Updated(machine_line(message.sample), machine_alarms(list(self.samples), self.training)))

    def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        with self._lock:  # a sample under way ends first: NVML is never shut down under it
            self._drop_sampler()

    # -- drawing --------------------------------------------------------------------------------

    def _show(self, sample: MachineSample | None, why: str) -> None:
        if self._text is None or self._charts is None:
            return
        if sample is None:
            self._text.update(why)
            if not self.samples:
                for chart in self._charts:
                    chart.clear_series(why or IDLE_HINT)
            return
        self._text.update(Text(machine_text(sample), no_wrap=True, overflow="ellipsis"))
        util, memory, cpu = self._charts
        t0 = self.samples[0].t
        xs = [round(s.t - t0, 1) for s in self.samples]
        gpus = [g.label for g in sample.gpus]
        if gpus:
            for label in gpus:
                util.set_series(f"GPU{label}", xs, [_gpu(s, label, "util") for s in self.samples])
                memory.set_series(f"GPU{label} used", xs, [_gpu(s, label, "mem_used") for s in self.samples])
        else:
            util.clear_series(f"{sample.gpu_word or 'no GPU'}: no GPU numbers")
        memory.set_series("host RSS", xs, [s.rss / GIB if s.rss is not None else float("nan") for s in self.samples])
        cpu.set_series("CPU", xs, [s.cpu_percent if s.cpu_percent is not None else float("nan") for s in self.samples])


def _gpu(sample: MachineSample, label: str, what: str) -> float:
    """One GPU's number in a sample (NaN where it was not measured: left out of the chart)."""
    for g in sample.gpus:
        if g.label == label:
            value = getattr(g, what)
            if value is None:
                return float("nan")
            return value / GIB if what == "mem_used" else float(value)
    return float("nan")


def _nproc(run: RunDir) -> int:
    """The run's processes on this machine (config.toml's train.nproc): how many GPUs it trains on."""
    from tui_trainer.config import ConfigError, load_preset

    try:
        return load_preset(str(run.config_path)).train.nproc
    except (ConfigError, OSError):
        return 1


def machine_text(sample: MachineSample) -> str:
    """The tab's text: one line per GPU, then the process tree."""
    lines = []
    for g in sample.gpus:
        mem = (f"{size_text(g.mem_used)} of {size_text(g.mem_total)} ({100 * g.mem_fraction:.0f}%)"
               if g.mem_fraction is not None else "memory ?")
        power = f"{g.power_w:.0f} W" + (f" of {g.power_limit_w:.0f} W" if g.power_limit_w else "") \
            if g.power_w is not None else "power ?"
        temp = f"{g.temp_c:.0f}°C" if g.temp_c is not None else "temperature ?"
        util = f"{g.util:.0f}% busy" if g.util is not None else "busy ?"
        held = f", throttled: {', '.join(g.throttle)}" if g.throttle else ""
        lines.append(f"GPU{g.label} {g.name}: {util}, {mem}, {power}, {temp}{held}")
    if sample.gpu_word:
        lines.append(f"GPU: {sample.gpu_word}")
    cpu = f"{sample.cpu_percent:.0f}%" if sample.cpu_percent is not None else "measuring…"
    if sample.rss is not None:
        lines.append(f"run process: CPU {cpu}, memory {size_text(sample.rss)} resident, "
                     f"{sample.processes} process{'es' if sample.processes != 1 else ''}")
    else:
        lines.append("run process: not readable (no psutil, or it has ended)")
    return "\n".join(lines)
