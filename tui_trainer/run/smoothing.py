"""Smoothing shared by the engine side (LR finder) and the UI (charts); stdlib only."""

from __future__ import annotations

import math


class RunningMean:
    """Debiased exponential moving average (as TensorBoard smooths), updated one point at a time. A point without a
    finite value (a user's own loop that logged no loss at a step) is kept as nan, so the series stays aligned with
    its steps, and leaves the average as it was: one bad point never blanks the rest of a curve."""

    def __init__(self, beta: float = 0.9) -> None:
        self.beta, self.average = beta, 0.0
        self.values: list[float] = []
        self._gaps = 0  # nan points among the values: the debiasing counts only the others

    def add(self, value: float) -> float:
        """Fold in one point; returns (and keeps) the smoothed value (nan for a point that has none)."""
        if not math.isfinite(value):
            self.values.append(math.nan)
            self._gaps += 1
            return math.nan
        self.average = self.beta * self.average + (1 - self.beta) * value
        smoothed = self.average / (1 - self.beta ** (len(self.values) - self._gaps + 1))
        self.values.append(smoothed)
        return smoothed

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` smoothed points and continue from there (a resumed run)."""
        del self.values[n:]
        self._gaps = sum(1 for v in self.values if not math.isfinite(v))
        last = next((v for v in reversed(self.values) if math.isfinite(v)), None)
        self.average = last * (1 - self.beta ** (len(self.values) - self._gaps)) if last is not None else 0.0
