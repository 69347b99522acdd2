"""The user's own data: ``data.dataset = "custom"`` with ``data.factory``, or ``"plugin:NAME"`` (an installed entry
point in the group ``tui_trainer.datasets``).

The factory is called as ``function(**data.args)`` and returns a ``CustomData`` (or a dict with the same keys):

* ``train``: a ``(x, y)`` pair of tensors (or NumPy arrays), a ``TensorDataset``, or any map-style ``Dataset``
  whose items are ``(x, y)``;
* ``val``: the same, or None to hold out ``data.val_fraction`` of ``train`` at random (``data.seed``);
* ``classes``: the class names (classification: labels are integer indices into it), or None for regression
  (float targets, one column each).

Tensors go the way the built-in datasets go: resident on the device when they fit (``TensorBatches``), else
through a ``LoaderBatches`` DataLoader with workers and pinned memory; any other Dataset streams through
``LoaderBatches`` (``data.device_resident = "always"`` stacks it onto the device first). The data is used as
given: scale it in the factory. Every mistake is one ``ConfigError`` line naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from tui_trainer.config import RunConfig
from tui_trainer.data import DataBundle, LoaderBatches, TensorBatches, _split
from tui_trainer.errors import ConfigError
from tui_trainer.usercode import a_type, call, factory_spec, load_function

__all__ = ["CustomData", "data_label", "load_custom"]

Split = Any  # (x, y) tensors or arrays, a TensorDataset, or a map-style Dataset of (x, y)


@dataclass
class CustomData:
    """What a data factory returns: the training split, the validation split (None: held out from ``train``) and
    the class names (None: regression)."""

    train: Split
    val: Split = None
    classes: list[str] | None = None


def _as_custom(result: Any, label: str) -> CustomData:
    if isinstance(result, CustomData):
        return result
    if isinstance(result, dict):
        extra = set(result) - {"train", "val", "classes"}
        if extra or "train" not in result:
            raise ConfigError(f"{label} returned a dict with keys {sorted(result)}; allowed: train (required), val, "
                              "classes")
        return CustomData(**result)
    raise ConfigError(f"{label} returned {a_type(result)}; expected CustomData(train=..., val=..., "
                      "classes=[...] or None) or a dict with those keys")


def _tensors(split: Split, name: str, label: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(x, y)`` of a split given as tensors (None: a Dataset of another kind)."""
    if isinstance(split, TensorDataset) and len(split.tensors) == 2:
        return split.tensors[0], split.tensors[1]
    if isinstance(split, (tuple, list)):
        if len(split) != 2:
            raise ConfigError(f"{label}: {name} is a {type(split).__name__} of {len(split)}; expected (x, y)")
        try:
            x, y = (torch.as_tensor(v) for v in split)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{label}: {name} is not a pair of tensors or arrays: {exc}") from None
        if len(x) != len(y):
            raise ConfigError(f"{label}: {name} has {len(x)} inputs but {len(y)} labels")
        return x, y
    if isinstance(split, Dataset) and hasattr(split, "__len__"):
        return None
    raise ConfigError(f"{label}: {name} is a {type(split).__name__}; expected (x, y) tensors or arrays, a "
                      "TensorDataset or a Dataset of (x, y) items")


def _labels(y: torch.Tensor, n_classes: int, name: str, label: str) -> torch.Tensor:
    """Labels checked against the task: integer class indices in range, or float targets (one column each)."""
    if n_classes:
        if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
            raise ConfigError(f"{label}: {name} labels are {y.dtype}; classification needs integer class indices "
                              "(torch.long), or classes=None for regression")
        y = y.long().view(-1)
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise ConfigError(f"{label}: {name} has label {bad}; with {n_classes} classes labels are 0 to "
                              f"{n_classes - 1}")
        return y
    if not y.is_floating_point():
        y = y.float()
    return y.view(-1, 1) if y.dim() == 1 else y


def _sample(dataset: Dataset, name: str, label: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first item of a Dataset, as tensors (checks that items are (x, y))."""
    try:
        item = dataset[0]
    except Exception as exc:  # noqa: BLE001 - the user's __getitem__
        from tui_trainer.usercode import user_line

        raise ConfigError(f"{label}: {name}[0] fails: {user_line(exc)}") from None
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ConfigError(f"{label}: {name}[0] is a {type(item).__name__}; items must be (x, y) pairs")
    return torch.as_tensor(item[0]), torch.as_tensor(item[1])


def _stack(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))), strict=True)  # type: ignore[arg-type]
    return torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor([torch.as_tensor(y).tolist() for y in ys])


def _batches(cfg: RunConfig, device: torch.device, split: Split, train: bool, n_classes: int, name: str,
             label: str) -> tuple[TensorBatches | LoaderBatches, tuple[int, ...]]:
    """A split as batches (resident when it fits) and its samples' shape."""
    from tui_trainer.data.real import fits_on_device

    d = cfg.data
    pair = _tensors(split, name, label)
    if pair is None and d.device_resident == "always":
        pair = _stack(split)
    if pair is None:
        if len(split) == 0:
            raise ConfigError(f"{label}: the {name} set is empty")
        x0, y0 = _sample(split, name, label)
        _labels(y0.view(1), n_classes, name, label)
        size = d.batch_size if train else 1024
        return LoaderBatches(split, size, train, d.num_workers, device, order=d.shuffle), tuple(x0.shape)
    x, y = pair
    if len(x) == 0:
        raise ConfigError(f"{label}: the {name} set is empty")
    y = _labels(y, n_classes, name, label)
    if x.dtype == torch.float64:
        x = x.float()  # NumPy's default; the model's weights are float32
    if fits_on_device(cfg, device, x.numel()):
        batches: TensorBatches | LoaderBatches = (
            TensorBatches(x, y, d.batch_size, shuffle=True, order=d.shuffle) if train
            else TensorBatches(x, y, 1024, shuffle=False))
    else:
        size = d.batch_size if train else 1024
        batches = LoaderBatches(TensorDataset(x, y), size, train, d.num_workers, device, order=d.shuffle)
    return batches, tuple(x.shape[1:])


def _hold_out(cfg: RunConfig, train: Split, label: str) -> tuple[Split, Split]:
    """(train, val) of data given without a validation split: ``val_fraction`` held out at random."""
    pair = _tensors(train, "train", label)
    n = len(pair[0]) if pair is not None else len(train)
    if n == 0:
        raise ConfigError(f"{label}: the train set is empty")
    if n < 2:
        raise ConfigError(f"{label}: train has {n} sample(s) and no val was given; give val, or more data")
    tr, va = _split(n, cfg.data.val_fraction, cfg.data_seed)
    if pair is not None:
        return (pair[0][tr], pair[1][tr]), (pair[0][va], pair[1][va])
    return Subset(train, tr.tolist()), Subset(train, va.tolist())


def data_label(cfg: RunConfig) -> str:
    """How errors about the data factory start: ``data.factory = 'npy_data.py:build'``."""
    return factory_spec("data", cfg.data.dataset, cfg.data.factory)[1]


def load_custom(cfg: RunConfig, device: torch.device) -> DataBundle:
    """The data a factory makes, checked and batched; ConfigError (one line) on anything wrong."""
    d = cfg.data
    spec, label = factory_spec("data", d.dataset, d.factory)
    made = _as_custom(call(load_function(spec, label), label, **d.args), label)
    classes = made.classes
    if isinstance(classes, int) and not isinstance(classes, bool):
        classes = [str(i) for i in range(classes)]
    if classes is not None and (not isinstance(classes, (list, tuple)) or len(classes) < 2):
        raise ConfigError(f"{label}: classes = {classes!r}; give the class names (at least 2), or None for "
                          "regression")
    task = "classification" if classes is not None else "regression"
    if d.task != "auto" and d.task != task:
        raise ConfigError(f"data.task = {d.task!r} but {label} returned {'classes' if classes else 'classes=None'} "
                          f"({task}); set data.task = 'auto'")
    if task == "regression" and cfg.model.head != "logits":
        raise ConfigError(f"model.head = {cfg.model.head!r} is for classification; {label} returned regression data")
    n_classes = len(classes) if classes is not None else 0
    if n_classes and cfg.model.head == "binary" and n_classes != 2:
        raise ConfigError(f"model.head = 'binary' is one logit for two classes; {label} has {n_classes}: use 'logits'")
    train_split, val_split = made.train, made.val
    if val_split is None:
        train_split, val_split = _hold_out(cfg, train_split, label)
    train, shape = _batches(cfg, device, train_split, True, n_classes, "train", label)
    val, val_shape = _batches(cfg, device, val_split, False, n_classes, "val", label)
    if val_shape != shape:
        raise ConfigError(f"{label}: train samples are {'x'.join(map(str, shape))} but val samples are "
                          f"{'x'.join(map(str, val_shape))}")
    if cfg.regularization.monitor == "val_acc" and task == "regression":
        raise ConfigError("regularization.monitor = 'val_acc' has no meaning for regression; allowed: val_loss")
    name = d.dataset if d.dataset != "custom" else label.split("'")[1]
    targets = 1
    if task == "regression":
        y0 = train.y[:1] if isinstance(train, TensorBatches) else _labels(_sample(train.dataset, "train", label)[1]
                                                                           .view(1, -1), 0, "train", label)
        targets = int(y0[0].numel())
    return DataBundle(name=name, task=task, n_classes=max(n_classes, 1), input_shape=shape, train=train, val=val,
                      class_names=[str(c) for c in classes or []], head=cfg.model.head, n_targets=targets)
