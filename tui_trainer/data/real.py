"""Real datasets: Fashion-MNIST, MNIST, CIFAR-10 (torchvision), image folders and CSV files.

Where torchvision datasets come from, in order: the cache directory (``data.cache_dir``, by
default the user's cache), then Debian's ``dataset-fashion-mnist`` files for Fashion-MNIST,
then a torchvision download into a temporary folder that is renamed into the cache only when
complete (a killed download never leaves files a later run would trust). The official test
split serves as the validation set unless ``data.split = "stratified"`` pools train and test
and holds out ``val_fraction`` of each class (the Fashion-MNIST notes: 52,500 / 17,500).

Pixels are scaled by ``data.scaling``: raw 0-255 (``none``), ``/ 255`` (``unit``), standardised
with the dataset's published per-channel statistics (ImageNet's for image folders), or with a
given mean and std on ``pixel / 255``, as torchvision's ``ToTensor`` then ``Normalize`` do.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

from tui_trainer.config import RunConfig
from tui_trainer.config.datafiles import DEBIAN_FASHION_MNIST, cache_dir  # noqa: F401 - where the files are (stdlib)
from tui_trainer.data import DataBundle, LoaderBatches, Norm, TensorBatches, scale_features, split_indices
from tui_trainer.data.augment import compose
from tui_trainer.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

TORCHVISION = {
    # name: (torchvision class, folder, input shape, normalisation mean/std, class names)
    "fashion-mnist": ("FashionMNIST", "FashionMNIST", (1, 28, 28), ((0.2860,), (0.3530,)),
                      ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                       "Ankle boot"]),
    "mnist": ("MNIST", "MNIST", (1, 28, 28), ((0.1307,), (0.3081,)), [str(i) for i in range(10)]),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", (3, 32, 32), ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
                ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]),
}


# ---------------------------------------------------------------------------
# torchvision datasets


def _open_torchvision(name: str, root: Path, train: bool):
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION[name][0])
    return cls(str(root), train=train, download=False)


def _present(name: str, root: Path) -> bool:
    try:
        _open_torchvision(name, root, train=False)
        return True
    except (RuntimeError, OSError):
        return False


def _copy_debian_fashion(root: Path) -> bool:
    """Decompress Debian's Fashion-MNIST .gz files into <root>/FashionMNIST/raw (atomically)."""
    files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if not all((DEBIAN_FASHION_MNIST / f"{f}.gz").is_file() for f in files):
        return False
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in files:
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{f}.")
        with os.fdopen(fd, "wb") as out, gzip.open(DEBIAN_FASHION_MNIST / f"{f}.gz", "rb") as src:
            shutil.copyfileobj(src, out)
        os.replace(tmp, raw / f)
    return True


def _download(name: str, root: Path) -> None:
    """torchvision download into a temporary folder, moved into the cache only when complete."""
    import torchvision

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".download-"))
    try:
        cls = getattr(torchvision.datasets, TORCHVISION[name][0])
        cls(str(tmp), train=True, download=True)  # torchvision prints its own progress
        cls(str(tmp), train=False, download=True)
        folder = TORCHVISION[name][1]
        target = root / folder
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / folder, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_dataset(name: str, root: Path, download: bool = True) -> Path:
    """Find (or, with ``download``, fetch) a torchvision dataset; DataError saying how to provide it."""
    if _present(name, root):
        return root
    if name == "fashion-mnist" and _copy_debian_fashion(root) and _present(name, root):
        return root
    try:
        if not download:
            raise FileNotFoundError(name)
        _download(name, root)
    except Exception as exc:  # noqa: BLE001 - urllib, http and checksum errors all mean "not available"
        hint = " (or install Debian's dataset-fashion-mnist package)" if name == "fashion-mnist" else ""
        raise DataError(
            f"dataset {name} not found in {root} and could not be downloaded ({type(exc).__name__}); "
            f"put torchvision's files under {root / TORCHVISION[name][1]}{hint}, or set data.cache_dir"
        ) from None
    if not _present(name, root):
        raise DataError(f"dataset {name}: download to {root} finished but the files are incomplete")
    return root


def _tensors(name: str, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    ds = _open_torchvision(name, root, train)
    data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(ds.data)
    if data.dim() == 3:
        data = data[:, None]  # (N, 1, H, W)
    else:
        data = data.permute(0, 3, 1, 2)  # CIFAR: (N, H, W, C) -> (N, C, H, W)
    targets = ds.targets if isinstance(ds.targets, torch.Tensor) else torch.tensor(ds.targets)
    return data.contiguous(), targets.long()


def _decoded(name: str, root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The train and test tensors of a torchvision dataset: from the decoded-tensor cache when it matches the files
    (no torchvision import, no decode: data/tensor_cache.py), else found (or fetched), decoded and cached."""
    from tui_trainer.data import tensor_cache

    cached = tensor_cache.load_cached(name, root)
    if cached is not None:
        return cached
    root = ensure_dataset(name, root)
    key = tensor_cache.source_key(name, root)  # before decoding: a file replaced meanwhile leaves the cache stale
    xt, yt = _tensors(name, root, train=True)
    xv, yv = _tensors(name, root, train=False)
    tensor_cache.store(name, root, (xt, yt, xv, yv), key)
    return xt, yt, xv, yv


def _normalise(x: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s


def pixel_norm(cfg: RunConfig, published: Norm, channels: int) -> Norm | None:
    """Per-channel (mean, std) on ``pixel / 255`` that ``data.scaling`` asks for; None for raw pixels."""
    mode = cfg.data.scaling
    if mode == "none":
        return None
    if mode == "unit":
        return (0.0,) * channels, (1.0,) * channels
    if mode == "given":
        mean, std = tuple(cfg.data.mean), tuple(cfg.data.std)
        if len(mean) not in (1, channels):
            raise DataError(f"data.mean and data.std have {len(mean)} values; these images have {channels} channels: "
                            f"give 1 or {channels}")
        return (mean * channels, std * channels) if len(mean) == 1 else (mean, std)
    return published  # auto, standardize


def scale_pixels(x: torch.Tensor, norm: Norm | None) -> torch.Tensor:
    """uint8 images (N, C, H, W) as float32, scaled by ``norm`` (None: the raw 0-255 values, exactly)."""
    return x.float() if norm is None else _normalise(x, *norm)


def described_norm(norm: Norm | None, channels: int) -> Norm:
    """The (mean, std) on ``pixel / 255`` of data scaled by ``norm``; raw pixels are std 1/255."""
    return norm if norm is not None else ((0.0,) * channels, (1 / 255,) * channels)


def fits_on_device(cfg: RunConfig, device: torch.device, n_values: int) -> bool:
    """Preload onto the device when it fits comfortably (a quarter of free GPU memory, 4 GiB elsewhere)."""
    mode = cfg.data.device_resident
    if mode != "auto":
        return mode == "always"
    size = n_values * 4
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return size < free * 0.25
    return size < 4 * 2**30


def check_head(cfg: RunConfig, n_classes: int, where: str) -> None:
    if cfg.model.head == "binary" and n_classes != 2:
        raise DataError(f"model.head = 'binary' is one logit for two classes; {where} has {n_classes}: use 'logits'")


def _bundle_from_tensors(cfg: RunConfig, device: torch.device, name: str, xt: torch.Tensor, yt: torch.Tensor,
                         xv: torch.Tensor, yv: torch.Tensor, classes: list[str], notes: list[str] | None = None,
                         norm: Norm | None = None) -> DataBundle:
    d = cfg.data
    check_head(cfg, len(classes), name)
    augment = compose(d.augment)
    if fits_on_device(cfg, device, xt.numel() + xv.numel()):
        train: TensorBatches | LoaderBatches = TensorBatches(xt, yt, d.batch_size, shuffle=True, augment=augment,
                                                             order=d.shuffle)
        val: TensorBatches | LoaderBatches = TensorBatches(xv, yv, 1024, shuffle=False)
    else:
        workers = d.num_workers
        train = LoaderBatches(torch.utils.data.TensorDataset(xt, yt), d.batch_size, True, workers, device,
                              augment=augment, order=d.shuffle)
        val = LoaderBatches(torch.utils.data.TensorDataset(xv, yv), 1024, False, workers, device)
    return DataBundle(name=name, task="classification", n_classes=len(classes), input_shape=tuple(xt.shape[1:]),
                      train=train, val=val, class_names=classes, notes=notes or [], head=cfg.model.head,
                      pixel_norm=described_norm(norm, xt.shape[1]) if xt.dim() == 4 else None)


def _load_torchvision(cfg: RunConfig, device: torch.device) -> DataBundle:
    name = cfg.data.dataset
    _cls, _folder, shape, published, classes = TORCHVISION[name]
    xt, yt, xv, yv = _decoded(name, cache_dir(cfg))
    if cfg.data.split == "stratified":  # both official files pooled, in their order (train, then test)
        x, y = torch.cat([xt, xv]), torch.cat([yt, yv])
        tr, va = split_indices(cfg, y)
        xt, yt, xv, yv = x[tr], y[tr], x[va], y[va]
    if cfg.data.subset:
        order = torch.randperm(len(xt), generator=torch.Generator().manual_seed(cfg.data_seed))[: cfg.data.subset]
        xt, yt = xt[order], yt[order]
    norm = pixel_norm(cfg, published, shape[0])
    return _bundle_from_tensors(cfg, device, name, scale_pixels(xt, norm), yt, scale_pixels(xv, norm), yv, classes,
                                norm=norm)


# ---------------------------------------------------------------------------
# image folders


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_images(folder: Path, classes: list[str]) -> tuple[list[tuple[Path, int]], int]:
    """(path, label) pairs and the number of files that are not images."""
    items, others = [], 0
    for label, name in enumerate(classes):
        class_dir = folder / name
        files = sorted(p for p in class_dir.rglob("*") if p.is_file()) if class_dir.is_dir() else []
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        others += len(files) - len(images)
        if not images:
            raise DataError(f"class '{name}' in {folder} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        items += [(p, label) for p in images]
    return items, others


def _decode(path: Path, size: int) -> torch.Tensor | None:
    """An image as a (3, size, size) uint8 tensor, or None if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((size, size), Image.BILINEAR)
            data = bytearray(rgb.tobytes())
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    return torch.frombuffer(data, dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1)


def _decode_all(items: list[tuple[Path, int]], size: int) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    images, labels, bad = [], [], []
    for path, label in items:
        t = _decode(path, size)
        if t is None:
            bad.append(path)
        else:
            images.append(t)
            labels.append(label)
    if not images:
        raise DataError("no readable images found")
    return torch.stack(images), torch.tensor(labels), bad


class FolderDataset(torch.utils.data.Dataset):
    """Streams images from disk (the path for folders too large to preload)."""

    def __init__(self, items: list[tuple[Path, int]], size: int, norm: Norm | None = IMAGENET_STATS) -> None:
        self.items, self.size, self.norm = items, size, norm

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        t = _decode(path, self.size)
        if t is None:  # checked when listed; a file that changed since is shown as black, not a crash
            t = torch.zeros(3, self.size, self.size, dtype=torch.uint8)
        return scale_pixels(t[None], self.norm)[0], label


def _missing_folder(d_root: str, root: Path) -> DataError:
    where = root.resolve()
    return DataError(f"data.root = '{d_root}': folder not found ({where}); put the images in {where}/train/<class>/ "
                     "and valid/<class>/ (or class folders directly), or set data.root to where they are")


def _load_imagefolder(cfg: RunConfig, device: torch.device) -> DataBundle:
    d = cfg.data
    root = Path(d.root).expanduser()
    if not root.is_dir():
        raise _missing_folder(d.root, root)
    train_dir = root / "train"
    val_dir = next((root / v for v in ("valid", "val", "validation", "test") if (root / v).is_dir()), None)
    split_given = train_dir.is_dir() and val_dir is not None
    if d.split == "official" and not split_given:
        raise DataError(f"data.split = 'official' needs {root.resolve()}/train/ and valid/ (or val/, test/) folders of "
                        "class folders; use 'auto' or 'stratified' to hold out data.val_fraction")
    base = train_dir if split_given else root
    classes = [p.name for p in _class_folders(base)]
    if not classes:
        raise DataError(f"no class subfolders in {base}: put each class's images in a folder named after the class")
    check_head(cfg, len(classes), str(base))
    train_items, others = _list_images(base, classes)
    if split_given:
        val_items, others_v = _list_images(val_dir, classes)
        others += others_v
    if d.split == "stratified":  # everything pooled, val_fraction of each class held out
        pooled = train_items + (val_items if split_given else [])
        tr, va = split_indices(cfg, torch.tensor([label for _p, label in pooled]))
        train_items, val_items = [pooled[i] for i in tr.tolist()], [pooled[i] for i in va.tolist()]
    elif not split_given:
        order = torch.randperm(len(train_items), generator=torch.Generator().manual_seed(cfg.data_seed)).tolist()
        n_val = max(1, int(round(len(order) * d.val_fraction)))
        val_items = [train_items[i] for i in order[:n_val]]
        train_items = [train_items[i] for i in order[n_val:]]
    if d.subset:
        train_items = train_items[: d.subset]
    notes = [f"skipped {others} files that are not images"] if others else []
    n_values = (len(train_items) + len(val_items)) * 3 * d.image_size**2
    norm = pixel_norm(cfg, IMAGENET_STATS, 3)
    if fits_on_device(cfg, device, n_values):
        xt, yt, bad_t = _decode_all(train_items, d.image_size)
        xv, yv, bad_v = _decode_all(val_items, d.image_size)
        bad = bad_t + bad_v
        if bad:
            notes.append(f"skipped {len(bad)} unreadable images (first: {bad[0]})")
        return _bundle_from_tensors(cfg, device, "imagefolder", scale_pixels(xt, norm), yt,
                                    scale_pixels(xv, norm), yv, classes, notes, norm=norm)
    from PIL import Image

    def readable(item: tuple[Path, int]) -> bool:
        try:
            with Image.open(item[0]) as img:
                img.verify()
            return True
        except Exception:  # noqa: BLE001 - any failure means unreadable
            return False

    good_t = [i for i in train_items if readable(i)]
    good_v = [i for i in val_items if readable(i)]
    skipped = len(train_items) + len(val_items) - len(good_t) - len(good_v)
    if skipped:
        notes.append(f"skipped {skipped} unreadable images")
    if not good_t or not good_v:
        raise DataError(f"no readable images in {root}")
    train = LoaderBatches(FolderDataset(good_t, d.image_size, norm), d.batch_size, True, d.num_workers, device,
                          augment=compose(d.augment), order=d.shuffle)
    val = LoaderBatches(FolderDataset(good_v, d.image_size, norm), 256, False, d.num_workers, device)
    return DataBundle(name="imagefolder", task="classification", n_classes=len(classes),
                      input_shape=(3, d.image_size, d.image_size), train=train, val=val, class_names=classes,
                      notes=notes, head=cfg.model.head, pixel_norm=described_norm(norm, 3))


# ---------------------------------------------------------------------------
# CSV


def _read_csv(cfg: RunConfig) -> tuple[list[str], list[list[str]], list[str]]:
    d = cfg.data
    path = Path(d.path).expanduser()
    if not path.is_file():
        raise DataError(f"data.path = '{d.path}': CSV file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = [r for r in reader if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read as CSV: {exc}") from None
    if not header or not rows:
        raise DataError(f"{path}: no header or no rows")
    if d.target not in header:
        raise DataError(f"data.target = '{d.target}' is not a column of {path}; columns: {', '.join(header)}")
    t = header.index(d.target)
    features = [h for i, h in enumerate(header) if i != t]
    if not features:
        raise DataError(f"{path}: no feature columns besides the target '{d.target}'")
    targets, table = [], []
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DataError(f"{path} line {n}: {len(row)} values, the header has {len(header)}")
        targets.append(row[t].strip())
        table.append([row[i] for i in range(len(header)) if i != t])
    return features, table, targets


def _as_float(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _load_csv(cfg: RunConfig, device: torch.device) -> DataBundle:
    d = cfg.data
    features, table, targets = _read_csv(cfg)
    values = []
    for n, row in enumerate(table, start=2):
        parsed = [_as_float(c) for c in row]
        for col, v, text in zip(features, parsed, row, strict=True):
            if v is None:
                raise DataError(f"{d.path} line {n}, column '{col}': {text!r} is not a number "
                                "(features must be numeric)")
        values.append(parsed)
    x = torch.tensor(values, dtype=torch.float32)
    numeric = [_as_float(t) for t in targets]
    task = d.task
    if task == "auto":
        ints = all(v is not None and v.is_integer() for v in numeric)
        task = "classification" if (None in numeric or (ints and len(set(targets)) <= 20)) else "regression"
    if task == "regression":
        if None in numeric:
            bad = targets[numeric.index(None)]
            raise DataError(f"{d.path}: target '{d.target}' value {bad!r} is not a number (regression needs numbers)")
        y = torch.tensor(numeric, dtype=torch.float32)[:, None]
        classes: list[str] = []
    else:
        key = (lambda s: float(s)) if None not in numeric else str  # noqa: E731 - numeric labels sort as numbers
        classes = sorted(set(targets), key=key)
        index = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([index[t] for t in targets])
    if task == "regression" and (d.split == "stratified" or cfg.model.head != "logits"):
        what = "data.split = 'stratified'" if d.split == "stratified" else f"model.head = {cfg.model.head!r}"
        raise DataError(f"{d.path}: target '{d.target}' is numeric (regression); {what} needs classes")
    if task == "classification":
        check_head(cfg, len(classes), str(d.path))
    if d.split == "stratified":
        tr, va = split_indices(cfg, y)
    else:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.data_seed))
        n_val = max(1, int(round(len(x) * d.val_fraction)))
        va, tr = order[:n_val], order[n_val:]
    if d.subset:
        tr = tr[: d.subset]
    xt, xv = scale_features(cfg, x[tr], x[va])
    return DataBundle(
        name="csv", task=task, n_classes=len(classes) if classes else 1, input_shape=(x.shape[1],),
        train=TensorBatches(xt, y[tr], d.batch_size, shuffle=True, order=d.shuffle),
        val=TensorBatches(xv, y[va], 4096, shuffle=False), class_names=classes, head=cfg.model.head)


# ---------------------------------------------------------------------------


def load(cfg: RunConfig, device: torch.device) -> DataBundle:
    """A non-synthetic dataset (DataError with one clear line when it cannot be had)."""
    name = cfg.data.dataset
    if name in TORCHVISION:
        return _load_torchvision(cfg, device)
    if name == "imagefolder":
        return _load_imagefolder(cfg, device)
    if name == "csv":
        return _load_csv(cfg, device)
    raise DataError(f"data.dataset = {name!r}: no loader")  # pragma: no cover - validated earlier


def peek_shape(cfg: RunConfig) -> tuple[tuple[int, ...], int]:
    """(input_shape, out_features) of a dataset without decoding it."""
    d = cfg.data
    if d.dataset in TORCHVISION:
        return TORCHVISION[d.dataset][2], 10
    if d.dataset == "imagefolder":
        root = Path(d.root).expanduser()
        base = root / "train" if (root / "train").is_dir() else root
        n = len(_class_folders(base)) if base.is_dir() else 2
        return (3, d.image_size, d.image_size), max(n, 2)
    features, _table, targets = _read_csv(cfg)
    if cfg.task == "regression":
        return (len(features),), 1
    return (len(features),), max(2, len(set(targets)))
