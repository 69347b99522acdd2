"""The search space: ``--param section.key=RANGE`` (or a ``[sweep.params]`` entry) as a ``Param``, checked against the
config's one validator before anything starts. Stdlib only (``study.py`` turns a Param into Optuna's distribution).

The range syntax follows Optuna's own ``suggest_*`` calls, one word each:

* ``LOW..HIGH``: ``suggest_float(low, high)``, or ``suggest_int`` when the key is a whole number;
* ``log:LOW..HIGH``: the same with ``log=True`` (learning rates, weight decay);
* ``LOW..HIGH:STEP``: the same with ``step=STEP`` (a grid inside the range);
* ``choice:A|B|C``: ``suggest_categorical``; each choice is read as TOML (``choice:[64,64]|[256,256]``,
  ``choice:adam|sgd``, ``choice:true|false``).

In a preset's ``[sweep.params]`` table a key may also be a TOML list (the choices) or an inline table of
``suggest_*``'s own arguments: ``optimizer.lr = {low = 1e-4, high = 0.1, log = true}``.

Every key is checked by ``field_spec`` (did-you-mean, and the section a misplaced key lives in) and the values at
both ends of a range, and every choice, by ``check_value``: a range outside what the key allows is one line naming
the key, the range and what is allowed.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, fields
from typing import Any

from tui_trainer.config import SECTION_TYPES, ConfigError, check_value, field_spec

SYNTAX = "LOW..HIGH, log:LOW..HIGH, LOW..HIGH:STEP or choice:A|B|C"
"""What a range may be, for the errors."""
FIXED_BY_THE_SWEEP = {
    "train.device": "the sweep puts each trial on a device of its own (--device for all, --per-gpu for GPUs)",
    "train.nproc": "a trial is one process (use --parallel for trials side by side)",
}
"""Keys a sweep cannot search, and why."""


@dataclass(frozen=True)
class Param:
    """One searched key: a float or int range (optionally log or stepped) or a list of choices."""

    key: str
    """``section.key``: Optuna's parameter name too."""
    kind: str
    """float, int or choice."""
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def section(self) -> str:
        """The config section."""
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        """The key within its section."""
        return self.key.split(".", 1)[1]

    def text(self) -> str:
        """The range in the CLI's syntax (``log:0.0001..0.1``): how lists, errors and spec files show it."""
        if self.kind == "choice":
            return "choice:" + "|".join(_toml_text(c) for c in self.choices)
        step = f":{self.step:g}" if self.step is not None else ""
        return f"{'log:' if self.log else ''}{self.low:g}..{self.high:g}{step}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for spec.json."""
        return {f.name: (list(getattr(self, f.name)) if f.name == "choices" else getattr(self, f.name))
                for f in fields(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Param:
        """From ``to_dict`` (spec.json)."""
        return cls(**{**raw, "choices": tuple(raw.get("choices") or ())})

    def optuna_choices(self) -> tuple[Any, ...]:
        """The choices as Optuna stores them: scalars as they are, lists (model.hidden) as their JSON text (Optuna's
        categorical values are None, bool, int, float or str)."""
        return tuple(c if _scalar(c) else json.dumps(c) for c in self.choices)

    def value_of(self, sampled: Any) -> Any:
        """The config value of what Optuna sampled (a list choice back from its text)."""
        if self.kind == "choice" and isinstance(sampled, str) and not all(_scalar(c) for c in self.choices):
            for choice in self.choices:
                if not _scalar(choice) and json.dumps(choice) == sampled:
                    return choice
        return sampled


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _toml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value).replace(", ", ",") if isinstance(value, list) else f"{value:g}" if isinstance(
        value, float) else str(value)


# ---------------------------------------------------------------------------
# parsing


def parse_param(text: str) -> Param:
    """``section.key=RANGE`` from the command line; ConfigError (one line) when malformed or not allowed."""
    if "=" not in text:
        raise ConfigError(f"--param {text!r}: expected section.key=RANGE, e.g. optimizer.lr=log:1e-4..1e-1 "
                          f"(RANGE: {SYNTAX})")
    key, raw = (part.strip() for part in text.split("=", 1))
    return param_from(key, raw, source=f"--param {text}")


def param_from(key: str, raw: Any, source: str | None = None) -> Param:
    """One key's range from its text (the CLI syntax), a list of choices or an inline table of ``suggest_*``'s
    arguments; checked against the key's rule. ConfigError names ``source`` (default: ``key = raw``)."""
    source = source or f"[sweep.params] {key} = {raw!r}"
    try:
        section, name = _split_key(key)
        spec = _field(section, name)  # unknown key: did-you-mean, by the config's own rules
        if key in FIXED_BY_THE_SWEEP:
            raise ConfigError(f"{key} cannot be searched: {FIXED_BY_THE_SWEEP[key]}")
        kind = spec.type if isinstance(spec.type, str) else spec.type.__name__
        param = _parse(key, kind, raw)
        _check(param)
        return param
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _split_key(key: str) -> tuple[str, str]:
    if key.count(".") != 1 or not all(key.split(".")):
        raise ConfigError(f"{key!r} is not section.key (e.g. optimizer.lr)")
    section, name = key.split(".")
    return section, name


def _field(section: str, name: str) -> Any:
    """The key's field; for a key that lives in another section, the error says which (regularization.dropout:
    did you mean model.dropout?)."""
    try:
        return field_spec(section, name)
    except ConfigError:
        homes = [s for s, cls in SECTION_TYPES.items() if s != section and name in {f.name for f in fields(cls)}]
        if section in SECTION_TYPES and homes:
            raise ConfigError(f"unknown key {section}.{name} (did you mean '{homes[0]}.{name}'? {name} is in "
                              f"[{homes[0]}])") from None
        raise


def _parse(key: str, kind: str, raw: Any) -> Param:
    """The Param of ``raw`` for a key of type ``kind`` (the schema's type name)."""
    if isinstance(raw, list):
        return _choices(key, tuple(raw))
    if isinstance(raw, dict):
        return _from_table(key, kind, raw)
    if not isinstance(raw, str):
        raise ConfigError(f"{raw!r} is not a range; allowed: {SYNTAX}")
    text = raw.strip()
    if text.startswith("choice:"):
        items = [item.strip() for item in text[len("choice:"):].split("|")]
        if not all(items):
            raise ConfigError(f"an empty choice in {text!r}; allowed: choice:A|B|C")
        return _choices(key, tuple(_read(item) for item in items))
    log = text.startswith("log:")
    body = text[len("log:"):] if log else text
    if ".." not in body:
        hint = " (a fixed value is --set, not --param)" if ":" not in body else ""
        raise ConfigError(f"{text!r} is not a range; allowed: {SYNTAX}{hint}")
    bounds, _, step_text = body.partition(":")
    low_text, _, high_text = bounds.partition("..")
    low, high = _number(low_text, text), _number(high_text, text)
    step = _number(step_text, text) if step_text else None
    return _range(key, kind, low, high, log, step, text)


def _from_table(key: str, kind: str, table: dict[str, Any]) -> Param:
    """``{low = .., high = .., log = .., step = ..}`` or ``{choices = [..]}``: suggest_*'s own arguments."""
    allowed = {"low", "high", "log", "step", "choices"}
    if extra := set(table) - allowed:
        raise ConfigError(f"unknown argument(s) {', '.join(sorted(extra))}; allowed: {', '.join(sorted(allowed))}")
    if "choices" in table:
        if set(table) != {"choices"} or not isinstance(table["choices"], list):
            raise ConfigError("choices = [...] stands alone (no low, high, log or step)")
        return _choices(key, tuple(table["choices"]))
    if "low" not in table or "high" not in table:
        raise ConfigError("a range needs low and high, e.g. {low = 1e-4, high = 0.1, log = true}")
    if not isinstance(table.get("log", False), bool):
        raise ConfigError(f"log = {table['log']!r}: must be true or false")
    values = [table["low"], table["high"]] + ([table["step"]] if table.get("step") is not None else [])
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ConfigError("low, high and step must be numbers")
    return _range(key, kind, table["low"], table["high"], table.get("log", False), table.get("step"), str(table))


def _read(item: str) -> Any:
    """One choice as TOML (a number, a list, true/false, a quoted string), else the bare word as a string."""
    try:
        return tomllib.loads(f"v = {item}")["v"]
    except tomllib.TOMLDecodeError:
        return item


def _number(text: str, whole: str) -> float | int:
    text = text.strip()
    try:
        value: float | int = int(text) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:
        raise ConfigError(f"{text!r} in {whole!r} is not a number; allowed: {SYNTAX}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{text!r} in {whole!r} is not a finite number")
    return value


def _choices(key: str, choices: tuple[Any, ...]) -> Param:
    if not choices:
        raise ConfigError("no choices; give at least one, e.g. choice:adam|sgd")
    if len({json.dumps(c, sort_keys=True) for c in choices}) != len(choices):
        raise ConfigError(f"a choice is given twice in {list(choices)}")
    return Param(key, "choice", choices=choices)


def _range(key: str, kind: str, low: float | int, high: float | int, log: bool, step: float | int | None,
           text: str) -> Param:
    """A numeric range for a key of type ``kind``, with Optuna's own rules said before it would raise them."""
    if kind not in ("int", "float", "float | list"):
        what = {"list": "a list", "str": "a word", "bool": "true or false"}.get(kind, kind)
        raise ConfigError(f"{key} is {what}, not a number: search it with choice:A|B (e.g. "
                          f"{'choice:[64,64]|[256,256]' if kind == 'list' else 'choice:A|B'})")
    whole = kind == "int"
    if whole and not all(float(v).is_integer() for v in (low, high, *(() if step is None else (step,)))):
        raise ConfigError(f"{key} is a whole number: give whole ends (and step), e.g. 1..8")
    if not low < high:
        raise ConfigError(f"{text!r}: LOW must be below HIGH")
    if log and low <= 0:
        raise ConfigError(f"{text!r}: a log range needs LOW > 0")
    if step is not None:
        if log:
            raise ConfigError(f"{text!r}: a log range takes no step (Optuna samples it continuously)")
        if step <= 0 or step > high - low:
            raise ConfigError(f"{text!r}: STEP must be > 0 and at most HIGH - LOW")
        steps = (high - low) / step
        if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):  # Optuna would quietly cut HIGH down to a multiple
            raise ConfigError(f"{text!r}: HIGH - LOW must be a multiple of STEP (e.g. {low:g}..{low + int(steps) * step:g}"
                              f":{step:g})")
    if whole:
        return Param(key, "int", int(low), int(high), log, None if step is None else int(step))
    return Param(key, "float", float(low), float(high), log, None if step is None else float(step))


def _check(param: Param) -> None:
    """Both ends of a range, and every choice, by the key's own rule."""
    values = param.choices if param.kind == "choice" else (param.low, param.high)
    for value in values:
        try:
            check_value(param.section, param.name, value)
        except ConfigError as exc:
            what = "a choice" if param.kind == "choice" else "the range"
            raise ConfigError(f"{what} goes outside what the key allows: {exc}") from None


def parse_params(texts: list[str], table: dict[str, Any] | None = None) -> tuple[Param, ...]:
    """The space: a preset's ``[sweep.params]`` table (nested ``section.key`` as TOML reads it), then the
    ``--param`` options, which replace a table's key of the same name. ConfigError when a key comes twice on the
    command line."""
    found: dict[str, Param] = {}
    for section, keys in (table or {}).items():
        if not isinstance(keys, dict):
            raise ConfigError(f"[sweep.params] {section} = {keys!r}: write keys as section.key = RANGE "
                              "(e.g. optimizer.lr = \"log:1e-4..1e-1\")")
        for name, raw in keys.items():
            found[f"{section}.{name}"] = param_from(f"{section}.{name}", raw)
    given: set[str] = set()
    for text in texts:
        param = parse_param(text)
        if param.key in given:
            raise ConfigError(f"--param {text}: {param.key} is given twice; give each key once")
        given.add(param.key)
        found[param.key] = param
    return tuple(found.values())
