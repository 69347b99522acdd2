"""The setup panels (left column): Preset, Dataset, Architecture, Optimizer, Regularization."""

from __future__ import annotations

import os
from typing import Any

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Static

from tui_trainer.config import (
    IMAGE_DATASETS,
    PLUGIN_PREFIX,
    REGRESSION_DATASETS,
    SYNTHETIC_DATASETS,
    RunConfig,
    list_presets,
)
from tui_trainer.ui.widgets.fields import CompactButton, CompactInput, CompactSelect, ConfigField

PANELS: dict[str, list[tuple[str, str]]] = {
    "Dataset": [("data", "dataset"), ("data", "factory"), ("data", "args"), ("data", "batch_size"), ("data", "split"),
                ("data", "val_fraction"),
                ("data", "scaling"), ("data", "mean"), ("data", "std"), ("data", "n_samples"),
                ("data", "noise"), ("data", "n_classes"), ("data", "val_points"), ("data", "points"),
                ("data", "image_size"), ("data", "augment"), ("data", "root"), ("data", "path"), ("data", "target"),
                ("data", "subset"), ("data", "shuffle"), ("data", "seed")],
    "Architecture": [("model", "arch"), ("model", "factory"), ("model", "args"), ("model", "loss"), ("model", "hidden"),
                     ("model", "channels"), ("model", "pool"),
                     ("model", "depth"), ("model", "width"), ("model", "activation"), ("model", "head"),
                     ("model", "init"), ("model", "init_weights"), ("model", "seed"),
                     ("model", "batch_norm"), ("model", "pretrained"), ("model", "freeze_backbone")],
    "Optimizer": [("optimizer", "name"), ("optimizer", "lr"), ("optimizer", "momentum"), ("optimizer", "beta1"),
                  ("optimizer", "beta2"), ("optimizer", "schedule"), ("optimizer", "step_size"),
                  ("optimizer", "gamma"), ("train", "epochs"), ("train", "seed"), ("train", "device"),
                  ("train", "nproc"), ("train", "threads"), ("train", "compile")],
    "Regularization": [("regularization", "weight_decay"), ("regularization", "l1"),
                       ("regularization", "decay_biases"), ("model", "dropout"),
                       ("regularization", "label_smoothing"), ("regularization", "grad_clip"),
                       ("regularization", "early_stopping"), ("regularization", "stop_rule"),
                       ("regularization", "patience"), ("regularization", "min_delta"), ("regularization", "monitor"),
                       ("regularization", "restore_best")],
}

# Knobs most runs leave alone: folded away unless the settings give them a value other than the default, or the
# person asks for every field (x). What stays is what the lecture's topics and a first run need, so that at 120x36
# all five panels show without scrolling (the lecture presets, which set many of these, show them).
EXPERT = {("model", "loss"), ("data", "split"), ("data", "scaling"), ("data", "mean"), ("data", "std"), ("data", "n_classes"),
          ("data", "val_points"), ("data", "points"), ("data", "image_size"), ("data", "subset"), ("data", "shuffle"),
          ("data", "seed"), ("model", "pool"), ("model", "head"), ("model", "init"), ("model", "init_weights"),
          ("model", "seed"), ("optimizer", "beta1"), ("optimizer", "beta2"), ("train", "seed"), ("train", "nproc"),
          ("train", "threads"), ("train", "compile"), ("regularization", "decay_biases"), ("regularization", "label_smoothing"),
          ("regularization", "grad_clip"), ("regularization", "stop_rule"), ("regularization", "min_delta"),
          ("regularization", "monitor"), ("regularization", "restore_best")}
DEFAULTS: dict[str, dict[str, Any]] = RunConfig().to_dict()

LABELS = {("train", "epochs"): "epochs", ("train", "device"): "device", ("train", "compile"): "compile step",
          ("train", "nproc"): "processes", ("train", "threads"): "CPU threads",
          ("train", "seed"): "seed", ("optimizer", "name"): "optimizer",
          ("regularization", "weight_decay"): "weight decay L2", ("regularization", "l1"): "L1",
          ("regularization", "decay_biases"): "decay biases", ("data", "seed"): "data seed",
          ("model", "seed"): "init seed", ("model", "init_weights"): "init weights",
          ("data", "val_points"): "val points", ("data", "mean"): "mean (given)", ("data", "std"): "std (given)"}

# datasets whose validation data is fixed: their own test split (an image folder may or may not have one)
_OWN_VALIDATION = ("fashion-mnist", "mnist", "cifar10", *REGRESSION_DATASETS)


def applies(section: str, key: str, values: dict[str, dict[str, Any]]) -> bool:
    """Whether a field means anything for the current choices (others are hidden)."""
    d, m, o, r = values["data"], values["model"], values["optimizer"], values["regularization"]
    synthetic, arch = d["dataset"] in SYNTHETIC_DATASETS, m["arch"]
    own_model = arch == "custom" or arch.startswith(PLUGIN_PREFIX)  # the user's own code: its own knobs (args)
    own_data = d["dataset"] == "custom" or d["dataset"].startswith(PLUGIN_PREFIX)
    regression = d["dataset"] in REGRESSION_DATASETS or d["task"] == "regression"  # as RunConfig.task
    rules = {
        ("data", "n_samples"): synthetic and d["dataset"] != "points",
        ("data", "noise"): synthetic and d["dataset"] != "points",
        ("data", "n_classes"): d["dataset"] in ("spirals", "blobs"),
        ("data", "val_points"): d["dataset"] == "regression-toy", ("data", "points"): d["dataset"] == "points",
        ("data", "split"): d["dataset"] not in REGRESSION_DATASETS,
        ("data", "val_fraction"): d["split"] == "stratified" or (d["split"] == "auto"
                                                                  and d["dataset"] not in _OWN_VALIDATION),
        ("data", "mean"): d["scaling"] == "given", ("data", "std"): d["scaling"] == "given",
        ("data", "image_size"): d["dataset"] == "imagefolder", ("data", "root"): d["dataset"] == "imagefolder",
        ("data", "augment"): d["dataset"] in IMAGE_DATASETS,
        ("data", "path"): d["dataset"] == "csv", ("data", "target"): d["dataset"] == "csv",
        ("model", "factory"): arch == "custom", ("model", "args"): own_model,
        ("model", "loss"): own_model or bool(m["loss"]),  # any model may take one; offered beside your own
        ("data", "factory"): d["dataset"] == "custom", ("data", "args"): own_data,
        ("data", "scaling"): not own_data,
        ("model", "activation"): not own_model, ("model", "batch_norm"): not own_model,
        ("model", "dropout"): not own_model,
        ("model", "hidden"): arch in ("mlp", "cnn"), ("model", "channels"): arch == "cnn", ("model", "pool"): arch == "cnn",
        ("model", "depth"): arch == "resnet", ("model", "width"): arch == "resnet",
        ("model", "pretrained"): arch.startswith("torchvision:"),
        ("model", "freeze_backbone"): arch.startswith("torchvision:"),
        ("model", "init"): not arch.startswith("torchvision:") and not own_model,
        ("model", "init_weights"): arch == "mlp" and (synthetic or bool(m["init_weights"])),  # tiny nets: 1-2 inputs
        ("model", "head"): not regression,
        ("optimizer", "momentum"): o["name"] in ("momentum", "nesterov"),
        ("optimizer", "beta1"): o["name"] in ("adam", "adamw", "adamax"),
        ("optimizer", "beta2"): o["name"] in ("adam", "adamw", "adamax"),
        ("optimizer", "step_size"): o["schedule"] == "step",
        ("optimizer", "gamma"): o["schedule"] in ("step", "exponential", "plateau"),
        ("regularization", "decay_biases"): r["weight_decay"] > 0 or r["l1"] > 0,
        ("regularization", "label_smoothing"): not regression,
        ("regularization", "patience"): r["early_stopping"], ("regularization", "min_delta"): r["early_stopping"],
        ("regularization", "monitor"): r["early_stopping"], ("regularization", "stop_rule"): r["early_stopping"],
        ("regularization", "restore_best"): r["early_stopping"],
    }
    return rules.get((section, key), True)


def shown(section: str, key: str, values: dict[str, dict[str, Any]], every_field: bool = False) -> bool:
    """Whether a field is on screen: it applies to these choices, and it is an everyday one, or the settings give
    it a value of their own, or the person asked for every field."""
    if not applies(section, key, values):
        return False
    return every_field or (section, key) not in EXPERT or values[section][key] != DEFAULTS[section][key]


def batch_hint(values: dict[str, dict[str, Any]]) -> str:
    """What data.batch_size means with several processes (each takes that many a step)."""
    bs, n = values["data"]["batch_size"], values["train"]["nproc"]
    hint = f"{bs} per process, {bs * n} in all (data parallel over {n} processes)"
    cores = os.cpu_count() or 1
    if n > cores and not str(values["train"]["device"]).startswith("cuda"):
        hint += f"; more processes than this machine's {cores} CPU cores: they will take turns"
    return hint


class ConfigPanel(Vertical):
    """A bordered panel of config fields."""

    def __init__(self, title: str, values: dict[str, dict[str, Any]], every_field: bool = False) -> None:
        super().__init__(classes="panel", id=f"panel-{title.lower()}")
        self.border_title = title
        self.title, self.values, self.every_field = title, values, every_field

    def compose(self) -> ComposeResult:
        for section, key in PANELS[self.title]:
            f = ConfigField(section, key, self.values[section][key], LABELS.get((section, key)))
            f.display = shown(section, key, self.values, self.every_field)
            yield f
        if self.title == "Architecture":
            yield Static("params: …", id="param-count", classes="hint")
        if self.title == "Dataset":
            hint = Static(batch_hint(self.values), id="batch-hint", classes="hint")
            hint.display = self.values["train"]["nproc"] > 1
            yield hint
        yield Static("", classes="panel-error")

    def on_mount(self) -> None:
        self.show_fields(self.values, self.every_field)

    def show_fields(self, values: dict[str, dict[str, Any]], every_field: bool) -> None:
        """Show the fields that apply (folding the expert ones unless asked for); the border says how many are
        folded and how to see them."""
        self.values, self.every_field = values, every_field
        foldable = 0
        for f in self.query(ConfigField):
            f.display = (shown(f.section, f.key, values, every_field)  # never hide an error, nor a range a sweep searches
                         or f.has_class("-invalid") or f.has_class("-range"))
            foldable += applies(f.section, f.key, values) and not shown(f.section, f.key, values)
        self.border_subtitle = "" if not foldable else "x: fewer" if every_field else f"x: {foldable} more"


class Description(Widget):
    """A preset's description: wrapped to the panel, at most ``MAX_LINES`` rows (a long one ends in "…"; the whole
    text is its tooltip and the Log tab's first line), so the panels below stay on screen."""

    MAX_LINES = 4
    DEFAULT_CSS = "Description { height: auto; width: 100%; color: $text-muted; }"

    def __init__(self, text: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.text = text
        self.tooltip = text or None

    def update(self, text: str) -> None:
        """Show another description."""
        self.text = text
        self.tooltip = text or None
        self.refresh(layout=True)

    def lines(self, width: int) -> list[Text]:
        """The rows drawn at ``width``: the wrapped text, the last kept row ending in "…" when more was cut."""
        width = max(width, 1)
        wrapped = list(Text(self.text).wrap(self.app.console, width)) if self.text else []
        if len(wrapped) <= self.MAX_LINES:
            return wrapped
        kept = wrapped[: self.MAX_LINES]
        last = kept[-1]
        last.rstrip()
        last.truncate(width - 1)
        last.append("…")
        return kept

    def get_content_height(self, container, viewport, width: int) -> int:  # noqa: ANN001 - Textual's signature
        return len(self.lines(width))

    def render(self) -> RenderResult:
        return Text("\n").join(self.lines(self.size.width))


class PresetPanel(Vertical):
    """Choose a preset (built-in or the user's own) or save the panels as one."""

    def __init__(self, current: str, description: str = "") -> None:
        super().__init__(classes="panel", id="panel-preset")
        self.border_title = "Preset"
        self.current, self.description = current, description

    def _options(self, current: str) -> list[tuple[str, str]]:
        names = list(list_presets())
        if current not in names:
            names.insert(0, current)
        return [(n, n) for n in names]

    def compose(self) -> ComposeResult:
        yield CompactSelect(self._options(self.current), value=self.current, allow_blank=False, id="preset-select",
                            type_to_search=True)
        with Horizontal(classes="field"):
            yield CompactInput(placeholder="name for 'save as'", id="preset-name")
            yield CompactButton("Save as preset", id="preset-save")
        yield Description(self.description, id="preset-description")

    def show(self, name: str, description: str) -> None:
        """Show ``name`` as chosen and its description (wrapped, never cut); posts no change of its own."""
        self.current, self.description = name, description
        select = self.query_one("#preset-select", CompactSelect)
        with select.prevent(CompactSelect.Changed):
            if name not in {value for _label, value in select._options}:
                select.set_options(self._options(name))
            if select.value != name:
                select.value = name
        self.query_one("#preset-description", Description).update(description)

    def refresh_list(self, name: str, description: str) -> None:
        """Re-read the preset list (a preset was saved) and show ``name``."""
        select = self.query_one("#preset-select", CompactSelect)
        with select.prevent(CompactSelect.Changed):
            select.set_options(self._options(name))
            select.value = name
        self.current, self.description = name, description
        self.query_one("#preset-description", Description).update(description)
