"""Smoothing shared by the engine side (LR finder) and the UI (charts); stdlib only."""

from __future__ import annotations


class RunningMean:
    """Debiased exponential moving average (as TensorBoard smooths), updated one point at a time."""

    def __init__(self, beta: float = 0.9) -> None:
        self.beta, self.average = beta, 0.0
        self.values: list[float] = []

    def add(self, value: float) -> float:
        """Fold in one point; returns (and keeps) the smoothed value."""
        self.average = self.beta * self.average + (1 - self.beta) * value
        smoothed = self.average / (1 - self.beta ** (len(self.values) + 1))
        self.values.append(smoothed)
        return smoothed

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` smoothed points and continue from there (a resumed run)."""
        del self.values[n:]
        self.average = self.values[-1] * (1 - self.beta ** len(self.values)) if self.values else 0.0
