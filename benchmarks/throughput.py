"""Throughput benchmark: the same job through (a) the lecture notes' loop, (b) the engine headless,
(c) the engine inside the running app with live charts, (d) Lightning if installed, (e) the
engine in a process beside the running app, which draws live charts from its events.

One process, one run, one device. Each mode trains the same model (default: the lecture's
Fashion-MNIST MLP 784-512-512-10, RMSprop, label smoothing 0.01) on the same data for the
same epochs; the first epoch is warm-up and the steady-state training samples/s of the rest
is reported (validation excluded for all). Fashion-MNIST comes from Debian's files when
present, else synthetic data of the same shape.

    python benchmarks/throughput.py                      # CPU or the detected GPU
    python benchmarks/throughput.py --quick              # a few hundred steps (CI)
    python benchmarks/throughput.py --device cuda --batch-size 64 --json
    python benchmarks/throughput.py --startup --terminal # also: --help, first frame, KB/s over a pty

Results with date, device and command: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks import offline  # noqa: E402
from tui_trainer.config import apply_overrides, load_preset  # noqa: E402
from tui_trainer.engine import Trainer, warm_up  # noqa: E402
from tui_trainer.events import EpochEnded, ListSink  # noqa: E402
from tui_trainer.models import MLP  # noqa: E402


def job_config(args: argparse.Namespace, runs: Path):
    overrides = [
        f"train.epochs={args.epochs}", f'train.device="{args.device}"', f"data.batch_size={args.batch_size}",
        f"data.subset={args.steps * args.batch_size}", f"train.log_every={args.log_every}",
        f"train.compile={'true' if args.compile else 'false'}",
    ]
    offline.install()  # here, not at import: the spawned child of mode (e) builds its config here too
    return apply_overrides(load_preset(args.preset), overrides)


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


# -- (b) the engine headless ------------------------------------------------------------------


def engine_headless(cfg, runs: Path) -> float:
    sink = ListSink()
    Trainer(runs).fit(cfg, sink)
    return steady_rate(sink.of(EpochEnded))


# -- (c) the engine inside the running app, live charts -------------------------------------------


def engine_in_app(cfg, runs: Path, chart_hz: float) -> tuple[float, dict]:
    from tui_trainer.events import RunFinished
    from tui_trainer.ui.app import make_app
    from tui_trainer.ui.messages import EngineEvents

    events: list = []

    def hook(message) -> None:
        if isinstance(message, EngineEvents):
            events.extend(message.events)

    stats: dict = {}

    async def drive() -> None:
        app = make_app(cfg, runs, chart_hz=chart_hz)
        async with app.run_test(size=(120, 36), message_hook=hook) as pilot:
            screen = app.train_screen
            while not screen.engine_ready:
                await asyncio.sleep(0.05)
            await pilot.press("r")
            while not any(isinstance(e, RunFinished) for e in events):
                await asyncio.sleep(0.1)  # the app keeps running; this coroutine only watches
            charts = list(screen.query("SeriesChart"))
            stats.update(replots=sum(c.replots for c in charts), posts=screen.sink.posts)
            await pilot.press("q")

    asyncio.run(drive())
    return steady_rate([e for e in events if isinstance(e, EpochEnded)]), stats


# -- (e) the engine in a process beside the running app ---------------------------------------------


def _engine_child(args: argparse.Namespace, runs: Path, conn) -> None:
    """Spawned child: the engine headless (all torch threads), every event piped to the app."""
    cfg = job_config(args, runs)

    class PipeSink:
        def emit(self, event) -> None:
            conn.send(event)

    Trainer(runs).fit(cfg, PipeSink())
    conn.close()


def engine_beside_app(args: argparse.Namespace, cfg, runs: Path, chart_hz: float, app: bool = True) -> tuple[float, dict]:
    """The app draws live charts from events a training process sends it. The process starts
    before the app runs (spawning inside a running Textual app fails). ``app=False``: the same
    child with no app, its events only collected: the baseline for (e)."""
    import multiprocessing
    import threading

    from tui_trainer.ui.app import make_app

    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_engine_child, args=(args, runs, sender), daemon=True)
    child.start()
    sender.close()
    events: list = []
    stats: dict = {}

    def pump(sink=None) -> None:  # as the engine thread would: into the screen's UISink
        while True:
            try:
                event = receiver.recv()
            except EOFError:
                return
            events.append(event)
            if sink is not None:
                sink.emit(event)

    async def drive() -> None:
        async with make_app(cfg, runs, chart_hz=chart_hz).run_test(size=(120, 36)) as pilot:
            screen = pilot.app.train_screen
            while not screen.query("SeriesChart"):
                await asyncio.sleep(0.05)
            reader = threading.Thread(target=pump, args=(screen.sink,), daemon=True)
            reader.start()
            while reader.is_alive():
                await asyncio.sleep(0.1)  # the app keeps running; this coroutine only watches
            charts = list(screen.query("SeriesChart"))
            stats.update(replots=sum(c.replots for c in charts), posts=screen.sink.posts)

    if app:
        asyncio.run(drive())
    else:
        pump()
    child.join()
    return steady_rate([e for e in events if isinstance(e, EpochEnded)]), stats


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
            os.execvpe(sys.executable, [sys.executable, "-c", "from tui_trainer.launch import entry; entry()"], env)
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
                if seconds:
                    os.write(fd, b"r")  # starts as soon as torch has loaded
            if out["panels_s"] is None and b"Dataset" in buf:  # the config panels mount after the first frame
                out["panels_s"] = time.perf_counter() - t0
                if not seconds:
                    break
        if training_from is None and list((tmp / "runs").glob("*/metrics.jsonl")):
            training_from = time.perf_counter()
        if training_from is not None and time.perf_counter() - training_from > seconds:
            break
    os.write(fd, b"q")
    deadline = time.perf_counter() + 20
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
    if training_from:
        out["terminal_kb_per_s"] = total_training / 1024 / (time.perf_counter() - training_from)
    return out


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
    parser.add_argument("--quick", action="store_true", help="2 epochs of 100 steps: checks that every mode runs")
    parser.add_argument("--modes", default="abcde")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of modes a, b, c and e, interleaved, and launches for --startup; the median is kept")
    parser.add_argument("--startup", action="store_true", help="also time --help and the app's first frame")
    parser.add_argument("--terminal", type=float, default=0.0, help="seconds of pty output to measure (0 = skip)")
    parser.add_argument("--memory", action="store_true",
                        help="peak host memory (max RSS) of modes a and b, each in its own child process")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.steps = 2, 100
    import tempfile

    runs = Path(tempfile.mkdtemp()) / "runs"
    cfg = job_config(args, runs)
    if args.child:  # one mode alone, for --memory: its max RSS is the mode's own peak
        import resource

        device = torch.device("cpu") if args.device == "cpu" else __import__("tui_trainer.device").device.pick_device(args.device)
        if args.child == "a":
            lecture_loop(cfg, device)
        else:
            engine_headless(cfg, runs)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
        return
    if args.memory:
        import subprocess

        peaks = {}
        for mode in "ab":
            cmd = [sys.executable, __file__, "--child", mode, "--device", args.device, "--batch-size", str(args.batch_size),
                   "--epochs", str(args.epochs), "--steps", str(args.steps), "--preset", args.preset]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
            peaks[mode] = int(out[-1]) / 1024
        print(f"peak host memory (max RSS): lecture loop {peaks['a']:,.0f} MiB, engine {peaks['b']:,.0f} MiB "
              f"({peaks['b'] / peaks['a']:.2f}x)")
        return
    from tui_trainer.device import describe_device, pick_device

    device = pick_device(args.device)
    warm_up()
    results: dict = {
        "date": time.strftime("%Y-%m-%d"), "device": describe_device(device).describe(), "python": platform.python_version(),
        "torch": torch.__version__, "preset": args.preset, "batch_size": args.batch_size, "epochs": args.epochs,
        "steps_per_epoch": args.steps, "compile": args.compile, "samples_per_s": {},
    }
    rates = results["samples_per_s"]
    samples: dict[str, list[float]] = {"a_lecture_loop": [], "b_engine_headless": []}
    for _ in range(1 if args.quick else args.repeat):  # interleaved, so drift in machine load hits both alike
        if "a" in args.modes:
            samples["a_lecture_loop"].append(lecture_loop(cfg, device))
        if "b" in args.modes:
            samples["b_engine_headless"].append(engine_headless(cfg, runs))
        if "c" in args.modes:
            rate, results["app"] = engine_in_app(cfg, runs, args.chart_hz)
            samples.setdefault("c_engine_in_app", []).append(rate)
        if "e" in args.modes:  # (e) and its baseline, each in a fresh child process
            samples.setdefault("b_engine_headless_child", []).append(
                engine_beside_app(args, cfg, runs, args.chart_hz, app=False)[0])
            rate, results["beside_app"] = engine_beside_app(args, cfg, runs, args.chart_hz)
            samples.setdefault("e_engine_beside_app", []).append(rate)
        print("  so far: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in samples.items() if v), file=sys.stderr, flush=True)
    for name, values in samples.items():
        if values:
            rates[name] = sorted(values)[len(values) // 2]
            results.setdefault("runs", {})[name] = values
    if "d" in args.modes:
        rate = lightning(cfg, device)
        if rate is not None:
            rates["d_lightning"] = rate
    base = rates.get("a_lecture_loop")
    results["ratio_to_lecture"] = {k: v / base for k, v in rates.items()} if base else {}
    if "b_engine_headless" in rates and "c_engine_in_app" in rates:
        results["app_over_headless"] = rates["c_engine_in_app"] / rates["b_engine_headless"]
    if "e_engine_beside_app" in rates:
        results["beside_app_over_headless"] = rates["e_engine_beside_app"] / rates["b_engine_headless_child"]
    if args.startup or args.terminal:
        results["startup"] = startup_and_terminal(args.terminal or 5.0, repeat=1 if args.quick else args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{results['date']}  {results['device']}  torch {results['torch']}  {args.preset}  batch {args.batch_size}  "
          f"{args.epochs} epochs x {args.steps} steps")
    for name, rate in rates.items():
        ratio = results["ratio_to_lecture"].get(name)
        spread = results.get("runs", {}).get(name)
        extra = f"   (runs: {', '.join(f'{v:,.0f}' for v in spread)})" if spread and len(spread) > 1 else ""
        print(f"  {name:<24} {rate:>12,.0f} samples/s" + (f"   {ratio:5.2f}x lecture loop" if ratio else "") + extra)
    if "app_over_headless" in results:
        print(f"  app / headless: {results['app_over_headless']:.2f}  (chart redraws {results['app']['replots']}, "
              f"UI posts {results['app']['posts']})")
    if "beside_app_over_headless" in results:
        print(f"  beside app / headless, each in a child: {results['beside_app_over_headless']:.2f}  (chart redraws "
              f"{results['beside_app']['replots']}, UI posts {results['beside_app']['posts']})")
    for key, value in results.get("startup", {}).items():
        print(f"  {key}: {value:.2f}" if isinstance(value, float) else f"  {key}: {value}")


if __name__ == "__main__":
    main()
