"""The loss of a task and head, and what counts as a correct prediction.

* ``logits`` (classification): cross-entropy on the raw scores, with label smoothing;
* ``log_softmax``: the model ends in ``LogSoftmax`` and the loss is the negative log
  likelihood (the MNIST notes' ``nn.NLLLoss``; the same numbers as cross-entropy on logits);
* ``binary``: one logit per sample and ``BCEWithLogitsLoss`` (the bitmoji notes); a sample
  is predicted as class 1 when its logit is above 0 (probability above 0.5);
* regression: mean squared error.

A classification output with one column is always a binary head: ``predicted_class`` and
``count_correct`` read it by shape, so the report, the decision boundary and the engine's
accuracy need no config to tell.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tui_trainer.config import RunConfig
from tui_trainer.errors import ConfigError


class BinaryLogitLoss(nn.Module):
    """``BCEWithLogitsLoss`` on a (batch, 1) logit and integer labels 0/1.

    Label smoothing moves the targets to ``ls / 2`` and ``1 - ls / 2``, as cross-entropy's
    smoothing does for two classes."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y = target.to(logits.dtype).view(-1)
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + self.label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits.view(-1), y)


def build_loss(task: str, label_smoothing: float = 0.0, head: str = "logits") -> nn.Module:
    """The training and validation loss of ``task`` ('classification' or 'regression') and ``head``."""
    if task != "classification":
        return nn.MSELoss()
    if head == "binary":
        return BinaryLogitLoss(label_smoothing)
    if head == "log_softmax":
        # NLL of log-probabilities; with smoothing, the smoothed cross-entropy of those log-probabilities
        # (cross-entropy's own log-softmax leaves log-probabilities unchanged)
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing) if label_smoothing else nn.NLLLoss()
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_for(cfg: RunConfig, task: str) -> LossFn:
    """The loss a run trains with: the user's own (``model.loss``, a factory called with no arguments that returns
    a callable ``(outputs, targets) -> mean loss``), else ``build_loss`` of the task and head."""
    if not cfg.model.loss:
        return build_loss(task, cfg.regularization.label_smoothing, cfg.model.head)
    from tui_trainer.config.factories import shown_factory
    from tui_trainer.usercode import a_type, call, load_function

    label = f"model.loss = {shown_factory(cfg.model.loss)!r}"
    loss = call(load_function(cfg.model.loss, label), label)
    if not callable(loss):
        raise ConfigError(f"{label} returned {a_type(loss)}; expected a callable (outputs, targets) -> loss, e.g. an "
                          "nn.Module")
    return loss


def predicted_class(out: torch.Tensor) -> torch.Tensor:
    """Class indices from a classifier's output: the logit's sign for one column, the argmax otherwise."""
    if out.dim() == 2 and out.shape[1] == 1:
        return (out[:, 0] > 0).long()
    return out.argmax(1)


def count_correct(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Correct predictions in a batch, as a device tensor (no host sync)."""
    return (predicted_class(out) == target.view(-1)).sum()


def correct_count(out: torch.Tensor, yb: torch.Tensor, task: str) -> torch.Tensor | None:
    """Correct predictions in a batch of ``task``, as a device tensor (None for regression)."""
    return count_correct(out, yb) if task == "classification" else None
