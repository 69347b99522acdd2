"""Per-class results of a classifier: accuracy per class and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tui_trainer.data import DataBundle
from tui_trainer.engine.losses import predicted_class
from tui_trainer.engine.models import eval_mode


@dataclass(frozen=True)
class ClassReport:
    """Confusion matrix (rows: true class, columns: predicted) and per-class accuracy."""

    class_names: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]

    @property
    def per_class_accuracy(self) -> tuple[float, ...]:
        """Recall of each class (diagonal over row sum)."""
        return tuple(row[i] / max(sum(row), 1) for i, row in enumerate(self.confusion))


@torch.no_grad()
def class_report(model: nn.Module, data: DataBundle, world: Any = None) -> ClassReport:
    """Run the validation split once and count (true, predicted) pairs on the device (under DDP, each rank its
    share, summed over the ranks: ``world`` is an engine.dist.World)."""
    k = data.n_classes
    device = next(model.parameters()).device
    counts = torch.zeros(k * k, dtype=torch.long, device=device)
    with eval_mode(model):
        for xb, yb in data.val.epoch(0):
            pred = predicted_class(model(xb))
            counts += torch.bincount(yb * k + pred, minlength=k * k)
    if world is not None:
        world.all_reduce(counts)
    matrix = counts.view(k, k).tolist()  # host sync: once, at the end
    names = tuple(data.class_names) if len(data.class_names) == k else tuple(str(i) for i in range(k))
    return ClassReport(names, tuple(tuple(r) for r in matrix))


def format_class_report(report: ClassReport) -> str:
    """Per-class accuracy and the confusion matrix as plain text (rows: true class by number and name, the name
    left out when it is the number, as on the 2-D presets; columns: predicted class by number)."""
    names = report.class_names
    num = len(str(len(names) - 1))
    named = any(name != str(i) for i, name in enumerate(names))
    w = max(max(len(n) for n in names), 5)

    def label(i: int, name: str) -> str:
        return f"{i:>{num}} {name[:w]:<{w}}" if named else f"{i:>{num}}"

    cell = max(5, max(len(str(v)) for row in report.confusion for v in row) + 1)
    lines = ["per-class accuracy:"]
    for i, (name, acc, row) in enumerate(zip(names, report.per_class_accuracy, report.confusion, strict=False)):
        lines.append(f"  {label(i, name)}  {acc:6.1%}  ({row[i]}/{sum(row)})")
    lines.append("confusion matrix (rows: true class, columns: predicted class, by number):")
    lines.append(" " * (2 + len(label(0, names[0]))) + "".join(f"{i:>{cell}}" for i in range(len(names))))
    for i, (name, row) in enumerate(zip(names, report.confusion, strict=False)):
        lines.append(f"  {label(i, name)}" + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)
