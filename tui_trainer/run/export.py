"""A run's metrics out of tui-trainer: a CSV file, or TensorBoard event files.

Nothing is ever written half: the CSV goes to a temporary file beside its destination, fsynced,
then renamed over it; the TensorBoard files go to a temporary folder beside theirs, renamed into
place (replacing an earlier export, never a folder holding anything else). Any failure removes
what was started and raises ``ExportError`` (one line, exit 2).

CSV: one row per epoch (the metrics.jsonl rows; nested values such as ``grad_norms`` become
``grad_norms.<layer>`` columns). TensorBoard (through the optional ``tensorboard`` extra, which
installs the 0.4 MB tensorboardX writer rather than TensorBoard itself): ``loss/train``,
``loss/val``, ``accuracy/train``, ``accuracy/val`` per epoch, and ``loss/train_smoothed`` and
``lr`` per log interval, all against the optimizer step, so the per-step and per-epoch curves
line up; wall times are the run's own (start + training clock). A user's own loop's other named
scalars (``run/track.py``) go along: ``step/<name>`` per logged step, ``epoch/<name>`` per epoch (and,
in the CSV, as columns of their own).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tui_trainer.errors import ConfigError
from tui_trainer.run.compare import RunData
from tui_trainer.run.events import ROW_KEYS

FORMATS = ("csv", "tensorboard")
TENSORBOARD_MISSING = ("TensorBoard export needs tensorboardX: pip install 'tensorboardX>=2.6' "
                       "(in a clone of tui-trainer: pip install '.[tensorboard]')")
EVENT_PREFIX = "events.out.tfevents."


class ExportError(ConfigError):
    """An export that cannot be written (one line: what and why)."""


def default_out(run: RunData, fmt: str) -> Path:
    """Where an export goes without ``--out``: ``<run name>.csv`` here, or the run's own ``tensorboard/``
    folder (so ``tensorboard --logdir runs`` shows every exported run side by side)."""
    return Path(f"{run.name}.csv") if fmt == "csv" else run.path / "tensorboard"


def export_run(run: RunData, fmt: str, out: Path | None = None) -> Path:
    """Write ``run`` as ``fmt`` (csv or tensorboard) to ``out`` (default: ``default_out``); returns the path
    written. ExportError on anything that stops it."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: choose {' or '.join(FORMATS)}")
    target = Path(out).expanduser() if out is not None else default_out(run, fmt)
    return write_csv(run, target) if fmt == "csv" else write_tensorboard(run, target)


# ---------------------------------------------------------------------------
# CSV


def _flat(row: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    for key, value in row.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def csv_text(rows: tuple[dict, ...] | list[dict]) -> str:
    """The rows as CSV: a header of every column seen (first-seen order), empty cells for missing values.
    Floats are written with ``repr`` (Python's csv module), so they read back exactly."""
    flat = [dict(_flat(r)) for r in rows]
    columns: dict[str, None] = {}
    for r in flat:
        columns.update(dict.fromkeys(r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in flat)
    return buffer.getvalue()


def _cannot(path: Path, exc: OSError) -> ExportError:
    return ExportError(f"cannot write {path}: {exc.strerror or exc}")


def write_csv(run: RunData, out: Path) -> Path:
    """The run's epochs as a CSV file at ``out`` (a folder: ``<run name>.csv`` in it), written atomically."""
    if not run.rows:
        raise ExportError(f"run {run.name} has no finished epoch yet: nothing to export")
    if out.is_dir():
        out = out / f"{run.name}.csv"
    if not out.parent.is_dir():
        raise ExportError(f"cannot write {out}: folder {out.parent} does not exist")
    text = csv_text(run.rows)
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:
        raise _cannot(out, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; an export is a file to share
        os.replace(tmp, out)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _cannot(out, exc) from None
    return out


# ---------------------------------------------------------------------------
# TensorBoard


def tensorboard_scalars(run: RunData) -> dict[str, list[tuple[int, float, float | None]]]:
    """Every scalar the TensorBoard export writes: tag -> [(step, value, wall time or None)]."""
    clock = {step: elapsed for step, _loss, _lr, elapsed in run.steps}
    start = run.started

    def wall(step: int, elapsed: float | None) -> float | None:
        return start + elapsed if start is not None and elapsed is not None else None

    scalars: dict[str, list[tuple[int, float, float | None]]] = {}
    done = 0.0
    for row in run.rows:
        step = int(row.get("step", row["epoch"]))
        done += float(row.get("epoch_seconds") or 0.0)
        when = wall(step, clock.get(step, done))
        for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("accuracy/train", "train_acc"),
                         ("accuracy/val", "val_acc")):
            if isinstance(row.get(key), (int, float)):
                scalars.setdefault(tag, []).append((step, float(row[key]), when))
        for key, value in row.items():  # a user's loop's own scalars of the epoch
            if key not in ROW_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                scalars.setdefault(f"epoch/{key}", []).append((step, float(value), when))
    for step, loss, lr, elapsed in run.steps:
        scalars.setdefault("loss/train_smoothed", []).append((step, loss, wall(step, elapsed)))
        scalars.setdefault("lr", []).append((step, lr, wall(step, elapsed)))
    for name, points in run.scalars:  # a user's loop's own scalars at its logged steps
        scalars[f"step/{name}"] = [(step, value, wall(step, clock.get(step))) for step, value in points]
    if not run.steps:  # no events file: the learning rate of each epoch's end
        for row in run.rows:
            if isinstance(row.get("lr"), (int, float)):
                scalars.setdefault("lr", []).append((int(row.get("step", row["epoch"])), float(row["lr"]), None))
    return scalars


def _earlier_export(folder: Path) -> bool:
    """An existing folder that holds nothing but event files (an earlier export, safe to replace)."""
    return folder.is_dir() and all(p.is_file() and p.name.startswith(EVENT_PREFIX) for p in folder.iterdir())


def write_tensorboard(run: RunData, out: Path) -> Path:
    """The run's scalars as TensorBoard event files in the folder ``out`` (replacing an earlier export)."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ExportError(TENSORBOARD_MISSING) from None
    scalars = tensorboard_scalars(run)
    if not scalars:
        raise ExportError(f"run {run.name} has no logged step or epoch yet: nothing to export")
    if out.exists() and not _earlier_export(out):
        raise ExportError(f"{out} exists and holds other files than an earlier export: choose another --out")
    if not out.parent.is_dir():
        raise ExportError(f"cannot write {out}: folder {out.parent} does not exist")
    try:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as exc:
        raise _cannot(out, exc) from None
    old = None
    try:
        writer = SummaryWriter(logdir=str(tmp), flush_secs=3600)
        for tag, points in scalars.items():
            for step, value, when in points:
                writer.add_scalar(tag, value, global_step=step, walltime=when)
        writer.close()  # flushes the event file; the fsync and the rename below make it visible whole
        files = [p for p in tmp.iterdir() if p.name.startswith(EVENT_PREFIX)]
        if not files:
            raise OSError(f"the TensorBoard writer left no event file in {tmp}")
        for path in files:
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if out.exists():
            old = out.with_name(f".{out.name}.{os.getpid()}.old")
            os.rename(out, old)
        os.rename(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.rename(old, out)  # put the earlier export back
        raise _cannot(out, exc) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out
