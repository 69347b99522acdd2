"""Run configuration: dataclasses, TOML preset loading, validation and overrides.

Stdlib only (no torch): the CLI's ``--help``, the app's first frame and the app's
as-you-type validation all use this module before torch has been imported.

Every field carries its rule in ``metadata`` (``help``, ``choices``, ``min``/``max``),
so one validator serves preset files, ``--set section.key=value`` overrides and the
app's input fields, and error messages can name what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tui_trainer.errors import ConfigError  # re-exported: config is where users look

SECTIONS = ("data", "model", "optimizer", "regularization", "train")

SYNTHETIC_DATASETS = ("spirals", "moons", "circles", "xor", "blobs", "regression-toy")
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
    val_fraction: float = _f(0.2, "share of samples held out for validation", min=0.01, max=0.9)
    batch_size: int = _f(64, "samples per training step", min=1, max=1_000_000)
    subset: int = _f(0, "use only this many training samples (0 = all)", min=0)
    root: str = _f("", "image folder with train/ and valid/ (or class) subfolders")
    path: str = _f("", "CSV file for the csv dataset")
    target: str = _f("target", "CSV column to predict")
    task: str = _f("auto", "classification or regression (csv)", choices=("auto", "classification", "regression"))
    image_size: int = _f(32, "side in pixels images are resized to (imagefolder)", min=8, max=1024)
    augment: list = _f([], "training-only augmentations", items=AUGMENTATIONS)
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
    dropout: float = _f(0.0, "dropout probability after each hidden layer", min=0.0, max=1.0, max_open=True)
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

    weight_decay: float = _f(0.0, "L2 penalty on weight matrices (not biases or norms)", min=0.0, max=10.0)
    l1: float = _f(0.0, "L1 penalty on weight matrices", min=0.0, max=10.0)
    label_smoothing: float = _f(0.0, "label smoothing of cross-entropy", min=0.0, max=1.0, max_open=True)
    grad_clip: float = _f(0.0, "clip the gradient norm to this (0 = off)", min=0.0)
    early_stopping: bool = _f(False, "stop when the monitored metric stops improving")
    patience: int = _f(5, "epochs without improvement before stopping", min=1)
    min_delta: float = _f(0.0, "smallest change that counts as improvement", min=0.0)
    monitor: str = _f("val_loss", "metric early stopping and best.pt watch", choices=("val_loss", "val_acc"))
    restore_best: bool = _f(True, "restore the best weights when early stopping fires")


@dataclass
class TrainConfig:
    """How long, where and how fast to train."""

    epochs: int = _f(10, "epochs to train", min=1, max=100_000)
    seed: int = _f(0, "random seed (data split, init, shuffling, dropout)", min=0)
    device: str = _f("auto", "device to train on", choices=DEVICES)
    log_every: int = _f(20, "steps between progress reports (each one is a host sync)", min=1)
    compile: bool = _f(False, "GPU: replay the whole training step as one CUDA graph; CPU: compile the forward pass")
    amp: str = _f("none", "mixed precision autocast", choices=("none", "bf16"))
    channels_last: bool = _f(False, "channels_last memory format for CNNs")
    diagnostics: bool = _f(True, "per-layer gradient health, dead units and curve hints at each log interval")


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
        if self.data.dataset == "regression-toy" or self.data.task == "regression":
            return "regression"
        return "classification"


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
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{name} = {value!r}: must be a whole number {_describe_range(meta)}".rstrip())
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} = {value!r}: must be a number {_describe_range(meta)}".rstrip())
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{name} = {value!r}: must be a finite number {_describe_range(meta)}".rstrip())
    if kind in ("int", "float"):
        lo, hi = meta.get("min"), meta.get("max")
        bad = (lo is not None and (value < lo or (meta.get("min_open") and value == lo))) or (
            hi is not None and (value > hi or (meta.get("max_open") and value == hi))
        )
        if bad:
            raise ConfigError(f"{name} = {value!r}: must be {_describe_range(meta)}")
        return value
    if kind == "str":
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
    d = cfg.data
    if d.dataset == "imagefolder" and not d.root:
        raise ConfigError("data.root is empty: the imagefolder dataset needs a folder with class subfolders")
    if d.dataset == "csv" and not d.path:
        raise ConfigError("data.path is empty: the csv dataset needs a CSV file")
    if cfg.task == "regression" and cfg.regularization.monitor == "val_acc":
        raise ConfigError("regularization.monitor = 'val_acc' has no meaning for regression; allowed: val_loss")
    if d.dataset in SYNTHETIC_DATASETS and cfg.model.arch != "mlp":
        raise ConfigError(f"model.arch = {cfg.model.arch!r} needs images; 2-D dataset {d.dataset!r} allows: mlp")


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


def user_preset_dir() -> Path:
    """Where the user's own presets live (``$TUI_TRAINER_HOME/presets`` or the XDG config dir)."""
    home = os.environ.get("TUI_TRAINER_HOME")
    if home:
        return Path(home) / "presets"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tui-trainer" / "presets"


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


def save_user_preset(cfg: RunConfig, name: str) -> Path:
    """Write ``cfg`` as the user's preset ``name``; returns the file."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ConfigError(f"preset name {name!r}: use letters, digits, '-' and '_' only")
    folder = user_preset_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    cfg = dataclasses.replace(cfg, name=name)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(to_toml(cfg), encoding="utf-8")
    os.replace(tmp, path)
    return path
