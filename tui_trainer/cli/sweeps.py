"""The sweep commands: ``sweep`` (start one), ``sweeps`` (list them, or one sweep's trials), and what ``attach``,
``stop``, ``resume`` and ``export`` do when given a sweep instead of a run. The work is in ``tui_trainer/sweep``;
here are the options, the lines and the exit codes (0 done, 1 failed, 2 bad input with nothing started, 130
interrupted after the trials saved)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tui_trainer.cli.busy import Busy
from tui_trainer.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, fail, with_shortcuts
from tui_trainer.cli.tables import Column, render
from tui_trainer.config import ConfigError, builtin_preset_dir
from tui_trainer.run.files import atomic_write
from tui_trainer.run.formats import format_column, format_number
from tui_trainer.sweep.client import create_sweep, follow_sweep, launch, line, stop_sweep, wait_started
from tui_trainer.sweep.folder import DEFAULT_SWEEPS_DIR, LIVE, SweepDir, list_sweeps, resolve_sweep

SweepsOpt = Annotated[Path, typer.Option("--sweeps-dir", help="where sweep folders are (created)")]


def sweep(
    preset: Annotated[str, typer.Argument(help="preset name or .toml file (its [sweep] table, if any, gives the "
                                                "defaults the options below replace)")],
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="a key to search, section.key=RANGE: LOW..HIGH, log:LOW..HIGH, LOW..HIGH:STEP or "
                        "choice:A|B|C (e.g. optimizer.lr=log:1e-4..1e-1, model.hidden=choice:[64,64]|[256,256])")]
    = None,
    trials: Annotated[int | None, typer.Option("--trials", min=1, help="trials in the study, every state counted "
                                               "[default: 20]")] = None,
    parallel: Annotated[int | None, typer.Option("--parallel", min=1, help="trials at once [default: one per GPU, "
                                                 "else 1; on a CPU at most one per core]")] = None,
    per_gpu: Annotated[int | None, typer.Option("--per-gpu", min=1, help="trials sharing one GPU [default: 1]")] = None,
    prune: Annotated[str | None, typer.Option("--prune", help="median, hyperband or none [default: median]")] = None,
    prune_startup: Annotated[int | None, typer.Option("--prune-startup", min=0, help="trials that finish before the "
                                                      "median pruner prunes [default: a fifth of --trials, 1..5]")]
    = None,
    prune_warmup: Annotated[int | None, typer.Option("--prune-warmup", min=0, help="epochs before a trial may be "
                                                     "pruned [default: 0]")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="val_loss or val_acc [default: "
                                               "regularization.monitor]")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="a database URL several machines share "
                                                "(postgresql://user:pass@host/db) or a journal file [default: "
                                                "journal.log in the sweep's folder]")] = None,
    study: Annotated[str | None, typer.Option("--study", help="the study's name [default: <preset>-<hash of the "
                                              "space>: the same command on another machine joins it]")] = None,
    sampler_seed: Annotated[int | None, typer.Option("--sampler-seed", min=0, help="seed of Optuna's sampler "
                                                     "(one worker: the same trials again)")] = None,
    save_best: Annotated[str | None, typer.Option("--save-best", help="save the best trial as this user preset "
                                                  "when the sweep ends")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="fix a key for every trial: section.key=value")]
    = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="epochs of every trial")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or mps")] = None,
    sweeps_dir: SweepsOpt = DEFAULT_SWEEPS_DIR,
    detach: Annotated[bool, typer.Option("--detach", help="leave the sweep running; print its folder and go")] = False,
) -> None:
    """Search a preset's keys with Optuna: each trial is a run process with its own run folder, reported to the
    study epoch by epoch and stopped early when the pruner says so. The sweep is a process of its own: closing the
    terminal leaves it running (tui-trainer attach SWEEP); Ctrl+C stops it, each running trial saving last.pt
    (tui-trainer resume SWEEP goes on)."""
    from tui_trainer.sweep.spec import Asked, build_spec, read_preset

    cfg, table = read_preset(preset)
    params = list(param or [])
    fixed = {s.split("=", 1)[0].strip() for s in set_ or []}
    both = fixed & {p.split("=", 1)[0].strip() for p in params}
    if both:
        fail(f"{', '.join(sorted(both))}: given to both --set and --param; fix it (--set) or search it (--param)")
    cfg = with_shortcuts(cfg, set_, epochs, device)
    if save_best is not None:
        check_preset_name(save_best)
    asked = Asked(params=params, trials=trials, parallel=parallel, per_gpu=per_gpu, prune=prune,
                  prune_startup=prune_startup, prune_warmup=prune_warmup, metric=metric, storage=storage, study=study,
                  sampler_seed=sampler_seed, save_best=save_best)
    spec = build_spec(preset, cfg, table, asked)
    joined = False
    if spec.storage is not None:
        from tui_trainer.sweep.study import check_study, open_storage, shown_url

        with Busy(f"reaching {shown_url(spec.storage)}…"):
            joined = check_study(spec, open_storage(spec, None))
    folder = create_sweep(spec, sweeps_dir, cfg.name)
    if joined:
        print(f"joining study {spec.study!r}: its trials are shared with the other workers")
    process = launch(folder)
    print(f"sweep folder {folder.name}: {folder.path}", flush=True)
    if detach:
        raise SystemExit(leave_running(folder, process))
    raise SystemExit(follow_on_console(folder, stop_on_interrupt=True))


def check_preset_name(name: str) -> None:
    """--save-best's name, checked before anything starts (the rules of save_user_preset)."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ConfigError(f"--save-best {name!r}: use letters, digits, '-' and '_' only")
    if (builtin_preset_dir() / f"{name}.toml").is_file():
        raise ConfigError(f"--save-best {name!r} is a built-in preset's name; choose another, e.g. '{name}-best'")


def leave_running(folder: SweepDir, process: Any) -> int:
    """--detach: wait until the sweep has a trial running (or ended), say how to follow it, and go."""
    with Busy("starting the sweep: it opens its study and starts its first trials…"):
        state = wait_started(folder, process)
    if state == "busy":
        fail(f"sweep {folder.name} is already driven by another process: tui-trainer attach {folder.path}")
    status = folder.read_status()
    if state not in LIVE and state != "finished":
        print(f"error: sweep {folder.name} {state}: {status.get('message') or f'see {folder.log_path}'}",
              file=sys.stderr)
        return EXIT_FAILED
    print(f"started {folder.name}")
    for hint in hints(folder, running=True):
        print(hint)
    return EXIT_OK


def follow_on_console(folder: SweepDir, stop_on_interrupt: bool, offset: int = 0) -> int:
    """Print the sweep's lines until it ends. Ctrl+C (or SIGTERM): stop the sweep, its trials saving last.pt, and
    go on printing until it has stopped (``stop_on_interrupt``; attach only leaves); a second Ctrl+C leaves it
    stopping. A dropped terminal ends only this process: the sweep goes on."""
    asked: dict[str, int] = {"n": 0}

    def interrupt(_signum: int, _frame: Any) -> None:
        asked["n"] += 1
        if asked["n"] > 1 or not stop_on_interrupt:
            raise KeyboardInterrupt
        print(f"stopping the sweep: its running trials save last.pt (Ctrl+C again leaves it stopping; "
              f"tui-trainer attach {folder.path})", flush=True)
        try:
            import os

            os.kill(int(folder.read_status().get("pid", 0)), signal.SIGTERM)
        except (ProcessLookupError, ValueError, OSError):
            pass

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)
    last: dict[str, Any] = {}
    try:
        for event in follow_sweep(folder, offset=offset):
            text = line(event)
            if text:
                print(text, flush=True)
            if event.get("event") == "ended":
                last = event
    except KeyboardInterrupt:
        print(f"left sweep {folder.name} {folder.state()}: tui-trainer attach {folder.path}")
        return EXIT_INTERRUPTED if stop_on_interrupt else EXIT_OK
    state = last.get("state")
    if state == "finished":
        for hint in hints(folder):
            print(hint)
        return EXIT_OK
    if state == "stopped":
        return EXIT_INTERRUPTED if asked["n"] else EXIT_OK
    return EXIT_FAILED


def hints(folder: SweepDir, running: bool = False) -> list[str]:
    """What to type next: follow or stop it, its trials, the best trial again, the dashboard."""
    from tui_trainer.sweep.spec import read_spec

    spec = read_spec(folder.spec_path)
    out = []
    if running:
        out += [f"  follow:    tui-trainer attach {folder.path}", f"  stop:      tui-trainer stop {folder.path}"]
    out.append(f"  trials:    tui-trainer sweeps {folder.path}   (their runs: tui-trainer runs --runs-dir "
               f"{folder.trials})")
    best = folder.read_status().get("best")
    if best and best.get("run") and not running:
        out.append(f"  train the best again: tui-trainer train {Path(best['run']) / 'config.toml'}")
        out.append(f"  save it as a preset:  tui-trainer sweeps {folder.path} --save-best NAME")
    from tui_trainer.sweep.study import shown_url

    storage = shown_url(spec.storage) if spec.storage else str(folder.journal_path)  # never a password on screen
    out.append(f"  dashboard: optuna-dashboard {storage}   (pip install optuna-dashboard)")
    return out


# ---------------------------------------------------------------------------
# sweeps: the list, one sweep's trials, saving the best


def sweeps(
    sweep_name: Annotated[str | None, typer.Argument(metavar="SWEEP", help="a sweep folder or name: its trials")]
    = None,
    sweeps_dir: SweepsOpt = DEFAULT_SWEEPS_DIR,
    save_best: Annotated[str | None, typer.Option("--save-best", help="save the sweep's best trial as this user "
                                                  "preset")] = None,
) -> None:
    """The sweeps in a folder (live first, then newest), or one sweep's trials; --save-best NAME writes its best
    trial as a preset (tui-trainer train NAME trains it again)."""
    from tui_trainer.sweep.folder import summarize_sweep

    if sweep_name is None and save_best is None:
        rows = sorted((summarize_sweep(s) for s in list_sweeps(sweeps_dir)),
                      key=lambda r: (r.state not in LIVE, -(r.started or 0)))
        if not rows:
            print(f"no sweeps in {sweeps_dir}")
            return
        bests = format_column([r.best for r in rows])
        columns = [Column("sweep", tuple(r.name for r in rows)), Column("preset", tuple(r.preset for r in rows)),
                   Column("state", tuple(r.state for r in rows)),
                   Column("trials", tuple(f"{r.done}/{r.trials}" for r in rows), right=True),
                   Column("best", tuple(f"{r.metric} {b} (trial {r.best_trial})" if r.best is not None else "-"
                                        for r, b in zip(rows, bests, strict=True)))]
        for text in render(columns):
            print(text)
        return
    folder = resolve_sweep(sweep_name, sweeps_dir)
    if save_best is not None:
        raise SystemExit(save_best_preset(folder, save_best))
    print_trials(folder)


def print_trials(folder: SweepDir) -> None:
    """One sweep: its state, then a line per trial (this machine's, from its events)."""
    from tui_trainer.sweep.events import fold_sweep
    from tui_trainer.sweep.spec import read_spec

    spec = read_spec(folder.spec_path)
    status = folder.read_status()
    history = fold_sweep(folder.events_path)
    print(f"{folder.name}: {folder.state(status)}, {status.get('done', 0)}/{spec.trials} trials; "
          f"{spec.direction} {spec.metric}; study {spec.study!r}")
    rows = [history.trials[n] for n in sorted(history.trials)]
    columns = [Column("trial", tuple(str(t.number) for t in rows), right=True),
               Column("state", tuple(t.reason if t.state == "pruned" and t.reason else t.state for t in rows)),
               Column(spec.metric, tuple(format_column([t.value for t in rows])), right=True),
               Column("epochs", tuple(str(t.epochs) for t in rows), right=True)]
    columns += [Column(p.key, tuple(_value(t.params.get(p.key)) for t in rows)) for p in spec.params]
    columns.append(Column("run", tuple(Path(t.run).name if t.run else "-" for t in rows)))
    for text in render(columns):
        print(f"  {text}")
    for hint in hints(folder, running=folder.state(status) in LIVE):
        print(hint)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value).replace(" ", "")


def save_best_preset(folder: SweepDir, name: str) -> int:
    """The sweep's best trial (as its status says) written as the user's preset ``name``."""
    from tui_trainer.sweep.spec import save_best

    check_preset_name(name)
    try:
        best, spec, path = save_best(folder, name)
    except ConfigError as exc:
        fail(str(exc))
    print(f"saved trial {best['number']} ({spec.metric} {format_number(best['value'])}) as preset {name}: {path}")
    print(f"  train it again: tui-trainer train {name}")
    return EXIT_OK


# ---------------------------------------------------------------------------
# attach, stop, resume and export given a sweep


def open_sweep_view(folder: SweepDir, runs_dir: Path) -> None:
    """The app on the sweep's Sweep view (the training screen beneath it shows the sweep's base config; Enter on a
    trial shows that trial there)."""
    from tui_trainer.cli.common import notify_end_from_env
    from tui_trainer.sweep.spec import read_spec
    from tui_trainer.ui.app import run_app

    try:
        cfg = read_spec(folder.spec_path).base()
    except (ConfigError, OSError) as exc:  # e.g. a plugin it names is gone: the view needs the config, lines do not
        print(f"warning: sweep {folder.name}: {exc}; following it as lines", file=sys.stderr)
        raise SystemExit(attach_sweep(folder)) from None
    raise SystemExit(run_app(cfg, runs_dir=runs_dir, notify_end=notify_end_from_env(), sweep=folder.path))


def attach_sweep(folder: SweepDir) -> int:
    """Follow a sweep's lines until it ends (Ctrl+C leaves it running)."""
    return follow_on_console(folder, stop_on_interrupt=False)


def stop(folder: SweepDir, timeout: float) -> int:
    """Stop the sweep: every running trial saves last.pt; resumable."""
    with Busy(f"stopping sweep {folder.name}: its running trials save last.pt…"):
        state = stop_sweep(folder, timeout)
    status = folder.read_status()
    print(f"{folder.name}: {status.get('message') or state}")
    return EXIT_OK if state not in LIVE else EXIT_FAILED


def resume(folder: SweepDir, detach: bool) -> int:
    """Start the sweep's process again on its folder: finished trials kept, interrupted ones taken back."""
    state = folder.state()
    if state in LIVE or folder.locked():
        fail(f"sweep {folder.name} is {state}: it is already going (tui-trainer attach {folder.path})")
    if state == "finished":
        status = folder.read_status()
        fail(f"sweep {folder.name} has finished ({status.get('done', '?')}/{status.get('trials', '?')} trials): "
             f"nothing to resume; its trials: tui-trainer sweeps {folder.path}")
    offset = folder.events_path.stat().st_size if folder.events_path.exists() else 0  # its history was said
    process = launch(folder)
    print(f"resuming sweep {folder.name}: {folder.path}", flush=True)
    if detach:
        return leave_running(folder, process)
    return follow_on_console(folder, stop_on_interrupt=True, offset=offset)


def export(folder: SweepDir, output: Path | None) -> int:
    """The study's trials (every worker's) as CSV, written whole or not at all."""
    import csv
    import io

    from tui_trainer.sweep.spec import read_spec
    from tui_trainer.sweep.study import csv_rows, open_storage, open_study, study_trials

    spec = read_spec(folder.spec_path)
    with Busy("reading the study…"):
        study = open_study(spec, open_storage(spec, folder))
        rows = csv_rows(spec, study_trials(spec, study))
    out = output if output is not None else Path(f"{folder.name}.csv")
    if out.is_dir():
        out = out / f"{folder.name}.csv"
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    try:
        atomic_write(out, text.getvalue())
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    print(f"wrote {out} ({len(rows) - 1} trials of study {spec.study!r})")
    return EXIT_OK
