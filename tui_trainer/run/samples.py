"""The run folder's ``samples.json``: a small, bounded sample of validation images for the image views.

Stdlib only: the app reads it without torch. At epoch ends of an image classifier (at most every 2 s, and after
the last epoch) the engine emits a ``SampleSet`` (engine/samples.py picks it); the recorder writes it here whole
(``atomic_write``) before the epoch's ``EpochEnded`` reaches events.jsonl, so a reader that sees an epoch end finds
that epoch's sample (or an earlier one). It is never written to events.jsonl: one file, replaced, of at most
``MAX_EXAMPLES`` images of at most ``MAX_SIDE`` pixels a side (about 110 kB for Fashion-MNIST, 500 kB for CIFAR-10).

What it holds, as fastai's ``plot_top_losses`` and ``most_confused`` show it:
* ``top_losses``: the validation examples with the highest loss (at most ``TOP_LOSSES``), worst first;
* ``confused``: the most confused (true, predicted) pairs of the confusion matrix, with up to ``PER_PAIR`` examples;
* ``per_class``: for each class, up to ``PER_CLASS`` examples it gets right and as many it gets wrong;
* ``filters``: a CNN's first convolution's filters (at most ``MAX_FILTERS``), each enlarged ``FILTER_SCALE`` times.
Each example is stored once (``examples``), the lists name them by their index in the validation split.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from pathlib import Path

from tui_trainer.run.files import atomic_write

VERSION = 1
TOP_LOSSES = 64
CONFUSED_PAIRS = 5
PER_PAIR = 4
PER_CLASS = 2
MAX_FILTERS = 64
FILTER_SCALE = 2  # a 3x3 filter is drawn 6x6 pixels (6x3 cells)
MAX_SIDE = 48  # larger images (an image folder at 224 px) are shrunk to this before they are stored
MAX_EXAMPLES = TOP_LOSSES + CONFUSED_PAIRS * PER_PAIR + 2 * PER_CLASS * 100  # at most 100 classes are listed
FILE_NAME = "samples.json"


@dataclass(frozen=True)
class Example:
    """One validation image: its index in the split, true and predicted class, the predicted class's probability,
    its loss, and its pixels (uint8, channels first: C x H x W bytes)."""

    index: int
    true: int
    pred: int
    prob: float
    loss: float
    pixels: bytes


@dataclass(frozen=True)
class SampleSet:
    """What the image views show of the validation split after an epoch (see the module docstring)."""

    epoch: int
    class_names: tuple[str, ...]
    shape: tuple[int, int, int]  # channels, height, width of every example's pixels
    examples: tuple[Example, ...]
    top_losses: tuple[int, ...]
    confused: tuple[tuple[int, int, int, tuple[int, ...]], ...]  # (true, predicted, count, example indices)
    per_class: tuple[tuple[int, tuple[int, ...], tuple[int, ...]], ...]  # (class, right, wrong)
    val_samples: int = 0
    filters: tuple[bytes, ...] = ()  # a CNN's first convolution's filters, each scaled black..white on its own
    filter_shape: tuple[int, int, int] = (0, 0, 0)  # channels, height, width of each filter's pixels (enlarged)
    filter_ranges: tuple[tuple[float, float], ...] = ()  # each filter's smallest and largest weight

    def example(self, index: int) -> Example:
        """The example with this validation index (KeyError if it is not in the sample)."""
        return self._by_index()[index]

    def _by_index(self) -> dict[int, Example]:
        found = self.__dict__.get("_index")
        if found is None:
            found = {e.index: e for e in self.examples}
            object.__setattr__(self, "_index", found)
        return found

    def name(self, cls: int) -> str:
        """A class's name (its number when the dataset names none)."""
        return self.class_names[cls] if 0 <= cls < len(self.class_names) else str(cls)


def _num(value: float) -> float | str:
    return value if math.isfinite(value) else repr(value)


def to_json(s: SampleSet) -> str:
    """The file's text."""
    return json.dumps({
        "version": VERSION, "epoch": s.epoch, "class_names": list(s.class_names), "shape": list(s.shape),
        "val_samples": s.val_samples,
        "examples": [[e.index, e.true, e.pred, _num(e.prob), _num(e.loss), base64.b64encode(e.pixels).decode("ascii")]
                     for e in s.examples],
        "top_losses": list(s.top_losses),
        "confused": [[t, p, n, list(idx)] for t, p, n, idx in s.confused],
        "per_class": [[c, list(right), list(wrong)] for c, right, wrong in s.per_class],
        "filters": [base64.b64encode(f).decode("ascii") for f in s.filters], "filter_shape": list(s.filter_shape),
        "filter_ranges": [[_num(lo), _num(hi)] for lo, hi in s.filter_ranges],
    }, separators=(",", ":"))


def from_json(text: str) -> SampleSet:
    """The sample a file holds; ValueError when it is not one (torn, foreign or of a newer version)."""
    row = json.loads(text)
    if not isinstance(row, dict) or row.get("version") != VERSION:
        raise ValueError(f"not a samples file of version {VERSION}")
    try:
        c, h, w = (int(v) for v in row["shape"])
        size = c * h * w
        examples = []
        for index, true, pred, prob, loss, b64 in row["examples"]:
            pixels = base64.b64decode(b64)
            if len(pixels) != size:
                raise ValueError(f"example {index} holds {len(pixels)} bytes, not {c}x{h}x{w}")
            examples.append(Example(int(index), int(true), int(pred), float(prob), float(loss), pixels))
        return SampleSet(
            epoch=int(row["epoch"]), class_names=tuple(map(str, row["class_names"])), shape=(c, h, w),
            examples=tuple(examples), top_losses=tuple(map(int, row["top_losses"])),
            confused=tuple((int(t), int(p), int(n), tuple(map(int, idx))) for t, p, n, idx in row["confused"]),
            per_class=tuple((int(k), tuple(map(int, r)), tuple(map(int, wr))) for k, r, wr in row["per_class"]),
            val_samples=int(row.get("val_samples", 0)),
            filters=tuple(base64.b64decode(f) for f in row.get("filters", ())),
            filter_shape=tuple(int(v) for v in row.get("filter_shape", (0, 0, 0))),  # type: ignore[arg-type]
            filter_ranges=tuple((float(lo), float(hi)) for lo, hi in row.get("filter_ranges", ())))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a samples file: {exc}") from None


def write_samples(folder: Path, s: SampleSet) -> Path:
    """Replace the folder's samples.json whole (a reader sees the last epoch's or this one's); its path."""
    path = folder / FILE_NAME
    atomic_write(path, to_json(s), durable=False)  # rewritten every epoch; a stale one after a power cut is harmless
    return path


def read_samples(folder: Path) -> SampleSet | None:
    """The folder's sample, or None when there is none yet (or it cannot be read)."""
    try:
        return from_json((folder / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
