"""Time to accuracy: the whole wall time a user waits (start-up and data loading included) until a
preset's validation accuracy first reaches a target, through the real command line.

    python benchmarks/time_to_accuracy.py fashion-mnist-mlp 0.88
    python benchmarks/time_to_accuracy.py fashion-mnist-cnn 0.90 --max-epochs 15 --device cuda

The run is stopped (Ctrl+C semantics: last.pt saved) as soon as the target is reached.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

EPOCH = re.compile(r"^epoch (\d+)/\d+ .*val_acc ([0-9.]+) .* ([0-9.]+)s ([0-9,]+) samples/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset")
    parser.add_argument("target", type=float)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    runs = tempfile.mkdtemp()
    cmd = [sys.executable, "-m", "tui_trainer.cli", "train", args.preset, "--epochs", str(args.max_epochs),
           "--device", args.device, "--runs-dir", runs]
    for item in args.set:
        cmd += ["--set", item]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    reached = None
    assert proc.stdout is not None
    for line in proc.stdout:
        m = EPOCH.match(line)
        if m:
            epoch, acc = int(m.group(1)), float(m.group(2))
            print(f"  {time.perf_counter() - t0:7.1f}s  epoch {epoch:>2}  val_acc {acc:.4f}", flush=True)
            if acc >= args.target and reached is None:
                reached = (time.perf_counter() - t0, epoch, acc)
                proc.send_signal(signal.SIGINT)
    proc.wait()
    if reached:
        print(f"{args.preset}: val_acc {reached[2]:.4f} >= {args.target} after {reached[1]} epochs, "
              f"{reached[0]:.1f} s wall time")
    else:
        print(f"{args.preset}: did not reach {args.target} in {args.max_epochs} epochs")
        sys.exit(1)


if __name__ == "__main__":
    main()
