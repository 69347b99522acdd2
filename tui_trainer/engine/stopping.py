"""Early stopping: when a run should end because the validation metric has stopped helping.

Two rules, both counted in epochs:

* ``no_improvement`` (Keras, Lightning): stop after ``patience`` epochs without a new best
  (better than the best by more than ``min_delta``);
* ``worse_in_a_row`` (the lecture 5 trainer): stop when the metric got worse than the epoch
  before ``patience`` times in a row; an epoch that is not worse resets the count::

      if epoch > 0 and valid_loss[-1] > valid_loss[-2]: consec_increases += 1
      else: consec_increases = 0
      if consec_increases == patience: break

The best value and its epoch are tracked under both rules (``best.pt`` and restoring the best
weights use them). Torch-free: the state is plain numbers, saved in every checkpoint.
"""

from __future__ import annotations


class EarlyStopping:
    """Tracks the best value of a metric and what the stop rule counts."""

    def __init__(self, monitor: str, patience: int, min_delta: float, rule: str = "no_improvement") -> None:
        self.monitor, self.patience, self.min_delta, self.rule = monitor, patience, min_delta, rule
        self.sign = -1.0 if monitor == "val_acc" else 1.0  # compare as "lower is better"
        self.best: float | None = None
        self.bad_epochs = 0  # epochs since the last new best
        self.best_epoch = 0
        self.previous: float | None = None  # the last epoch's value
        self.worse_in_a_row = 0  # consecutive epochs worse than the one before

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; True when it is a new best."""
        v = self.sign * value
        if self.previous is not None and v > self.sign * self.previous + self.min_delta:
            self.worse_in_a_row += 1
        else:
            self.worse_in_a_row = 0
        self.previous = value
        if self.best is None or v < self.sign * self.best - self.min_delta:
            self.best, self.bad_epochs, self.best_epoch = value, 0, epoch
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """The rule's count reached ``patience``."""
        count = self.worse_in_a_row if self.rule == "worse_in_a_row" else self.bad_epochs
        return count >= self.patience

    def message(self, epoch: int) -> str:
        """Why the run stopped at ``epoch``, for the log and the run's end."""
        best = f"best {self.best:.4g} at epoch {self.best_epoch}" if self.best is not None else "no best yet"
        if self.rule == "worse_in_a_row":
            verb = "fell" if self.monitor == "val_acc" else "rose"
            return (f"early stop at epoch {epoch}: {self.monitor} {verb} {self.worse_in_a_row} epochs in a row "
                    f"({best})")
        return f"early stop at epoch {epoch}: {self.monitor} did not improve for {self.patience} epochs ({best})"

    def state_dict(self) -> dict:
        """For the checkpoint."""
        return {"best": self.best, "bad_epochs": self.bad_epochs, "best_epoch": self.best_epoch,
                "previous": self.previous, "worse_in_a_row": self.worse_in_a_row}

    def load_state_dict(self, state: dict) -> None:
        """From the checkpoint (one written before the rules existed has no ``previous``)."""
        self.best, self.bad_epochs = state.get("best"), state.get("bad_epochs", 0)
        self.best_epoch = state.get("best_epoch", 0)
        self.previous, self.worse_in_a_row = state.get("previous"), state.get("worse_in_a_row", 0)
