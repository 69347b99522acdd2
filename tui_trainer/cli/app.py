"""The typer commands. torch and the app are imported lazily, so ``--help`` is instant."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tui_trainer.cli import sweeps, ways
from tui_trainer.cli.busy import PROGRESS_EVERY_S, Busy, ProgressLines
from tui_trainer.cli.common import (
    DEFAULT_PRESET,
    DEFAULT_RUNS_DIR,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    build_config,
    fail,
    launch_ui,
    resume_config,
)
from tui_trainer.cli.ways import run_as_rank, run_foreground, run_launched, run_other_node, start_detached
from tui_trainer.config import IMAGE_DATASETS, apply_overrides, list_presets, load_preset, preset_description
from tui_trainer.errors import USER_ERRORS, CheckpointError
from tui_trainer.run.formats import format_column, format_number
from tui_trainer.run.history import end_line
from tui_trainer.run.samples import SampleSet
from tui_trainer.sweep.folder import find_sweep

# typer >= 0.25 vendors its own click: find its UsageError through a public class instead of importing click
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

app = typer.Typer(
    add_completion=False,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Train neural networks from a terminal. With no command, opens the app on the default preset; with the "
    "app's own options and no command (tui-trainer --preset P), opens it as `tui-trainer ui` does.",
)

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a preset key: section.key=value")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or mps")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="epochs to train (the total to reach on resume)")]
RunsOpt = Annotated[Path, typer.Option("--runs-dir", help="where run directories are (created)")]
DetachOpt = Annotated[bool, typer.Option("--detach", help="train in the background; print the run's folder and leave")]
NotifyOpt = Annotated[str | None, typer.Option("--notify", metavar="COMMAND", help="shell command the run process "
                                               "runs when the run ends (finished, stopped, failed, crashed), with "
                                               "TUI_TRAINER_RUN_DIR, _STATE, _REASON, _MESSAGE, _BEST ... in its "
                                               "environment; default: $TUI_TRAINER_NOTIFY")]


# ---------------------------------------------------------------------------
# commands


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Open the app when no command is given."""
    if ctx.invoked_subcommand is None:
        launch_ui(DEFAULT_PRESET, [], None, DEFAULT_RUNS_DIR)


@app.command()
def train(
    preset: Annotated[str, typer.Argument(help="preset name or path to a .toml file")],
    epochs: EpochsOpt = None,
    device: DeviceOpt = None,
    set_: SetOpt = None,
    runs_dir: RunsOpt = DEFAULT_RUNS_DIR,
    seed: Annotated[int | None, typer.Option("--seed", help="random seed")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="run one step and stop (checks a preset); keeps nothing")] = False,
    detach: DetachOpt = False,
    nproc: Annotated[int | None, typer.Option("--nproc-per-node", min=1, help="processes on this machine (one per "
                                                 "GPU): more than 1 trains data parallel through torchrun")] = None,
    nnodes: Annotated[int, typer.Option("--nnodes", min=1, help="machines in a data-parallel run (torchrun)")] = 1,
    node_rank: Annotated[int, typer.Option("--node-rank", min=0, help="this machine's number, 0 writes the run")] = 0,
    rdzv_endpoint: Annotated[str | None, typer.Option("--rdzv-endpoint", help="host:port where the machines meet "
                                                      "(torchrun's rendezvous, on node 0)")] = None,
    max_restarts: Annotated[int, typer.Option("--max-restarts", min=0, help="torchrun restarts the ranks this many "
                                              "times after a failure, from the last checkpoint")] = 0,
    notify: NotifyOpt = None,
) -> None:
    """Train a preset: in the foreground (Ctrl+C stops and saves), or in the background with --detach.
    With --nproc-per-node N (and --nnodes/--node-rank/--rdzv-endpoint across machines) the run is
    data parallel: PyTorch's torchrun starts N processes here, data.batch_size each."""
    from tui_trainer.run.client import Nodes

    cfg = build_config(preset, [*(set_ or []), *([f"train.nproc={nproc}"] if nproc else [])], epochs, device, seed)
    _set_notify(notify)
    if dry_run:
        raise SystemExit(ways.dry_run(cfg))
    if nnodes > 1 and not rdzv_endpoint:
        fail("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (node 0's address, the same on every machine)")
    if node_rank >= nnodes:
        fail(f"--node-rank {node_rank}: allowed 0 .. {nnodes - 1} with --nnodes {nnodes}")
    nodes = Nodes(nnodes, node_rank, rdzv_endpoint, max_restarts)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by the user's own torchrun: this process is one rank
        raise SystemExit(run_as_rank(cfg, runs_dir))
    if node_rank > 0:
        raise SystemExit(run_other_node(cfg, nodes))
    if detach:
        raise SystemExit(start_detached(cfg, runs_dir, nodes=nodes))
    if cfg.train.nproc > 1 or nnodes > 1:
        raise SystemExit(run_launched(cfg, runs_dir, nodes))
    raise SystemExit(run_foreground(cfg, runs_dir))


@app.command()
def resume(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint file (e.g. runs/<run>/checkpoints/last.pt)")],
    epochs: EpochsOpt = None,
    device: DeviceOpt = None,
    detach: DetachOpt = False,
    nproc: Annotated[int | None, typer.Option("--nproc-per-node", min=1, help="processes on this machine "
                                                 "(a checkpoint of any number of ranks resumes on any number)")] = None,
    notify: NotifyOpt = None,
) -> None:
    """Continue a run from a checkpoint, in its own run directory, up to --epochs in total; or a sweep that was
    stopped or crashed (given its folder or name): finished trials kept, interrupted ones taken back."""
    if (found := find_sweep(str(checkpoint))) is not None:
        raise SystemExit(sweeps.resume(found, detach))
    _set_notify(notify)
    ck = _load_ck(checkpoint)
    cfg = resume_config(checkpoint, device=device, epochs=epochs)
    if ck["epoch"] >= cfg.train.epochs and not ck.get("batch_in_epoch"):
        fail(f"checkpoint is at epoch {ck['epoch']} of {cfg.train.epochs}: pass --epochs N with N > {ck['epoch']}")
    runs_dir = Path(ck["run_dir"]).parent
    if nproc is not None:
        cfg = apply_overrides(cfg, [f"train.nproc={nproc}"])  # a checkpoint of N ranks resumes on any number
    if detach:
        raise SystemExit(start_detached(cfg, runs_dir, checkpoint))
    if cfg.train.nproc > 1:
        from tui_trainer.run.client import Nodes

        raise SystemExit(run_launched(cfg, runs_dir, Nodes(), checkpoint))
    raise SystemExit(run_foreground(cfg, runs_dir, checkpoint))


def _set_notify(command: str | None) -> None:
    """``--notify COMMAND``: the hook of the run this command starts (a run process inherits this environment; a
    foreground run reads it here). Exit 2 for an unusable command."""
    if command is None:
        return
    from tui_trainer.run.notify import NOTIFY_ENV, check_command

    try:
        os.environ[NOTIFY_ENV] = check_command(command)
    except ValueError as exc:
        fail(str(exc))


def _load_ck(path: Path) -> dict:
    """Load a checkpoint; if it is damaged, name a good one from the same run instead of starting over. A missing
    file or a folder is said before torch is imported."""
    _check_checkpoint_path(path)
    from tui_trainer.engine.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        good = _good_sibling(path)
        if good is None:
            raise
        raise CheckpointError(f"{exc}; the run has a good checkpoint at epoch {good[1]}: "
                              f"tui-trainer resume {good[0]}") from None


def _check_checkpoint_path(path: Path) -> None:
    """CheckpointError (exit 2) for a missing file or a folder, naming a checkpoint that exists; no torch needed."""
    from tui_trainer.run.folder import not_a_checkpoint

    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(not_a_checkpoint(path))


def _good_sibling(path: Path) -> tuple[Path, int] | None:
    """The newest loadable checkpoint beside ``path`` (best.pt, manual saves), as (path, epoch)."""
    from tui_trainer.engine.checkpoint import load_checkpoint

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
def runs(runs_dir: RunsOpt = DEFAULT_RUNS_DIR) -> None:
    """The runs in a folder: live ones first, then newest first. On a terminal the columns that do not fit its
    width are left out whole (preset first, then started); in a pipe every column is printed."""
    from tui_trainer.cli.tables import render, runs_columns
    from tui_trainer.run.folder import RunDir, run_summaries

    root = runs_dir.expanduser()
    if root.exists() and not root.is_dir():
        fail(f"--runs-dir {root} is a file; allowed: a folder of runs (default: runs)")
    try:
        rows = run_summaries(root)
    except OSError as exc:
        fail(f"--runs-dir {root} cannot be read ({exc.strerror or exc}); allowed: a readable folder of runs")
    if not rows:
        print(f"no runs in {root}")
        return
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None  # COLUMNS first, then the terminal
    for line in render(runs_columns(rows), width):
        print(line)
    for r in rows:
        if r.state == "crashed":
            print(f"{r.name} crashed (its process is gone without an end): {RunDir(Path(r.path)).resume_hint()}")


@app.command()
def attach(
    run: Annotated[str | None, typer.Argument(help="run folder or name (default: the newest live run)")] = None,
    runs_dir: RunsOpt = DEFAULT_RUNS_DIR,
    plain: Annotated[bool, typer.Option("--plain", help="print events as lines instead of opening the app")] = False,
) -> None:
    """Follow a run in the app (live: its whole history, then live; finished: read-only); a sweep (its folder or
    name) in the app's Sweep view (its trials, best, curves; Enter shows a trial), or as lines until it ends."""
    from tui_trainer.run.folder import resolve_run

    if (found_sweep := find_sweep(run)) is not None:
        if plain or not sys.stdout.isatty():
            raise SystemExit(sweeps.attach_sweep(found_sweep))
        sweeps.open_sweep_view(found_sweep, runs_dir)

    found = resolve_run(runs_dir, run)
    if plain or not sys.stdout.isatty():
        from tui_trainer.cli.console import follow_plain

        finished = follow_plain(found, sys.stdout)
        state = found.state()
        print(f"{found.name}: {end_line(finished.reason, finished.message) if finished else state}")
        if state in ("crashed", "failed", "stopped"):
            print(found.resume_hint())
        raise SystemExit(EXIT_OK if state != "crashed" else EXIT_FAILED)
    launch_ui(DEFAULT_PRESET, [], None, runs_dir, attach=found.path)


@app.command()
def stop(
    run: Annotated[str, typer.Argument(help="run folder or name")],
    runs_dir: RunsOpt = DEFAULT_RUNS_DIR,
    timeout: Annotated[float, typer.Option("--timeout", min=0.0, help="seconds to wait for the run to end")] = 60.0,
) -> None:
    """Stop a run (it saves last.pt) and wait until it has ended; or a sweep (each running trial saves last.pt)."""
    from tui_trainer.run.client import attach as attach_run
    from tui_trainer.run.folder import LIVE_STATES, resolve_run

    if (found := find_sweep(run)) is not None:
        raise SystemExit(sweeps.stop(found, timeout))

    handle = attach_run(resolve_run(runs_dir, run))
    state = handle.state()
    if state not in LIVE_STATES:
        fail(f"run {handle.run.name} is not running (state: {state})")
    state, said = handle.stop(timeout)
    if said:
        print(said)
    status = handle.run.read_status()
    ended = end_line(status["reason"], status["message"]) if status.get("reason") and status.get("message") else state
    print(f"{handle.run.name}: {ended}" + (f"; last checkpoint {status['last_checkpoint']}"
                                           if status.get("last_checkpoint") else ""))
    raise SystemExit(EXIT_OK if state not in LIVE_STATES else EXIT_FAILED)


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint file")],
    device: DeviceOpt = None,
    show: Annotated[str | None, typer.Option("--show", help="draw validation images of an image classifier: "
                                             "mistakes (highest loss), confused (most confused classes), classes "
                                             "(right and wrong per class) or filters (a CNN's first layer); plain "
                                             "lines in a pipe")] = None,
) -> None:
    """Validation loss and accuracy of a checkpoint (and per-class results for classification; with --show, a view
    of its validation images)."""
    from tui_trainer.ui.pictures import VIEWS

    if show is not None and show not in VIEWS:
        fail(f"--show {show!r} is not a view; allowed: {', '.join(VIEWS)}")
    _check_checkpoint_path(checkpoint)  # a missing file or a folder is said before torch loads
    with Busy("loading torch…") as busy:
        from tui_trainer.engine import config_from_checkpoint, loss_for, prepare
        from tui_trainer.engine import evaluate as eval_model
        from tui_trainer.engine.models import state_mismatch
        from tui_trainer.engine.report import class_report, format_class_report
        from tui_trainer.engine.samples import SampleCollector, is_image_classifier, pick

        busy.update(f"loading {checkpoint}…")
        ck = _load_ck(checkpoint)
        if ck.get("source") == "track":  # a user's own loop: its model is not one the tool can build
            from tui_trainer.run.track_record import describe_checkpoint

            busy.stop()
            print(describe_checkpoint(ck, checkpoint))
            return
        cfg = config_from_checkpoint(ck)
        if device is not None:
            cfg = apply_overrides(cfg, [f'train.device="{device}"'])
        if show is not None and (cfg.task != "classification" or cfg.data.dataset not in IMAGE_DATASETS):
            busy.stop()
            fail(f"--show {show}: {checkpoint} is a {cfg.task} model of {cfg.data.dataset}; the image views need an "
                 f"image classifier (data.dataset one of {', '.join(IMAGE_DATASETS)})")
        busy.update(f"loading the {cfg.data.dataset} data and the model…")
        _dev, data, model = prepare(cfg)
        why = state_mismatch(model, ck["model"])
        if why:
            busy.stop()
            fail(f"{checkpoint}: checkpoint does not match the {cfg.model.arch} model of its config: {why}")
        model.load_state_dict(ck["model"])
        busy.update("evaluating on the validation set…")
        loss_fn = loss_for(cfg, data.task)
        collect = SampleCollector() if show is not None and is_image_classifier(data) else None
        val_loss, val_acc = eval_model(model, data, loss_fn, collect=collect)
        report = format_class_report(class_report(model, data)) if data.task == "classification" else None
        sample = pick(collect.table(), data, ck["epoch"], model) if collect is not None else None
    acc = f" val_acc {format_number(val_acc)}" if val_acc is not None else ""
    print(f"{checkpoint}: epoch {ck['epoch']} step {ck['step']} val_loss {format_number(val_loss)}{acc}")
    if report is not None:
        print(report)
    if show is not None:
        _show_view(sample, show)


def _show_view(sample: SampleSet | None, view: str) -> None:
    """A view of the validation sample: a grid of images on a terminal, plain lines in a pipe."""
    from tui_trainer.ui.pictures import PictureGrid, view_lines, view_pictures

    if sample is None:  # an image dataset without known pixel scaling (cannot happen with the built-in loaders)
        fail(f"--show {view}: this model's data are not images the views can draw")
    if not sys.stdout.isatty():
        print("\n".join(view_lines(sample, view)))
        return
    from rich.console import Console

    title, pictures = view_pictures(sample, view)
    Console(highlight=False).print(PictureGrid(pictures, title=title))


@app.command()
def presets() -> None:
    """List presets with a one-line description each; a preset whose data is not on this machine is marked
    [download] (torchvision downloads it on first use) or [no data] (set data.root or data.path)."""
    found = list_presets()
    width = max(len(n) for n in found) if found else 0
    marks = {name: _data_mark(path) for name, path in found.items()}
    mark_width = max(map(len, marks.values()), default=0)
    for name, path in found.items():
        mark = f"{marks[name]:<{mark_width}}  " if mark_width else ""
        print(f"{name:<{width}}  {mark}{preset_description(path)}")
    _list_plugins()


def _list_plugins() -> None:
    """The models and datasets installed packages register (entry points), with their docstring's first line;
    loading them imports those packages."""
    from tui_trainer.config.factories import GROUPS, installed
    from tui_trainer.usercode import doc_line

    for kind, what, key in (("model", "models", "model.arch"), ("data", "datasets", "data.dataset")):
        found = installed(kind)
        if not found:
            continue
        print(f"\n{what} from installed packages ({GROUPS[kind]}; {key} = \"plugin:NAME\"):")
        width = max(len(n) for n in found) + len("plugin:")
        for name in sorted(found):
            print(f"{'plugin:' + name:<{width}}  {doc_line(kind, name)}")


def _data_mark(path: Path) -> str:
    """[download] or [no data] when a preset's data is not here; "" when it is (or the preset is invalid: its own
    error says so when it is used). Looks at files only: no torch."""
    from tui_trainer.config.datafiles import data_place

    try:
        place = data_place(load_preset(str(path)))
    except USER_ERRORS:
        return ""
    if place.here:
        return ""
    return "[download]" if place.downloads else "[no data]"


@app.command()
def devices() -> None:
    """What hardware was detected."""
    from tui_trainer.engine.device import all_devices, pick_device

    for info in all_devices():
        print(info.describe())
    print(f"auto picks: {pick_device('auto')}")


@app.command(name="lr-find")
def lr_find_cmd(
    preset: Annotated[str, typer.Argument(help="preset name or path to a .toml file")],
    set_: SetOpt = None,
    device: DeviceOpt = None,
    steps: Annotated[int, typer.Option("--steps", min=10, help="batches in the first sweep (then 4 times as many while "
                                                             "the loss has not fallen, up to 32x)")] = 100,
    start: Annotated[float, typer.Option("--start", min=1e-12, help="first learning rate")] = 1e-7,
    end: Annotated[float, typer.Option("--end", max=1e3, help="last learning rate")] = 10.0,
    json_out: Annotated[bool, typer.Option("--json", help="print the sweep as one JSON object")] = False,
    progress: Annotated[bool, typer.Option("--progress", help="print progress on stderr as JSON lines, one about every "
                                                             f"{PROGRESS_EVERY_S} s (for a program that runs this)")] = False,
) -> None:
    """Sweep the learning rate on a copy of the model and suggest one (a tenth of the rate at the lowest loss)."""
    cfg = build_config(preset, set_, device=device)
    if not start < end:
        fail(f"--start {start:g} must be below --end {end:g}")
    lines = ProgressLines(sys.stderr) if progress else None
    with Busy("loading torch…", tty=False if progress else None) as busy:
        from tui_trainer.engine.lrfind import lr_find

        busy.update(f"loading the {cfg.data.dataset} data and the model…")

        def report(p: Any) -> None:
            busy.update(f"LR sweep {p.sweep} (of at most {p.max_sweeps}): {p.step}/{p.steps} steps, lr {p.lr:.2e}, "
                        f"loss {format_number(p.loss)}")
            if lines is not None:
                lines.emit(p)

        from tui_trainer.runner import start_threads

        threads = start_threads(cfg, f"lr-find {cfg.name}")  # a share of the cores beside live runs, as a run takes
        try:
            result = lr_find(cfg, start=start, end=end, steps=steps, progress=report)
        finally:
            threads.stop()
    if json_out:
        import dataclasses
        import json

        print(json.dumps(dataclasses.asdict(result)))
        raise SystemExit(EXIT_OK)
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
        every = max(1, len(result.lrs) // 20)
        lrs, losses = format_column(result.lrs[::every]), format_column(result.smoothed[::every])
        for lr, loss in zip(lrs, losses, strict=True):
            print(f"lr {lr} loss {loss}")
    if result.suggestion is None:
        fail(f"no suggestion: {result.reason}", EXIT_FAILED)
    print(f"suggested lr: {result.suggestion:.3g}   (preset: {cfg.optimizer.lr:g}; use --set optimizer.lr=...)")


@app.command()
def doctor(runs_dir: RunsOpt = DEFAULT_RUNS_DIR) -> None:
    """Check what training needs here (torch, device, datasets, runs directory) and say what to fix."""
    from tui_trainer.cli.doctor import check

    raise SystemExit(check(runs_dir))


@app.command()
def summary(
    preset: Annotated[str, typer.Argument(help="preset name or path to a .toml file")],
    set_: SetOpt = None,
) -> None:
    """Layers, output shapes and parameter counts of a preset's model."""
    cfg = build_config(preset, set_, device="cpu")
    with Busy("loading torch…") as busy:
        from tui_trainer.engine import describe_model

        busy.update("building the model…")
        table = describe_model(cfg)[2]  # no data loaded (or downloaded)
    print(table)


@app.command()
def examples(
    preset: Annotated[str, typer.Argument(help="preset name or path to a .toml file")],
    set_: SetOpt = None,
    fed: Annotated[bool, typer.Option("--fed", help="as the network is fed them: after the preset's scaling and "
                                      "augmentation (values drawn from their smallest, black, to their largest)")] = False,
    per_class: Annotated[int, typer.Option("--per-class", min=1, max=50, help="examples of each class")] = 4,
) -> None:
    """Training examples of each class of an image dataset, drawn in the terminal (a grey ramp in a pipe)."""
    cfg = build_config(preset, set_, device="cpu")
    with Busy("loading torch…") as busy:
        from tui_trainer.engine.samples import examples_of

        busy.update(f"loading the {cfg.data.dataset} data…")
        reply = examples_of(cfg, per_class)
    from rich.console import Console

    from tui_trainer.ui.pictures import PictureGrid, example_pictures

    title, pictures = example_pictures(reply, fed)
    Console(highlight=False).print(PictureGrid(pictures, title=title))


@app.command()
def ui(
    preset: Annotated[str, typer.Option("--preset", help="preset to open")] = DEFAULT_PRESET,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    runs_dir: RunsOpt = DEFAULT_RUNS_DIR,
    resume_from: Annotated[Path | None, typer.Option(
        "--resume", help="checkpoint to continue (its config fills the panels)")] = None,
) -> None:
    """Open the app."""
    launch_ui(preset, set_ or [], device, runs_dir, resume_from)


# ---------------------------------------------------------------------------
# runs side by side: compare, export, serve (issue 15); the logic is in compare.py, export.py, cli/serve.py


@app.command()
def compare(
    run: Annotated[list[str], typer.Argument(metavar="RUN", help="run folders or names under --runs-dir")],
    runs_dir: RunsOpt = DEFAULT_RUNS_DIR,
    plot: Annotated[bool, typer.Option("--plot", help="also draw the validation curves (plain rows in a pipe)")] = False,
) -> None:
    """Runs side by side: best val loss and accuracy, the best epoch, epochs, time and state, each run named
    by the config keys that differ between them."""
    from tui_trainer.run import compare as comparing
    from tui_trainer.run.folder import resolve_run

    runs = comparing.load_runs([resolve_run(runs_dir, name) for name in run])
    comparing.check_comparable(runs)
    print(comparing.compare_table(runs))
    if plot:
        print()
        if sys.stdout.isatty():
            print(comparing.plot_curves(runs, width=min(shutil.get_terminal_size().columns, 120)))
        else:
            print(comparing.curves_table(runs))


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="run folder or name")],
    format_: Annotated[str, typer.Option("--format", help="csv or tensorboard")] = "csv",
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="file or folder to write (default: <run>.csv here; the run's tensorboard/ folder)")] = None,
    out_alias: Annotated[Path | None, typer.Option("--out", hidden=True, help="the old name of --output")] = None,
    runs_dir: RunsOpt = DEFAULT_RUNS_DIR,
) -> None:
    """Write a run's metrics as CSV (one row per epoch) or as TensorBoard event files, never half a file; a sweep's
    study as CSV (one row per trial)."""
    from tui_trainer.run.compare import load_run
    from tui_trainer.run.export import export_run
    from tui_trainer.run.folder import resolve_run

    if output is not None and out_alias is not None and output != out_alias:
        fail(f"--output {output} and --out {out_alias}: give one (--out is the old name of -o/--output)")
    out = output if output is not None else out_alias
    if (found := find_sweep(run)) is not None:
        if format_ != "csv":
            fail(f"--format {format_}: a sweep exports as csv (one row per trial)")
        raise SystemExit(sweeps.export(found, out))
    data = load_run(resolve_run(runs_dir, run))
    written = export_run(data, format_, out)
    if format_ == "csv":
        print(f"wrote {written} ({len(data.rows)} epochs)")
    else:
        print(f"wrote {written}; view with: tensorboard --logdir {written}")


@app.command()
def serve(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port to listen on")] = 8000,
    host: Annotated[str, typer.Option("--host", help="address to listen on (loopback: reach it through ssh -L)")]
    = "127.0.0.1",
    preset: Annotated[str, typer.Option("--preset", help="preset each browser session opens")] = DEFAULT_PRESET,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    runs_dir: RunsOpt = DEFAULT_RUNS_DIR,
    public_url: Annotated[str | None, typer.Option(
        "--public-url", help="the address browsers use, when it is not http://HOST:PORT (a proxy)")] = None,
    allow_code: Annotated[bool, typer.Option(
        "--allow-code", help="let the preset and the browser's fields name Python code to run (model.factory, "
        "data.factory, plugin:NAME): anyone who reaches the page runs code here")] = False,
) -> None:
    """Serve the app in a web browser (needs the serve extra): each tab gets its own app; runs go to --runs-dir.
    Without --allow-code, presets and fields that name code (your own model or data) are refused."""
    from tui_trainer.cli.serve import app_command, refuse_code, serve_app

    cfg = build_config(preset, set_, device=device)  # a bad preset fails here, once, not in every browser tab
    if not allow_code:
        refuse_code(cfg)
    serve_app(app_command(preset, set_ or [], runs_dir, device), host, port, public_url, allow_code)


# sweeps (issue 23): the commands are in cli/sweeps.py, the work in tui_trainer/sweep/
app.command(name="sweep")(sweeps.sweep)
app.command(name="sweeps")(sweeps.sweeps)


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


