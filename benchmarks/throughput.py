"""Throughput benchmark: the same job through (a) the lecture notes' loop, (b) the engine headless in
a run process of its own, (c) the app with `r` pressed: the same run process, followed by the app,
which draws its charts live, (d) Lightning if installed.

(b) and (c) are what the product ships: `run.client.start` launches `python -m tui_trainer.runner
RUN_DIR`, which writes events.jsonl; in (c) the app (Textual's `run_test`, headless, 120x36)
follows that file and redraws its charts. The engine no longer runs in the app's thread, so the
old (c) is gone, and the old (e) (a training process beside the app) is now (c). Each mode trains
the same model (default: the lecture's Fashion-MNIST MLP 784-512-512-10, RMSprop, label smoothing
0.01) on the same data for the same epochs; the first epoch is warm-up and the steady-state
training samples/s of the rest is reported (validation excluded for all), for (b) and (c) from
the run's own events. Modes a, b and c are interleaved `--repeat` times and the median kept;
app / headless is median (c) over median (b), and each (c)/(b) pair is shown. Fashion-MNIST comes
from Debian's files when present, else synthetic data of the same shape (written to disk for the
run processes, see offline.py).

    python benchmarks/throughput.py                      # CPU or the detected GPU
    python benchmarks/throughput.py --quick              # a few hundred steps (CI)
    python benchmarks/throughput.py --modes bc --repeat 3 --epochs 3 --steps 200
    python benchmarks/throughput.py --device cuda --batch-size 64 --json
    python benchmarks/throughput.py --startup --terminal # also: --help, first frame, KB/s over a pty

Results with date, device and command: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# run processes and the app's helper are children: they import this tree, not an installed copy
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks import offline  # noqa: E402
from tui_trainer.config import apply_overrides, load_preset  # noqa: E402
from tui_trainer.engine import warm_up  # noqa: E402
from tui_trainer.engine.models import MLP  # noqa: E402
from tui_trainer.run.events import EpochEnded, RunFinished  # noqa: E402


def job_config(args: argparse.Namespace, scratch: Path):
    """The job of every mode; its data is on disk for the run processes (synthetic if not real)."""
    overrides = [
        f"train.epochs={args.epochs}", f'train.device="{args.device}"', f"data.batch_size={args.batch_size}",
        f"data.subset={args.steps * args.batch_size}", f"train.log_every={args.log_every}",
        f"train.compile={'true' if args.compile else 'false'}",
    ]
    offline.install()
    return offline.for_run_process(apply_overrides(load_preset(args.preset), overrides), scratch)


def steady_rate(epochs: list[EpochEnded]) -> float:
    """Training samples/s over every epoch but the first (warm-up)."""
    later = epochs[1:] or epochs
    return sum(e.samples_per_s for e in later) / len(later)


# -- (a) the lecture notes' loop, as they write it -----------------------------------------


def lecture_loop(cfg, device: torch.device) -> float:
    """TensorDataset + DataLoader(shuffle=True), loss.item() every batch (lecture 6, Fashion-MNIST)."""
    from torch.utils.data import DataLoader, TensorDataset

    from tui_trainer.data import load_data

    data = load_data(apply_overrides(cfg, ['train.device="cpu"']), torch.device("cpu"))
    train_x, train_y = data.train.x, data.train.y
    torch.manual_seed(0)
    model = MLP(784, cfg.model.hidden, 10).to(device)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.regularization.label_smoothing)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=cfg.optimizer.lr, momentum=0.0)
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=cfg.data.batch_size, shuffle=True)
    rates = []
    for _epoch in range(cfg.train.epochs):
        model.train()
        running_loss, n = 0.0, 0
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()  # the lecture's per-batch host sync
            n += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(n / (time.perf_counter() - t0))
    later = rates[1:] or rates
    return sum(later) / len(later)


# -- (b) and (c): a run process, alone or followed by the app ----------------------------------------


def run_rate(run) -> float:
    """Steady-state training samples/s of a finished run, from its own events.jsonl; exits (with the end of
    its run.log) if the run did not complete."""
    events, _offset = run.read_events()
    ends = [e for e in events if isinstance(e, RunFinished)]
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    if not ends or ends[-1].reason != "completed" or not epochs:
        log = run.log_path.read_text(encoding="utf-8", errors="replace")[-2000:] if run.log_path.exists() else ""
        why = f"{ends[-1].reason}: {ends[-1].message}" if ends else "no RunFinished event"
        raise SystemExit(f"run {run.path} did not complete ({why})\n{log}")
    return steady_rate(epochs)


def engine_headless(cfg, runs: Path) -> float:
    """(b) The engine in a run process of its own (``python -m tui_trainer.runner RUN_DIR``, launched by
    ``client.start`` exactly as the app launches it), with nothing else running: this process only waits."""
    from tui_trainer.run import client

    handle = client.start(cfg, runs)
    handle.process.wait()
    return run_rate(handle.run)


def engine_with_app(cfg, runs: Path, chart_hz: float) -> tuple[float, dict]:
    """(c) The shipped path: the app (headless through ``run_test``, 120x36) starts the run with ``r``; the run
    is its own process, the app follows its events.jsonl and redraws the charts live until it ends."""
    from tui_trainer.ui.app import make_app
    from tui_trainer.ui.messages import RunEvents

    stats: dict = {"event_messages": 0, "events": 0}

    def hook(message) -> None:
        if isinstance(message, RunEvents):
            if not stats["event_messages"]:  # the run has started: from here, what the app costs the machine
                stats["since"] = (time.perf_counter(), time.process_time())
            stats["event_messages"] += 1
            stats["events"] += len(message.events)

    async def until(condition, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"(c): timed out waiting for {what}")
            await asyncio.sleep(0.1)  # the app runs meanwhile; this coroutine only watches

    async def drive() -> None:
        app = make_app(cfg, runs, chart_hz=chart_hz)
        async with app.run_test(size=(120, 36), message_hook=hook) as pilot:
            screen = app.train_screen
            await until(lambda: screen.query("SeriesChart") and screen.query("ConfigField"), "the panels", 120)
            # the helper process imports torch once at start; let it finish, as a user reading the panels would
            with contextlib.suppress(SystemExit):
                await until(lambda: screen.helper_ready, "the helper process", 60)
            await pilot.press("r")
            await until(lambda: screen.starting or screen.handle is not None, "r to start a run", 30)
            await until(lambda: not screen.starting, "the run process to start", 120)
            if screen.handle is None:
                raise SystemExit("(c): the app could not start a run:\n" + "\n".join(screen.view.log_lines[-5:]))
            await until(lambda: screen.view.history.finished is not None or screen.lost, "the end of the run", 24 * 3600)
            if screen.handle is None:  # a run that failed at set-up is removed by the app
                raise SystemExit("(c): the run failed:\n" + "\n".join(screen.view.log_lines[-5:]))
            stats["run_dir"] = screen.handle.path
            wall, cpu = time.perf_counter(), time.process_time()
            t0, c0 = stats.pop("since")
            # CPU seconds of this process (the app: its loop, the follower thread) per second of the run
            stats["app_cpu_share"] = (cpu - c0) / (wall - t0)
            charts = list(screen.query("SeriesChart"))
            stats["replots"] = sum(c.replots for c in charts)
            await pilot.press("q")  # the run has ended: q leaves at once

    asyncio.run(drive())
    from tui_trainer.run.folder import RunDir

    return run_rate(RunDir(stats.pop("run_dir"))), stats


# -- (d) Lightning ---------------------------------------------------------------------------------


def lightning(cfg, device: torch.device) -> float | None:
    try:
        import lightning as L  # noqa: N812
    except ImportError:
        return None
    from torch.utils.data import DataLoader, TensorDataset

    from tui_trainer.data import load_data

    data = load_data(apply_overrides(cfg, ['train.device="cpu"']), torch.device("cpu"))

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = MLP(784, cfg.model.hidden, 10)
            self.loss = nn.CrossEntropyLoss(label_smoothing=cfg.regularization.label_smoothing)

        def training_step(self, batch, _i):
            x, y = batch
            return self.loss(self.model(x), y)

        def configure_optimizers(self):
            return torch.optim.RMSprop(self.parameters(), lr=cfg.optimizer.lr)

    times: list[float] = []

    class Timer(L.Callback):
        def on_train_epoch_start(self, *_a) -> None:
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, *_a) -> None:
            times.append(time.perf_counter() - self.t0)

    loader = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=cfg.data.batch_size, shuffle=True)
    trainer = L.Trainer(max_epochs=cfg.train.epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[Timer()])
    trainer.fit(Module(), loader)
    later = times[1:] or times
    return len(data.train.y) / (sum(later) / len(later))


# -- start-up and terminal output ----------------------------------------------------------------


def startup_and_terminal(seconds: float, repeat: int = 1) -> dict:
    """--help time; the first frame and the panels of the bare ``tui-trainer`` (the quick start),
    median of ``repeat`` launches; then one ``tui-trainer ui`` launch that trains, for its first
    frame and the KB/s of terminal output while training. All through a pty sized 120x36."""
    import statistics
    import subprocess

    out: dict = {}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tui_trainer.cli", "--help"], capture_output=True, check=True)
    out["help_s"] = time.perf_counter() - t0
    sessions = [_app_session(0.0, bare=True) for _ in range(repeat)]
    frames = [s["first_frame_s"] for s in sessions]
    out["first_frame_s"] = statistics.median(frames)
    out["panels_s"] = statistics.median(s["panels_s"] for s in sessions)
    if repeat > 1:
        out["first_frame_runs"] = " ".join(f"{v:.2f}" for v in frames)
    session = _app_session(seconds, bare=False)
    out["first_frame_ui_s"] = session["first_frame_s"]
    if "terminal_kb_per_s" in session:
        out["terminal_kb_per_s"] = session["terminal_kb_per_s"]
    return out


def _app_session(seconds: float, bare: bool) -> dict:
    """Launch the bare ``tui-trainer`` or ``tui-trainer ui`` in a pty: when the first frame and
    the panels appear; with ``seconds`` > 0 also press r and measure the output while training."""
    import fcntl
    import pty
    import select
    import struct
    import tempfile
    import termios

    tmp = Path(tempfile.mkdtemp())
    env = dict(os.environ, TUI_TRAINER_HOME=str(tmp), TERM="xterm-256color")
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the size is set before exec, as a terminal has it before the app starts
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
        os.chdir(tmp)
        if bare:  # what the console script runs for `tui-trainer` (sys.argv == ["-c"]: no arguments)
            os.execvpe(sys.executable, [sys.executable, "-c", "from tui_trainer.cli.launch import entry; entry()"], env)
        os.execvpe(sys.executable, [sys.executable, "-m", "tui_trainer.cli", "ui", "--runs-dir", str(tmp / "runs"),
                                    "--set", "train.epochs=10000"], env)
    buf = bytearray()
    out: dict = {"first_frame_s": None, "panels_s": None}
    training_from = None
    total_training = 0
    while time.perf_counter() - t0 < 60:
        ready, _, _ = select.select([fd], [], [], 0.01)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            buf += chunk
            if training_from is not None:
                total_training += len(chunk)
            if out["first_frame_s"] is None and b"Preset" in buf:
                out["first_frame_s"] = time.perf_counter() - t0
            if out["panels_s"] is None and b"Dataset" in buf:  # the config panels mount after the first frame
                out["panels_s"] = time.perf_counter() - t0
                if not seconds:
                    break
                os.write(fd, b"r")  # starts a run process, which the app then follows
        if training_from is None and list((tmp / "runs").glob("*/metrics.jsonl")):
            training_from = time.perf_counter()
        if training_from is not None and time.perf_counter() - training_from > seconds:
            break
    os.write(fd, b"q")
    if seconds:  # a run is training: the quit dialog asks; s stops it (and the app waits for it to save)
        time.sleep(0.5)  # the dialog has to be on screen before its key
        with contextlib.suppress(OSError):
            os.write(fd, b"s")
    deadline = time.perf_counter() + 40
    while time.perf_counter() < deadline:  # keep draining: a full pty would block the app's last writes
        if os.waitpid(pid, os.WNOHANG)[0]:
            break
        if select.select([fd], [], [], 0.05)[0]:
            try:
                os.read(fd, 65536)
            except OSError:
                pass
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    _stop_live_runs(tmp / "runs")
    if training_from:
        out["terminal_kb_per_s"] = total_training / 1024 / (time.perf_counter() - training_from)
    return out


def _stop_live_runs(runs: Path) -> None:
    """SIGTERM (stop and save) any run process still training under ``runs``: a run outlives its app."""
    import signal

    from tui_trainer.run.folder import LIVE_STATES, list_runs

    for run in list_runs(runs):
        status = run.read_status()
        if run.state(status) in LIVE_STATES and "pid" in status:
            with contextlib.suppress(OSError):
                os.kill(int(status["pid"]), signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fashion-mnist-mlp")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400, help="steps per epoch (the data is subset to this)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--chart-hz", type=float, default=2.0)
    parser.add_argument("--compile", action="store_true", help="engine with train.compile")
    parser.add_argument("--quick", action="store_true", help="2 epochs of 100 steps, once: checks that every mode runs")
    parser.add_argument("--modes", default="abcd", help="any of a, b, c, d (e is now c: the app beside a run process)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of modes a, b and c, interleaved, and launches for --startup; the median is kept")
    parser.add_argument("--startup", action="store_true", help="also time --help and the app's first frame")
    parser.add_argument("--terminal", type=float, default=0.0, help="seconds of pty output to measure (0 = skip)")
    parser.add_argument("--memory", action="store_true",
                        help="peak host memory (max RSS) of the lecture loop and of a run process, each alone")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if "e" in args.modes:
        parser.error("mode e (the engine in a process beside the app) is what the app now ships: it is mode c")
    if args.quick:
        args.epochs, args.steps = 2, min(args.steps, 100)
    scratch = Path(tempfile.mkdtemp(prefix="tui-trainer-bench-"))
    runs = scratch / "runs"
    cfg = job_config(args, scratch)
    if args.child:  # one mode alone, for --memory
        import resource

        if args.child == "a":
            lecture_loop(cfg, pick_device_for(args.device))
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
        else:  # the run process is this process's only waited-for child: its own peak
            engine_headless(cfg, runs)
            print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        return
    if args.memory:
        import subprocess

        peaks = {}
        for mode in "ab":
            cmd = [sys.executable, __file__, "--child", mode, "--device", args.device, "--batch-size", str(args.batch_size),
                   "--epochs", str(args.epochs), "--steps", str(args.steps), "--preset", args.preset]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
            peaks[mode] = int(out[-1]) / 1024
        print(f"peak host memory (max RSS): lecture loop {peaks['a']:,.0f} MiB, run process {peaks['b']:,.0f} MiB "
              f"({peaks['b'] / peaks['a']:.2f}x)")
        return
    from tui_trainer.engine.device import describe_device

    device = pick_device_for(args.device)
    warm_up()
    results: dict = {
        "date": time.strftime("%Y-%m-%d"), "device": describe_device(device).describe(), "python": platform.python_version(),
        "torch": torch.__version__, "preset": args.preset, "batch_size": args.batch_size, "epochs": args.epochs,
        "steps_per_epoch": args.steps, "compile": args.compile, "samples_per_s": {}, "runs": {}, "load_avg_1min": [],
    }
    rates = results["samples_per_s"]
    samples: dict[str, list[float]] = {}
    repeats = 0 if not set("abc") & set(args.modes) else 1 if args.quick else args.repeat
    for _ in range(repeats):  # interleaved, so drift in machine load hits every mode alike
        results["load_avg_1min"].append(round(os.getloadavg()[0], 2))
        if "a" in args.modes:
            samples.setdefault("a_lecture_loop", []).append(lecture_loop(cfg, device))
        if "b" in args.modes:
            samples.setdefault("b_engine_headless", []).append(engine_headless(cfg, runs))
        if "c" in args.modes:
            rate, results["app"] = engine_with_app(cfg, runs, args.chart_hz)
            samples.setdefault("c_engine_with_app", []).append(rate)
            results.setdefault("app_cpu_share", []).append(results["app"]["app_cpu_share"])
        print("  so far: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in samples.items()) +
              f"  (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    for name, values in samples.items():
        rates[name] = statistics.median(values)
        results["runs"][name] = values
    if "d" in args.modes:
        rate = lightning(cfg, device)
        if rate is not None:
            rates["d_lightning"] = rate
    base = rates.get("a_lecture_loop")
    results["ratio_to_lecture"] = {k: v / base for k, v in rates.items()} if base else {}
    if "b_engine_headless" in rates and "c_engine_with_app" in rates:
        results["app_over_headless"] = rates["c_engine_with_app"] / rates["b_engine_headless"]
        results["app_over_headless_pairs"] = [c / b for b, c in zip(samples["b_engine_headless"],
                                                                     samples["c_engine_with_app"], strict=True)]
    if args.startup or args.terminal:
        results["startup"] = startup_and_terminal(args.terminal or 5.0, repeat=1 if args.quick else args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{results['date']}  {results['device']}  torch {results['torch']}  {args.preset}  batch {args.batch_size}  "
          f"{args.epochs} epochs x {args.steps} steps  (1-min load average at each repeat: "
          f"{' '.join(map(str, results['load_avg_1min'])) or '-'})")
    for name, rate in rates.items():
        ratio = results["ratio_to_lecture"].get(name)
        spread = results["runs"].get(name)
        extra = f"   (runs: {', '.join(f'{v:,.0f}' for v in spread)})" if spread and len(spread) > 1 else ""
        print(f"  {name:<24} {rate:>12,.0f} samples/s" + (f"   {ratio:5.2f}x lecture loop" if ratio else "") + extra)
    if "app_over_headless" in results:
        pairs = " ".join(f"{r:.2f}" for r in results["app_over_headless_pairs"])
        print(f"  app / headless: {results['app_over_headless']:.2f} (medians; pairs: {pairs})  last app run: chart "
              f"redraws {results['app']['replots']}, {results['app']['event_messages']} messages of "
              f"{results['app']['events']} events")
        shares = " ".join(f"{100 * v:.1f}%" for v in results["app_cpu_share"])
        print(f"  the app's own CPU while its run trained (CPU s per s, all its threads): {shares}")
    for key, value in results.get("startup", {}).items():
        print(f"  {key}: {value:.2f}" if isinstance(value, float) else f"  {key}: {value}")


def pick_device_for(name: str) -> torch.device:
    """The device of the in-process modes (a, d): the one a run process picks for the same setting."""
    from tui_trainer.engine.device import pick_device

    return pick_device(name)


if __name__ == "__main__":
    main()
