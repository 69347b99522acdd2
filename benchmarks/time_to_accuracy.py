"""Time to accuracy: the whole wall time a user waits, from pressing Enter on ``tui-trainer train PRESET`` to a
checkpoint of a network at a target validation accuracy, start-up and data loading included, with where the
seconds went.

    python benchmarks/time_to_accuracy.py fashion-mnist-mlp 0.88
    python benchmarks/time_to_accuracy.py fashion-mnist-cnn 0.90 --max-epochs 15 --device cuda --repeat 3

Each repeat runs the real command line in a fresh process (a fresh runs folder; the data cache and its decoded
tensors are kept, as on a user's second start). As soon as an epoch's line says the target is reached the run is
stopped (Ctrl+C semantics: it saves last.pt and exits); the time to a checkpoint is that exit. The breakdown:

* launch: the command's process started (this script's clock to the kernel's start of it);
* start-up, device, data, model, first step: the run's own ``StartupTimed`` (engine/loop.py), from its
  events.jsonl: the interpreter and imports, the device, the data, the model with its optimizer, the first step;
* epochs: the rest until the epoch line that reached the target (training and validation);
* checkpoint: the stop, last.pt written, and the process's exit.

The median of the repeats is printed (and each repeat's whole numbers with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tui_trainer.run.events import StartupTimed  # noqa: E402
from tui_trainer.run.folder import list_runs, process_started  # noqa: E402 - after the path is set

EPOCH = re.compile(r"^epoch (\d+)/\d+ .*val_acc ([0-9.]+)")
PHASES = ("launch", "start-up", "device", "data", "model", "first step", "epochs", "checkpoint")


def one_run(args: argparse.Namespace) -> dict:
    """One fresh process to the target: its seconds by phase, the epochs it took and the accuracy reached."""
    runs = Path(tempfile.mkdtemp(prefix="tta-"))
    cmd = [sys.executable, "-m", "tui_trainer.cli", "train", args.preset, "--epochs", str(args.max_epochs),
           "--device", args.device, "--runs-dir", str(runs)]
    for item in args.set:
        cmd += ["--set", item]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    began = process_started(proc.pid)
    reached = None
    assert proc.stdout is not None
    for line in proc.stdout:
        m = EPOCH.match(line)
        if m and reached is None:
            epoch, acc = int(m.group(1)), float(m.group(2))
            if not args.json:
                print(f"  {time.time() - t0:7.2f}s  epoch {epoch:>2}  val_acc {acc:.4f}", flush=True)
            if acc >= args.target:
                reached = (time.time(), epoch, acc)
                proc.send_signal(signal.SIGINT)
    proc.wait()
    ended = time.time()
    if reached is None:
        raise SystemExit(f"{args.preset}: did not reach {args.target} in {args.max_epochs} epochs")
    (run,) = list_runs(runs)
    startup = next(e for e in run.read_events()[0] if isinstance(e, StartupTimed))
    if not (run.checkpoints / "last.pt").exists():
        raise SystemExit(f"{args.preset}: no last.pt after the stop ({run.path})")
    seconds = {"launch": max(0.0, (began or t0) - t0), **dict(startup.phases)}
    seconds["epochs"] = reached[0] - t0 - sum(seconds.values())
    seconds["checkpoint"] = ended - reached[0]
    return {"seconds": seconds, "to_target_s": reached[0] - t0, "to_checkpoint_s": ended - t0,
            "epochs": reached[1], "val_acc": reached[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset")
    parser.add_argument("target", type=float)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--repeat", type=int, default=1, help="fresh runs; the median is reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [one_run(args) for _ in range(args.repeat)]
    median = {
        "to_checkpoint_s": statistics.median(r["to_checkpoint_s"] for r in runs),
        "to_target_s": statistics.median(r["to_target_s"] for r in runs),
        "seconds": {p: statistics.median(r["seconds"].get(p, 0.0) for r in runs) for p in PHASES},
        "epochs": statistics.median(r["epochs"] for r in runs),
    }
    if args.json:
        print(json.dumps({"preset": args.preset, "target": args.target, "device": args.device, "median": median,
                          "runs": runs}))
        return
    print(f"{args.preset} to val_acc {args.target} (median of {len(runs)}): {median['to_checkpoint_s']:.2f} s to a "
          f"checkpoint, {median['to_target_s']:.2f} s to the target epoch line, {median['epochs']:g} epochs")
    for phase in PHASES:
        print(f"  {phase:<11} {median['seconds'][phase]:7.2f} s")


if __name__ == "__main__":
    main()
