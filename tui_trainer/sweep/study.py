"""The sweep's side of Optuna: the storage (the sweep folder's journal file, or a database URL several machines
share), the study (created, or joined when it holds the same space), the sampler and pruner, and the trials read
back as rows. Optuna is imported here only, and lazily: listing, attaching and stopping sweeps never need it.

Storage. The default is Optuna's ``JournalStorage`` over a ``JournalFileBackend`` (journal.log in the sweep's
folder): an append-only log under Optuna's own lock, safe for several processes on one box, where Optuna's
maintainers advise against SQLite for parallel work. ``--storage URL`` is any URL ``RDBStorage`` accepts
(``postgresql://user:pass@host/db``, ``mysql+pymysql://...``); a plain path names a journal file (on a shared
filesystem, several machines). ``optuna-dashboard`` reads either: ``optuna-dashboard sweeps/<sweep>/journal.log`` or
``optuna-dashboard postgresql://...``.

Study. Its name defaults to ``<preset>-<hash of the space>``, so the same sweep command on several machines joins
one study. The space, metric and base config are kept as the study's user attribute ``tui_trainer``; a study of the
same name with another space is refused (one line) rather than mixed.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tui_trainer.errors import ConfigError, first_line
from tui_trainer.sweep.folder import SweepDir
from tui_trainer.sweep.spec import SweepSpec

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

SPACE_ATTR = "tui_trainer"
"""The study's user attribute holding what makes it one sweep (SweepSpec.space_key)."""
CONNECT_TIMEOUT = 10
"""Seconds a database URL gets to answer before the sweep says it cannot be reached."""
SCHEMA_RACES = 3
"""Tries at opening a database whose tables another worker may be creating at the same moment (both create them
on a fresh database; one loses with a duplicate-key error, then finds them made)."""


def optuna_module() -> Any:
    """optuna, or ConfigError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("sweeps need Optuna: pip install 'tui-trainer[sweep]' (and [postgres] for a PostgreSQL "
                          "--storage)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial INFO lines would say what events.jsonl says
    return optuna


def shown_url(url: str | None) -> str:
    """A storage as it may be printed: its password hidden; None is the sweep's own journal."""
    if not url:
        return "journal.log"
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def open_storage(spec: SweepSpec, sweep: SweepDir | None) -> BaseStorage:
    """The study's storage; ConfigError (one line) when a URL cannot be reached or its driver is missing."""
    optuna = optuna_module()
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if spec.storage is None or "://" not in spec.storage:
        path = sweep.journal_path if spec.storage is None and sweep is not None else spec.storage
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise ConfigError(f"--storage {path}: cannot write the journal file: {exc.strerror or exc}") from None
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if spec.storage.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    for attempt in range(SCHEMA_RACES):
        try:
            return RDBStorage(spec.storage, engine_kwargs=kwargs)
        except ImportError as exc:
            raise ConfigError(f"--storage {shown_url(spec.storage)}: its database driver is missing "
                              f"({first_line(exc, 100)}); for PostgreSQL: pip install 'tui-trainer[postgres]'") from None
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's and the drivers' errors: one line, whatever they are
            cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ else exc
            unreachable = type(cause).__name__ == "OperationalError" or not isinstance(cause, Exception)
            if unreachable or attempt == SCHEMA_RACES - 1:
                raise ConfigError(f"--storage {shown_url(spec.storage)}: cannot reach it: {first_line(cause, 160)}"
                                  ) from None
            time.sleep(0.5 + attempt)  # another worker creating Optuna's tables at the same moment: once they exist
    raise AssertionError("unreachable")  # pragma: no cover


def check_study(spec: SweepSpec, storage: BaseStorage) -> bool:
    """Before anything starts: whether the study exists (a worker joins it), ConfigError if it holds another
    space (or was not made by a sweep)."""
    try:
        study_id = storage.get_study_id_from_name(spec.study)
    except KeyError:
        return False
    _check_space(spec, storage.get_study_user_attrs(study_id).get(SPACE_ATTR),
                 len(storage.get_all_trials(study_id, deepcopy=False)))
    return True


def _check_space(spec: SweepSpec, theirs: Any, trials: int) -> None:
    if theirs is None:
        if trials:
            raise ConfigError(f"study {spec.study!r} exists with {trials} trials and was not made by tui-trainer's "
                              "sweep; choose another --study name")
        return
    ours = json.loads(json.dumps(spec.space_key()))  # as the storage gives it back (tuples as lists)
    if theirs == ours:
        return
    if theirs.get("params") != ours["params"]:
        from tui_trainer.sweep.space import Param

        shown = " ".join(f"{p.key}={p.text()}" for p in (Param.from_dict(d) for d in theirs.get("params", [])))
        what = f"another search space ({shown})"
    elif theirs.get("metric") != ours["metric"]:
        what = f"another metric ({theirs.get('metric')})"
    else:
        keys = [f"{s}.{k}" for s in ours["config"] for k in ours["config"][s]
                if isinstance(ours["config"][s], dict)
                and theirs.get("config", {}).get(s, {}).get(k) != ours["config"][s][k]]
        what = f"another base config ({', '.join(keys[:4]) or 'its preset'} differ)"
    raise ConfigError(f"study {spec.study!r} exists with {what}; give the same --param, --set and --metric to join "
                      "it, or another --study name")


def open_study(spec: SweepSpec, storage: BaseStorage) -> optuna.Study:
    """The study, created or joined (its space checked); ConfigError when it holds another space."""
    optuna = optuna_module()
    study = optuna.create_study(study_name=spec.study, storage=storage, direction=spec.direction,
                                pruner=make_pruner(spec), load_if_exists=True)
    theirs = study.user_attrs.get(SPACE_ATTR)
    existing = len(study.get_trials(deepcopy=False))
    if theirs is None:
        _check_space(spec, None, existing)
        study.set_user_attr(SPACE_ATTR, spec.space_key())
    else:
        _check_space(spec, theirs, 0)
    study.sampler = make_sampler(spec, existing)
    return study


def make_sampler(spec: SweepSpec, existing: int = 0) -> Any:
    """TPE with the constant liar (Optuna's advice for trials that run in parallel: a running trial counts as a
    poor one, so two workers do not sample the same point). A seeded sampler is seeded past the trials the study
    already has: a resumed sweep does not draw its first points again."""
    optuna = optuna_module()
    seed = None if spec.sampler_seed is None else spec.sampler_seed + existing
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(spec: SweepSpec) -> Any:
    """median: stop a trial whose epoch is worse than the median of finished trials at that epoch (after
    ``prune_startup`` trials finished and ``prune_warmup`` epochs); hyperband: successive halving over the epochs;
    none: never."""
    optuna = optuna_module()
    if spec.prune == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.prune_startup, n_warmup_steps=spec.prune_warmup)
    if spec.prune == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, spec.prune_warmup),
                                              max_resource=int(spec.config["train"]["epochs"]))
    return optuna.pruners.NopPruner()


def distributions(spec: SweepSpec) -> dict[str, Any]:
    """The space as Optuna's distributions, by ``section.key``."""
    optuna = optuna_module()
    found: dict[str, Any] = {}
    for p in spec.params:
        if p.kind == "choice":
            found[p.key] = optuna.distributions.CategoricalDistribution(p.optuna_choices())
        elif p.kind == "int":
            found[p.key] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log, step=p.step or 1)
        else:
            found[p.key] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    return found


def config_values(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's Optuna params as config values (a list choice back from its text)."""
    by_key = {p.key: p for p in spec.params}
    return {k: by_key[k].value_of(v) if k in by_key else v for k, v in params.items()}


# ---------------------------------------------------------------------------
# the trials, read back


@dataclass(frozen=True)
class StudyTrial:
    """One trial of the study as a table row (every worker's, on a shared storage)."""

    number: int
    state: str
    """running, complete, pruned, failed (Optuna's words, lower case) or waiting."""
    value: float | None
    params: dict[str, Any]
    epochs: int | None
    reason: str | None
    run: str | None
    host: str | None
    started: float | None
    duration_s: float | None


def study_trials(spec: SweepSpec, study: optuna.Study) -> list[StudyTrial]:
    """Every trial, by number."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(t.state.name, t.state.name.lower())
        rows.append(StudyTrial(number=t.number, state=state, value=t.value, params=config_values(spec, t.params),
                               epochs=attrs.get("epochs"), reason=attrs.get("reason"), run=attrs.get("run_dir"),
                               host=(attrs.get("sweep") or {}).get("host"),
                               started=t.datetime_start.timestamp() if t.datetime_start else None,
                               duration_s=t.duration.total_seconds() if t.duration else None))
    return sorted(rows, key=lambda r: r.number)


def importances(study: optuna.Study) -> dict[str, float]:
    """How much each key mattered to the metric (Optuna's fANOVA over the finished trials); {} with fewer than
    two finished trials or one key."""
    optuna = optuna_module()
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(done) < 2 or len({k for t in done for k in t.params}) < 2:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError):  # e.g. every finished trial has the same value
        return {}


def csv_rows(spec: SweepSpec, trials: list[StudyTrial]) -> list[list[Any]]:
    """The study's trials as CSV rows, the header first: number, state, the metric, each key, epochs, reason,
    host, run folder, started (epoch seconds) and duration."""
    keys = [p.key for p in spec.params]
    rows: list[list[Any]] = [["number", "state", spec.metric, *keys, "epochs", "reason", "host", "run", "started",
                              "duration_s"]]
    for t in trials:
        rows.append([t.number, t.state, t.value, *(json.dumps(t.params[k]) if isinstance(t.params.get(k), list)
                                                    else t.params.get(k) for k in keys),
                     t.epochs, t.reason, t.host, t.run, t.started, t.duration_s])
    return rows
