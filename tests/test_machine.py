"""The machine beside the curve (ui/machine.py, ui/widgets/machine.py): NVML through a fake pynvml module put in
sys.modules (its names and numbers those of nvidia-ml-py, checked against the real module where it is installed),
the run's process tree through psutil on real processes, and the Machine tab and device line in the app."""

from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys
import types

import pytest

from tests.conftest import screen_text, tiny
from tui_trainer.ui.machine import (
    GIB,
    GpuSample,
    MachineSample,
    MachineSampler,
    Nvml,
    ProcessTree,
    machine_alarms,
    machine_line,
    visible_devices,
)

pytestmark = pytest.mark.timeout(120)


class FakeNVMLError(Exception):
    """pynvml.NVMLError: NVML's own exception, its return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


def fake_pynvml(gpus: list[dict], fail_init: bool = False) -> types.ModuleType:
    """A pynvml module with the functions ui/machine.py calls, as nvidia-ml-py spells and returns them (power in
    milliwatts, memory in bytes, names as str, handles opaque). ``gpus``: per GPU index, its numbers; a key left out
    raises NVMLError_NotSupported (code 3) as a GPU without that sensor does."""
    nv = types.ModuleType("pynvml")
    nv.NVMLError = FakeNVMLError
    nv.NVML_TEMPERATURE_GPU = 0
    nv.nvmlClocksEventReasonSwPowerCap = 0x4
    nv.nvmlClocksEventReasonSwThermalSlowdown = 0x20
    nv.nvmlClocksEventReasonHwThermalSlowdown = 0x40
    nv.nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x80
    nv.calls = []

    def init() -> None:
        if fail_init:
            raise FakeNVMLError(9)  # NVML_ERROR_DRIVER_NOT_LOADED
        nv.calls.append("init")

    def handle(h: int, key: str):
        if key not in gpus[h]:
            raise FakeNVMLError(3)  # NVML_ERROR_NOT_SUPPORTED
        return gpus[h][key]

    def by_index(index: int) -> int:
        if not 0 <= index < len(gpus):
            raise FakeNVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT
        return index

    def by_uuid(uuid: str) -> int:
        for i, g in enumerate(gpus):
            if g.get("uuid") == uuid:
                return i
        raise FakeNVMLError(6)  # NVML_ERROR_NOT_FOUND

    nv.nvmlInit = init
    nv.nvmlShutdown = lambda: nv.calls.append("shutdown")
    nv.nvmlDeviceGetCount = lambda: len(gpus)
    nv.nvmlDeviceGetHandleByIndex = by_index
    nv.nvmlDeviceGetHandleByUUID = by_uuid
    nv.nvmlDeviceGetName = lambda h: handle(h, "name")
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=handle(h, "util"), memory=0)
    nv.nvmlDeviceGetMemoryInfo = lambda h, version=None: types.SimpleNamespace(
        total=handle(h, "total"), used=handle(h, "used"), free=handle(h, "total") - handle(h, "used"))
    nv.nvmlDeviceGetPowerUsage = lambda h: handle(h, "mw")
    nv.nvmlDeviceGetEnforcedPowerLimit = lambda h: handle(h, "limit_mw")
    nv.nvmlDeviceGetTemperature = lambda h, sensor: handle(h, "temp") if sensor == 0 else 0
    nv.nvmlDeviceGetCurrentClocksEventReasons = lambda h: handle(h, "reasons")
    return nv


H200 = {"name": "NVIDIA H200", "uuid": "GPU-aaaa", "util": 87, "total": 141 * GIB, "used": 40 * GIB,
        "mw": 312_400, "limit_mw": 700_000, "temp": 61, "reasons": 0}
H200_HOT = {**H200, "uuid": "GPU-bbbb", "util": 12, "used": int(139 * GIB), "temp": 91, "reasons": 0x40 | 0x4}


def test_the_fake_pynvml_speaks_nvidia_ml_py():
    """Every name the fake gives exists in the real module, with the real constants and argument lists."""
    real = pytest.importorskip("pynvml")
    fake = fake_pynvml([H200])
    for name in dir(fake):
        if name.startswith("nvml") or name.startswith("NVML_"):
            assert hasattr(real, name), name
            if name.startswith("nvmlClocks") or name.startswith("NVML_"):
                assert getattr(real, name) == getattr(fake, name), name
            elif callable(getattr(fake, name)):
                real_params = [p for p in inspect.signature(getattr(real, name)).parameters]
                fake_params = [p for p in inspect.signature(getattr(fake, name)).parameters]
                assert len(real_params) == len(fake_params), (name, real_params, fake_params)
    assert {"gpu", "memory"} <= {f[0] for f in real.c_nvmlUtilization_t._fields_}
    assert {"total", "free", "used"} <= {f[0] for f in real.c_nvmlMemory_t._fields_}


def test_a_gpu_run_is_sampled_through_nvml_for_its_visible_devices(monkeypatch):
    nv = fake_pynvml([H200, H200_HOT, {**H200, "uuid": "GPU-cccc"}])
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    # the run sees GPUs 2 and 1 (in that order) and trains on 2 processes: its cuda:0 is NVML's 2
    sampler = MachineSampler(os.getpid(), "cuda", nproc=2, environ={"CUDA_VISIBLE_DEVICES": "GPU-cccc,1"})
    first = sampler.sample()
    assert [g.label for g in first.gpus] == ["0", "1"] and first.gpu_word is None
    g0, g1 = first.gpus
    assert (g0.name, g0.util, g0.mem_used, g0.mem_total) == ("NVIDIA H200", 87.0, 40 * GIB, 141 * GIB)
    assert (g0.power_w, g0.power_limit_w, g0.temp_c, g0.throttle) == (312.4, 700.0, 61.0, ())
    assert g1.throttle == ("thermal", "power cap") and g1.util == 12.0
    assert first.cpu_percent is None and first.rss > 10 * 1024 ** 2  # this test's own process: tens of MiB
    assert machine_line(first).startswith("GPU0 87% 40.0/141.0 GiB 312 W 61°C · GPU1 12% 139.0/141.0 GiB 312 W 91°C")
    sampler.close()
    assert nv.calls == ["init", "shutdown"]


def test_a_number_the_gpu_cannot_give_is_unknown_not_an_error(monkeypatch):
    no_power = {k: v for k, v in H200.items() if k not in ("mw", "limit_mw", "reasons")}
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([no_power]))
    sample = MachineSampler(None, "cuda", environ={}).sample()
    assert sample.gpus[0].power_w is None and sample.gpus[0].throttle == () and sample.gpus[0].util == 87.0
    assert machine_line(sample) == "GPU0 87% 40.0/141.0 GiB 61°C"  # no process: no CPU part


@pytest.mark.parametrize("setup, word", [
    ("missing", "no NVML"), ("no-driver", "no NVML"), ("no-gpu", "no GPU"), ("hidden", "no GPU"), ("cpu", "CPU run"),
])
def test_without_nvml_the_pane_says_why_in_a_word_and_still_samples_the_process(monkeypatch, setup, word):
    if setup == "missing":
        monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    else:
        gpus = [] if setup == "no-gpu" else [H200]
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus, fail_init=setup == "no-driver"))
    env = {"CUDA_VISIBLE_DEVICES": ""} if setup == "hidden" else {}
    sampler = MachineSampler(os.getpid(), "cpu" if setup == "cpu" else "cuda", environ=env)
    sampler.sample()
    sample = sampler.sample()
    assert sample.gpus == () and sample.gpu_word == word
    assert sample.cpu_percent is not None and sample.rss > 0
    assert machine_line(sample).startswith(f"{word} · CPU ")


def test_visible_devices_stop_at_the_first_invalid_entry():
    assert visible_devices({}) is None
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "2,0"}) == ["2", "0"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "1,-1,0"}) == ["1"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_the_process_tree_counts_children_cpu_and_memory():
    """A parent idling and a child spinning: the tree's CPU is the child's (~100% of a core, on a busy machine
    at least a tenth of it) and its RSS includes the child's 200 MB buffer."""
    import time

    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
            "'b = bytearray(200 * 1024 * 1024); b[::4096] = b\"x\" * len(b[::4096]); "
            "import time\\nt = time.time()\\nwhile time.time() - t < 30: pass']); time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        tree = ProcessTree(parent.pid)
        deadline = time.monotonic() + 20
        cpu, rss, n = tree.sample()
        while (n < 2 or (rss or 0) < 200 * 1024 ** 2) and time.monotonic() < deadline:
            time.sleep(0.2)  # the child is starting and touching its pages
            cpu, rss, n = tree.sample()
        time.sleep(1.0)
        cpu, rss, n = tree.sample()
        assert n == 2 and rss >= 200 * 1024 ** 2
        assert cpu is not None and 10 <= cpu <= 250
    finally:
        parent.kill()
        parent.wait()
    assert ProcessTree(parent.pid).sample() == (None, None, 0)


def _gpu_sample(t: float, util: float, used: float = 10, throttle: tuple = (), temp: float = 60) -> MachineSample:
    gpu = GpuSample("0", "NVIDIA H200", util, int(used * GIB), 141 * GIB, 300.0, 700.0, temp, throttle)
    return MachineSample(t, 100.0, GIB, (gpu,))


def test_alarms_low_use_while_training_memory_nearly_full_and_throttling():
    idle = [_gpu_sample(t, util=20) for t in range(10)]
    kinds = dict(machine_alarms(idle, steps_running=True))
    assert list(kinds) == ["util0"]
    assert kinds["util0"].startswith("GPU0 busy 20% while training: the steps wait on data or the host")
    assert "data.device_resident=always" in kinds["util0"]
    assert machine_alarms(idle, steps_running=False) == []  # paused or loading: idle is expected
    assert machine_alarms(idle[:9], steps_running=True) == []  # a window, not one slow moment
    busy = [_gpu_sample(t, util=20) for t in range(9)] + [_gpu_sample(9, util=95)]
    assert machine_alarms(busy, steps_running=True)[0][1].startswith("GPU0 busy 28%")  # (9 x 20 + 95) / 10
    full = machine_alarms([_gpu_sample(0, 90, used=134.5)], steps_running=True)
    assert full == [("mem0", "GPU0 memory 95% full (134.5 GiB of 141.0 GiB): a larger batch or model will not fit; "
                             "train.amp=bf16 or a smaller data.batch_size frees some")]
    assert machine_alarms([_gpu_sample(0, 90, used=133.0)], steps_running=True) == []  # 94%
    hot = machine_alarms([_gpu_sample(0, 90, throttle=("thermal",), temp=91)], steps_running=True)
    assert hot == [("throttle0", "GPU0 throttled (thermal) at 91°C: its clocks are held down, steps run slower")]


def test_nvml_handles_skip_a_device_nvml_does_not_know(monkeypatch):
    nvml = Nvml(fake_pynvml([H200]))
    assert [label for label, _h in nvml.handles(["GPU-zzzz", "0"], 2)] == ["1"]  # the run's cuda:1 is NVML's 0
    assert [label for label, _h in nvml.handles(None, 1)] == ["0"]


# -- in the app -------------------------------------------------------------------------------------------------------


def _adopt(fake_run, pid: int) -> None:
    """Make the fake run's status name a real process of this machine (the run process the app samples)."""
    fake_run.set_state("running", pid=pid, host=socket.gethostname(), proc_start=None)


@pytest.mark.slow
async def test_the_machine_tab_shows_cpu_and_memory_of_the_run_process(tmp_path):
    from tests.fakes import FakeClient
    from tests.test_ui import ready, until
    from tui_trainer.ui.app import make_app

    # a third of a core (busy 20 ms, idle 40 ms: a whole one would slow the app under test on a 2-core machine)
    worker = subprocess.Popen([sys.executable, "-c", "b = bytearray(150 * 1024 * 1024); b[::4096] = "
                               "b'x' * len(b[::4096]); import time; t = time.time()\nwhile time.time() - t < 60:\n"
                               "    u = time.time()\n    while time.time() - u < 0.02: pass\n    time.sleep(0.04)"])
    client = FakeClient()
    app = make_app(tiny("train.epochs=50"), tmp_path / "runs", client=client)
    try:
        async with app.run_test(size=(150, 40)) as pilot:
            screen = await ready(pilot)
            await pilot.press("r")
            await until(pilot, lambda: client.runs and screen.live)
            _adopt(client.last, worker.pid)
            client.last.step()
            tab = screen.view.machine_tab
            await until(pilot, lambda: len(tab.samples) >= 3 and (tab.samples[-1].rss or 0) > 150 * 1024 ** 2)
            await until(pilot, lambda: tab.samples[-1].cpu_percent is not None and tab.samples[-1].cpu_percent > 5)
            await pilot.press("0")
            await until(pilot, lambda: screen.view.active_tab == "tab-machine")
            await pilot.pause(1.2)  # the charts redraw at most twice a second
            text = screen_text(app)
            assert "GPU: CPU run" in text
            line = next(ln for ln in text.splitlines() if "run process: CPU " in ln)
            cpu = float(line.split("run process: CPU ")[1].split("%")[0])
            mib = float(line.split("memory ")[1].split(" MiB")[0])
            assert 5 <= cpu <= 100 and 150 <= mib <= 400
            assert "CPU % (100 = a core)" in text and "memory GiB" in text
            cpu_chart = screen.query_one("#machine-cpu")
            assert cpu_chart.empty_reason is None and len(cpu_chart.series["CPU"][0]) >= 3
            device = str(screen.query_one("#device").render())
            assert device.startswith("CPU run · CPU ") and device.endswith("cpu: fake (tests/fakes.py)")
    finally:
        worker.kill()
        worker.wait()


@pytest.mark.slow
async def test_a_gpu_run_shows_its_gpu_in_the_tab_and_the_alarm_line(tmp_path, monkeypatch):
    from tests.fakes import FakeClient
    from tests.test_ui import ready, until
    from tui_trainer.ui.app import make_app

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([H200_HOT]))
    client = FakeClient(device="cuda: NVIDIA H200 (fake)")
    app = make_app(tiny("train.epochs=50"), tmp_path / "runs", client=client)
    async with app.run_test(size=(150, 40)) as pilot:
        screen = await ready(pilot)
        await pilot.press("r")
        await until(pilot, lambda: client.runs and screen.live)
        _adopt(client.last, os.getpid())
        client.last.step()
        tab = screen.view.machine_tab
        await until(pilot, lambda: tab.samples and tab.samples[-1].gpus)
        alarm = screen.query_one("#alarm")
        await until(pilot, lambda: "GPU0 throttled (thermal, power cap)" in str(alarm.render()))
        assert str(alarm.render()).startswith("⚠ (+1 more in the Log) GPU0 throttled")  # the memory alarm is the other
        await pilot.press("0")
        await pilot.pause(1.2)
        text = screen_text(app)
        assert "GPU0 NVIDIA H200: 12% busy, 139.0 GiB of 141.0 GiB (99%), 312 W of 700 W, 91°C, throttled: thermal," in text
        assert str(screen.query_one("#machine-text").render()).splitlines()[0].endswith("throttled: thermal, power cap")
        assert "GPU busy %: ▀ GPU0" in text
        assert str(screen.query_one("#device").render()).startswith("GPU0 12% 139.0/141.0 GiB 312 W 91°C · CPU ")
        client.last.finish()
        await until(pilot, lambda: str(screen.query_one("#device").render()) == "cuda: NVIDIA H200 (fake)")
        logged = "\n".join(screen.view.log_lines)
        assert "GPU0 throttled (thermal, power cap) at 91°C" in logged
        assert logged.count("GPU0 memory 99% full") == 1  # once a run, however many samples say it
