"""Is the LR finder's suggestion usable? Each preset trained with its own rate and with the suggestion.

For every preset named: `lr_find` with the defaults the app and `tui-trainer lr-find` use, then two
trainings through the engine (`fit`) for the preset's own epochs, one at the preset's
learning rate and one at the suggestion (nothing else changed). The table shows the final
validation metric of each (accuracy for classification, loss for regression; with early stopping
also the best validation loss, which is the checkpoint kept), the finder's sweeps, the last sweep's
steps and the steps of all sweeps, and its wall time (the finder's sweeps do not depend on
`--epochs`). Data comes from where the app finds it; nothing is downloaded.

    python benchmarks/lrfind.py                       # the small synthetic presets
    python benchmarks/lrfind.py fashion-mnist-mlp --device cpu --threads 1
    python benchmarks/lrfind.py fashion-mnist-cnn --epochs 3        # the finder as usual, shorter trainings
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tui_trainer.config import apply_overrides, load_preset  # noqa: E402
from tui_trainer.engine import fit  # noqa: E402
from tui_trainer.engine.lrfind import lr_find  # noqa: E402
from tui_trainer.run.events import ListSink  # noqa: E402

SMALL = ["spirals-mlp", "moons-mlp", "circles-mlp", "xor-mlp", "deep-sigmoid-spirals", "regression-toy"]


def final_metric(history: list[dict]) -> str:
    """Final val_acc (classification) or val_loss, with the best val_loss when they differ."""
    last = history[-1]
    if last["val_acc"] is not None:
        return f"val_acc {last['val_acc']:.3f}"
    best = min(r["val_loss"] for r in history)
    return f"val_loss {last['val_loss']:.3f}" + (f" (best {best:.3f})" if best < last["val_loss"] else "")


def train(cfg, runs: Path) -> str:
    """Final metric of one training run of ``cfg``."""
    result = fit(apply_overrides(cfg, ["train.diagnostics=false"]), ListSink(), runs_dir=runs)
    return f"{final_metric(result.rows)}, {len(result.rows)} epochs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="*", default=SMALL)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=0, help="train this many epochs (0 = the preset's own)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| preset | own lr | own result | suggested lr | result with it | sweeps (last sweep's steps) | steps in all "
          "| finder s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(scratch) / "runs"
        for name in args.presets:
            cfg = apply_overrides(load_preset(name), [f'train.device="{args.device}"']
                                  + ([f"train.epochs={args.epochs}"] if args.epochs else []))
            done = [0]
            t0 = time.perf_counter()
            found = lr_find(cfg, progress=lambda p, done=done: done.__setitem__(0, p.steps_done))
            seconds = time.perf_counter() - t0
            own = train(cfg, runs)
            if found.suggestion is None:
                row = f"none: {found.reason} | |"
            else:
                with_it = train(apply_overrides(cfg, [f"optimizer.lr={found.suggestion:.3g}"]), runs)
                row = f"{found.suggestion:.3g} | {with_it} |"
            print(f"| {name} | {cfg.optimizer.lr:g} | {own} | {row} {found.sweeps} ({len(found.lrs)}) | {done[0]:,} | "
                  f"{seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
