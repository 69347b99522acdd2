"""Config fields built from the config's own metadata, validated as the user types.

One widget per ``section.key``: a Select for choices, a Checkbox for booleans, an Input for
numbers, lists and paths. Every change is checked with ``config.check_value`` (the rules
presets and ``--set`` use) and re-emitted as ``ConfigField.Changed`` with the value or the
reason it was refused.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Button, Checkbox, Input, Label, Select

from tui_trainer.config import PLUGIN_PREFIX, TORCHVISION_ARCHS, ConfigError, check_value, field_spec
from tui_trainer.config.factories import code_forbidden, installed

# Compact controls that are styled once. Textual's ``compact`` reactive defaults to False and adds
# its class after construction, and a class added late restyles the widget on the spot (~5 ms each
# on 2 cores, ~60 controls at start-up: a third of a second before the first frame). These
# default to True and get the class at construction, so the toggle finds nothing to do. Inputs
# likewise start with "-valid", the class their first validation would add.
COMPACT = "-textual-compact"


class _Compact:
    """Mixin: ``compact=True`` without the late restyle (see above)."""

    compact = reactive(True, toggle_class=COMPACT)
    START_CLASSES = COMPACT

    def __init__(self, *args: Any, classes: str = "", **kwargs: Any) -> None:
        super().__init__(*args, compact=True, classes=f"{classes} {self.START_CLASSES}", **kwargs)


class CompactInput(_Compact, Input):
    """A compact Input."""

    START_CLASSES = f"{COMPACT} -valid"


class CompactSelect(_Compact, Select):
    """A compact Select."""


class CompactCheckbox(_Compact, Checkbox):
    """A compact Checkbox that reads without colour: ``[X]`` ticked, ``[ ]`` not (Textual's own draws
    ``▐X▌`` in both states and tells them apart by colour only)."""

    BUTTON_LEFT = "["
    BUTTON_RIGHT = "]"

    @property
    def BUTTON_INNER(self) -> str:  # noqa: N802 - Textual's name for it
        return "X" if self.value else " "


class CompactButton(_Compact, Button):
    """A compact Button."""


def parse_text(section: str, key: str, text: str) -> Any:
    """What the user typed -> a value for ``check_value`` (lists may omit their brackets)."""
    kind = field_spec(section, key).type
    kind = kind if isinstance(kind, str) else kind.__name__
    text = text.strip()
    if kind == "str":
        return text
    if kind == "list":
        if not text:
            return []
        if not text.startswith("["):
            items = [t.strip() for t in text.split(",") if t.strip()]
            return [int(t) if t.lstrip("-").isdigit() else t for t in items]
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def format_value(value: Any) -> str:
    """A config value as the user would type it."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):  # a factory's keyword arguments, as a TOML table's insides: width = 8, name = "x"
        return ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class SearchRange:
    """A field given a sweep's range instead of a value (``log:1e-4..1e-1``, ``0..0.5``, ``choice:A|B``, as
    ``sweep --param`` takes it): Start then starts a sweep that searches it."""

    text: str


def search_range(section: str, key: str, text: str) -> SearchRange | None:
    """``text`` as a range of ``section.key`` a sweep can search (checked by the sweep's own rules), or None."""
    text = text.strip()
    if ".." not in text and not text.startswith(("log:", "choice:")):
        return None
    from tui_trainer.sweep.space import param_from

    try:
        param_from(f"{section}.{key}", text)
    except ConfigError:
        return None
    return SearchRange(text)


@dataclass(frozen=True)
class FieldResult:
    """A field's current value, or why it is invalid."""

    value: Any
    error: str | None


class ConfigField(Horizontal):
    """A labelled control for one ``section.key``."""

    class Changed(Message):
        """The field's value changed (valid or not)."""

        def __init__(self, field: ConfigField, result: FieldResult) -> None:
            super().__init__()
            self.field, self.result = field, result

        @property
        def control(self) -> ConfigField:
            """The field that changed."""
            return self.field

    def __init__(self, section: str, key: str, value: Any, label: str | None = None) -> None:
        super().__init__(classes="field", id=f"f-{section}-{key}".replace("_", "-"))
        self.section, self.key = section, key
        self.spec = field_spec(section, key)
        self.label = label or key.replace("_", " ")
        self.initial = value
        self.result = FieldResult(value, None)
        self.tooltip = self.spec.metadata.get("help", "")

    @property
    def dotted(self) -> str:
        """``section.key``."""
        return f"{self.section}.{self.key}"

    def _choices(self) -> list[str]:
        choices = list(self.spec.metadata.get("choices", ()))
        if self.spec.metadata.get("prefixed"):
            choices += [f"torchvision:{a}" for a in TORCHVISION_ARCHS]
        if self.spec.metadata.get("plugin") and not code_forbidden():  # installed packages' entry points
            choices += [PLUGIN_PREFIX + name for name in sorted(installed(self.spec.metadata["plugin"]))]
        if isinstance(self.initial, str) and self.initial not in choices:
            choices.append(self.initial)  # a plugin no longer installed: shown, and marked invalid
        return choices

    def compose(self) -> ComposeResult:
        yield Label(self.label, classes="field-label")
        kind = self.spec.type if isinstance(self.spec.type, str) else self.spec.type.__name__
        if kind == "bool":
            yield CompactCheckbox("", value=bool(self.initial), classes="field-control")
        elif self.spec.metadata.get("choices"):
            options = [(c, c) for c in self._choices()]
            yield CompactSelect(options, value=self.initial, allow_blank=False, classes="field-control",
                         type_to_search=True)
        else:
            yield CompactInput(format_value(self.initial), classes="field-control", select_on_focus=False)

    def set_value(self, value: Any) -> None:
        """Show a new value (e.g. from a preset) without waiting for the user."""
        controls = self.query(".field-control")
        if not controls:  # not composed yet: compose shows this value
            self.initial = value
            self._validate_and_post(value)
            return
        control = controls.first()
        if isinstance(control, Checkbox):
            control.value = bool(value)
        elif isinstance(control, Select):
            control.value = value
        else:
            control.value = format_value(value)
        self._validate_and_post(value)

    def _validate_and_post(self, raw: Any, text: str | None = None) -> None:
        try:
            result = FieldResult(check_value(self.section, self.key, raw), None)
        except ConfigError as exc:
            searched = search_range(self.section, self.key, text) if text is not None else None
            result = FieldResult(searched, None) if searched is not None else FieldResult(raw, str(exc))
        if result == self.result:
            return  # no change (the controls report their initial value on mount: 35 needless re-layouts)
        self.result = result
        self.set_class(result.error is not None, "-invalid")
        self.set_class(isinstance(result.value, SearchRange), "-range")  # never folded away (panels.show_fields)
        self.tooltip = result.error or self.spec.metadata.get("help", "")
        self.post_message(self.Changed(self, result))

    # Each handler reads the control's value now, not the one the event carried: a change event still
    # queued from mount must not undo a value set since (a run's config loaded into the panels).

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._validate_and_post(parse_text(self.section, self.key, event.input.value), event.input.value)

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.value is not Select.BLANK:
            self._validate_and_post(event.select.value)

    @on(Checkbox.Changed)
    def _checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._validate_and_post(event.checkbox.value)
