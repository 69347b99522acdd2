"""A sweep as asked: the preset it searches around, the space, how many trials, how many at once, the pruner, the
metric, the storage and the study. Built from the command line over a preset's ``[sweep]`` table, checked whole
before anything starts (one line, exit 2), and kept in the sweep's folder as spec.json (read back by the sweep
process, ``sweeps``, ``attach`` and ``resume``) and sweep.toml (the same sweep as a preset file: ``tui-trainer sweep
sweeps/<sweep>/sweep.toml`` runs it again). Stdlib only.

A preset file's ``[sweep]`` table::

    [sweep]
    trials = 30
    parallel = 2
    prune = "median"          # median, hyperband or none
    metric = "val_loss"       # val_loss or val_acc (default: regularization.monitor)

    [sweep.params]
    optimizer.lr = "log:1e-4..1e-1"
    model.hidden = [[64, 64], [256, 256]]
    model.dropout = {low = 0.0, high = 0.5}
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tui_trainer.config import ConfigError, RunConfig, from_dict, resolve_preset, to_toml
from tui_trainer.config.presets import read_preset_file
from tui_trainer.config.validate import did_you_mean
from tui_trainer.sweep.slots import Slot
from tui_trainer.sweep.space import Param, parse_params

VERSION = 1
"""Of spec.json: a reader refuses a newer one by name."""
PRUNERS = ("median", "hyperband", "none")
METRICS = ("val_loss", "val_acc")
TABLE_KEYS = ("trials", "parallel", "per_gpu", "prune", "prune_startup", "prune_warmup", "metric", "storage", "study",
              "sampler_seed", "params")
"""What a ``[sweep]`` table may hold."""
MAX_TRIALS = 100_000


@dataclass(frozen=True)
class SweepSpec:
    """Everything the sweep process needs, as plain values (spec.json)."""

    preset: str
    """The preset (name or file) the sweep searches around."""
    config: dict[str, Any]
    """That preset with the --set options, as a RunConfig dict: every trial's base."""
    params: tuple[Param, ...]
    trials: int = 20
    """Trials in the study, every state counted (numbers 0 .. trials - 1), as Optuna's n_trials counts them."""
    prune: str = "median"
    prune_startup: int = 5
    """Trials that finish before the median pruner prunes (Optuna's n_startup_trials)."""
    prune_warmup: int = 0
    """Epochs a trial trains before it may be pruned (Optuna's n_warmup_steps)."""
    metric: str = "val_loss"
    storage: str | None = None
    """A database URL shared by several machines; None: journal.log in the sweep's folder."""
    study: str = ""
    slots: tuple[Slot, ...] = ()
    sampler_seed: int | None = None
    save_best: str | None = None
    """A user preset name the best trial is saved as when the sweep ends."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Marks this sweep's trials in a shared study (with the host), so a resume takes back only its own."""

    @property
    def direction(self) -> str:
        """Optuna's word: minimize a loss, maximize an accuracy."""
        return "maximize" if self.metric == "val_acc" else "minimize"

    @property
    def parallel(self) -> int:
        """Trials at once."""
        return len(self.slots)

    def base(self) -> RunConfig:
        """The base config."""
        return from_dict(copy.deepcopy(self.config), source=f"sweep {self.preset}")

    def trial_config(self, values: dict[str, Any], number: int, sweep_name: str) -> RunConfig:
        """A trial's config: the base with the sampled ``values`` (config values, by ``section.key``), through the
        one validator (ConfigError if the combination breaks a cross-key rule)."""
        raw = copy.deepcopy(self.config)
        for key, value in values.items():
            section, name = key.split(".", 1)
            raw[section][name] = value
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        raw["description"] = f"trial {number} of sweep {sweep_name}: {shown}"
        return from_dict(raw, source=f"trial {number}")

    def space_key(self) -> dict[str, Any]:
        """What makes two sweeps one study: the same space, metric and base config (a study of another space
        refuses to be joined)."""
        base = {k: v for k, v in self.config.items() if k not in ("name", "description")}
        base["train"] = {k: v for k, v in base["train"].items() if k not in ("device", "threads")}
        return {"params": [p.to_dict() for p in self.params], "metric": self.metric, "config": base}

    def space_hash(self) -> str:
        """8 hex digits of ``space_key``: the default study name's tail."""
        return hashlib.sha256(json.dumps(self.space_key(), sort_keys=True).encode()).hexdigest()[:8]

    # -- files ------------------------------------------------------------------------------

    def to_json(self) -> str:
        """spec.json."""
        raw = {"version": VERSION, "preset": self.preset, "config": self.config,
               "params": [p.to_dict() for p in self.params], "trials": self.trials, "prune": self.prune,
               "prune_startup": self.prune_startup, "prune_warmup": self.prune_warmup, "metric": self.metric,
               "storage": self.storage, "study": self.study,
               "slots": [{"index": s.index, "gpu": s.gpu, "threads": s.threads} for s in self.slots],
               "sampler_seed": self.sampler_seed, "save_best": self.save_best, "id": self.id}
        return json.dumps(raw, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "spec.json") -> SweepSpec:
        """From ``to_json``; ConfigError if unreadable or newer."""
        try:
            raw = json.loads(text)
            if int(raw.get("version", 0)) > VERSION:
                raise ConfigError(f"{source} was written by a newer tui-trainer (version {raw['version']}); "
                                  "upgrade to read it")
            raw.pop("version", None)
            raw["params"] = tuple(Param.from_dict(p) for p in raw["params"])
            raw["slots"] = tuple(Slot(**s) for s in raw["slots"])
            return cls(**raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{source}: not a sweep spec ({exc})") from None

    def to_toml(self) -> str:
        """The sweep as a preset file with a ``[sweep]`` table (sweep.toml). The storage is left out when it is
        the sweep's own journal, and so is the study name (a run of this file is a new sweep)."""
        lines = [to_toml(self.base()).rstrip(), "", "[sweep]", f"trials = {self.trials}",
                 f"parallel = {self.parallel}", f"prune = {json.dumps(self.prune)}",
                 f"prune_startup = {self.prune_startup}", f"prune_warmup = {self.prune_warmup}",
                 f"metric = {json.dumps(self.metric)}"]
        if self.storage:
            lines.append(f"storage = {json.dumps(self.storage)}")
        if self.sampler_seed is not None:
            lines.append(f"sampler_seed = {self.sampler_seed}")
        lines += ["", "[sweep.params]"] + [f"{p.key} = {json.dumps(p.text())}" for p in self.params]
        return "\n".join(lines) + "\n"


def read_preset(name_or_path: str) -> tuple[RunConfig, dict[str, Any]]:
    """A preset and its ``[sweep]`` table ({} when it has none), validated by the preset rules."""
    path = resolve_preset(name_or_path)
    raw = read_preset_file(path)
    table = raw.pop("sweep", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'sweep' must be a [sweep] table")
    for key in table:
        if key not in TABLE_KEYS:
            raise ConfigError(f"{path}: unknown key sweep.{key}{did_you_mean(key, TABLE_KEYS)}; allowed: "
                              f"{', '.join(TABLE_KEYS)}")
    return from_dict(raw, source=str(path), base=path.parent), table  # a factory's file: beside the preset


@dataclass
class Asked:
    """The command line's sweep options; None where it gave none (the ``[sweep]`` table's value, else the
    default, stands)."""

    params: list[str] = field(default_factory=list)
    trials: int | None = None
    parallel: int | None = None
    per_gpu: int | None = None
    prune: str | None = None
    prune_startup: int | None = None
    prune_warmup: int | None = None
    metric: str | None = None
    storage: str | None = None
    study: str | None = None
    sampler_seed: int | None = None
    save_best: str | None = None


def build_spec(preset: str, cfg: RunConfig, table: dict[str, Any], asked: Asked,
               plan: Any = None) -> SweepSpec:
    """The whole sweep, checked: the space (every key by the preset rules), the numbers, the metric, a trial's
    config at the ends of every range, and the slots (``plan(device, parallel, per_gpu)``, slots.plan_slots by
    default). ConfigError, one line, on the first problem."""
    from tui_trainer.sweep.slots import plan_slots

    def pick(name: str, default: Any) -> Any:
        value = getattr(asked, name)
        return value if value is not None else table.get(name, default)

    params = parse_params(asked.params, table.get("params"))
    if not params:
        raise ConfigError("no --param given: a sweep searches at least one key, e.g. --param optimizer.lr=log:1e-4..1e-1")
    if cfg.train.nproc != 1:
        raise ConfigError(f"train.nproc = {cfg.train.nproc}: a trial is one process; set train.nproc = 1 (use "
                          "--parallel for trials side by side)")
    trials = _whole("trials", pick("trials", 20), 1, MAX_TRIALS)
    prune = pick("prune", "median")
    if prune not in PRUNERS:
        raise ConfigError(f"--prune {prune!r}: not allowed{did_you_mean(str(prune), PRUNERS)}; allowed: "
                          f"{', '.join(PRUNERS)}")
    metric = pick("metric", cfg.regularization.monitor)
    if metric not in METRICS:
        raise ConfigError(f"--metric {metric!r}: not allowed{did_you_mean(str(metric), METRICS)}; allowed: "
                          f"{', '.join(METRICS)}")
    if metric == "val_acc" and cfg.task == "regression":
        raise ConfigError(f"--metric val_acc has no meaning for regression ({cfg.data.dataset}); allowed: val_loss")
    startup = _whole("prune_startup", pick("prune_startup", max(1, min(5, trials // 5))), 0, MAX_TRIALS)
    warmup = _whole("prune_warmup", pick("prune_warmup", 0), 0, cfg.train.epochs)
    for key in ("trials", "parallel", "per_gpu", "sampler_seed"):
        if table.get(key) is not None:
            _whole(key, table[key], 0, MAX_TRIALS if key != "sampler_seed" else 2**32 - 1)
    storage, study = pick("storage", None), pick("study", None)
    for name, value in (("storage", storage), ("study", study)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"--{name} {value!r}: must be a non-empty string")
    _check_ends(cfg, params)
    slots = (plan or plan_slots)(cfg.train.device, pick("parallel", None), pick("per_gpu", None))
    spec = SweepSpec(preset=preset, config=cfg.to_dict(), params=params, trials=trials, prune=prune,
                     prune_startup=startup, prune_warmup=warmup, metric=metric, storage=storage,
                     slots=tuple(slots), sampler_seed=pick("sampler_seed", None), save_best=asked.save_best)
    return replace(spec, study=study or f"{cfg.name}-{spec.space_hash()}")


def _whole(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} = {value!r}: must be a whole number {low}..{high}")
    return value


def _check_ends(cfg: RunConfig, params: tuple[Param, ...]) -> None:
    """A trial's whole config at every range's low end, at every high end, and with each choice (the others at
    their low ends): the cross-key rules (a dropout per hidden layer, say) hold before anything starts."""
    lows = {p.key: p.choices[0] if p.kind == "choice" else p.low for p in params}
    cases = [("low ends", lows), ("high ends", {**lows, **{p.key: p.high for p in params if p.kind != "choice"}})]
    cases += [(f"{p.key} = {c!r}", {**lows, p.key: c}) for p in params if p.kind == "choice" for c in p.choices[1:]]
    for what, values in cases:
        raw = cfg.to_dict()
        for key, value in values.items():
            section, name = key.split(".", 1)
            raw[section][name] = value
        try:
            from_dict(raw, source="--param")
        except ConfigError as exc:
            raise ConfigError(f"the space breaks a rule at its {what}: {exc}") from None


def read_spec(path: Path) -> SweepSpec:
    """spec.json of a sweep folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return SweepSpec.from_json(text, str(path))


def save_best(folder: Any, name: str, best: dict[str, Any] | None = None) -> tuple[dict[str, Any], SweepSpec, Path]:
    """The sweep's best trial (``best``: its ``number`` and ``params``, as the sweep's "best" event or status.json
    says; status.json's when None) written as the user's preset ``name``: (that best, the spec, the file).
    ConfigError (one line) when there is no completed trial yet or the name is not allowed. ``folder``: a SweepDir."""
    from tui_trainer.config import save_user_preset

    spec = read_spec(folder.spec_path)
    best = best or folder.read_status().get("best")
    if not best:
        raise ConfigError(f"sweep {folder.name} has no completed trial yet: nothing to save")
    path = save_user_preset(spec.trial_config(best["params"], int(best["number"]), folder.name), name)
    return best, spec, path
