"""The command line (typer). Imports torch and the UI lazily so ``--help`` is instant.

Exit codes: 0 done (early stop included), 1 training failed, 2 bad usage or config,
130 interrupted (after saving).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tui_trainer.config import RunConfig, apply_overrides, list_presets, preset_description
from tui_trainer.errors import USER_ERRORS, CheckpointError, ConfigError, DataError
from tui_trainer.launch import (
    DEFAULT_PRESET,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    build_config,
    entry,
    fail,
    launch_ui,
)

# typer >= 0.25 vendors its own click: find its UsageError through a public class instead of importing click
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

app = typer.Typer(
    add_completion=False,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Train neural networks from a terminal. With no command, opens the app on the default preset.",
)

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a preset key: section.key=value")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or mps")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="epochs to train (the total to reach on resume)")]
RunsOpt = Annotated[Path, typer.Option("--runs-dir", help="where run directories are created")]


# ---------------------------------------------------------------------------
# console output


class ConsoleSink:
    """Prints events: a live progress bar on a terminal, one plain line per epoch otherwise."""

    def __init__(self, stream: Any = None, tty: bool | None = None) -> None:
        self.out = stream or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.epochs = 0
        self.start = time.perf_counter()
        self.start_epoch = 0
        self._bar = False

    def _line(self, text: str) -> None:
        if self._bar:
            self.out.write("\r\x1b[2K")
            self._bar = False
        self.out.write(text + "\n")
        self.out.flush()

    def emit(self, event: Any) -> None:
        from tui_trainer import events as ev

        if isinstance(event, ev.RunStarted):
            self.epochs, self.start_epoch = event.epochs, event.start_epoch
            self.start = time.perf_counter()
            verb = "resuming" if event.start_epoch else "training"
            self._line(f"{verb} {event.preset} on {event.device}: {event.n_params:,} params, "
                       f"{event.train_samples:,} train / {event.val_samples:,} val samples -> {event.run_dir}")
        elif isinstance(event, ev.StepLogged) and self.tty:
            frac = event.batch / max(event.batches, 1)
            done = (event.epoch - 1 - self.start_epoch) + frac
            total = self.epochs - self.start_epoch
            elapsed = time.perf_counter() - self.start
            eta = elapsed / done * (total - done) if done > 0 else 0.0
            bar = "#" * int(frac * 20)
            self.out.write(f"\r\x1b[2Kepoch {event.epoch}/{self.epochs} [{bar:<20}] {frac:4.0%} loss {event.loss:.4f} "
                           f"{event.samples_per_s:,.0f} samples/s ETA {_hms(eta)}")
            self.out.flush()
            self._bar = True
        elif isinstance(event, ev.EpochEnded):
            acc = ""
            if event.val_acc is not None:
                acc = f" train_acc {event.train_acc:.4f} val_acc {event.val_acc:.4f}"
            best = " *" if event.is_best else ""
            self._line(f"epoch {event.epoch}/{self.epochs} train_loss {event.train_loss:.4f} val_loss "
                       f"{event.val_loss:.4f}{acc} lr {event.lr:.3g} {event.epoch_seconds:.2f}s "
                       f"{event.samples_per_s:,.0f} samples/s{best}")
        elif isinstance(event, ev.LogMessage) and event.level != "info":
            self._line(f"{event.level}: {event.text}")
        elif isinstance(event, ev.LogMessage):
            self._line(event.text)
        elif isinstance(event, ev.CheckpointSaved) and event.kind == "manual":
            self._line(f"saved {event.path}")


def _hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# ---------------------------------------------------------------------------
# running a fit with signals


def _install_stop_signals(controls: Any) -> dict:
    """First SIGINT/SIGTERM/SIGHUP: stop within one step and save. A second one: exit at once."""
    previous = {}
    state = {"count": 0, "signal": None}

    def handler(signum: int, _frame: Any) -> None:
        state["count"] += 1
        state["signal"] = signum
        if state["count"] > 1:
            os._exit(EXIT_INTERRUPTED)  # a second Ctrl+C: leave now (saves are atomic, nothing is torn)
        controls.stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    return state


def run_fit(cfg: RunConfig, runs_dir: Path, resume: dict | None = None, max_steps: int | None = None) -> int:
    """Fit with console output and signal handling; returns the exit code."""
    from tui_trainer.engine import Controls, Trainer

    controls = Controls()
    state = _install_stop_signals(controls)
    sink = ConsoleSink()
    if max_steps is not None:
        sink = _StopAfter(sink, controls, max_steps)
    try:
        result = Trainer(runs_dir).fit(cfg, sink, controls, resume=resume)
    except (ConfigError, DataError) as exc:
        fail(str(exc))
    if state["signal"] is not None:
        where = result.last_checkpoint or "(no checkpoint written)"
        print(f"interrupted: stopped at epoch {result.epoch + 1}, step {result.step}; saved {where}")
        if result.last_checkpoint:
            print(f"resume with: tui-trainer resume {result.last_checkpoint}")
        return EXIT_INTERRUPTED
    if result.reason in ("completed", "early_stopped", "stopped"):
        best = f", best {cfg.regularization.monitor} {result.best_metric:.4f}" if result.best_metric is not None else ""
        print(f"done: {result.message}{best}; run directory {result.run_dir}")
        return EXIT_OK
    print(f"error: {result.message}", file=sys.stderr)
    return EXIT_FAILED


class _StopAfter:
    """Sink wrapper for --dry-run: asks the run to stop after N steps."""

    def __init__(self, inner: Any, controls: Any, steps: int) -> None:
        self.inner, self.controls, self.steps = inner, controls, steps

    def emit(self, event: Any) -> None:
        from tui_trainer.events import StepLogged

        self.inner.emit(event)
        if isinstance(event, StepLogged) and event.step >= self.steps:
            self.controls.stop.set()


# ---------------------------------------------------------------------------
# commands


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Open the app when no command is given."""
    if ctx.invoked_subcommand is None:
        launch_ui(DEFAULT_PRESET, [], None, Path("runs"), None)


@app.command()
def train(
    preset: Annotated[str, typer.Argument(help="preset name or path to a .toml file")],
    epochs: EpochsOpt = None,
    device: DeviceOpt = None,
    set_: SetOpt = None,
    runs_dir: RunsOpt = Path("runs"),
    seed: Annotated[int | None, typer.Option("--seed", help="random seed")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="run one step and stop (checks a preset)")] = False,
) -> None:
    """Train a preset headless."""
    cfg = build_config(preset, set_, epochs, device, seed)
    if dry_run:
        cfg = apply_overrides(cfg, ["train.log_every=1"])
    raise SystemExit(run_fit(cfg, runs_dir, max_steps=1 if dry_run else None))


def _load_ck(path: Path) -> dict:
    """Load a checkpoint; if it is damaged, name a good one from the same run instead of starting over."""
    from tui_trainer.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        good = _good_sibling(path)
        if good is None:
            raise
        raise CheckpointError(f"{exc}; the run has a good checkpoint at epoch {good[1]}: "
                              f"tui-trainer resume {good[0]}") from None


def _good_sibling(path: Path) -> tuple[Path, int] | None:
    """The newest loadable checkpoint beside ``path`` (best.pt, manual saves), as (path, epoch)."""
    from tui_trainer.checkpoint import load_checkpoint

    folder = Path(path).parent
    if not folder.is_dir():
        return None
    found = []
    for other in folder.glob("*.pt"):
        if other.resolve() == Path(path).resolve():
            continue
        try:
            ck = load_checkpoint(other)
        except CheckpointError:
            continue
        found.append((ck["step"], other, int(ck["epoch"])))
    if not found:
        return None
    _step, best_path, epoch = max(found)
    return best_path, epoch


@app.command()
def resume(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint file (e.g. runs/<run>/checkpoints/last.pt)")],
    epochs: EpochsOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Continue a run from a checkpoint, in its own run directory, up to --epochs in total."""
    from tui_trainer.engine import config_from_checkpoint

    ck = _load_ck(checkpoint)
    cfg = config_from_checkpoint(ck)
    extra = []
    if epochs is not None:
        extra.append(f"train.epochs={epochs}")
    if device is not None:
        extra.append(f'train.device="{device}"')
    cfg = apply_overrides(cfg, extra) if extra else cfg
    if ck["epoch"] >= cfg.train.epochs and not ck.get("batch_in_epoch"):
        fail(f"checkpoint is at epoch {ck['epoch']} of {cfg.train.epochs}: pass --epochs N with N > {ck['epoch']}")
    raise SystemExit(run_fit(cfg, Path(ck["run_dir"]).parent, resume=ck))


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint file")],
    device: DeviceOpt = None,
) -> None:
    """Validation loss and accuracy of a checkpoint (and per-class results for classification)."""

    from tui_trainer.engine import Trainer, build_loss, config_from_checkpoint
    from tui_trainer.engine import evaluate as eval_model
    from tui_trainer.models import state_mismatch
    from tui_trainer.report import class_report, format_class_report

    ck = _load_ck(checkpoint)
    cfg = config_from_checkpoint(ck)
    if device is not None:
        cfg = apply_overrides(cfg, [f'train.device="{device}"'])
    _dev, data, model = Trainer().prepare(cfg)
    why = state_mismatch(model, ck["model"])
    if why:
        fail(f"{checkpoint}: checkpoint does not match the {cfg.model.arch} model of its config: {why}")
    model.load_state_dict(ck["model"])
    val_loss, val_acc = eval_model(model, data, build_loss(data.task, cfg.regularization.label_smoothing))
    acc = f" val_acc {val_acc:.4f}" if val_acc is not None else ""
    print(f"{checkpoint}: epoch {ck['epoch']} step {ck['step']} val_loss {val_loss:.4f}{acc}")
    if data.task == "classification":
        print(format_class_report(class_report(model, data)))


@app.command()
def presets() -> None:
    """List presets with a one-line description each."""
    found = list_presets()
    width = max(len(n) for n in found) if found else 0
    for name, path in found.items():
        print(f"{name:<{width}}  {preset_description(path)}")


@app.command()
def devices() -> None:
    """What hardware was detected."""
    from tui_trainer.device import all_devices, pick_device

    for info in all_devices():
        print(info.describe())
    print(f"auto picks: {pick_device('auto')}")


@app.command(name="lr-find")
def lr_find_cmd(
    preset: Annotated[str, typer.Argument(help="preset name or path to a .toml file")],
    set_: SetOpt = None,
    device: DeviceOpt = None,
    steps: Annotated[int, typer.Option("--steps", min=10, help="batches in the sweep")] = 100,
    start: Annotated[float, typer.Option("--start", min=1e-12, help="first learning rate")] = 1e-7,
    end: Annotated[float, typer.Option("--end", max=1e3, help="last learning rate")] = 10.0,
) -> None:
    """Sweep the learning rate on a copy of the model and suggest one (steepest descent of the loss)."""
    from tui_trainer.lrfind import lr_find

    cfg = build_config(preset, set_, device=device)
    if not start < end:
        fail(f"--start {start:g} must be below --end {end:g}")
    result = lr_find(cfg, start=start, end=end, steps=steps)
    if sys.stdout.isatty() and len(result.lrs) > 2:
        import plotext as plt

        plt.plot(result.lrs, result.smoothed, marker="braille")
        plt.xscale("log")
        plt.xlabel("learning rate")
        plt.ylabel("loss (smoothed)")
        if result.suggestion:
            plt.vline(result.suggestion)
        plt.plotsize(min(100, plt.terminal_width() or 100), 20)
        plt.show()
    else:
        for lr, loss in zip(result.lrs[:: max(1, len(result.lrs) // 20)], result.smoothed[:: max(1, len(result.lrs) // 20)],
                            strict=True):
            print(f"lr {lr:.3g} loss {loss:.4f}")
    if result.suggestion is None:
        fail("the loss did not fall by 2% anywhere in the sweep: try more --steps (this problem may need several epochs)",
             EXIT_FAILED)
    print(f"suggested lr: {result.suggestion:.3g}   (preset: {cfg.optimizer.lr:g}; use --set optimizer.lr=...)")


@app.command()
def doctor(runs_dir: RunsOpt = Path("runs")) -> None:
    """Check what training needs here (torch, device, datasets, runs directory) and say what to fix."""
    problems = 0

    def report(ok: bool | None, what: str, fix: str = "") -> None:
        nonlocal problems
        mark = {True: "ok  ", False: "FAIL", None: "note"}[ok]
        problems += ok is False
        print(f"{mark}  {what}" + (f"  -> {fix}" if fix and ok is not True else ""))

    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        report(False, f"torch cannot be imported ({type(exc).__name__}: {exc})", "pip install 'torch>=2.10'")
        raise SystemExit(EXIT_FAILED) from None
    major_minor = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    report(major_minor >= (2, 10), f"torch {torch.__version__}",
           "safe checkpoint loading needs torch >= 2.10: pip install -U torch")
    from tui_trainer.device import all_devices, memory_in_use, pick_device

    for info in all_devices():
        report(True, f"device {info.describe()}")
    device = pick_device("auto")
    if device.type == "cuda":
        used, free = memory_in_use(device) or (0, 0)
        report(free > 2**30, f"cuda memory free: {free / 2**30:.1f} GiB", "another process holds the GPU: nvidia-smi")
    else:
        report(None, f"no GPU found: training runs on {device.type}",
               "for CUDA install a CUDA build of torch and check nvidia-smi")
    from tui_trainer.config import RunConfig
    from tui_trainer.data import real

    cache = real.cache_dir(RunConfig())
    for name in real.TORCHVISION:
        if real._present(name, cache):
            report(True, f"dataset {name} in {cache}")
        elif name == "fashion-mnist" and (real.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
            report(True, f"dataset {name} from Debian's files in {real.DEBIAN_FASHION_MNIST}")
        else:
            hint = "apt-get install dataset-fashion-mnist, or " if name == "fashion-mnist" else ""
            report(None, f"dataset {name} not found offline (downloaded on first use if online)",
                   f"{hint}put torchvision's files under {cache}")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        probe = runs_dir / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
        report(True, f"runs directory {runs_dir.resolve()} is writable")
    except OSError as exc:
        report(False, f"runs directory {runs_dir} is not writable ({exc.strerror})", "choose another with --runs-dir")
    try:
        import textual
        import textual_plotext  # noqa: F401

        report(True, f"textual {textual.__version__} and textual-plotext for the app")
    except ImportError as exc:
        report(False, f"the app cannot start: {exc}", "pip install textual textual-plotext")
    raise SystemExit(EXIT_FAILED if problems else EXIT_OK)


@app.command()
def summary(
    preset: Annotated[str, typer.Argument(help="preset name or path to a .toml file")],
    set_: SetOpt = None,
) -> None:
    """Layers, output shapes and parameter counts of a preset's model."""
    from tui_trainer.engine import describe_model

    print(describe_model(build_config(preset, set_, device="cpu"))[2])  # no data loaded (or downloaded)


@app.command()
def ui(
    preset: Annotated[str, typer.Option("--preset", help="preset to open")] = DEFAULT_PRESET,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    runs_dir: RunsOpt = Path("runs"),
    resume_from: Annotated[Path | None, typer.Option("--resume", help="checkpoint to continue")] = None,
) -> None:
    """Open the app."""
    launch_ui(preset, set_ or [], device, runs_dir, resume_from)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every bad input becomes one line on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="tui-trainer", standalone_mode=False)
    except _UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        fail(f"{exc.format_message()}{hint}")
    except typer.Abort:
        raise SystemExit(EXIT_INTERRUPTED) from None
    except USER_ERRORS as exc:
        fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    entry()
