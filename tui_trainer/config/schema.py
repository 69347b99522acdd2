"""The config's shape: every section and key as a dataclass field whose metadata holds its help text and its
rule (``choices``, ``min``/``max``, ...), and the names the rules draw on. Stdlib only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SECTIONS = ("data", "model", "optimizer", "regularization", "train")

SYNTHETIC_DATASETS = ("spirals", "moons", "circles", "xor", "blobs", "regression-toy", "points")
REGRESSION_DATASETS = ("regression-toy", "points")
IMAGE_DATASETS = ("fashion-mnist", "mnist", "cifar10", "imagefolder")
DATASETS = SYNTHETIC_DATASETS + IMAGE_DATASETS + ("csv", "custom")
AUGMENTATIONS = ("hflip", "vflip", "crop", "rotate", "jitter")
ARCHS = ("mlp", "cnn", "resnet", "custom")
PLUGIN_PREFIX = "plugin:"  # model.arch / data.dataset = "plugin:NAME": an installed package's entry point
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
    if isinstance(default, dict):
        return field(default_factory=lambda d=default: dict(d), metadata={"help": help, **rule})
    return field(default=default, metadata={"help": help, **rule})


@dataclass
class DataConfig:
    """What to train on and how to batch it."""

    dataset: str = _f("spirals", "dataset to train on: a built-in one, custom (data.factory) or plugin:<name> (an "
                                 "installed package's entry point)", choices=DATASETS, plugin="data")
    factory: str = _f("", "your own data (dataset = custom): 'package.module:function' or 'path/to/file.py:function' "
                          "(relative to the preset file; on the command line to the current folder), called as "
                          "function(**args); returns CustomData(train, val, classes) or a dict of them", factory=True)
    args: dict = _f({}, "keyword arguments of the data factory (a TOML table, e.g. {n = 512})")
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

    arch: str = _f("mlp", "architecture: mlp, cnn, resnet, torchvision:<name>, custom (model.factory) or plugin:<name> "
                          "(an installed package's entry point)", choices=ARCHS, prefixed="torchvision:", plugin="model")
    factory: str = _f("", "your own model (arch = custom): 'package.module:function' or 'path/to/file.py:function' "
                          "(relative to the preset file; on the command line to the current folder), called as "
                          "function(*, input_shape, num_outputs, **args); returns an nn.Module", factory=True)
    args: dict = _f({}, "keyword arguments of the model factory (a TOML table, e.g. {width = 32})")
    loss: str = _f("", "your own loss (optional, any model): 'package.module:function' or 'path/to/file.py:function', "
                       "called with no arguments; returns a callable (outputs, targets) -> the batch's mean loss, e.g. "
                       "an nn.Module ('' = cross-entropy, or MSE for regression)", factory=True)
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
    threads: int = _f(0, "CPU threads of the run: 0 = share the cores this process may use among this user's live runs "
                         "on this machine (re-balanced as runs start and end; a GPU run takes at most 2), N = exactly "
                         "N, -1 = torch's own default (one per core, whatever else runs)", min=-1, max=4096)
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
