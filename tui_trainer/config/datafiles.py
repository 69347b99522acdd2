"""Whether a preset's data is on this machine, told from the files alone (stdlib: no torch, no torchvision).

``tui-trainer presets`` marks the presets whose data is not here and ``doctor`` reports each
torchvision dataset; both answer in milliseconds, where asking torchvision costs its import
(1.5 s on a 2-core CPU, torch._dynamo included). The loader (``data/real.py``) still opens the
files with torchvision and checks them; a file that is present but damaged is found there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tui_trainer.config.paths import dataset_cache_dir
from tui_trainer.config.schema import RunConfig

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package puts its .gz files."""

_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TORCHVISION_FILES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": tuple(f"FashionMNIST/raw/{f}" for f in _IDX),
    "mnist": tuple(f"MNIST/raw/{f}" for f in _IDX),
    "cifar10": tuple(f"cifar-10-batches-py/{f}" for f in
                     ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")),
}
"""The files torchvision opens for each dataset, under the cache folder."""


def cache_dir(cfg: RunConfig) -> Path:
    """Where datasets are looked for and downloaded."""
    return dataset_cache_dir(cfg.data.cache_dir)


def debian_fashion_mnist() -> bool:
    """Debian's Fashion-MNIST files are installed (the loader copies them into the cache on first use)."""
    return all((DEBIAN_FASHION_MNIST / f"{f}.gz").is_file() for f in _IDX)


@dataclass(frozen=True)
class DataPlace:
    """Whether a config's data is here, and where it is or what to do about it."""

    here: bool
    """The files are on this machine (or nothing is needed: generated data)."""
    where: str
    """Where they are, or what is missing."""
    downloads: bool = False
    """Not here, but fetched on first use (a torchvision dataset, when online)."""


def data_place(cfg: RunConfig) -> DataPlace:
    """Where ``cfg``'s data comes from: generated, the cache, Debian's files, a folder or file that exists; else
    what is missing (a torchvision dataset is downloaded on first use, a folder or a file must be given)."""
    d = cfg.data
    if d.dataset in TORCHVISION_FILES:
        return torchvision_place(d.dataset, cache_dir(cfg))
    if d.dataset == "imagefolder":
        root = Path(d.root).expanduser()
        return DataPlace(True, f"folder {root}") if root.is_dir() else DataPlace(False, f"no folder {root}: set data.root")
    if d.dataset == "csv":
        path = Path(d.path).expanduser()
        return DataPlace(True, f"file {path}") if path.is_file() else DataPlace(False, f"no file {path}: set data.path")
    if d.dataset == "custom" or d.dataset.startswith("plugin:"):  # the user's code makes it (nothing imported here)
        from tui_trainer.config.factories import is_file, split_factory

        target = split_factory(d.factory)[0]
        if d.dataset == "custom" and is_file(target) and not Path(target).is_file():
            return DataPlace(False, f"no file {target}: set data.factory")
        return DataPlace(True, f"made by {d.factory or d.dataset}")
    return DataPlace(True, "generated")


def torchvision_place(name: str, cache: Path) -> DataPlace:
    """Whether torchvision's dataset ``name`` is in ``cache`` (or, for Fashion-MNIST, in Debian's files)."""
    if all((cache / f).is_file() for f in TORCHVISION_FILES[name]):
        return DataPlace(True, f"in {cache}")
    if name == "fashion-mnist" and debian_fashion_mnist():
        return DataPlace(True, f"from Debian's files in {DEBIAN_FASHION_MNIST}")
    return DataPlace(False, f"not in {cache}: downloaded on first use (online)", downloads=True)
