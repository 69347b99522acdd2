"""Attaching to a long run: how long the app takes to paint a run folder with N epochs of history.

A finished run folder is generated the way a run process leaves it (``folder.prepare_run``'s
config.toml and status.json, then events.jsonl: the protocol header, ``RunStarted``, per epoch
``--steps-per-epoch`` ``StepLogged`` with ``LayerHealth`` for 3 layers, one ``EpochEnded`` with
gradient norms and dead units, one ``CheckpointSaved`` of last.pt, and ``RunFinished``; and
metrics.jsonl), and history.json, the snapshot of the fold that the run process writes at the end of a
run of 5,000 events or more (``recorder.RunRecorder``; ``--no-snapshot`` leaves it out, as before it
existed). The app is opened on it (``make_app(cfg, runs_dir, attach=path)`` under
``run_test``, 120x36, headless) and timed from just before it starts to

* following: the screen's follower thread starts reading the run (after the panels and tabs mount);
* decoded: the first batch of events, or the snapshot with the events after it, reaches the screen;
* folded: the run view's history has every event (``RunFinished`` folded);
* replotted: the loss chart has replotted with every epoch (``series['val']`` holds N points and
  the chart's ``replot`` ran with them); the issue's target is this under 2 s for 10,000 epochs;
* painted: the loss chart's next ``render`` after that replot has returned.

    python benchmarks/attach.py                      # 10,000 epochs
    python benchmarks/attach.py --epochs 1000 --json # quick (CI)
    python benchmarks/attach.py --profile            # cProfile of the app's thread and of the follower thread

Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import random
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the app's helper process is a child: it imports this tree, not an installed copy
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from tui_trainer.config import apply_overrides, load_preset  # noqa: E402
from tui_trainer.run.eventlog import read_snapshot, write_snapshot  # noqa: E402
from tui_trainer.run.events import (  # noqa: E402
    CheckpointSaved,
    EpochEnded,
    LayerHealth,
    RunFinished,
    RunStarted,
    StepLogged,
    encode,
    header,
)
from tui_trainer.run.folder import RunDir, prepare_run  # noqa: E402
from tui_trainer.run.follow import fold  # noqa: E402
from tui_trainer.run.recorder import RunRecorder  # noqa: E402

LAYERS = ("layers.1", "layers.3", "layers.5")
BATCHES = 938  # fashion-mnist-mlp at batch 64


def write_run(runs: Path, epochs: int, steps_per_epoch: int = 4, seed: int = 0, snapshot: bool = True) -> RunDir:
    """A finished run folder with ``epochs`` epochs of synthetic but plausible history; ``snapshot``: with the
    history.json the run process writes at the end of a run of 5,000 events or more (recorder.py)."""
    cfg = apply_overrides(load_preset("fashion-mnist-mlp"), [f"train.epochs={epochs}"])
    run = prepare_run(cfg, runs)
    rng = random.Random(seed)
    step, elapsed = 0, 0.0
    best = float("inf")
    lines = [header(), encode(RunStarted(
        run_dir=str(run.path), device="cpu: x86_64, 2 threads", n_params=669_706, n_trainable=669_706, epochs=epochs,
        start_epoch=0, steps_per_epoch=BATCHES, train_samples=60_000, val_samples=10_000, task="classification",
        summary="MLP 784-512-512-10 (synthetic history)", preset=cfg.name, monitor="val_loss"))]
    metrics = []
    for epoch in range(1, epochs + 1):
        level = 0.3 + 0.7 / epoch ** 0.5
        for i in range(1, steps_per_epoch + 1):
            step = (epoch - 1) * BATCHES + i * BATCHES // steps_per_epoch
            elapsed += 5.0 / steps_per_epoch
            layers = tuple(LayerHealth(name, rng.uniform(0.2, 1.2), rng.uniform(10, 30), rng.uniform(1e-4, 1e-2))
                           for name in LAYERS)
            lines.append(encode(StepLogged(
                epoch=epoch, step=step, batch=i * BATCHES // steps_per_epoch, batches=BATCHES,
                loss=level * rng.uniform(0.9, 1.1), lr=1e-3, samples_per_s=rng.uniform(11_000, 13_000),
                elapsed_s=elapsed, layers=layers)))
        val_loss = level * rng.uniform(0.95, 1.15)
        is_best = val_loss < best
        best = min(best, val_loss)
        row = EpochEnded(epoch=epoch, step=step, train_loss=level, val_loss=val_loss, train_acc=1 - level / 2,
                         val_acc=1 - val_loss / 2, lr=1e-3, epoch_seconds=5.2, samples_per_s=12_000.0, is_best=is_best,
                         grad_norms=tuple((name, rng.uniform(0.2, 1.2)) for name in LAYERS),
                         dead_units=(("layers.2", rng.uniform(0.1, 0.2)), ("layers.4", rng.uniform(0.1, 0.2))))
        lines.append(encode(row))
        lines.append(encode(CheckpointSaved(str(run.last), "last", epoch, step)))
        metrics.append(json.dumps(row.metrics()))
    lines.append(encode(RunFinished("completed", f"completed {epochs} epochs", epochs, step, best, str(run.path),
                                    str(run.last), elapsed)))
    run.events_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run.metrics_path.write_text("\n".join(metrics) + "\n", encoding="utf-8")
    now = time.time()
    run.write_status(state="finished", reason="completed", message=f"completed {epochs} epochs", pid=os.getpid(),
                     host=socket.gethostname(), started=now - elapsed, ended=now, epoch=epochs, best=best,
                     elapsed_s=elapsed, last_checkpoint=str(run.last))
    if snapshot and len(lines) - 1 >= RunRecorder.SNAPSHOT_EVENTS:
        history, offset, count, _skipped = fold(run)  # no snapshot yet: the fold of every event
        write_snapshot(run, history, offset, count)
    return run


class Clock:
    """Wall and CPU seconds (this process, every thread) since the app started, noted by name."""

    def __init__(self, marks: dict) -> None:
        self.marks, self.t0, self.c0 = marks, time.perf_counter(), time.process_time()

    def mark(self, name: str) -> None:
        if f"{name}_s" not in self.marks:
            self.marks[f"{name}_s"] = time.perf_counter() - self.t0
            self.marks[f"{name}_cpu_s"] = time.process_time() - self.c0


def instrument(chart, epochs: int, clock: Clock) -> None:
    """Note (on this chart instance only) when it replots with every epoch, and when it is next rendered."""
    plain_replot, plain_render = chart.replot, chart.render
    marks = clock.marks

    def replot() -> None:
        plain_replot()
        if "replotted_s" not in marks and len(chart.series.get("val", ((), ()))[0]) == epochs:
            clock.mark("replotted")
            marks["val_points"] = len(chart.series["val"][0])
            marks["step_points"] = len(chart.series.get("train (steps)", ((), ()))[0])
            marks["replots"] = chart.replots

    def render():
        result = plain_render()
        if "replotted_s" in marks:
            clock.mark("painted")
        return result

    chart.replot, chart.render = replot, render


def attach_times(run: RunDir, epochs: int, size: tuple[int, int] = (120, 36), timeout: float = 300.0,
                 profile: bool = False) -> dict:
    """Open the app on ``run``; seconds from app start to: first frame, folded, replotted, painted."""
    from textual.events import Ready

    from tui_trainer.run import follow as follow_module
    from tui_trainer.ui.app import make_app
    from tui_trainer.ui.messages import RunEvents, RunSnapshot

    marks: dict = {}
    profiles: dict[str, cProfile.Profile] = {}
    clocks: list[Clock] = []
    plain_follow = follow_module.follow

    def timed_follow(*args, **kwargs):  # the screen imports follow when it attaches: this wrapper is what it gets
        clocks[0].mark("following")
        if not profile:
            return plain_follow(*args, **kwargs)
        prof = profiles.setdefault("follower thread", cProfile.Profile())  # cProfile sees one thread: its own
        prof.enable()
        try:
            return plain_follow(*args, **kwargs)
        finally:
            prof.disable()

    follow_module.follow = timed_follow

    async def drive() -> None:
        clock = Clock(marks)
        clocks.append(clock)

        def hook(message) -> None:
            if isinstance(message, Ready):
                clock.mark("first_frame")
            elif isinstance(message, (RunEvents, RunSnapshot)):  # the follower posts once it has read and decoded the whole file
                clock.mark("decoded")

        app = make_app(load_preset(str(run.config_path)), run.path.parent, attach=run.path)
        async with app.run_test(size=size, message_hook=hook) as pilot:
            screen = app.train_screen
            chart = None
            while "painted_s" not in marks:
                if time.perf_counter() - clock.t0 > timeout:
                    marks["timed_out_s"] = timeout
                    break
                if chart is None and screen.query("#loss-chart"):
                    chart = screen.query_one("#loss-chart")
                    instrument(chart, epochs, clock)
                if screen.view.history.finished is not None:
                    clock.mark("folded")
                await asyncio.sleep(0.005)  # the app runs meanwhile; this coroutine only watches
            if screen.view.history.finished is not None:  # a short run can be folded and painted in one tick
                clock.mark("folded")
            marks["log_lines"] = len(screen.view.log_lines)
            await pilot.press("q")  # the run has ended: q leaves at once

    main_prof = cProfile.Profile() if profile else None
    if main_prof is not None:
        profiles["app thread"] = main_prof
        main_prof.enable()
    try:
        asyncio.run(drive())
    finally:
        if main_prof is not None:
            main_prof.disable()
        follow_module.follow = plain_follow
    if profile:
        marks["profiles"] = profiles
    return marks


def headless_costs(run: RunDir) -> dict:
    """CPU seconds of the two headless steps of attaching, alone in this thread: reading and decoding
    events.jsonl (what the follower does), and folding every event into a ``RunHistory`` (what the run view
    does before it touches a widget)."""
    from tui_trainer.run.eventlog import EventReader
    from tui_trainer.run.history import RunHistory

    c0 = time.process_time()
    events = EventReader(run.events_path).read()
    c1 = time.process_time()
    history = RunHistory()
    for event in events:
        history.apply(event)
    c2 = time.process_time()
    snapshot = read_snapshot(run)
    c3 = time.process_time()
    return {"decode_cpu_s": c1 - c0, "fold_cpu_s": c2 - c1, "events": len(events), "log_lines": len(history.log),
            "snapshot_read_cpu_s": c3 - c2 if snapshot is not None else None}


def profile_report(profiles: dict[str, cProfile.Profile], top: int = 25) -> str:
    """The top functions of each thread, by own time and by cumulative time."""
    out = io.StringIO()
    for name, prof in profiles.items():
        for order in ("tottime", "cumulative"):
            out.write(f"\n== {name}, by {order} ==\n")
            pstats.Stats(prof, stream=out).sort_stats(order).print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10_000)
    parser.add_argument("--steps-per-epoch", type=int, default=4, help="StepLogged events per epoch")
    parser.add_argument("--size", default="120x36", help="terminal columns x rows")
    parser.add_argument("--repeat", type=int, default=1, help="attach this many times to the same folder")
    parser.add_argument("--profile", action="store_true", help="cProfile the app's thread and the follower thread")
    parser.add_argument("--top", type=int, default=25, help="functions per profile table")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time decoding and folding the events without the app (CPU seconds)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the painted chart")
    parser.add_argument("--no-snapshot", action="store_true", help="no history.json: the app decodes every event")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    os.environ.setdefault("TUI_TRAINER_HOME", tempfile.mkdtemp(prefix="tui-trainer-home-"))
    runs = Path(tempfile.mkdtemp(prefix="tui-trainer-attach-")) / "runs"
    t0 = time.perf_counter()
    run = write_run(runs, args.epochs, args.steps_per_epoch, snapshot=not args.no_snapshot)
    made = time.perf_counter() - t0
    size = run.events_path.stat().st_size
    attempts = []
    for _ in range(args.repeat):
        attempts.append(attach_times(run, args.epochs, (width, height), args.timeout, args.profile))
    result = {"date": time.strftime("%Y-%m-%d"), "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
              "events": 3 + args.epochs * (args.steps_per_epoch + 2), "events_jsonl_mb": size / 2**20,
              "generated_s": made, "snapshot": run.snapshot_path.exists(), "size": args.size,
              "load_avg_1min": round(os.getloadavg()[0], 2),
              "attempts": [{k: v for k, v in a.items() if k != "profiles"} for a in attempts]}
    if args.breakdown:
        result["headless"] = headless_costs(run)
    if args.json:
        print(json.dumps(result, indent=2))
        if any("timed_out_s" in a for a in attempts):
            raise SystemExit(f"timed out: {result['attempts']}")
        return
    print(f"{result['date']}  {args.epochs:,} epochs x {args.steps_per_epoch} steps: {result['events']:,} events, "
          f"events.jsonl {result['events_jsonl_mb']:.1f} MB (generated in {made:.1f} s), "
          f"{'with' if result['snapshot'] else 'without'} history.json  {args.size}  "
          f"load {result['load_avg_1min']}")
    for a in result["attempts"]:
        if "timed_out_s" in a:
            print(f"  timed out after {a['timed_out_s']:.0f} s: {a}")
            continue
        print(f"  wall s from app start: first frame {a['first_frame_s']:.2f}, following {a['following_s']:.2f}, "
              f"file decoded {a['decoded_s']:.2f}, "
              f"folded {a['folded_s']:.2f}, loss chart replotted with {a['val_points']:,} epochs "
              f"{a['replotted_s']:.2f}, painted {a['painted_s']:.2f}")
        print(f"  CPU s of this process (all threads): first frame {a['first_frame_cpu_s']:.2f}, following "
              f"{a['following_cpu_s']:.2f}, decoded "
              f"{a['decoded_cpu_s']:.2f}, folded {a['folded_cpu_s']:.2f}, replotted {a['replotted_cpu_s']:.2f}, painted "
              f"{a['painted_cpu_s']:.2f}  ({a['step_points']:,} step points, {a['replots']} replots, "
              f"{a['log_lines']:,} log lines)")
    if "headless" in result:
        h = result["headless"]
        print(f"  without the app: reading and decoding {h['events']:,} events {h['decode_cpu_s']:.2f} CPU s, folding them "
              f"into a RunHistory {h['fold_cpu_s']:.2f} CPU s ({h['log_lines']:,} log lines)"
              + (f"; reading history.json instead {h['snapshot_read_cpu_s']:.2f} CPU s"
                 if h["snapshot_read_cpu_s"] is not None else ""))
    if args.profile:
        print(profile_report(attempts[-1]["profiles"], args.top))


if __name__ == "__main__":
    main()
