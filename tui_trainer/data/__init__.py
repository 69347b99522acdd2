"""Dataset registry -> batches on the device.

Two batch sources feed the same engine:

* ``TensorBatches``: the whole split lives on the device as one tensor pair and an epoch
  is a permutation sliced into batches (no DataLoader, no per-sample Python, no host
  copies); augmentation runs batched on the device.
* ``LoaderBatches``: a ``DataLoader`` with workers and pinned memory, for data that does not
  fit comfortably on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from tui_trainer.config import SYNTHETIC_DATASETS, RunConfig
from tui_trainer.data import synthetic
from tui_trainer.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


__all__ = ["DataBundle", "DataError", "LoaderBatches", "TensorBatches", "load_data"]


class TensorBatches:
    """A split held on the device as tensors, batched by slicing a seeded permutation."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        drop_last: bool = False,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = min(batch_size, len(x)) if drop_last else batch_size
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.resident = True

    @property
    def n_samples(self) -> int:
        """Samples in the split."""
        return len(self.x)

    def __len__(self) -> int:
        n, bs = len(self.x), self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    def to(self, device: torch.device) -> TensorBatches:
        """Move the split to ``device`` once (the only host-to-device copy of the run)."""
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def epoch(self, seed: int, skip: int = 0) -> Iterator[Batch]:
        """Batches of one epoch; ``skip`` batches are left out (a resumed partial epoch)."""
        n, bs = len(self.x), self.batch_size
        if self.shuffle:
            g = torch.Generator().manual_seed(seed)
            order = torch.randperm(n, generator=g).to(self.x.device, non_blocking=True)
        else:
            order = None
        for i in range(skip, len(self)):
            if order is None:
                xb, yb = self.x[i * bs : (i + 1) * bs], self.y[i * bs : (i + 1) * bs]
            else:
                idx = order[i * bs : (i + 1) * bs]
                xb, yb = self.x[idx], self.y[idx]
            if self.augment is not None:
                xb = self.augment(xb)
            yield xb, yb


class _EpochOrder(torch.utils.data.Sampler):
    """The sample order of the current epoch, set before each iteration (persistent workers re-read it)."""

    def __init__(self, n: int) -> None:
        self.order: list[int] = list(range(n))

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class LoaderBatches:
    """A split streamed through a DataLoader with workers and pinned memory."""

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, shuffle: bool,
                 num_workers: int, device: torch.device, drop_last: bool = False,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.num_workers, self.device, self.drop_last = num_workers, device, drop_last
        self.augment = augment  # batched, on the device, after the copy
        self.resident = False
        self._order = _EpochOrder(len(dataset))  # type: ignore[arg-type]
        self._loader: torch.utils.data.DataLoader | None = None

    @property
    def n_samples(self) -> int:
        """Samples in the split."""
        return len(self.dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        n, bs = self.n_samples, self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    def to(self, device: torch.device) -> LoaderBatches:
        """Batches are moved per step; remember where to."""
        self.device = device
        return self

    def epoch(self, seed: int, skip: int = 0) -> Iterator[Batch]:
        """Batches of one epoch, copied to the device asynchronously from pinned memory."""
        n, bs = self.n_samples, self.batch_size
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist() if self.shuffle else list(
            range(n))
        self._order.order = order[skip * bs :]  # a resumed epoch does not even load the batches it skips
        if self._loader is None:  # built once: workers are spawned (and import torch) once, not every epoch
            workers = self.num_workers
            self._loader = torch.utils.data.DataLoader(
                self.dataset,
                batch_size=bs,
                sampler=self._order,
                # only seeds the workers; a private generator, so the global RNG (dropout) is never drawn from
                generator=torch.Generator().manual_seed(0),
                num_workers=workers,
                pin_memory=self.device.type == "cuda",
                drop_last=self.drop_last,
                persistent_workers=workers > 0,
                multiprocessing_context="spawn" if workers else None,  # fork is unsafe beside a UI thread
            )
        loader = self._loader
        for xb, yb in loader:
            xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            yield (self.augment(xb) if self.augment is not None else xb), yb


@dataclass
class DataBundle:
    """A dataset ready to train on: both splits and what the model needs to know."""

    name: str
    task: str  # "classification" or "regression"
    n_classes: int  # 1 for regression
    input_shape: tuple[int, ...]
    train: TensorBatches | LoaderBatches
    val: TensorBatches | LoaderBatches
    class_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # skips and fallbacks worth reporting

    @property
    def out_features(self) -> int:
        """Width of the model's output layer."""
        return self.n_classes if self.task == "classification" else 1


def _split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction)))
    return order[n_val:], order[:n_val]


def _standardise(train_x: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Standardise with statistics of the training split only."""
    mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-8)
    return [(t - mean) / std for t in (train_x, *others)]


def _synthetic(cfg: RunConfig) -> DataBundle:
    d = cfg.data
    if d.dataset == "regression-toy":
        x, y, xv, yv = synthetic.make_regression_toy(d.n_samples, d.noise, cfg.train.seed)
        return DataBundle(
            name=d.dataset, task="regression", n_classes=1, input_shape=(1,),
            train=TensorBatches(x, y, d.batch_size, shuffle=True),
            val=TensorBatches(xv, yv, 4096, shuffle=False),
        )
    x, y = synthetic.make_classification(d.dataset, d.n_samples, d.n_classes, d.noise, cfg.train.seed)
    tr, va = _split(len(x), d.val_fraction, cfg.train.seed)
    if d.subset:
        tr = tr[: d.subset]
    xt, xv = _standardise(x[tr], x[va])
    n_classes = int(y.max()) + 1
    return DataBundle(
        name=d.dataset, task="classification", n_classes=n_classes, input_shape=(2,),
        train=TensorBatches(xt, y[tr], d.batch_size, shuffle=True, drop_last=cfg.train.compile),
        val=TensorBatches(xv, y[va], 4096, shuffle=False),
        class_names=[str(i) for i in range(n_classes)],
    )


def peek_shape(cfg: RunConfig) -> tuple[tuple[int, ...], int]:
    """(input_shape, out_features) without loading the data (for a live parameter count)."""
    d = cfg.data
    if d.dataset == "regression-toy":
        return (1,), 1
    if d.dataset in SYNTHETIC_DATASETS:
        return (2,), d.n_classes if d.dataset in ("spirals", "blobs") else 2
    from tui_trainer.data import real

    return real.peek_shape(cfg)


def load_data(cfg: RunConfig, device: torch.device) -> DataBundle:
    """Build the dataset a config names, with batches on ``device``; DataError if it cannot."""
    if cfg.data.dataset in SYNTHETIC_DATASETS:
        bundle = _synthetic(cfg)
    else:
        from tui_trainer.data import real

        bundle = real.load(cfg, device)
    bundle.train.to(device)
    bundle.val.to(device)
    return bundle
