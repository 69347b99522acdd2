"""What writing events.jsonl costs a run: the engine with the run process's sink against no sink at all.

The run process's sink is ``runs.RunRecorder(RunDir(...))``: every event as one JSON line, flushed,
into events.jsonl, and status.json replaced atomically (written, fsynced, renamed) when the run
starts, at each epoch's end and when it ends. Both fits run in this process, in the same kind of
run folder (metrics.jsonl and checkpoints are written in both), interleaved ``--repeat`` times:

* direct: the seconds spent inside ``RunRecorder.emit`` from the end of epoch 1 to the end of the
  last epoch, over the wall time of those epochs; it does not depend on the machine's drift;
* A/B: wall time per epoch (one ``EpochEnded`` to the next: steps, validation, checkpoints and
  events) with the recorder over the same with a ``NullSink``, median of the interleaved pairs.

    python benchmarks/events_cost.py                          # fashion-mnist-mlp as shipped, 3 epochs
    python benchmarks/events_cost.py --subset 12800 --repeat 5
    python benchmarks/events_cost.py --quick --json           # CI: that it runs (moons-mlp, seconds)

Target (the issue): events.jsonl costs under 1% of epoch time. Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import offline  # noqa: E402
from tui_trainer.config import RunConfig, apply_overrides, load_preset  # noqa: E402
from tui_trainer.engine import fit, warm_up  # noqa: E402
from tui_trainer.run.events import EpochEnded, Event, NullSink, RunFinished, Sink  # noqa: E402
from tui_trainer.run.folder import prepare_run  # noqa: E402
from tui_trainer.run.recorder import RunRecorder  # noqa: E402


class TimedSink:
    """Times each ``emit`` of the sink it wraps, and notes when each epoch's results were out."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.calls: list[tuple[float, float, str]] = []  # (start, seconds inside emit, event type)
        self.epoch_ends: list[float] = []
        self.events = 0
        self.finished: RunFinished | None = None

    def emit(self, event: Event) -> None:
        t0 = time.perf_counter()
        self.inner.emit(event)
        t1 = time.perf_counter()
        self.calls.append((t0, t1 - t0, type(event).__name__))
        self.events += 1
        if isinstance(event, EpochEnded):
            self.epoch_ends.append(t1)
        elif isinstance(event, RunFinished):
            self.finished = event

    def steady(self) -> dict:
        """Per epoch after the first: wall seconds, and seconds inside the sink."""
        ends = self.epoch_ends
        if len(ends) < 2:
            raise SystemExit("need at least 2 epochs: the first is warm-up")
        n = len(ends) - 1
        by_kind: dict[str, float] = {}
        calls = 0
        for t0, dt, kind in self.calls:
            if ends[0] <= t0 < ends[-1]:
                by_kind[kind] = by_kind.get(kind, 0.0) + dt / n
                calls += 1
        return {"epoch_s": (ends[-1] - ends[0]) / n, "sink_s_per_epoch": sum(by_kind.values()),
                "sink_calls_per_epoch": calls / n, "sink_s_per_epoch_by_kind": by_kind}


def one_fit(cfg: RunConfig, runs: Path, recorder: bool) -> dict:
    """One fit in a fresh run folder, with the run process's sink or with none."""
    run = prepare_run(cfg, runs)
    rec = RunRecorder(run) if recorder else None
    sink = TimedSink(rec if rec is not None else NullSink())
    try:
        fit(cfg, sink, run_dir=run)
    finally:
        if rec is not None:
            rec.close()
    if sink.finished is None or sink.finished.reason != "completed":
        raise SystemExit(f"the fit did not complete: {sink.finished}")
    out = sink.steady()
    if recorder:
        out["events_jsonl_bytes"] = run.events_path.stat().st_size
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fashion-mnist-mlp")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    parser.add_argument("--subset", type=int, default=0, help="train on this many samples (0 = all)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved pairs (recorder, none); medians kept")
    parser.add_argument("--set", action="append", default=[], help="extra section.key=value override")
    parser.add_argument("--quick", action="store_true",
                        help="one pair of 2-epoch fits of moons-mlp on 4,000 generated points (CI: that it runs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:  # generated data: no dataset to load, and a short validation
        args.preset, args.epochs, args.subset, args.repeat = "moons-mlp", 2, 0, 1
        args.set = ["data.n_samples=4000", "train.log_every=10", *args.set]
    offline.install()
    overrides = [f"train.epochs={args.epochs}", f'train.device="{args.device}"', *args.set]
    if args.subset:
        overrides.append(f"data.subset={args.subset}")
    cfg = apply_overrides(load_preset(args.preset), overrides)
    runs = Path(tempfile.mkdtemp(prefix="tui-trainer-events-")) / "runs"
    warm_up()
    pairs: list[tuple[dict, dict]] = []
    loads = []
    for _ in range(args.repeat):  # interleaved: the machine's drift hits both alike
        loads.append(round(os.getloadavg()[0], 2))
        with_rec = one_fit(cfg, runs, recorder=True)
        without = one_fit(cfg, runs, recorder=False)
        pairs.append((with_rec, without))
        print(f"  recorder {with_rec['epoch_s']:.3f} s/epoch ({1e3 * with_rec['sink_s_per_epoch']:.2f} ms in the sink), "
              f"none {without['epoch_s']:.3f} s/epoch  (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    direct = [r["sink_s_per_epoch"] / r["epoch_s"] for r, _ in pairs]
    ab = [r["epoch_s"] / n["epoch_s"] for r, n in pairs]
    result = {
        "date": time.strftime("%Y-%m-%d"), "preset": args.preset, "epochs": args.epochs, "subset": args.subset,
        "batch_size": cfg.data.batch_size, "log_every": cfg.train.log_every, "load_avg_1min": loads,
        "epoch_s_recorder": [r["epoch_s"] for r, _ in pairs], "epoch_s_none": [n["epoch_s"] for _, n in pairs],
        "sink_ms_per_epoch": [1e3 * r["sink_s_per_epoch"] for r, _ in pairs],
        "events_per_epoch": pairs[0][0]["sink_calls_per_epoch"], "events_jsonl_bytes": pairs[0][0]["events_jsonl_bytes"],
        "sink_ms_per_epoch_by_kind": {k: round(1e3 * statistics.median(r["sink_s_per_epoch_by_kind"].get(k, 0.0)
                                                                        for r, _ in pairs), 3)
                                      for k in pairs[0][0]["sink_s_per_epoch_by_kind"]},
        "direct_share": statistics.median(direct), "direct_share_runs": direct,
        "recorder_over_none": statistics.median(ab), "recorder_over_none_runs": ab,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['date']}  {args.preset}  {args.epochs} epochs  subset {args.subset or 'all'}  batch {cfg.data.batch_size}  "
          f"log_every {cfg.train.log_every}  (1-min load average at each pair: {' '.join(map(str, loads))})")
    print(f"  events per epoch {result['events_per_epoch']:.0f}; time inside RunRecorder.emit per epoch: "
          + ", ".join(f"{v:.2f} ms" for v in result["sink_ms_per_epoch"]))
    print("  of which, median ms per epoch by event: " + ", ".join(
        f"{k} {v:.2f}" for k, v in sorted(result["sink_ms_per_epoch_by_kind"].items(), key=lambda kv: -kv[1])))
    print(f"  epoch s with recorder: {', '.join(f'{v:.3f}' for v in result['epoch_s_recorder'])}; "
          f"with none: {', '.join(f'{v:.3f}' for v in result['epoch_s_none'])}")
    print(f"  direct: the recorder's share of epoch time {100 * result['direct_share']:.3f}% "
          f"(pairs: {' '.join(f'{100 * v:.3f}%' for v in direct)})")
    print(f"  A/B: epoch time with recorder / with none {result['recorder_over_none']:.3f} "
          f"(pairs: {' '.join(f'{v:.3f}' for v in ab)})")


if __name__ == "__main__":
    main()
