"""The setup panels (left column): Preset, Dataset, Architecture, Optimizer, Regularization."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Static

from tui_trainer.config import IMAGE_DATASETS, SYNTHETIC_DATASETS, list_presets
from tui_trainer.ui.widgets.fields import CompactButton, CompactInput, CompactSelect, ConfigField

PANELS: dict[str, list[tuple[str, str]]] = {
    "Dataset": [("data", "dataset"), ("data", "batch_size"), ("data", "val_fraction"), ("data", "n_samples"),
                ("data", "noise"), ("data", "n_classes"), ("data", "image_size"), ("data", "augment"),
                ("data", "root"), ("data", "path"), ("data", "target"), ("data", "subset")],
    "Architecture": [("model", "arch"), ("model", "hidden"), ("model", "channels"), ("model", "pool"),
                     ("model", "depth"), ("model", "width"), ("model", "activation"), ("model", "init"),
                     ("model", "batch_norm"), ("model", "pretrained"), ("model", "freeze_backbone")],
    "Optimizer": [("optimizer", "name"), ("optimizer", "lr"), ("optimizer", "momentum"), ("optimizer", "beta1"),
                  ("optimizer", "beta2"), ("optimizer", "schedule"), ("optimizer", "step_size"),
                  ("optimizer", "gamma"), ("train", "epochs"), ("train", "device"), ("train", "compile")],
    "Regularization": [("regularization", "weight_decay"), ("regularization", "l1"), ("model", "dropout"),
                       ("regularization", "label_smoothing"), ("regularization", "grad_clip"),
                       ("regularization", "early_stopping"), ("regularization", "patience"),
                       ("regularization", "min_delta"), ("regularization", "monitor")],
}

LABELS = {("train", "epochs"): "epochs", ("train", "device"): "device", ("train", "compile"): "compile step",
          ("optimizer", "name"): "optimizer",
          ("regularization", "weight_decay"): "weight decay L2", ("regularization", "l1"): "L1"}


def applies(section: str, key: str, values: dict[str, dict[str, Any]]) -> bool:
    """Whether a field means anything for the current choices (others are hidden)."""
    d, m, o, r = values["data"], values["model"], values["optimizer"], values["regularization"]
    synthetic, arch = d["dataset"] in SYNTHETIC_DATASETS, m["arch"]
    rules = {
        ("data", "n_samples"): synthetic, ("data", "noise"): synthetic,
        ("data", "n_classes"): d["dataset"] in ("spirals", "blobs"),
        ("data", "image_size"): d["dataset"] == "imagefolder", ("data", "root"): d["dataset"] == "imagefolder",
        ("data", "augment"): d["dataset"] in IMAGE_DATASETS,
        ("data", "path"): d["dataset"] == "csv", ("data", "target"): d["dataset"] == "csv",
        ("model", "hidden"): arch in ("mlp", "cnn"), ("model", "channels"): arch == "cnn", ("model", "pool"): arch == "cnn",
        ("model", "depth"): arch == "resnet", ("model", "width"): arch == "resnet",
        ("model", "pretrained"): arch.startswith("torchvision:"),
        ("model", "freeze_backbone"): arch.startswith("torchvision:"),
        ("model", "init"): not arch.startswith("torchvision:"),
        ("optimizer", "momentum"): o["name"] in ("momentum", "nesterov"),
        ("optimizer", "beta1"): o["name"] in ("adam", "adamw", "adamax"),
        ("optimizer", "beta2"): o["name"] in ("adam", "adamw", "adamax"),
        ("optimizer", "step_size"): o["schedule"] == "step",
        ("optimizer", "gamma"): o["schedule"] in ("step", "exponential", "plateau"),
        ("regularization", "label_smoothing"): d["dataset"] != "regression-toy" and d["task"] != "regression",
        ("regularization", "patience"): r["early_stopping"], ("regularization", "min_delta"): r["early_stopping"],
        ("regularization", "monitor"): r["early_stopping"],
    }
    return rules.get((section, key), True)


class ConfigPanel(Vertical):
    """A bordered panel of config fields."""

    def __init__(self, title: str, values: dict[str, dict[str, Any]]) -> None:
        super().__init__(classes="panel", id=f"panel-{title.lower()}")
        self.border_title = title
        self.title, self.values = title, values

    def compose(self) -> ComposeResult:
        for section, key in PANELS[self.title]:
            f = ConfigField(section, key, self.values[section][key], LABELS.get((section, key)))
            f.display = applies(section, key, self.values)  # fields that mean nothing for these choices are hidden
            yield f
        if self.title == "Architecture":
            yield Static("params: …", id="param-count", classes="hint")
        yield Static("", classes="panel-error")


class PresetPanel(Vertical):
    """Choose a preset (built-in or the user's own) or save the panels as one."""

    def __init__(self, current: str) -> None:
        super().__init__(classes="panel", id="panel-preset")
        self.border_title = "Preset"
        self.current = current

    def compose(self) -> ComposeResult:
        names = list(list_presets())
        if self.current not in names:
            names.insert(0, self.current)
        yield CompactSelect([(n, n) for n in names], value=self.current, allow_blank=False, id="preset-select",
                     type_to_search=False)
        with Horizontal(classes="field"):
            yield CompactInput(placeholder="name for 'save as'", id="preset-name")
            yield CompactButton("Save as preset", id="preset-save")
        yield Label("", id="preset-description", classes="hint")
