"""What a fit shows besides its numbers: the loop calls ``Watch`` at log intervals, epoch ends and the end.

* layer health (gradient statistics of watched steps, read with the interval's one host sync) and
  the alarms it raises: vanishing, exploding or non-finite gradients;
* after each epoch: the curve's hints (overfitting, a plateau, ...) and the share of dead ReLU units
  on one validation batch (kept on the device, taken once);
* a 2-D classifier's decision boundary: at most once a second of training, after the last epoch,
  and the one the run ended with;
* an image classifier's validation sample at epoch ends, at most every 2 s and after the last epoch
  (engine/samples.py picks it from the epoch's own validation pass; the recorder writes it to samples.json);
* per-class results when a classifier ends as asked.

Each kind of alarm or hint is said once per run. The numbers come from ``diagnostics.py``; this is
when they are taken and said.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from tui_trainer.config import RunConfig
from tui_trainer.data import DataBundle
from tui_trainer.engine.diagnostics import GradientMonitor, curve_hints, dead_units, decision_grid, gradient_alarms, health_rows
from tui_trainer.engine.dist import World
from tui_trainer.engine.progress import Progress
from tui_trainer.engine.samples import SampleCollector, is_image_classifier, pick
from tui_trainer.errors import first_line
from tui_trainer.run.events import Boundary, ClassResults, LayerHealth, LogMessage, Reason, RecordLost, Sink

BOUNDARY_EVERY = 1.0  # seconds of training between two decision boundaries
SAMPLE_EVERY = 2.0  # seconds between two image samples, and the last epoch's: picking and writing one takes 5-20 ms
# (benchmarks/images.py), a share worth saving on an image folder whose epochs take 30 ms on a GPU


class Watch:
    """A fit's diagnostics, hints and final reports (``monitor`` None: gradient statistics are off)."""

    def __init__(self, cfg: RunConfig, model: nn.Module, data: DataBundle, monitor: GradientMonitor | None,
                 world: World, sink: Sink, progress: Progress) -> None:
        self.cfg, self.model, self.data, self.monitor = cfg, model, data, monitor
        self.world, self.sink, self.progress = world, sink, progress
        self.layers: tuple[LayerHealth, ...] = ()  # the last interval's layer health rows
        self.alarmed: set[str] = set()
        self._probe: torch.Tensor | None = None
        self._last_boundary = -1e9
        self._boundary_epoch = 0
        self._last_sample = -1e9

    def layer_health(self, table: list[float]) -> None:
        """The interval's (layers, 3) health table, already on the host: kept for the events, alarms said."""
        names = self.monitor.names if self.monitor is not None else []
        self.layers = health_rows(names, [table[3 * i: 3 * i + 3] for i in range(len(names))])
        self.alarm(gradient_alarms(self.layers, self.cfg.model.activation))

    def alarm(self, alarms: list[tuple[str, str]], where: str | None = None) -> None:
        """Emit each kind of alarm or hint once per run."""
        for kind, text in alarms:
            if kind not in self.alarmed:
                self.alarmed.add(kind)
                p = self.progress
                self.sink.emit(LogMessage("warning", f"{where or f'epoch {p.epoch + 1}, step {p.step}'}: {text}"))

    def dead_units(self) -> dict[str, float]:
        """Share of never-active units per ReLU layer on one validation batch (empty when not watching)."""
        if self.monitor is None:
            return {}
        if self._probe is None:  # one validation batch, taken once and kept on the device
            self._probe = next(iter(self.data.val.epoch(0)))[0]
        return dead_units(self.model, self._probe)  # curve_hints reads them from the rows and decides

    def sample_collector(self) -> SampleCollector | None:
        """A collector for this epoch's validation pass when the image views apply (one process, an image
        classifier; a sample that failed once is not tried again) and one is due (``SAMPLE_EVERY``), else None."""
        if "samples" in self.alarmed or self.world.size > 1 or not is_image_classifier(self.data):
            return None
        now = time.perf_counter()
        if self.progress.epoch + 1 < self.cfg.train.epochs and now - self._last_sample < SAMPLE_EVERY:
            return None
        self._last_sample = now
        return SampleCollector()

    def samples(self, collect: SampleCollector | None) -> None:
        """Emit the epoch's validation sample (a ``run.samples.SampleSet``) picked from ``collect``."""
        if collect is None:
            return
        try:
            sample = pick(collect.table(), self.data, self.progress.epoch, self.model)
        except Exception as exc:  # noqa: BLE001 - a view's sample must never turn training into a failure
            self.alarm([("samples", f"no image sample: {first_line(exc)}")], where=f"after epoch {self.progress.epoch}")
            return
        self.sink.emit(sample)

    def after_epoch(self) -> None:
        """The curve's hints from the epoch rows so far, and the decision boundary when one is due."""
        if self.monitor is None:
            return
        p = self.progress
        self.alarm(curve_hints(p.rows), where=f"after epoch {p.epoch}")
        if self._shows_boundary() and self._boundary_due():
            self._emit_boundary()

    def at_end(self, reason: Reason) -> None:
        """What a run that ended as asked shows last: the boundary it ended with, its per-class results."""
        epoch = self.progress.epoch
        if not reason.as_asked or not epoch:
            return
        if self._shows_boundary() and self._boundary_epoch != epoch:
            self._emit_boundary()  # the boundary the run ended with (early stopped, stopped)
        if self.data.task == "classification":
            try:
                self._emit_class_results()
            except RecordLost:
                raise
            except Exception as exc:  # noqa: BLE001 - a report must never turn a finished run into a failure
                self.sink.emit(LogMessage("warning", f"per-class results unavailable: {first_line(exc)}"))

    def _shows_boundary(self) -> bool:
        """A 2-D classifier watched by diagnostics: its decision boundary is drawn."""
        return self.monitor is not None and self.data.input_shape == (2,) and self.data.task == "classification"

    def _boundary_due(self) -> bool:
        """A decision boundary at most once a second of training, and after the last epoch: on a preset whose
        epochs take 20-70 ms, computing and writing one every epoch cost 3% of the run (RESULTS.md)."""
        now = time.perf_counter()
        if self.progress.epoch >= self.cfg.train.epochs or now - self._last_boundary >= BOUNDARY_EVERY:
            self._last_boundary = now
            return True
        return False

    def _emit_boundary(self) -> None:
        val = self.data.val
        if not hasattr(val, "x"):
            return
        xr, yr, classes, points = decision_grid(self.model, val.x, val.y)
        epoch = self._boundary_epoch = self.progress.epoch
        self.sink.emit(Boundary(epoch, xr, yr, 64, 24, tuple(classes), tuple(map(tuple, points))))

    def _emit_class_results(self) -> None:
        from tui_trainer.engine.report import class_report, format_class_report

        report = class_report(self.model, self.data, self.world)
        self.sink.emit(ClassResults(report.class_names, report.confusion, format_class_report(report)))
