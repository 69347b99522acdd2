"""Run configuration: dataclasses, TOML preset loading, validation and overrides.

Stdlib only (no torch): the CLI's ``--help``, the app's first frame and the app's
as-you-type validation all use this module before torch has been imported.

Every field carries its rule in ``metadata`` (``help``, ``choices``, ``min``/``max``),
so one validator serves preset files, ``--set section.key=value`` overrides and the
app's input fields, and error messages can name what is allowed.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tui_trainer.errors import ConfigError  # re-exported: config is where users look

SECTIONS = ("data", "model", "optimizer", "regularization", "train")

SYNTHETIC_DATASETS = ("spirals", "moons", "circles", "xor", "blobs", "regression-toy", "points")
REGRESSION_DATASETS = ("regression-toy", "points")
IMAGE_DATASETS = ("fashion-mnist", "mnist", "cifar10", "imagefolder")
DATASETS = SYNTHETIC_DATASETS + IMAGE_DATASETS + ("csv",)
AUGMENTATIONS = ("hflip", "vflip", "crop", "rotate", "jitter")
ARCHS = ("mlp", "cnn", "resnet")
TORCHVISION_ARCHS = ("resnet18", "mobilenet_v3_small", "densenet121")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "gelu")
INITS = ("default", "xavier", "kaiming", "normal", "zeros")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "adamax")
SCHEDULES = ("none", "step", "exponential", "cosine", "one-cycle", "cyclic", "plateau")
DEVICES = ("auto", "cpu", "cuda", "mps")
SCALINGS = ("auto", "none", "unit", "standardize", "given")
SPLITS = ("auto", "official", "stratified")
SHUFFLES = ("seeded", "global", "global-train")
HEADS = ("logits", "binary", "log_softmax")
STOP_RULES = ("no_improvement", "worse_in_a_row")
# datasets that come with their own validation data (an image folder only when it has train/ and valid/)
OFFICIAL_SPLIT_DATASETS = ("fashion-mnist", "mnist", "cifar10", "imagefolder", "regression-toy", "points")
IMAGE_CHANNELS = {"fashion-mnist": 1, "mnist": 1, "cifar10": 3, "imagefolder": 3}
MAX_EXPLICIT_WEIGHTS = 4096  # model.init_weights is for tiny, hand-worked networks


def _f(default: Any, help: str, **rule: Any) -> Any:
    """A dataclass field whose metadata holds its help text and validation rule."""
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help, **rule})
    return field(default=default, metadata={"help": help, **rule})


@dataclass
class DataConfig:
    """What to train on and how to batch it."""

    dataset: str = _f("spirals", "dataset to train on", choices=DATASETS)
    n_samples: int = _f(1000, "samples generated for a synthetic dataset", min=10, max=10_000_000)
    noise: float = _f(0.1, "noise of a synthetic dataset", min=0.0, max=10.0)
    n_classes: int = _f(2, "classes of spirals and blobs", min=2, max=10)
    val_fraction: float = _f(0.2, "share of samples held out for validation (split = stratified, or auto on data "
                                   "without its own validation set)", min=0.01, max=0.9)
    split: str = _f("auto", "validation data: official (the dataset's own test split, an image folder's valid/, "
                            "the toy's clean points), stratified (all data pooled, val_fraction of each class held "
                            "out), auto (official where there is one, else a random val_fraction)", choices=SPLITS)
    scaling: str = _f("auto", "input scaling: none (raw values, pixels 0-255), unit (pixels / 255), standardize "
                              "(per-channel mean and std: the dataset's published ones, ImageNet's for image folders, "
                              "the training split's otherwise), given (data.mean and data.std, on pixels / 255 as "
                              "torchvision's Normalize does), auto (standardize; none for the regression toy and "
                              "points)",
                      choices=SCALINGS)
    mean: list[float] = _f([], "per-channel (or per-feature) mean for scaling = given, e.g. [0.5]")
    std: list[float] = _f([], "per-channel (or per-feature) std for scaling = given, e.g. [0.5]", min=0.0,
                          min_open=True)
    seed: int = _f(-1, "seed of the data: noise, split and subset (-1 = train.seed)", min=-1)
    shuffle: str = _f("seeded", "training order: seeded (each epoch's permutation from train.seed and the epoch, "
                                "replayed on resume), global (drawn from torch's global generator as iterating "
                                "DataLoader(train, shuffle=True) then DataLoader(valid, shuffle=True) does, to replay "
                                "a notebook draw for draw), global-train (the same with no validation loader)",
                      choices=SHUFFLES)
    val_points: int = _f(24, "clean validation points of the regression toy, evenly spaced on [-3, 3)", min=1,
                         max=100_000)
    points: list[list[float]] = _f([[1.0, 3.0]], "the (x, y) pairs of the points dataset (trained and validated on)",
                                   row_len=2)
    batch_size: int = _f(64, "samples per training step", min=1, max=1_000_000)
    subset: int = _f(0, "use only this many training samples (0 = all)", min=0)
    root: str = _f("", "image folder with train/ and valid/ (or class) subfolders")
    path: str = _f("", "CSV file for the csv dataset")
    target: str = _f("target", "CSV column to predict")
    task: str = _f("auto", "classification or regression (csv)", choices=("auto", "classification", "regression"))
    image_size: int = _f(32, "side in pixels images are resized to (imagefolder)", min=8, max=1024)
    augment: list = _f([], "training-only augmentations (image datasets)", items=AUGMENTATIONS)
    cache_dir: str = _f("", "where datasets are looked for and downloaded (empty = user cache)")
    device_resident: str = _f("auto", "preload the dataset onto the device", choices=("auto", "always", "never"))
    num_workers: int = _f(2, "DataLoader workers when streaming", min=0, max=64)


@dataclass
class ModelConfig:
    """The architecture and how it is initialised."""

    arch: str = _f("mlp", "architecture: mlp, cnn, resnet or torchvision:<name>", choices=ARCHS, prefixed="torchvision:")
    hidden: list = _f([64, 64], "hidden layer sizes of the MLP", items_min=1)
    activation: str = _f("relu", "activation function", choices=ACTIVATIONS)
    init: str = _f("default", "weight initialisation", choices=INITS)
    batch_norm: bool = _f(False, "batch normalisation after each hidden layer")
    dropout: float | list = _f(0.0, "dropout probability after each hidden layer, or a list with one per hidden "
                                    "layer (mlp)", min=0.0, max=1.0, max_open=True)
    head: str = _f("logits", "output: logits (cross-entropy), binary (one logit, BCE with logits; two classes), "
                             "log_softmax (log-probabilities, NLL loss)", choices=HEADS)
    seed: int = _f(-1, "seed torch's global generator with this right before the weights are drawn, as "
                       "torch.manual_seed before building a model does; dropout continues from it (-1 = no reseed: "
                       "the weights follow train.seed)", min=-1)
    init_weights: list[dict] = _f([], "explicit initial weights of a tiny mlp: one {weight = [[...]], bias = [...]} "
                                      "per linear layer, input to output (overrides init)")
    channels: list = _f([32, 64], "convolution channels per block (cnn)", items_min=1)
    kernel_size: int = _f(3, "convolution kernel size", min=1, max=11)
    padding: int = _f(1, "convolution padding", min=0, max=5)
    stride: int = _f(1, "convolution stride", min=1, max=4)
    pool: str = _f("max", "pooling after each block", choices=("max", "avg", "none"))
    depth: int = _f(2, "residual blocks per stage (resnet)", min=1, max=16)
    width: int = _f(32, "channels of the first stage (resnet)", min=4, max=512)
    pretrained: bool = _f(False, "load pretrained weights (torchvision backbones)")
    freeze_backbone: bool = _f(False, "train only the new head (transfer learning)")


@dataclass
class OptimizerConfig:
    """The optimizer and the learning-rate schedule."""

    name: str = _f("adam", "optimizer", choices=OPTIMIZERS)
    lr: float = _f(1e-3, "learning rate", min=0.0, min_open=True, max=100.0)
    momentum: float = _f(0.9, "momentum (momentum, nesterov, rmsprop)", min=0.0, max=1.0, max_open=True)
    beta1: float = _f(0.9, "Adam beta1", min=0.0, max=1.0, max_open=True)
    beta2: float = _f(0.999, "Adam beta2", min=0.0, max=1.0, max_open=True)
    eps: float = _f(1e-8, "numerical epsilon", min=0.0, min_open=True, max=1.0)
    schedule: str = _f("none", "learning-rate schedule", choices=SCHEDULES)
    step_size: int = _f(10, "epochs between decays (step)", min=1)
    gamma: float = _f(0.5, "decay factor (step, exponential, plateau)", min=0.0, min_open=True, max=1.0)
    max_lr: float = _f(0.0, "peak lr of one-cycle and cyclic (0 = 10 x lr)", min=0.0, max=100.0)
    min_lr: float = _f(0.0, "floor of cosine and plateau", min=0.0, max=100.0)
    plateau_patience: int = _f(2, "epochs without improvement before plateau decays", min=0)


@dataclass
class RegularizationConfig:
    """Everything that fights overfitting or unstable training."""

    weight_decay: float = _f(0.0, "L2 penalty (weight decay) on weight matrices (biases and norms too with "
                                  "decay_biases)", min=0.0, max=10.0)
    l1: float = _f(0.0, "L1 penalty on weight matrices (biases and norms too with decay_biases)", min=0.0, max=10.0)
    decay_biases: bool = _f(False, "weight_decay and l1 also on biases and norm scales, as optimizer(model.parameters(), "
                                   "weight_decay=...) does")
    label_smoothing: float = _f(0.0, "label smoothing of cross-entropy", min=0.0, max=1.0, max_open=True)
    grad_clip: float = _f(0.0, "clip the gradient norm to this (0 = off)", min=0.0)
    early_stopping: bool = _f(False, "stop when the monitored metric stops improving")
    stop_rule: str = _f("no_improvement", "when to stop: no_improvement (patience epochs without a new best) or "
                                          "worse_in_a_row (the metric got worse than the epoch before patience times "
                                          "in a row: the lecture's rule)", choices=STOP_RULES)
    patience: int = _f(5, "epochs the stop rule waits (without improvement, or worse in a row)", min=1)
    min_delta: float = _f(0.0, "smallest change that counts as improvement", min=0.0)
    monitor: str = _f("val_loss", "metric early stopping and best.pt watch", choices=("val_loss", "val_acc"))
    restore_best: bool = _f(True, "restore the best weights when early stopping fires")


@dataclass
class TrainConfig:
    """How long, where and how fast to train."""

    epochs: int = _f(10, "epochs to train", min=1, max=100_000)
    seed: int = _f(0, "random seed: shuffling, dropout, and the data and init unless data.seed and model.seed "
                      "are set", min=0)
    device: str = _f("auto", "device to train on", choices=DEVICES)
    log_every: int = _f(20, "steps between progress reports (each one is a host sync)", min=1)
    compile: str = _f("auto", "auto: on a GPU replay the whole step as one CUDA graph where that is exact, else eager; "
                              "on: also compile the forward pass where the step cannot be captured (a CPU); off: eager",
                      choices=("auto", "on", "off"), bool_alias=True)
    amp: str = _f("none", "mixed precision autocast", choices=("none", "bf16"))
    channels_last: bool = _f(False, "channels_last memory format for CNNs")
    diagnostics: bool = _f(True, "per-layer gradient health, dead units and curve hints at each log interval")
    nproc: int = _f(1, "processes on this machine (one per GPU): more than 1 trains data parallel through torchrun; "
                       "data.batch_size is per process", min=1, max=256)
    sync_batch_norm: bool = _f(False, "data parallel: batch norm statistics over every process's batch (SyncBatchNorm)")


@dataclass
class RunConfig:
    """A whole run: what a preset file holds."""

    name: str = "custom"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (TOML- and checkpoint-safe)."""
        return dataclasses.asdict(self)

    @property
    def task(self) -> str:
        """'regression' or 'classification', as far as the config alone can tell."""
        if self.data.dataset in REGRESSION_DATASETS or self.data.task == "regression":
            return "regression"
        return "classification"

    @property
    def data_seed(self) -> int:
        """The seed of the data's noise, split and subset: ``data.seed``, or ``train.seed`` when it is -1."""
        return self.data.seed if self.data.seed >= 0 else self.train.seed


SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "regularization": RegularizationConfig,
    "train": TrainConfig,
}


# ---------------------------------------------------------------------------
# validation


def _suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def field_spec(section: str, key: str) -> dataclasses.Field:
    """The dataclass field for ``section.key``; raises ConfigError naming what exists."""
    if section not in SECTION_TYPES:
        raise ConfigError(f"unknown section [{section}]{_suggest(section, SECTIONS)}; allowed: {', '.join(SECTIONS)}")
    by_name = {f.name: f for f in fields(SECTION_TYPES[section])}
    if key not in by_name:
        raise ConfigError(
            f"unknown key {section}.{key}{_suggest(key, list(by_name))}; allowed: {', '.join(by_name)}"
        )
    return by_name[key]


def _describe_range(meta: dict[str, Any]) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    parts = []
    if lo is not None:
        parts.append(f"{'>' if meta.get('min_open') else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if meta.get('max_open') else '<='} {hi:g}")
    return " and ".join(parts)


def _number(name: str, value: Any, meta: dict[str, Any], whole: bool = False) -> Any:
    """One number checked against ``meta``'s range (an int when ``whole``); raises ConfigError."""
    what = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} = {value!r}: must be {what} {_describe_range(meta)}".rstrip())
    if whole:
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{name} = {value!r}: must be {what} {_describe_range(meta)}".rstrip())
            value = int(value)
    else:
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{name} = {value!r}: must be a finite number {_describe_range(meta)}".rstrip())
    lo, hi = meta.get("min"), meta.get("max")
    bad = (lo is not None and (value < lo or (meta.get("min_open") and value == lo))) or (
        hi is not None and (value > hi or (meta.get("max_open") and value == hi))
    )
    if bad:
        raise ConfigError(f"{name} = {value!r}: must be {_describe_range(meta)}")
    return value


def _literal(value: Any) -> Any:
    """Text typed into a field (``0.2, 0.1`` or ``[0.5]`` or inline tables) as a value; anything else as is."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return tomllib.loads(f"v = [{text}]" if not text.startswith("[") else f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        parsed = ast.literal_eval(text)  # a list of dicts as the app shows it: {'weight': [[1.0]], ...}
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value
    if isinstance(parsed, dict):
        return [parsed]
    return list(parsed) if isinstance(parsed, tuple) else parsed


def _numbers(name: str, value: Any, meta: dict[str, Any], example: str) -> list[float]:
    """A flat list of numbers (a bare number is a list of one)."""
    value = _literal(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{name} = {value!r}: must be a list of numbers like {example}")
    return [_number(name, v, meta) for v in value]


def _matrix(name: str, value: Any, example: str) -> list[list[float]]:
    """A non-empty rectangular list of lists of numbers."""
    if not isinstance(value, list) or not value or not all(isinstance(r, list) and r for r in value):
        raise ConfigError(f"{name} = {value!r}: must be a list of rows of numbers like {example}")
    if len({len(r) for r in value}) != 1:
        raise ConfigError(f"{name}: rows of different lengths {[len(r) for r in value]}; every row needs as many "
                          "numbers")
    return [[_number(name, v, {}) for v in row] for row in value]


def _layers(name: str, value: Any) -> list[dict[str, list]]:
    """``model.init_weights``: one {weight, bias} table per linear layer."""
    value = _literal(value)
    example = "[{weight = [[1.0], [-1.0]], bias = [1.0, 2.0]}, {weight = [[1.0, 2.0]], bias = [-1.0]}]"
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(f"{name} = {value!r}: must be a list of tables like {example}")
    layers, total = [], 0
    for i, table in enumerate(value, start=1):
        extra = set(table) - {"weight", "bias"}
        if extra or "weight" not in table:
            raise ConfigError(f"{name}: layer {i} needs the keys weight (and bias); "
                              f"got {', '.join(sorted(table)) or 'none'}")
        weight = _matrix(f"{name} layer {i} weight", table["weight"], "[[1.0, 2.0]]")
        layer: dict[str, list] = {"weight": weight}
        if "bias" in table:
            bias = _numbers(f"{name} layer {i} bias", table["bias"], {}, "[1.0, 2.0]")
            if len(bias) != len(weight):
                raise ConfigError(f"{name}: layer {i} has {len(weight)} weight rows (outputs) but {len(bias)} biases")
            layer["bias"] = bias
        if i > 1 and len(weight[0]) != len(layers[-1]["weight"]):
            raise ConfigError(f"{name}: layer {i} takes {len(weight[0])} inputs but layer {i - 1} has "
                              f"{len(layers[-1]['weight'])} outputs")
        total += len(weight) * len(weight[0]) + len(layer.get("bias", []))
        layers.append(layer)
    if total > MAX_EXPLICIT_WEIGHTS:
        raise ConfigError(f"{name}: {total} values; explicit weights are for tiny networks (at most "
                          f"{MAX_EXPLICIT_WEIGHTS})")
    return layers


def check_value(section: str, key: str, value: Any) -> Any:
    """Validate (and lightly coerce) one value; return it or raise ConfigError."""
    spec = field_spec(section, key)
    meta = spec.metadata
    name = f"{section}.{key}"
    kind = spec.type if isinstance(spec.type, str) else spec.type.__name__
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} = {value!r}: must be true or false")
        return value
    if kind in ("int", "float"):
        return _number(name, value, meta, whole=kind == "int")
    if kind == "float | list":  # one number, or one per hidden layer
        value = _literal(value) if isinstance(value, str) and "," in value else value
        if isinstance(value, list):
            return [_number(name, v, meta) for v in value]
        return _number(name, value, meta)
    if kind == "list[float]":
        return _numbers(name, value, meta, "[0.5]")
    if kind == "list[list[float]]":
        value = _literal(value)
        if isinstance(value, list) and value and not any(isinstance(v, list) for v in value):
            value = [value]  # one row, as the app shows a single point: [1.0, 3.0]
        rows = _matrix(name, value, "[[1.0, 3.0]]")
        if meta.get("row_len") and len(rows[0]) != meta["row_len"]:
            raise ConfigError(f"{name}: rows of {len(rows[0])} numbers; each row is {meta['row_len']} numbers, "
                              "like [[1.0, 3.0]]")
        return rows
    if kind == "list[dict]":
        return _layers(name, value)
    if kind == "str":
        if isinstance(value, bool) and meta.get("bool_alias"):
            value = "on" if value else "off"  # true/false read as on/off (presets written before "auto" existed)
        if not isinstance(value, str):
            raise ConfigError(f"{name} = {value!r}: must be a string")
        choices = meta.get("choices")
        prefix = meta.get("prefixed")
        if prefix and value.startswith(prefix):
            rest = value[len(prefix):]
            if rest not in TORCHVISION_ARCHS:
                raise ConfigError(
                    f"{name} = {value!r}: unknown backbone{_suggest(rest, TORCHVISION_ARCHS)}; "
                    f"allowed: {', '.join(prefix + a for a in TORCHVISION_ARCHS)}"
                )
            return value
        if choices and value not in choices:
            allowed = list(choices) + ([prefix + a for a in TORCHVISION_ARCHS] if prefix else [])
            raise ConfigError(f"{name} = {value!r}: not allowed{_suggest(value, allowed)}; allowed: {', '.join(allowed)}")
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise ConfigError(f"{name} = {value!r}: must be a list like [64, 32]")
        items = meta.get("items")
        if items is not None:
            for v in value:
                if v not in items:
                    raise ConfigError(
                        f"{name}: {v!r} not allowed{_suggest(str(v), items)}; allowed: {', '.join(items)}"
                    )
            return list(value)
        lo = meta.get("items_min", 1)
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"{name} = {value!r}: must be a list of whole numbers >= {lo}")
        return list(value)
    raise ConfigError(f"{name}: unsupported field type {kind}")  # pragma: no cover - a programming error


def _cross_checks(cfg: RunConfig) -> None:
    d, m = cfg.data, cfg.model
    if d.dataset == "imagefolder" and not d.root:
        raise ConfigError("data.root is empty: the imagefolder dataset needs a folder with class subfolders")
    if d.dataset == "csv" and not d.path:
        raise ConfigError("data.path is empty: the csv dataset needs a CSV file")
    if cfg.task == "regression" and cfg.regularization.monitor == "val_acc":
        raise ConfigError("regularization.monitor = 'val_acc' has no meaning for regression; allowed: val_loss")
    if d.dataset in SYNTHETIC_DATASETS and m.arch != "mlp":
        raise ConfigError(f"model.arch = {m.arch!r} needs images; 2-D dataset {d.dataset!r} allows: mlp")
    if d.augment and d.dataset not in IMAGE_DATASETS:
        raise ConfigError(f"data.augment = {d.augment}: augmentations apply to image datasets "
                          f"({', '.join(IMAGE_DATASETS)}), not to {d.dataset!r}; set data.augment = []")
    _check_data_choices(cfg)
    _check_model_choices(cfg)


def _check_data_choices(cfg: RunConfig) -> None:
    """Scaling, split and the dataset-specific fields agree with the dataset."""
    d = cfg.data
    if d.scaling == "unit" and d.dataset not in IMAGE_DATASETS:
        raise ConfigError(f"data.scaling = 'unit' divides pixels by 255: it applies to image datasets "
                          f"({', '.join(IMAGE_DATASETS)}), not to {d.dataset!r}")
    if d.scaling == "given":
        if not d.mean or not d.std:
            raise ConfigError("data.scaling = 'given' needs data.mean and data.std, e.g. data.mean = [0.5] and "
                              "data.std = [0.5]")
        if len(d.mean) != len(d.std):
            raise ConfigError(f"data.mean has {len(d.mean)} values but data.std has {len(d.std)}; give one per channel")
        channels = IMAGE_CHANNELS.get(d.dataset) or {"points": 1, "regression-toy": 1}.get(d.dataset)
        if d.dataset in SYNTHETIC_DATASETS and d.dataset not in REGRESSION_DATASETS:
            channels = 2
        if channels is not None and len(d.mean) not in (1, channels):
            raise ConfigError(f"data.mean and data.std have {len(d.mean)} values; {d.dataset!r} has {channels} "
                              f"channel(s): give 1 (shared) or {channels}")
    elif d.mean or d.std:
        raise ConfigError(f"data.mean and data.std are used by data.scaling = 'given' only (it is {d.scaling!r}); "
                          "set data.scaling = 'given' or leave them empty")
    if d.split == "official" and d.dataset not in OFFICIAL_SPLIT_DATASETS:
        raise ConfigError(f"data.split = 'official': {d.dataset!r} has no validation split of its own; those that do: "
                          f"{', '.join(OFFICIAL_SPLIT_DATASETS)}; use 'stratified' or 'auto'")
    if d.split == "stratified" and (cfg.task == "regression"):
        raise ConfigError(f"data.split = 'stratified' needs classes; {d.dataset!r} is regression: use 'official' or "
                          "'auto'")


def _check_model_choices(cfg: RunConfig) -> None:
    """Per-layer dropout, the output head and explicit weights agree with the model and the task."""
    d, m = cfg.data, cfg.model
    if isinstance(m.dropout, list):
        if m.arch != "mlp":
            raise ConfigError(f"model.dropout = {m.dropout}: one value per layer applies to mlp; {m.arch!r} takes "
                              "one number")
        if len(m.dropout) != len(m.hidden):
            raise ConfigError(f"model.dropout has {len(m.dropout)} values but model.hidden has {len(m.hidden)} "
                              "layers; give one per hidden layer (or one number for all)")
    if m.head != "logits" and cfg.task == "regression":
        raise ConfigError(f"model.head = {m.head!r} is for classification; {d.dataset!r} is regression: use 'logits'")
    if m.head == "binary":
        classes = {"spirals": d.n_classes, "blobs": d.n_classes, "fashion-mnist": 10, "mnist": 10, "cifar10": 10}
        n = classes.get(d.dataset, 2)
        if n != 2:
            raise ConfigError(f"model.head = 'binary' is one logit for two classes; {d.dataset!r} has {n} here: "
                              "use 'logits'")
    if m.init_weights:
        if m.arch != "mlp":
            raise ConfigError(f"model.init_weights applies to mlp; {m.arch!r} draws its weights (model.init)")
        layers = len(m.hidden) + 1
        if len(m.init_weights) != layers:
            raise ConfigError(f"model.init_weights has {len(m.init_weights)} layers; an mlp with hidden = {m.hidden} "
                              f"has {layers} linear layers")
        for i, (layer, width) in enumerate(zip(m.init_weights, m.hidden, strict=False), start=1):
            if len(layer["weight"]) != width:
                raise ConfigError(f"model.init_weights: layer {i} has {len(layer['weight'])} weight rows but "
                                  f"model.hidden[{i - 1}] = {width}")


def from_dict(raw: dict[str, Any], source: str = "<config>") -> RunConfig:
    """Build a validated RunConfig from nested dicts (a parsed preset)."""
    cfg = RunConfig()
    for key, value in raw.items():
        if key in ("name", "description"):
            if not isinstance(value, str):
                raise ConfigError(f"{source}: {key} must be a string")
            setattr(cfg, key, value)
            continue
        if key not in SECTION_TYPES:
            allowed = ("name", "description") + SECTIONS
            raise ConfigError(f"{source}: unknown key '{key}'{_suggest(key, allowed)}; allowed: {', '.join(allowed)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a [{key}] table")
        section = getattr(cfg, key)
        for sub, v in value.items():
            try:
                setattr(section, sub, check_value(key, sub, v))
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
    try:
        _cross_checks(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``section.key=value``; the value is read as TOML, else taken as a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. optimizer.lr=0.01")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Return a copy of ``cfg`` with ``section.key=value`` overrides applied and validated."""
    raw = cfg.to_dict()
    for text in overrides:
        section, key, value = parse_override(text)
        try:
            field_spec(section, key)
        except ConfigError as exc:
            raise ConfigError(f"--set {text}: {exc}") from None
        raw[section][key] = value
    return from_dict(raw, source="--set")


def replace(cfg: RunConfig, section: str, **changes: Any) -> RunConfig:
    """A copy of ``cfg`` with some keys of one section changed (validated)."""
    raw = cfg.to_dict()
    raw[section].update(changes)
    return from_dict(raw, source=cfg.name)


# ---------------------------------------------------------------------------
# presets


def builtin_preset_dir() -> Path:
    """Presets shipped inside the package (found by an installed, not only editable, tui-trainer)."""
    return Path(__file__).parent / "presets"


def user_dir(kind: str) -> Path:
    """The one place for user folders: ``$TUI_TRAINER_HOME/<kind>`` when set, else the XDG folder for
    ``kind`` ("presets" under the config home, "state" under the state home), each ending in tui-trainer."""
    home = os.environ.get("TUI_TRAINER_HOME")
    if home:
        return Path(home) / kind
    if kind == "presets":
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "tui-trainer" / "presets"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tui-trainer"


def user_preset_dir() -> Path:
    """Where the user's own presets live (``$TUI_TRAINER_HOME/presets`` or the XDG config dir)."""
    return user_dir("presets")


def user_state_dir() -> Path:
    """Where the app keeps its own logs (``$TUI_TRAINER_HOME/state`` or the XDG state dir)."""
    return user_dir("state")


def list_presets() -> dict[str, Path]:
    """Preset name -> file; the user's presets shadow built-ins of the same name."""
    found: dict[str, Path] = {}
    for folder in (builtin_preset_dir(), user_preset_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = path
    return dict(sorted(found.items()))


def resolve_preset(name_or_path: str) -> Path:
    """A preset name or a path to a .toml file -> an existing file, or ConfigError."""
    candidate = Path(name_or_path).expanduser()
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        if candidate.is_file():
            return candidate
        raise ConfigError(f"preset file not found: {name_or_path}")
    presets = list_presets()
    if name_or_path in presets:
        return presets[name_or_path]
    raise ConfigError(
        f"unknown preset '{name_or_path}'{_suggest(name_or_path, list(presets))}; "
        f"allowed: {', '.join(presets)} or a path to a .toml file"
    )


def load_preset(name_or_path: str) -> RunConfig:
    """Load and validate a preset by name or path."""
    path = resolve_preset(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    raw.setdefault("name", path.stem)
    return from_dict(raw, source=str(path))


def preset_description(path: Path) -> str:
    """The one-line description of a preset file ('' if unreadable)."""
    try:
        return str(tomllib.loads(path.read_text(encoding="utf-8")).get("description", ""))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return "(unreadable)"


# ---------------------------------------------------------------------------
# TOML writing (tomllib only reads)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (model.init_weights)
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(cfg: RunConfig) -> str:
    """Serialise a config as a preset file that ``load_preset`` reads back to an equal config."""
    raw = cfg.to_dict()
    lines = [f"name = {_toml_value(raw['name'])}", f"description = {_toml_value(raw['description'])}"]
    for section in SECTIONS:
        lines.append("")
        lines.append(f"[{section}]")
        for key, value in raw[section].items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _free_name(name: str) -> str:
    """``name-mine`` (or ``name-mine-2``, ...): a name no built-in or user preset has."""
    taken = set(list_presets())
    candidate, n = f"{name}-mine", 2
    while candidate in taken:
        candidate, n = f"{name}-mine-{n}", n + 1
    return candidate


def save_user_preset(cfg: RunConfig, name: str) -> Path:
    """Write ``cfg`` as the user's preset ``name``; returns the file."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ConfigError(f"preset name {name!r}: use letters, digits, '-' and '_' only")
    if (builtin_preset_dir() / f"{name}.toml").is_file():
        raise ConfigError(f"preset name {name!r} is taken by a built-in preset; choose another, e.g. '{_free_name(name)}'")
    folder = user_preset_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    cfg = dataclasses.replace(cfg, name=name)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(to_toml(cfg), encoding="utf-8")
    os.replace(tmp, path)
    return path
