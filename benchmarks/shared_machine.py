"""Runs that share a machine: N run processes of a preset at once against one alone, in one go.

Each round starts N detached run processes (``run.client.start``, as ``train --detach`` and the app do) of a preset
with far more epochs than the window, waits until every one of them trains, counts the training samples each gets
through in the same ``--window`` seconds (its last StepLogged's step before and after, times the batch size), stops
them, and moves on. Rounds go N = 1, 2, 4, cores, ... and again ``--repeat`` times, interleaved, so a drift of the
machine's speed falls on every N alike. Printed: the total samples/s at each N, the ratio to one run alone (median
of the repeats), and each run's threads as it said in its log.

    python benchmarks/shared_machine.py                                    # spirals-mlp, N = 1 2 4 cores, the policy
    python benchmarks/shared_machine.py --preset fashion-mnist-mlp --window 20
    python benchmarks/shared_machine.py --threads 0,-1                     # the policy against torch's default
    python benchmarks/shared_machine.py --quick                            # that it runs (seconds)

Targets (issue 26), on a 2-core CPU: the total at any N is never below one run alone; two tiny runs at once give
at least 1.8x one run; a lone run is no slower than before (357 epochs of spirals-mlp in 15 s). RESULTS.md.
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
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from tui_trainer.config import apply_overrides, load_preset  # noqa: E402
from tui_trainer.run.client import RunHandle, start  # noqa: E402
from tui_trainer.run.eventlog import EventReader  # noqa: E402
from tui_trainer.run.events import LogMessage, RunStarted, StepLogged  # noqa: E402


def steps_so_far(reader: EventReader, seen: dict) -> int:
    """The run's last logged step (reading only what was appended since the last call)."""
    for event in reader.read():
        if isinstance(event, StepLogged):
            seen["step"] = event.step
        elif isinstance(event, RunStarted):
            seen["device"] = event.device
        elif isinstance(event, LogMessage) and "thread" in event.text:
            seen["threads"] = event.text
    return seen.get("step", 0)


def one_round(preset: str, n: int, window: float, threads: int, home: Path, scratch: Path) -> dict:
    """N runs at once: the samples each trained in the same window."""
    cfg = apply_overrides(load_preset(preset), ["train.epochs=100000", f"train.threads={threads}",
                                                'train.device="cpu"', "train.diagnostics=false"])
    env = {**os.environ, "TUI_TRAINER_HOME": str(home)}  # the registry of live runs: this benchmark's own
    handles: list[RunHandle] = [start(cfg, scratch / "runs", env=env) for _ in range(n)]
    try:
        for handle in handles:
            if handle.wait_started() != "running":
                raise SystemExit(f"a run did not start: {handle.run.read_status()}; see {handle.run.log_path}")
        readers = [(EventReader(h.run.events_path), {}) for h in handles]
        deadline = time.monotonic() + 30
        while any(steps_so_far(r, seen) == 0 for r, seen in readers):  # every run past its first log interval
            if time.monotonic() > deadline:
                raise SystemExit("a run logged no step in 30 s")
            time.sleep(0.1)
        time.sleep(max(2.5, window / 5))  # let the runs see each other and settle their threads
        before = [steps_so_far(r, seen) for r, seen in readers]
        t0 = time.monotonic()
        time.sleep(window)  # the measurement window
        after = [steps_so_far(r, seen) for r, seen in readers]
        seconds = time.monotonic() - t0
    finally:
        for handle in handles:
            handle.stop(timeout=30)
    batch = cfg.data.batch_size
    per_run = [(a - b) * batch / seconds for a, b in zip(after, before, strict=True)]
    return {"n": n, "samples_per_s": sum(per_run), "per_run": per_run,
            "threads": [seen.get("threads") or seen.get("device") for _r, seen in readers]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="spirals-mlp")
    parser.add_argument("--counts", default=None, help="runs at once, e.g. 1,2,4 (default: 1, 2, 4 and the cores)")
    parser.add_argument("--window", type=float, default=15.0, help="seconds each round is measured over")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of every count, interleaved")
    parser.add_argument("--threads", default="0", help="train.threads of every run, or several to compare in one go "
                                                       "(interleaved), e.g. 0,-1: the policy against torch's default")
    parser.add_argument("--quick", action="store_true", help="1 and 2 runs, a 3 s window, once")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    counts = sorted({1, 2, 4, cores}) if args.counts is None else [int(c) for c in args.counts.split(",")]
    policies = [int(t) for t in args.threads.split(",")]
    if args.quick:
        counts, args.window, args.repeat = [1, 2], 3.0, 1
    results: dict[tuple[int, int], list[dict]] = {(t, n): [] for t in policies for n in counts}
    with tempfile.TemporaryDirectory(prefix="tui-trainer-shared-") as tmp:
        for _ in range(args.repeat):
            for n in counts:
                for t in policies:
                    results[t, n].append(one_round(args.preset, n, args.window, t, Path(tmp) / "home", Path(tmp)))
    first = (policies[0], 1)
    alone = statistics.median(r["samples_per_s"] for r in results[first]) if first in results else None
    table = []
    for t in policies:
        for n in counts:
            rounds = results[t, n]
            ratios = [r["samples_per_s"] / a["samples_per_s"] for r, a in zip(rounds, results.get(first, []), strict=False)]
            table.append({"threads": t, "runs": n, "samples_per_s": statistics.median(r["samples_per_s"] for r in rounds),
                          "vs_one": statistics.median(ratios) if ratios else None,
                          "each": [round(x) for x in rounds[-1]["per_run"]], "said": rounds[-1]["threads"]})
    if args.json:
        print(json.dumps({"preset": args.preset, "window": args.window, "cores": cores, "alone": alone, "rows": table}))
        return
    print(f"{args.preset}, {cores} cores, {args.window:g} s windows, {args.repeat} interleaved repeats (median); "
          f"'vs one': against one run alone with train.threads={policies[0]}")
    print(f"{'threads':>7}  {'runs':>4}  {'samples/s':>10}  {'vs one':>7}  each (last round), what the first said")
    for row in table:
        ratio = f"{row['vs_one']:.2f}" if row["vs_one"] is not None else "-"
        print(f"{row['threads']:>7}  {row['runs']:>4}  {row['samples_per_s']:>10.0f}  {ratio:>7}  {row['each']}  "
              f"{row['said'][0]}")


if __name__ == "__main__":
    main()
