"""Set-up to the first step, phase by phase (the engine's ``StartupTimed``), with torch._dynamo imported beside the
data and model set-up (as shipped) and without (each optimizer's first ``__init__`` imports it then, ~1 s).

Each measurement is a fresh process (nothing imported yet: the cost is a first start's), A and B interleaved:

    python benchmarks/startup.py fashion-mnist-mlp --repeat 5

A process imports torch and the engine, then fits the preset until its first step has been timed and stops it
(Ctrl+C semantics). The figure is the engine's own: device + data + model + first step, from the moment the fit
began (the interpreter's and imports' seconds are the same in A and B and are left out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from tui_trainer.config import apply_overrides, load_preset
from tui_trainer.engine import Controls, fit
import tui_trainer.engine.loop as loop
from tui_trainer.run.events import StartupTimed
if {without!r}:
    loop.import_dynamo_meanwhile = lambda cfg: None  # B: the optimizer imports torch._dynamo itself
controls, said = Controls(), []
class Sink:
    def emit(self, event):
        if isinstance(event, StartupTimed):
            said.append(dict(event.phases))
            controls.request_stop()
cfg = apply_overrides(load_preset({preset!r}), ["train.device='cpu'"])
fit(cfg, Sink(), controls, runs_dir={runs!r})
print(json.dumps(said[0]))
"""


def one(preset: str, without: bool, runs: str) -> dict[str, float]:
    code = CHILD.format(root=str(ROOT), without=without, preset=preset, runs=runs)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", nargs="?", default="fashion-mnist-mlp")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = tempfile.mkdtemp(prefix="startup-")
    pairs = []
    for i in range(args.repeat):  # interleaved, each side first in turn (a warm page cache favours the second)
        if i % 2 == 0:
            a, b = one(args.preset, False, runs), one(args.preset, True, runs)
        else:
            b, a = one(args.preset, True, runs), one(args.preset, False, runs)
        pairs.append((a, b))
    phases = list(pairs[0][0])
    med = {side: {p: statistics.median(pair[i][p] for pair in pairs) for p in phases}
           for i, side in enumerate(("overlapped", "not_overlapped"))}
    totals = [(sum(a.values()), sum(b.values())) for a, b in pairs]
    result = {"preset": args.preset, "repeat": args.repeat, "median_phases": med,
              "median_total_s": {"overlapped": statistics.median(t[0] for t in totals),
                                 "not_overlapped": statistics.median(t[1] for t in totals)},
              "ratio_pairs": [a / b for a, b in totals]}
    result["median_ratio"] = statistics.median(result["ratio_pairs"])
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.preset}: set-up to the first step, median of {args.repeat} interleaved fresh processes")
    print(f"  {'phase':<11} {'overlapped':>11} {'not':>8}")
    for p in phases:
        print(f"  {p:<11} {med['overlapped'][p]:10.3f}s {med['not_overlapped'][p]:7.3f}s")
    print(f"  {'total':<11} {result['median_total_s']['overlapped']:10.3f}s "
          f"{result['median_total_s']['not_overlapped']:7.3f}s   overlapped / not, pair by pair: median "
          f"{result['median_ratio']:.2f}")


if __name__ == "__main__":
    main()
