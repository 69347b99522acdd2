"""What the image views cost: drawing a grid of images in a terminal, and the validation sample at epoch ends.

* draw: an 8x8 grid of 28x28 Fashion-MNIST validation images (Debian's files when present, else noise of that
  shape) turned into terminal rows (``ui.pictures.grid_rows``) and rendered by Rich into ANSI text at 240 columns,
  with colour (half blocks) and without (grey ramp); median of ``--repeat`` draws, the style cache warm as in the
  app after its first draw.
* epoch end: on fashion-mnist-mlp (the lecture's MLP on the real data when present), the epoch's validation pass
  with the ``SampleCollector`` riding along against without it (interleaved, median), plus picking the sample and
  writing samples.json; against the time of a training epoch (``--steps`` steps timed after 10 of warm-up, scaled
  to the epoch's 938).

Measured on the 2-core CPU VM (shared with other work), 2026-12-04, three runs: the 8x8 grid draws in 28-60 ms
with colour (the first draw 100-210 ms while the style cache fills), 18-28 ms as a grey ramp; at epoch ends the
collector is within the noise of the validation pass (measured inside it: 2 ms) and picking + writing the 113 kB
samples.json takes 5-22 ms: 0.03-0.4% of a training epoch here (22-34 s on this loaded VM), under 1% of a 4 s one.

    python benchmarks/images.py                # both
    python benchmarks/images.py --quick --json # CI: that it runs
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tui_trainer.config.datafiles import DEBIAN_FASHION_MNIST  # noqa: E402
from tui_trainer.ui.pictures import Picture, PictureGrid  # noqa: E402


def fashion_images(n: int) -> tuple[list[bytes], str]:
    """``n`` 28x28 validation images as bytes, and where they came from."""
    path = DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz"
    if path.is_file():
        data = gzip.decompress(path.read_bytes())[16:]
        return [data[i * 784:(i + 1) * 784] for i in range(n)], "real Fashion-MNIST"
    import random

    rng = random.Random(0)
    return [bytes(rng.randrange(256) for _ in range(784)) for _ in range(n)], "random pixels"


def draw_cost(repeat: int) -> dict:
    from rich.console import Console

    images, source = fashion_images(64)
    pictures = [Picture(px, (1, 28, 28), ("Ankle boot -> Sneaker", "p=0.87 loss 2.31")) for px in images]
    result: dict = {"source": source}
    for color in (True, False):
        times = []
        for _ in range(repeat + 1):  # the first draw fills the style cache, as the app's first draw does
            console = Console(width=240, file=io.StringIO(), force_terminal=True,
                              color_system="truecolor" if color else None)
            t0 = time.perf_counter()
            console.print(PictureGrid(pictures, color=color))
            times.append(time.perf_counter() - t0)
        lines = console.file.getvalue().count("\n")
        result["colour" if color else "grey ramp"] = {"lines": lines, "ms": round(1000 * statistics.median(times[1:]), 1),
                                                      "first_ms": round(1000 * times[0], 1)}
    return result


def epoch_end_cost(steps: int, repeat: int) -> dict:
    import torch

    from benchmarks import offline
    from tui_trainer.config import apply_overrides, load_preset
    from tui_trainer.engine import build_loss, evaluate, prepare, warm_up
    from tui_trainer.engine.samples import SampleCollector, pick
    from tui_trainer.run.samples import write_samples

    offline.install()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = apply_overrides(load_preset("fashion-mnist-mlp"), ['train.device="cpu"', f'data.cache_dir="{tmp}/cache"'])
        _dev, data, model = prepare(cfg)
        loss_fn = build_loss(data.task, 0.01)
        opt = torch.optim.RMSprop(model.parameters(), lr=1e-3)
        warm_up()
        batches = iter(data.train.epoch(1))
        for i in range(steps + 10):  # the first 10 steps warm up (lazy imports, allocator)
            if i == 10:
                t0 = time.perf_counter()
            xb, yb = next(batches)
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        train_epoch = (time.perf_counter() - t0) / steps * len(data.train)
        plain, with_sample, picking, inside = [], [], [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            evaluate(model, data, loss_fn)
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            collect = SampleCollector()
            spent = [0.0]

            def timed(out, yb, collect=collect, spent=spent):
                t = time.perf_counter()
                collect(out, yb)
                spent[0] += time.perf_counter() - t

            evaluate(model, data, loss_fn, collect=timed)
            t1 = time.perf_counter()
            inside.append(spent[0])
            sample = pick(collect.table(), data, 1)
            path = write_samples(Path(tmp), sample)
            t2 = time.perf_counter()
            with_sample.append(t1 - t0)
            picking.append(t2 - t1)
        extra = statistics.median(inside) + statistics.median(picking)  # the A/B difference is in the noise here
        return {"data": "synthetic" if offline.synthetic_names else "real Fashion-MNIST",
                "train_epoch_s": round(train_epoch, 2), "val_pass_s": round(statistics.median(plain), 3),
                "val_pass_with_collector_s": round(statistics.median(with_sample), 3),
                "collector_ms": round(1000 * statistics.median(inside), 1),
                "pick_and_write_ms": round(1000 * statistics.median(picking), 1),
                "samples_json_bytes": path.stat().st_size, "examples": len(sample.examples),
                "extra_share_of_epoch": round(extra / (train_epoch + statistics.median(plain)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="training steps timed for the epoch's length")
    parser.add_argument("--quick", action="store_true", help="a few repeats, no training epoch")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = {"draw_8x8_grid_28px": draw_cost(2 if args.quick else args.repeat)}
    if not args.quick:
        out["epoch_end_fashion_mnist_mlp"] = epoch_end_cost(args.steps, args.repeat)
    print(json.dumps(out, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
