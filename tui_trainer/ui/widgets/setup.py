"""The setup column: the Preset panel and the config panels, which own the settings being edited.

Every field is validated as the user types with the rules preset files use; the column keeps the
values, which fields are invalid and why, and says so in each panel. Settings the machine cannot run
(a device that is not here) are marked the same way once the helper process has said what is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import on
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Select, Static

from tui_trainer.config import ConfigError, RunConfig, from_dict, load_preset, save_user_preset
from tui_trainer.ui.guard import Guarded
from tui_trainer.ui.messages import Said
from tui_trainer.ui.widgets.fields import ConfigField, SearchRange
from tui_trainer.ui.widgets.panels import PANELS, ConfigPanel, PresetPanel, batch_hint


class SetupColumn(Guarded, VerticalScroll):
    """Preset, Dataset, Architecture, Optimizer and Regularization panels."""

    @dataclass
    class Changed(Message):
        """The settings changed (valid or not); ``model_changed``: the parameter count may differ."""

        column: SetupColumn
        model_changed: bool

        @property
        def control(self) -> SetupColumn:
            """The column."""
            return self.column

    def __init__(self, cfg: RunConfig, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.cfg = cfg
        self.values: dict[str, dict[str, Any]] = cfg.to_dict()
        self.invalid: dict[str, str] = {}
        self.ranges: dict[str, str] = {}  # section.key -> a sweep's range typed into its field: Start starts a sweep
        self.code_check: tuple[str, str] | None = None  # (field, why Start waits): the helper's check of the user's code
        self.devices: list[str] | None = None  # what the helper found here (None until it answered)
        self.every_field = False  # x: the expert fields too, even at their defaults

    def compose(self):
        yield PresetPanel(self.cfg.name, self.cfg.description)

    async def mount_panels(self) -> None:
        """Mount the config panels (after the first frame: ~180 widgets)."""
        if self.query(ConfigPanel):
            return
        await self.mount_all([ConfigPanel(title, self.values, self.every_field) for title in PANELS])
        self._show_errors()

    # -- reading ------------------------------------------------------------------

    def config(self) -> RunConfig:
        """The panels' settings as a validated config; ConfigError says what to fix."""
        if self.invalid:
            raise ConfigError("fix the marked fields first: " + "; ".join(self.invalid.values()))
        return from_dict({**self.values, "name": self.cfg.name, "description": self.cfg.description}, source="panels")

    @property
    def blocked(self) -> str | None:
        """Why Start cannot go yet (a field is invalid, or the user's code is being checked or failed its check)."""
        if self.invalid:
            return "fix the marked fields first: " + "; ".join(self.invalid.values())
        return self.code_check[1] if self.code_check is not None else None

    def show_code_check(self, names_code: bool, error: str | None = None, pending: bool = False) -> None:
        """What the helper's one batch through the user's code said: under the factory's field (the model's when
        the model is the user's, else the data's), Start held until it passed."""
        own_model = self.values["model"]["arch"] == "custom" or self.values["model"]["arch"].startswith("plugin:")
        key = "model.factory" if own_model else "data.factory"
        if not names_code or (error is None and not pending):
            self.code_check = None
        else:
            self.code_check = (key, error or "checking your code: one batch through it…")
        self._show_errors()

    def field(self, dotted: str) -> ConfigField:
        """The field of ``section.key``."""
        return self.query_one(f"#f-{dotted.replace('.', '-').replace('_', '-')}", ConfigField)

    # -- changing -------------------------------------------------------------------

    def load(self, cfg: RunConfig) -> None:
        """Show another config (a preset, a run's own config)."""
        self.cfg = cfg
        self.values = cfg.to_dict()
        self.invalid.clear()
        self.ranges.clear()
        for f in self.query(ConfigField):
            f.set_value(self.values[f.section][f.key])
        self.query_one(PresetPanel).show(cfg.name, cfg.description)
        self._show_fields()
        self._check_device()
        self._show_errors()
        self.post_message(self.Changed(self, True))

    def set_devices(self, devices: list[str], gpus: int = 0) -> None:
        """What the helper found here: a device choice that is not among them is marked invalid; with several
        GPUs the processes field says how to use them all."""
        self.devices = devices
        if gpus > 1 and self.query("#f-train-nproc"):
            self.field("train.nproc").tooltip = f"{gpus} GPUs here: {gpus} processes train data parallel, one per GPU"
        self._check_device()
        self._show_errors()
        self.post_message(self.Changed(self, False))

    def _check_device(self) -> None:
        wanted = self.values["train"]["device"]
        if self.devices is None or wanted == "auto":
            if self.invalid.get("train.device", "").endswith("(not on this machine)"):
                self.invalid.pop("train.device")
            return
        if wanted not in self.devices:
            self.invalid["train.device"] = (f"train.device = {wanted!r}: not available here; allowed here: auto, "
                                            f"{', '.join(self.devices)} (not on this machine)")
        elif self.invalid.get("train.device", "").endswith("(not on this machine)"):
            self.invalid.pop("train.device")

    @on(ConfigField.Changed)
    def _field_changed(self, event: ConfigField.Changed) -> None:
        event.stop()
        f = event.field
        self.ranges.pop(f.dotted, None)
        if event.result.error:
            self.invalid[f.dotted] = event.result.error
        elif isinstance(event.result.value, SearchRange):  # the base config keeps its value; the sweep searches it
            self.invalid.pop(f.dotted, None)
            self.ranges[f.dotted] = event.result.value.text
        else:
            self.invalid.pop(f.dotted, None)
            self.values[f.section][f.key] = event.result.value
        if f.dotted == "train.device" and not event.result.error:
            self._check_device()
        self._show_errors()
        self._show_fields()
        if f.dotted in ("data.batch_size", "train.nproc") and self.query("#batch-hint"):
            hint = self.query_one("#batch-hint", Static)
            hint.update(batch_hint(self.values))
            hint.display = self.values["train"]["nproc"] > 1 and not {"data.batch_size", "train.nproc"} & set(self.invalid)
        self.post_message(self.Changed(self, f.section in ("model", "data") and not event.result.error))

    def toggle_every_field(self) -> None:
        """Show the folded expert fields too, or fold them again."""
        self.every_field = not self.every_field
        self._show_fields()

    def _show_fields(self) -> None:
        for panel in self.query(ConfigPanel):
            panel.show_fields(self.values, self.every_field)

    def _show_errors(self) -> None:
        for panel in self.query(ConfigPanel):
            keys = {f"{s}.{k}" for s, k in PANELS[panel.title]}
            errors = [msg for key, msg in self.invalid.items() if key in keys]
            if self.code_check is not None and self.code_check[0] in keys:
                errors.append(self.code_check[1])
            errors += [f"{key.split('.', 1)[1]}: a sweep searches it (r starts it)" for key in self.ranges if key in keys]
            error = panel.query_one(".panel-error", Static)
            error.update("\n".join(errors))
            error.display = bool(errors)  # no blank row in every panel
            for f in panel.query(ConfigField):
                f.set_class(f.dotted in self.invalid, "-invalid")

    @on(Select.Changed, "#preset-select")
    def _preset_chosen(self, event: Select.Changed) -> None:
        event.stop()
        chosen = event.select.value  # now, not when the event was posted
        if chosen is Select.BLANK or chosen == self.cfg.name:
            return
        try:
            cfg = load_preset(str(chosen))
        except ConfigError as exc:
            self.post_message(Said(str(exc), "error"))
            return
        self.load(cfg)
        self.post_message(Said(f"preset {cfg.name}: {cfg.description}"))

    @on(Button.Pressed, "#preset-save")
    def _save_preset(self, event: Button.Pressed) -> None:
        event.stop()
        name = self.query_one("#preset-name", Input).value.strip()
        try:
            path = save_user_preset(self.config(), name)
        except ConfigError as exc:
            self.post_message(Said(str(exc), "error"))
            return
        self.cfg = load_preset(str(path))
        self.query_one(PresetPanel).refresh_list(self.cfg.name, self.cfg.description)
        self.post_message(Said(f"saved preset {name} to {path}"))
        self.post_message(self.Changed(self, False))  # the title bar shows the preset's new name
        self.app.notify(f"saved preset {name}")

    def set_locked(self, locked: bool) -> None:
        """Locked while a run trains from these settings."""
        self.disabled = locked

    def show_param_count(self, text: str) -> None:
        """The parameter count of the panels' model, under the Architecture panel (once it is mounted)."""
        for label in self.query("#param-count").results(Static):
            label.update(text)

    def focus_preset(self) -> bool:
        """Give the preset list the focus, if it can take it (the panels are shown and not locked)."""
        select = self.query_one("#preset-select", Select)
        if not (select.focusable and self.display):
            return False
        select.focus()
        return True

    def open_preset_list(self) -> None:
        """Open the preset list (type a name to jump to it, Enter picks it)."""
        select = self.query_one("#preset-select", Select)
        select.focus()
        select.expanded = True
