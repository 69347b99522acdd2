"""Every preset's accuracy and epoch time on one device: the table issue 3's closing note asks for.

Each preset trains through the engine (`Fit`, what `fit()` and the run process run) for
`--epochs` epochs (0 = the preset's own) on the chosen device. Data comes from where the app
finds it (cache, Debian's Fashion-MNIST); nothing is downloaded. A torchvision dataset that is
not on disk (MNIST, CIFAR-10 on an offline machine) is replaced by synthetic data of the same
shape, size and dtype (each class a fixed random pattern plus noise, so it can be learned), and
an image-folder preset whose `data.root` is missing gets a generated two-class folder
(horizontal vs vertical stripes). Such rows say so in the `data` column: their accuracy says
the pipeline learns, not how good the preset is. Pretrained weights that are not in torch's
cache are replaced by random ones (`pretrained = false`), also said in the row.

    python benchmarks/presets.py                                  # every preset, 1 epoch
    python benchmarks/presets.py fashion-mnist-cnn cifar10-resnet --device cuda --epochs 3
    python benchmarks/presets.py cifar10-resnet --subset 5000    # train on 5,000 samples only

`epoch s` is the mean wall time of an epoch after the first, validation included (the first,
with warm-up, cuDNN autotuning and graph capture, is `first s`); samples/s counts training only.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import offline  # noqa: E402
from tui_trainer.config import SYNTHETIC_DATASETS, apply_overrides, load_preset  # noqa: E402
from tui_trainer.engine import Controls, Fit  # noqa: E402
from tui_trainer.run.events import EpochEnded, ListSink, RunStarted  # noqa: E402
from tui_trainer.run.folder import prepare_run  # noqa: E402

PRESETS = ROOT / "presets"
offline.install()  # no downloads: synthetic data of the real shape where a dataset is not on disk


def make_stripes_folder(root: Path, per_class: int = 120, val_per_class: int = 40, size: int = 48) -> Path:
    """train/ and valid/ with two classes of noisy PNGs: horizontal and vertical stripes."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, n in (("train", per_class), ("valid", val_per_class)):
        for label, cls in enumerate(("horizontal", "vertical")):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                period = int(torch.randint(4, 12, (1,), generator=g))
                phase = float(torch.rand(1, generator=g)) * 6.28
                t = torch.arange(size, dtype=torch.float32)
                wave = torch.sin(t * 6.28 / period + phase)
                img = wave[:, None].expand(size, size) if label == 0 else wave[None, :].expand(size, size)
                rgb = img[..., None] * torch.rand(3, generator=g) * 80 + 128
                rgb = (rgb + torch.randn((size, size, 3), generator=g) * 30).clamp(0, 255).to(torch.uint8)
                Image.frombytes("RGB", (size, size), rgb.numpy().tobytes()).save(folder / f"{i}.png")
    return root


def _weights_cached(arch: str) -> bool:
    """Whether torchvision's default pretrained weights for `torchvision:<name>` are in torch's cache."""
    import torchvision

    weights = torchvision.models.get_model_weights(arch.split(":", 1)[1]).DEFAULT
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name).is_file()


# -- one preset ----------------------------------------------------------------------------------------


def run_preset(name: str, args: argparse.Namespace, scratch: Path) -> dict:
    cfg = load_preset(name)
    overrides = [f'train.device="{args.device}"']
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    if args.subset:
        overrides.append(f"data.subset={args.subset}")
    if args.compile:
        overrides.append("train.compile=true")
    source = "real"
    if cfg.data.dataset == "imagefolder" and not Path(cfg.data.root).expanduser().is_dir():
        folder = scratch / "stripes"
        if not folder.is_dir():
            make_stripes_folder(folder)
        overrides.append(f'data.root="{folder}"')
        source = "generated 2-class folder"
    elif cfg.data.dataset in SYNTHETIC_DATASETS:
        source = "generated (preset)"
    if cfg.model.arch.startswith("torchvision:") and cfg.model.pretrained and not _weights_cached(cfg.model.arch):
        overrides.append("model.pretrained=false")
        source += ", random weights (no pretrained file offline)"
    cfg = apply_overrides(cfg, [*overrides, *args.set])

    sink = ListSink()
    t0 = time.perf_counter()
    # fit() without its error mapping: the benchmark wants the traceback, and the set-up Fit (its data, ready time)
    run = Fit(cfg, sink, Controls())
    ready_at = time.perf_counter()
    result = run.run(prepare_run(cfg, scratch / "runs"))
    wall = time.perf_counter() - t0
    if cfg.data.dataset in offline.synthetic_names:
        source = "synthetic, same shape"
    epochs = sink.of(EpochEnded)
    started = sink.of(RunStarted)
    later = epochs[1:] or epochs
    metric = "val_acc" if epochs and epochs[-1].val_acc is not None else "val_loss"
    final = [getattr(e, metric) for e in epochs]
    return {
        "preset": name, "data": source, "device": started[0].device if started else args.device,
        "batches": "device-resident" if run.data.train.resident else "DataLoader",
        "train_samples": started[0].train_samples if started else 0, "epochs": len(epochs),
        "reason": result.reason.value, "metric": metric,
        "final": final[-1] if final else None, "best": (max(final) if metric == "val_acc" else min(final)) if final else None,
        "first_epoch_s": epochs[0].epoch_seconds if epochs else None,
        "epoch_s": sum(e.epoch_seconds for e in later) / len(later) if later else None,
        "samples_per_s": sum(e.samples_per_s for e in later) / len(later) if later else None,
        "setup_s": ready_at - t0, "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="*", help="preset names (default: every file in presets/)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per preset (0 = the preset's own)")
    parser.add_argument("--subset", type=int, default=0, help="train on this many samples (0 = all)")
    parser.add_argument("--compile", action="store_true", help="train.compile = true")
    parser.add_argument("--set", action="append", default=[], help="extra section.key=value override, for every preset")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = args.presets or sorted(p.stem for p in PRESETS.glob("*.toml"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            row = run_preset(name, args, Path(tmp))
            rows.append(row)
            if not args.json:
                fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
                print(f"{row['preset']:<31} {row['device'][:24]:<24} {row['epochs']:>2} ep  {row['metric']} "
                      f"{fmt(row['final'], '.4f')} (best {fmt(row['best'], '.4f')})  first {fmt(row['first_epoch_s'], '.2f')} s  "
                      f"epoch {fmt(row['epoch_s'], '.2f')} s  {fmt(row['samples_per_s'], ',.0f')} samples/s  "
                      f"setup {row['setup_s']:.1f} s  {row['batches']}  [{row['data']}]", flush=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(), "torch": torch.__version__,
            "argv": sys.argv[1:]}
    if args.json:
        print(json.dumps({**meta, "rows": rows}, indent=1))
    else:
        print(f"{meta['date']}  torch {meta['torch']}  {' '.join(meta['argv'])}")


if __name__ == "__main__":
    main()
