"""One validator for preset files, ``--set section.key=value`` and the app's fields: each value checked against its
field's rule, with what is allowed and a "did you mean" in every error. Stdlib only."""

from __future__ import annotations

import ast
import dataclasses
import difflib
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from tui_trainer.config import factories
from tui_trainer.config.schema import (
    IMAGE_CHANNELS,
    IMAGE_DATASETS,
    MAX_EXPLICIT_WEIGHTS,
    OFFICIAL_SPLIT_DATASETS,
    PLUGIN_PREFIX,
    REGRESSION_DATASETS,
    SECTION_TYPES,
    SECTIONS,
    SYNTHETIC_DATASETS,
    TORCHVISION_ARCHS,
    RunConfig,
)
from tui_trainer.errors import ConfigError

# ---------------------------------------------------------------------------
# validation


def did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def field_spec(section: str, key: str) -> dataclasses.Field:
    """The dataclass field for ``section.key``; raises ConfigError naming what exists."""
    if section not in SECTION_TYPES:
        raise ConfigError(f"unknown section [{section}]{did_you_mean(section, SECTIONS)}; allowed: {', '.join(SECTIONS)}")
    by_name = {f.name: f for f in fields(SECTION_TYPES[section])}
    if key not in by_name:
        raise ConfigError(
            f"unknown key {section}.{key}{did_you_mean(key, list(by_name))}; allowed: {', '.join(by_name)}"
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


def _table(name: str, value: Any) -> dict[str, Any]:
    """A factory's keyword arguments: a TOML table (typed in a field as ``{width = 32}`` or ``width = 32, n = 2``)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        try:
            value = tomllib.loads(f"v = {text}" if text.startswith("{") else f"v = {{{text}}}")["v"]
        except tomllib.TOMLDecodeError:
            raise ConfigError(f"{name} = {value!r}: must be a table like {{width = 32, depth = 2}}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} = {value!r}: must be a table like {{width = 32, depth = 2}}")
    for key in value:
        if not key.isidentifier():
            raise ConfigError(f"{name}: {key!r} is not a keyword argument name (letters, digits and _)")
    return dict(value)


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
    if kind == "dict":
        return _table(name, value)
    if kind == "str":
        if isinstance(value, bool) and meta.get("bool_alias"):
            value = "on" if value else "off"  # true/false read as on/off (presets written before "auto" existed)
        if not isinstance(value, str):
            raise ConfigError(f"{name} = {value!r}: must be a string")
        if meta.get("factory"):
            return factories.check_factory(name, value)
        if meta.get("plugin") and value.startswith(PLUGIN_PREFIX):
            return factories.check_plugin(name, value, meta["plugin"])
        choices = meta.get("choices")
        prefix = meta.get("prefixed")
        if prefix and value.startswith(prefix):
            rest = value[len(prefix):]
            if rest not in TORCHVISION_ARCHS:
                raise ConfigError(
                    f"{name} = {value!r}: unknown backbone{did_you_mean(rest, TORCHVISION_ARCHS)}; "
                    f"allowed: {', '.join(prefix + a for a in TORCHVISION_ARCHS)}"
                )
            return value
        if choices and value not in choices:
            allowed = list(choices) + ([prefix + a for a in TORCHVISION_ARCHS] if prefix else [])
            raise ConfigError(f"{name} = {value!r}: not allowed{did_you_mean(value, allowed)}; allowed: {', '.join(allowed)}")
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise ConfigError(f"{name} = {value!r}: must be a list like [64, 32]")
        items = meta.get("items")
        if items is not None:
            for v in value:
                if v not in items:
                    raise ConfigError(
                        f"{name}: {v!r} not allowed{did_you_mean(str(v), items)}; allowed: {', '.join(items)}"
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
    _check_code(cfg)
    if d.dataset in SYNTHETIC_DATASETS and m.arch not in ("mlp", "custom") and not m.arch.startswith(PLUGIN_PREFIX):
        raise ConfigError(f"model.arch = {m.arch!r} needs images; 2-D dataset {d.dataset!r} allows: mlp")
    if d.augment and d.dataset not in IMAGE_DATASETS:
        raise ConfigError(f"data.augment = {d.augment}: augmentations apply to image datasets "
                          f"({', '.join(IMAGE_DATASETS)}), not to {d.dataset!r}; set data.augment = []")
    _check_data_choices(cfg)
    _check_model_choices(cfg)


def _check_code(cfg: RunConfig) -> None:
    """A factory is named exactly where ``custom`` is chosen; the user's data comes as the factory gives it."""
    d, m = cfg.data, cfg.model
    for choice, factory, what in ((m.arch, m.factory, "model.arch"), (d.dataset, d.factory, "data.dataset")):
        key = what.split(".")[0] + ".factory"
        if choice == "custom" and not factory:
            raise ConfigError(f"{what} = 'custom' needs {key}: {factories.EXAMPLE}")
        if choice != "custom" and factory:
            raise ConfigError(f"{key} = {factory!r} is used by {what} = 'custom' only (it is {choice!r}); set "
                              f"{what} = 'custom' or {key} = ''")
    for choice, args, what in ((m.arch, m.args, "model"), (d.dataset, d.args, "data")):
        if args and choice != "custom" and not choice.startswith(PLUGIN_PREFIX):
            raise ConfigError(f"{what}.args are passed to your own factory; {choice!r} takes none: leave {what}.args "
                              "empty")
    own_data = d.dataset == "custom" or d.dataset.startswith(PLUGIN_PREFIX)
    if own_data and d.scaling not in ("auto", "none"):
        raise ConfigError(f"data.scaling = {d.scaling!r}: your own data is used as your factory returns it; "
                          "allowed: auto, none (scale it in the factory)")
    if own_data and d.split == "stratified":
        raise ConfigError("data.split = 'stratified': your own data comes with its validation set (or, without one, "
                          "a random val_fraction is held out); allowed: auto, official")


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


def from_dict(raw: dict[str, Any], source: str = "<config>", base: Path | str | None = None) -> RunConfig:
    """Build a validated RunConfig from nested dicts (a parsed preset). A factory's relative file path is made
    absolute against ``base`` (the preset's folder; None: the current folder)."""
    cfg = RunConfig()
    for key, value in raw.items():
        if key in ("name", "description"):
            if not isinstance(value, str):
                raise ConfigError(f"{source}: {key} must be a string")
            setattr(cfg, key, value)
            continue
        if key == "sweep" and isinstance(value, dict):  # a sweep preset's own table: sweep/spec.py reads it
            continue
        if key not in SECTION_TYPES:
            allowed = ("name", "description") + SECTIONS
            raise ConfigError(f"{source}: unknown key '{key}'{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}")
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
    folder = Path(base) if base is not None else Path.cwd()
    cfg.model.factory = factories.absolute_factory(cfg.model.factory, folder)
    cfg.data.factory = factories.absolute_factory(cfg.data.factory, folder)
    cfg.model.loss = factories.absolute_factory(cfg.model.loss, folder)
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
