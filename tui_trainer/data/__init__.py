"""Dataset registry -> batches on the device.

Two batch sources feed the same engine:

* ``TensorBatches``: the whole split lives on the device as one tensor pair and an epoch
  is a permutation sliced into batches (no DataLoader, no per-sample Python, no host
  copies); augmentation runs batched on the device.
* ``LoaderBatches``: a ``DataLoader`` with workers and pinned memory, for data that does not
  fit comfortably on the device.

The training order (``data.shuffle``) is either ``seeded``, a permutation from the run's seed and
the epoch that a resumed run replays, or ``global``: each epoch draws from torch's global
generator exactly what iterating ``DataLoader(train, shuffle=True)`` and then
``DataLoader(valid, shuffle=True)`` draws (``global-train``: the training loader only), so a
notebook that seeds once with ``torch.manual_seed`` replays draw for draw, dropout included.

The split (``data.split``) is the dataset's own validation data, or ``stratified``: all data
pooled and ``val_fraction`` of each class held out (``train_test_split(..., stratify=y)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from tui_trainer.config import PLUGIN_PREFIX, REGRESSION_DATASETS, SYNTHETIC_DATASETS, RunConfig
from tui_trainer.data import synthetic
from tui_trainer.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


__all__ = ["DataBundle", "DataError", "LoaderBatches", "TensorBatches", "load_data"]

Norm = tuple[tuple[float, ...], tuple[float, ...]]


def _global_draw() -> int:
    """One int64 from torch's global generator, drawn as a DataLoader draws its seeds."""
    return int(torch.empty((), dtype=torch.int64).random_().item())


def global_loader_order(n: int) -> torch.Tensor:
    """The order ``iter(DataLoader(dataset_of_n, shuffle=True))`` takes: the iterator draws its base
    seed from the global generator, then the RandomSampler draws the seed of its own permutation."""
    _global_draw()  # _BaseDataLoaderIter's _base_seed
    return torch.randperm(n, generator=torch.Generator().manual_seed(_global_draw()))


def epoch_order(n: int, shuffle: bool, mode: str, seed: int) -> torch.Tensor | None:
    """The sample order of one epoch (None: in order); ``mode`` is ``data.shuffle``."""
    if not shuffle:
        return None
    if mode == "seeded":
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return global_loader_order(n)


def after_epoch(mode: str) -> None:
    """What a notebook's shuffled validation loader draws from the global generator after the training loop."""
    if mode == "global":
        _global_draw()
        _global_draw()


class Sharding:
    """Which part of each global batch this rank takes (data-parallel training).

    A global batch is ``batch_size * world`` consecutive samples of the epoch's order, the batch one
    process would take at ``batch_size * world``: so ranks at batch B give the same steps as one process
    at batch B x world (tested to 1e-5). Training shares are equal (DDP averages the ranks' gradients, so
    equal shares make that the global mean): the last global batch of an epoch loses its last
    ``size % world`` samples, fewer than ``world`` an epoch. Validation shares may be uneven (sums are
    all-reduced), so every validation sample counts once. Unlike ``DistributedSampler`` (interleaved
    indices, padded with repeats) this keeps each global batch the single-process one.
    """

    def __init__(self, rank: int = 0, world: int = 1, even: bool = True) -> None:
        self.rank, self.world, self.even = rank, world, even

    def batches(self, n: int, batch_size: int, drop_last: bool) -> int:
        """Global batches in an epoch of ``n`` samples."""
        size = batch_size * self.world
        if drop_last:
            return n // size
        full, rest = divmod(n, size)
        return full + (1 if rest >= (self.world if self.even else 1) else 0)

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's part of one global batch of indices."""
        if self.world == 1:
            return idx
        if self.even:
            share = len(idx) // self.world
            return idx[self.rank * share:(self.rank + 1) * share]
        return torch.tensor_split(idx, self.world)[self.rank]


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
        order: str = "seeded",
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = min(batch_size, len(x)) if drop_last else batch_size
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.order = order  # data.shuffle
        self.resident = True
        self.sharding = Sharding()

    @property
    def n_samples(self) -> int:
        """Samples in the split."""
        return len(self.x)

    def shard(self, rank: int, world: int, even: bool) -> None:
        """Take only this rank's part of every batch (see Sharding)."""
        self.sharding = Sharding(rank, world, even)

    def __len__(self) -> int:
        return self.sharding.batches(len(self.x), self.batch_size, self.drop_last)

    def to(self, device: torch.device) -> TensorBatches:
        """Move the split to ``device`` once (the only host-to-device copy of the run)."""
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def epoch(self, seed: int, skip: int = 0) -> Iterator[Batch]:
        """Batches of one epoch; ``skip`` batches are left out (a resumed partial epoch)."""
        order = epoch_order(len(self.x), self.shuffle, self.order, seed)
        if order is None and self.sharding.world > 1:
            order = torch.arange(len(self.x))  # validation under DDP: in order, but shared out
        if order is not None:
            order = order.to(self.x.device, non_blocking=True)
        yield from self._batches(order, skip)
        if self.shuffle:
            after_epoch(self.order)

    def _batches(self, order: torch.Tensor | None, skip: int) -> Iterator[Batch]:
        sharding = self.sharding
        bs = self.batch_size * sharding.world  # a global batch
        for i in range(skip, len(self)):
            if order is None:
                xb, yb = self.x[i * bs : (i + 1) * bs], self.y[i * bs : (i + 1) * bs]
            else:
                idx = sharding.take(order[i * bs : (i + 1) * bs])
                if len(idx) == 0:
                    continue  # an uneven validation share: this rank has nothing of this batch
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
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None, order: str = "seeded") -> None:
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.order = order  # data.shuffle
        self.num_workers, self.device, self.drop_last = num_workers, device, drop_last
        self.augment = augment  # batched, on the device, after the copy
        self.resident = False
        self.sharding = Sharding()
        self._order = _EpochOrder(len(dataset))  # type: ignore[arg-type]
        self._loader: torch.utils.data.DataLoader | None = None

    @property
    def n_samples(self) -> int:
        """Samples in the split."""
        return len(self.dataset)  # type: ignore[arg-type]

    def shard(self, rank: int, world: int, even: bool) -> None:
        """Take only this rank's part of every batch (see Sharding)."""
        self.sharding = Sharding(rank, world, even)

    def __len__(self) -> int:
        return self.sharding.batches(self.n_samples, self.batch_size, self.drop_last)

    def to(self, device: torch.device) -> LoaderBatches:
        """Batches are moved per step; remember where to."""
        self.device = device
        return self

    def epoch(self, seed: int, skip: int = 0) -> Iterator[Batch]:
        """Batches of one epoch, copied to the device asynchronously from pinned memory."""
        n, bs = self.n_samples, self.batch_size
        drawn = epoch_order(n, self.shuffle, self.order, seed)
        order = drawn if drawn is not None else torch.arange(n)
        sharding = self.sharding
        if sharding.world > 1:  # this rank's part of each global batch, in order: the loader re-batches it at bs
            size = bs * sharding.world
            order = torch.cat([sharding.take(order[i * size:(i + 1) * size]) for i in range(len(self))])
        self._order.order = order.tolist()[skip * bs :]  # a resumed epoch does not even load the batches it skips
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
        if self.shuffle:
            after_epoch(self.order)


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
    head: str = "logits"  # model.head: "binary" is one output for two classes
    pixel_norm: Norm | None = None  # images: x = (pixel / 255 - mean) / std per channel, as scaled here
    checked: str = ""  # what one batch through the user's own model or data said (engine/factories.py)
    n_targets: int = 1  # regression: values per sample (the user's own data may have several)

    @property
    def out_features(self) -> int:
        """Width of the model's output layer."""
        if self.task != "classification":
            return self.n_targets
        if self.head == "binary":
            return 1
        return self.n_classes


def _split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction)))
    return order[n_val:], order[:n_val]


def stratified_split(y: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices with ``val_fraction`` of each class held out, as sklearn's
    ``train_test_split(..., stratify=y)``: ``ceil(n * val_fraction)`` validation samples in all,
    each class its proportional share (remainders to the classes with the largest fractions)."""
    g = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(y, return_counts=True)
    n_val = min(len(y) - len(classes), max(len(classes), math.ceil(len(y) * val_fraction)))
    exact = counts.double() * n_val / len(y)
    take = exact.floor().long()
    short = n_val - int(take.sum())
    if short > 0:
        take[torch.argsort(exact - take, descending=True, stable=True)[:short]] += 1
    train, val = [], []
    for c, k in zip(classes.tolist(), take.tolist(), strict=True):
        idx = torch.nonzero(y == c).view(-1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        val.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train), torch.cat(val)


def split_indices(cfg: RunConfig, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices of data without its own validation set: stratified or random by ``val_fraction``."""
    if cfg.data.split == "stratified":
        return stratified_split(y, cfg.data.val_fraction, cfg.data_seed)
    return _split(len(y), cfg.data.val_fraction, cfg.data_seed)


def scale_features(cfg: RunConfig, train_x: torch.Tensor, *others: torch.Tensor,
                   default: str = "standardize") -> list[torch.Tensor]:
    """Feature vectors scaled as ``data.scaling`` says (``auto`` is ``default``); statistics from the training split."""
    mode = cfg.data.scaling if cfg.data.scaling != "auto" else default
    if mode == "none":
        return [train_x, *others]
    if mode == "given":
        mean = torch.tensor(cfg.data.mean, dtype=train_x.dtype).view(1, -1)
        std = torch.tensor(cfg.data.std, dtype=train_x.dtype).view(1, -1)
        if mean.shape[1] not in (1, train_x.shape[1]):
            raise DataError(f"data.mean and data.std have {mean.shape[1]} values; the data has {train_x.shape[1]} "
                            f"features: give 1 or {train_x.shape[1]}")
    else:
        mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-8)
        if len(train_x) < 2:
            mean, std = torch.zeros_like(mean), torch.ones_like(std)  # one point has no spread to divide by
    return [(t - mean) / std for t in (train_x, *others)]


def _synthetic(cfg: RunConfig) -> DataBundle:
    d = cfg.data
    seed = cfg.data_seed
    notebook = d.shuffle != "seeded"
    if notebook:  # a notebook's torch.manual_seed, then the data drawn from the global generator
        torch.manual_seed(seed)
    g = None if notebook else torch.Generator().manual_seed(seed)
    if d.dataset in REGRESSION_DATASETS:
        if d.dataset == "points":
            pts = torch.tensor(d.points, dtype=torch.float32)
            x, y = pts[:, :1], pts[:, 1:]
            xv, yv = x, y
        else:
            x, y, xv, yv = synthetic.make_regression_toy(d.n_samples, d.noise, g, d.val_points)
        x, xv = scale_features(cfg, x, xv, default="none")
        return DataBundle(
            name=d.dataset, task="regression", n_classes=1, input_shape=(1,),
            train=TensorBatches(x, y, d.batch_size, shuffle=True, order=d.shuffle),
            val=TensorBatches(xv, yv, 4096, shuffle=False),
        )
    x, y = synthetic.make_classification(d.dataset, d.n_samples, d.n_classes, d.noise, g)
    tr, va = split_indices(cfg, y)
    if d.subset:
        tr = tr[: d.subset]
    xt, xv = scale_features(cfg, x[tr], x[va])
    n_classes = int(y.max()) + 1
    return DataBundle(
        name=d.dataset, task="classification", n_classes=n_classes, input_shape=(2,),
        train=TensorBatches(xt, y[tr], d.batch_size, shuffle=True, order=d.shuffle),
        val=TensorBatches(xv, y[va], 4096, shuffle=False),
        class_names=[str(i) for i in range(n_classes)], head=cfg.model.head,
    )


def own_data(cfg: RunConfig) -> bool:
    """Whether the data comes from the user's own factory (``custom`` or ``plugin:NAME``)."""
    return cfg.data.dataset == "custom" or cfg.data.dataset.startswith(PLUGIN_PREFIX)


def peek_shape(cfg: RunConfig) -> tuple[tuple[int, ...], int]:
    """(input_shape, out_features) without loading the data (for a live parameter count); the user's own data is
    made by its factory (on the CPU) to know."""
    d = cfg.data
    if own_data(cfg):
        bundle = load_data(cfg, torch.device("cpu"))
        return bundle.input_shape, bundle.out_features
    if d.dataset in REGRESSION_DATASETS:
        return (1,), 1
    if d.dataset in SYNTHETIC_DATASETS:
        shape, out = (2,), d.n_classes if d.dataset in ("spirals", "blobs") else 2
    else:
        from tui_trainer.data import real

        shape, out = real.peek_shape(cfg)
    return shape, 1 if cfg.model.head == "binary" else out


def load_data(cfg: RunConfig, device: torch.device) -> DataBundle:
    """Build the dataset a config names, with batches on ``device``; DataError if it cannot."""
    if cfg.data.dataset in SYNTHETIC_DATASETS:
        bundle = _synthetic(cfg)
    elif own_data(cfg):
        from tui_trainer.data.custom import load_custom

        bundle = load_custom(cfg, device)
    else:
        from tui_trainer.data import real

        bundle = real.load(cfg, device)
    bundle.train.to(device)
    bundle.val.to(device)
    return bundle
