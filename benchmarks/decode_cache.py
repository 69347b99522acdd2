"""What the decoded-tensor cache (data/tensor_cache.py) saves a run's start: Fashion-MNIST's train and test tensors
in a fresh process, decoded from the IDX files through torchvision (cold: no cache) against read from the cache.

Each measurement is a new Python process (as each run is), on a copy of the real Fashion-MNIST files in a temporary
data cache (the user's own cache is only read): ``import torch``, then the data step (``data.real._decoded``:
cold, the check that the files open, torchvision's import, the decode of both splits and the cache's write;
cached, one memory-mapped ``torch.load``), every page of the tensors read once in both (so the mapped file's
reads are counted). Cold and cached alternate ``--repeat`` times; medians.

    python benchmarks/decode_cache.py                     # the Fashion-MNIST files of the user cache, 3 pairs
    python benchmarks/decode_cache.py --repeat 5 --cache ~/.cache/tui-trainer/datasets

Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tui_trainer.config.datafiles import TORCHVISION_FILES  # noqa: E402
from tui_trainer.config.paths import dataset_cache_dir  # noqa: E402

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from pathlib import Path
from tui_trainer.data import real
t2 = time.perf_counter()
x, y, xv, yv = real._decoded("fashion-mnist", Path(sys.argv[1]))
touched = sum(int(t.reshape(-1)[::512].sum()) for t in (x, y, xv, yv))  # every page read: a mapped cache pays here
t3 = time.perf_counter()
print(json.dumps({"torch": t1 - t0, "modules": t2 - t1, "data": t3 - t2, "total": t3 - t0,
                  "torchvision": "torchvision" in sys.modules, "n": [len(x), len(xv)]}))
"""


def measure(cache: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(cache)], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="a data cache holding FashionMNIST/raw")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    source = (args.cache or dataset_cache_dir("")).expanduser()
    files = TORCHVISION_FILES["fashion-mnist"]
    if not all((source / f).is_file() for f in files):
        raise SystemExit(f"no Fashion-MNIST files under {source}: run fashion-mnist-mlp once, or pass --cache")
    cold, cached = [], []
    with tempfile.TemporaryDirectory(prefix="decode-cache-") as tmp:
        cache = Path(tmp)
        for f in files:
            (cache / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / f, cache / f)
        for i in range(args.repeat):
            for kind in (("cold", "cached") if i % 2 == 0 else ("cached", "cold")):
                if kind == "cold":
                    shutil.rmtree(cache / ".tensors", ignore_errors=True)
                    cold.append(measure(cache))
                else:
                    if not (cache / ".tensors").exists():
                        measure(cache)  # write it first (not counted)
                    cached.append(measure(cache))
    med = {k: {part: statistics.median(r[part] for r in runs) for part in ("torch", "modules", "data", "total")}
           for k, runs in (("cold", cold), ("cached", cached))}
    result = {"repeat": args.repeat, **med,
              "data_ratio": med["cold"]["data"] / med["cached"]["data"],
              "total_ratio": med["cold"]["total"] / med["cached"]["total"],
              "cached_imports_torchvision": any(r["torchvision"] for r in cached),
              "samples": cold[0]["n"]}
    if args.json:
        print(json.dumps(result))
        return
    print(f"Fashion-MNIST ({result['samples'][0]:,} + {result['samples'][1]:,} images), medians of {args.repeat} "
          "fresh processes each")
    for k in ("cold", "cached"):
        m = med[k]
        print(f"  {k:6}  import torch {m['torch']:.2f} s  data {m['data']:.3f} s  process start to tensors "
              f"{m['total']:.2f} s")
    print(f"data step: cold / cached = {result['data_ratio']:.1f}x; start to tensors: {result['total_ratio']:.2f}x; "
          f"torchvision imported when cached: {result['cached_imports_torchvision']}")


if __name__ == "__main__":
    main()
