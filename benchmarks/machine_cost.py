"""What the Machine tab's sampling costs a run: nothing in the run's process (the app samples, ui/machine.py), so
the question is whether sampling from beside it slows it down on shared cores.

Two measurements, both with the sampler the app uses (``MachineSampler``: psutil over the run's process tree, and
NVML for each of its GPUs where there is one):

* direct: the CPU seconds one ``sample()`` takes in the sampling process (``time.process_time``), median over
  every sample taken; times the rate (2 Hz, the most the tab uses) it is the share of one core the app spends;
* A/B: real run processes (``run.client.start``, as the app starts them) of the same config, one sampled at 2 Hz
  from this process and one not, interleaved ``--repeat`` times; the run's training seconds (the sum of its
  epochs' ``epoch_seconds`` from events.jsonl, start-up left out) with over without, median of the pairs.

    python benchmarks/machine_cost.py                     # spirals-mlp, 200,000 samples, 3 epochs, 3 pairs
    python benchmarks/machine_cost.py --repeat 5 --epochs 5
    python benchmarks/machine_cost.py --quick --json      # that it runs (seconds)

Target (issue 24): sampling costs the run nothing measurable (the ratio within the machine's noise, which the
spread of the pairs shows). Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tui_trainer.config import apply_overrides, load_preset  # noqa: E402
from tui_trainer.run.client import start  # noqa: E402
from tui_trainer.run.events import EpochEnded  # noqa: E402
from tui_trainer.run.folder import LIVE_STATES, RunDir  # noqa: E402
from tui_trainer.ui.machine import MachineSampler, machine_line  # noqa: E402

HZ = 2.0


def sample_while_live(run: RunDir, costs: list[float], lines: list[str]) -> None:
    """The app's sampling, in a thread: wait for the run's pid, then sample at ``HZ`` until it ends."""
    sampler = None
    try:
        while True:
            status = run.read_status()
            if status.get("state") not in LIVE_STATES and status.get("state") is not None:
                return
            if sampler is None and status.get("pid") and status.get("state") == "running":
                sampler = MachineSampler(int(status["pid"]), "cpu")
            if sampler is not None:
                t0 = time.process_time()
                sample = sampler.sample()
                costs.append(time.process_time() - t0)
                lines.append(machine_line(sample))
            time.sleep(1.0 / HZ)
    finally:
        if sampler is not None:
            sampler.close()


def train_seconds(run: RunDir) -> float:
    """The run's training seconds: its epochs' own times (start-up, torch import and data left out)."""
    events, _ = run.read_events()
    return sum(e.epoch_seconds for e in events if isinstance(e, EpochEnded))


def one_run(cfg, runs: Path, sampled: bool, costs: list[float], lines: list[str]) -> float:
    handle = start(cfg, runs, label="sampled" if sampled else "alone")
    thread = None
    if sampled:
        thread = threading.Thread(target=sample_while_live, args=(handle.run, costs, lines), daemon=True)
        thread.start()
    state = handle.wait(timeout=900)
    if thread is not None:
        thread.join(5)
    if state != "finished":
        raise SystemExit(f"the run ended {state}: see {handle.run.log_path}")
    return train_seconds(handle.run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="spirals-mlp")
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one small pair: that it runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.epochs, args.repeat = 2000, 1, 1
    cfg = apply_overrides(load_preset(args.preset), [f"data.n_samples={args.samples}", f"train.epochs={args.epochs}",
                                                     'train.device="cpu"', "train.threads=1"])
    costs: list[float] = []
    lines: list[str] = []
    pairs = []
    with tempfile.TemporaryDirectory(prefix="machine-cost-") as tmp:
        for i in range(args.repeat):
            order = (False, True) if i % 2 == 0 else (True, False)  # interleaved: drift hits both sides alike
            got = {sampled: one_run(cfg, Path(tmp), sampled, costs, lines) for sampled in order}
            pairs.append((got[False], got[True]))
    ratios = [with_ / alone for alone, with_ in pairs]
    result = {
        "preset": args.preset, "samples": args.samples, "epochs": args.epochs, "hz": HZ,
        "pairs_s": [[round(a, 3), round(b, 3)] for a, b in pairs],
        "ratio_median": round(statistics.median(ratios), 4), "ratio_min": round(min(ratios), 4),
        "ratio_max": round(max(ratios), 4), "samples_taken": len(costs),
        "sample_cpu_ms_median": round(1000 * statistics.median(costs), 3) if costs else None,
        "core_share_at_hz": round(statistics.median(costs) * HZ, 5) if costs else None,
        "last_line": lines[-1] if lines else None,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.preset}, {args.samples} samples, {args.epochs} epochs, 1 thread, {args.repeat} interleaved pairs")
    for alone, with_ in pairs:
        print(f"  alone {alone:7.3f} s   sampled at {HZ:g} Hz {with_:7.3f} s   ratio {with_ / alone:.3f}")
    print(f"sampled / alone: median {result['ratio_median']:.3f} (min {result['ratio_min']:.3f}, "
          f"max {result['ratio_max']:.3f})")
    print(f"one sample: {result['sample_cpu_ms_median']} ms CPU in the app's process (median of {len(costs)}), "
          f"{100 * (result['core_share_at_hz'] or 0):.3f}% of a core at {HZ:g} Hz")
    print(f"last line: {result['last_line']}")


if __name__ == "__main__":
    main()
