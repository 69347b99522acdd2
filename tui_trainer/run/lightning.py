"""A Lightning callback that makes any LightningModule's fit a tracked run (``track.py``), watched and steered from
tui-trainer like the tool's own runs::

    from tui_trainer.run.lightning import TrackCallback

    trainer = L.Trainer(max_epochs=10, callbacks=[TrackCallback("mnist-lit", runs_dir="runs")])
    trainer.fit(model, datamodule)

Metrics come from ``trainer.callback_metrics`` (what the module ``self.log``s): the training step's loss at each log
interval (``log_every``, default the trainer's ``log_every_n_steps``) with every other step-level scalar, and at the
end of each training epoch ``val_loss`` (required to record the epoch), ``train_loss``, ``val_acc``, ``train_acc``
(also as ``val/loss`` and the like) with every other epoch-level scalar. The module's per-layer gradient norms are
read at each log interval. Commands act between batches: stop sets ``trainer.should_stop`` (Lightning then ends
the fit and calls its own hooks; last.pt is saved through ``trainer.save_checkpoint``), save writes
``trainer.save_checkpoint(path)`` (Lightning resumes from it) with the keys ``tui-trainer evaluate`` reads, set-lr
sets every group of every optimizer of the trainer, pause holds between batches.

Under DDP every rank runs this callback: rank 0 writes the run folder and serves the endpoint, and at each log
interval its commands reach every rank through ``trainer.strategy.broadcast``, so all ranks stop, save (a Lightning
save meets every rank), pause or change the rate at the same step.

Lightning is an optional extra (``pip install 'tui-trainer[lightning]'``): importing this module imports nothing;
``TrackCallback`` is built on first use on ``lightning.pytorch`` (or ``pytorch_lightning`` when only that is
installed; a ``pytorch_lightning.Trainer`` beside ``lightning`` needs the callback of its own package:
``track_callback("pytorch_lightning")``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from typing import Any

from tui_trainer.run.events import ROW_KEYS

VAL_LOSS = ("val_loss", "val/loss", "loss/val", "valid_loss", "validation_loss")
TRAIN_LOSS = ("train_loss_epoch", "train_loss", "train/loss", "loss/train")
VAL_ACC = ("val_acc", "val/acc", "val_accuracy", "acc/val", "valid_acc")
TRAIN_ACC = ("train_acc_epoch", "train_acc", "train/acc", "train_accuracy", "acc/train")
"""Names a module's ``self.log`` gives its epoch curves, in the order they are looked for."""

_BUILT: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name == "TrackCallback":
        return track_callback()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def track_callback(package: str | None = None) -> type:
    """The callback class on ``package``'s ``Callback`` ("lightning.pytorch", "pytorch_lightning"; None: the first
    installed). ImportError (one line, with the install command) without Lightning."""
    names = [package] if package else ["lightning.pytorch", "pytorch_lightning"]
    for name in names:
        if name in _BUILT:
            return _BUILT[name]
        try:
            pl = importlib.import_module(name)
        except ImportError:
            continue
        _BUILT[name] = _build(pl.Callback)
        return _BUILT[name]
    raise ImportError("TrackCallback needs Lightning: pip install 'tui-trainer[lightning]' (or pip install lightning)")


def _first(metrics: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    return next(((n, metrics[n]) for n in names if n in metrics), (None, None))


def _scalar(value: Any) -> bool:
    """A number or a one-element tensor (what ``run.log`` takes); anything else a module logs is left out."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True  # a value that is not finite is the run's to leave out, with a warning
    numel = getattr(value, "numel", None)
    return numel is not None and numel() == 1


def _build(base: type) -> type:
    from tui_trainer.run.track import Run

    class TrackCallback(base):  # type: ignore[misc, valid-type]
        """Track a Lightning fit as a tui-trainer run (see the module docstring). ``name``: the run's (default: the
        module's class); ``config``: kept for ``compare`` (default: the module's hparams)."""

        def __init__(self, name: str | None = None, config: Mapping[str, Any] | None = None, runs_dir: str = "runs",
                     log_every: int | None = None, monitor: str = "val_loss", task: str = "classification",
                     folder: str | None = None) -> None:
            super().__init__()
            self.name, self.config, self.runs_dir, self.log_every = name, config, runs_dir, log_every
            self.monitor, self.task, self.folder = monitor, task, folder
            self.run: Run | None = None
            self._trainer: Any = None
            self._saving = False
            self._loss_sum: Any = None  # the epoch's training-step losses, summed on the device
            self._losses = 0

        # -- the fit --------------------------------------------------------------------------------

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            if self.run is not None:
                self.run.finish()  # a second fit with the same callback: a run of its own
            self._trainer = trainer
            batches = trainer.num_training_batches
            config = self.config if self.config is not None else dict(getattr(pl_module, "hparams", {}) or {})
            self.run = Run(self.name or type(pl_module).__name__, config, runs_dir=self.runs_dir, model=pl_module,
                           optimizer=list(trainer.optimizers), epochs=trainer.max_epochs if (trainer.max_epochs or 0)
                           > 0 else None, steps_per_epoch=int(batches) if math.isfinite(batches) and batches > 0
                           else None, log_every=self.log_every or trainer.log_every_n_steps, on_save=self._save,
                           monitor=self.monitor, task=self.task, folder=self.folder, rank=trainer.global_rank)
            if trainer.world_size > 1:  # rank 0's commands reach every rank at the log interval
                self.run._share = lambda commands: trainer.strategy.broadcast(commands, src=0)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            run = self.run
            if run is None:
                return
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if loss is not None and hasattr(loss, "detach"):
                loss = loss.detach()
                self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss  # on the device: no sync
                self._losses += 1
            step = trainer.global_step
            metrics: dict[str, Any] = {}
            if run.due(step):
                if run.batch_size is None:
                    run.batch_size = _batch_len(batch) * trainer.world_size or None
                metrics = {k.removesuffix("_step"): v for k, v in trainer.callback_metrics.items()
                           if _scalar(v) and not k.endswith("_epoch") and k not in ("loss", "lr", "epoch", "step")}
                if loss is not None:
                    metrics["loss"] = loss
                for names in (TRAIN_LOSS, VAL_LOSS, VAL_ACC, TRAIN_ACC):  # the loss, and the epochs' curves
                    for n in names:
                        metrics.pop(n, None)
            run.log(step, **metrics)
            if run.should_stop:
                trainer.should_stop = True

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            run = self.run
            if run is None:
                return
            metrics = {k: v for k, v in trainer.callback_metrics.items() if _scalar(v)}
            val_name, val_loss = _first(metrics, VAL_LOSS)
            train_name, train_loss = _first(metrics, TRAIN_LOSS)
            if train_loss is None and self._losses:
                train_loss = self._loss_sum / self._losses  # the mean of the epoch's training steps
            self._loss_sum, self._losses = None, 0
            if val_loss is None or train_loss is None:
                run._warn_once("no val_loss", "no val_loss in trainer.callback_metrics (self.log('val_loss', ...) in "
                                              "validation_step): epochs are not recorded, only steps")
                run.check()
                return
            va_name, val_acc = _first(metrics, VAL_ACC)
            ta_name, train_acc = _first(metrics, TRAIN_ACC)
            used = {val_name, train_name, va_name, ta_name}
            extra = {k.removesuffix("_epoch"): v for k, v in metrics.items()
                     if k not in used and not k.endswith("_step") and k.removesuffix("_epoch") not in ROW_KEYS
                     and k != "loss"}
            run.epoch(trainer.current_epoch + 1, train_loss=train_loss, val_loss=val_loss, train_acc=train_acc,
                      val_acc=val_acc, **extra)
            if run.should_stop:
                trainer.should_stop = True

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            if self.run is not None:
                self.run.finish()

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            if self.run is not None:
                self.run._end_by(exception)

        # -- checkpoints ---------------------------------------------------------------------------

        def _save(self, path: str) -> str:
            """``c`` and the stop's last.pt: Lightning's own save (every rank calls it: it meets them), a whole one, so
            ``trainer.fit(ckpt_path=...)`` resumes from it; ``torch.load(weights_only=True)`` reads it (plain values)."""
            self._saving = True
            try:
                self._trainer.save_checkpoint(path)
            finally:
                self._saving = False
            return path

        def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            """Our saves carry the keys ``tui-trainer evaluate`` reads (the module's weights are shared with Lightning's
            ``state_dict``: written once); the module's own saves are left as Lightning writes them."""
            if not self._saving or self.run is None:
                return
            from tui_trainer.engine.checkpoint import FORMAT_VERSION
            from tui_trainer.run.track_record import SOURCE, script_path

            run = self.run
            checkpoint.update({"format": FORMAT_VERSION, "source": SOURCE, "model": checkpoint["state_dict"],
                               "config": run.config, "step": trainer.global_step, "name": run.name,
                               "epochs_done": run._epochs_done,  # Lightning's own "epoch" counts from 0 and stays
                               "script": script_path(), "history": list(run._rows), "run_dir": str(run.path)})

    return TrackCallback


def _batch_len(batch: Any) -> int:
    """Samples in a batch (a tensor, or a tuple/list/dict whose first tensor counts them); 0 when it cannot tell."""
    if isinstance(batch, Mapping):
        batch = next(iter(batch.values()), None)
    if isinstance(batch, (list, tuple)):
        batch = batch[0] if batch else None
    shape = getattr(batch, "shape", None)
    return int(shape[0]) if shape else 0
