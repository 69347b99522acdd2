"""The user's own model, and the one-batch check of the user's code before a run starts.

A model factory (``model.arch = "custom"`` with ``model.factory``, or ``"plugin:NAME"``, an entry point in the group
``tui_trainer.models``) is called with keyword arguments only, as torchvision's model builders take theirs::

    def build(*, input_shape: tuple[int, ...], num_outputs: int, **args) -> torch.nn.Module

``input_shape`` is one sample's shape (``(1, 28, 28)``, ``(2,)``), ``num_outputs`` the width the output must have
(the number of classes; 1 for regression and the binary head); ``args`` is ``model.args``. A factory that does not
take ``input_shape`` or ``num_outputs`` is not given them. The module returns what the built-in models return:
logits (the loss is cross-entropy), or one value per sample for regression.

``check_one_batch`` is the dry run ``tui-trainer train --dry-run``, ``summary`` and the app's helper do, and every
run does at setup when it trains code of the user's: one batch forward, the loss and backward, on the model's own
weights (restored afterwards, gradients cleared, the random generators left as they were). What it finds wrong is
one ConfigError line at the user's own file and line.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from tui_trainer.config import PLUGIN_PREFIX, ModelConfig
from tui_trainer.data import DataBundle, LoaderBatches
from tui_trainer.errors import ConfigError
from tui_trainer.usercode import a_type, call, factory_spec, load_function, user_line


def own_model(cfg: ModelConfig) -> bool:
    """Whether the model comes from the user's own factory (``custom`` or ``plugin:NAME``)."""
    return cfg.arch == "custom" or cfg.arch.startswith(PLUGIN_PREFIX)


def model_label(cfg: ModelConfig) -> str:
    """How errors about the model factory start: ``model.factory = 'my_cnn.py:build'``."""
    return factory_spec("model", cfg.arch, cfg.factory)[1]


def build_own_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """The nn.Module the user's factory builds; ConfigError (one line) if it cannot be had."""
    spec, label = factory_spec("model", cfg.arch, cfg.factory)
    fn = load_function(spec, label)
    given = {"input_shape": tuple(input_shape), "num_outputs": num_outputs}
    try:
        params = inspect.signature(fn).parameters
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        given = {k: v for k, v in given.items() if takes_all or k in params}
    except ValueError:
        pass
    model = call(fn, label, **given, **cfg.args)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{label} returned {a_type(model)}, not a torch.nn.Module")
    if not any(True for _ in model.parameters()):
        raise ConfigError(f"{label} returned a {type(model).__name__} with no parameters: nothing to train")
    return model


@dataclass(frozen=True)
class DryRun:
    """What one batch through the model said: its size, the output's shape and the loss."""

    batch: int
    output_shape: tuple[int, ...]
    loss: float

    def line(self) -> str:
        """``checked one batch through your code: 32 samples -> output 32x10, loss 2.303, backward ok``."""
        return (f"checked one batch through your code: {self.batch} samples -> output "
                f"{'x'.join(map(str, self.output_shape))}, loss {self.loss:.4g}, backward ok")


def first_batch(data: DataBundle, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` training samples, as a batch on the data's device (no DataLoader workers started)."""
    split = data.train
    if isinstance(split, LoaderBatches):
        items = [split.dataset[i] for i in range(min(size, split.n_samples))]
        xb, yb = torch.utils.data.default_collate(items)
        return xb.to(split.device), yb.to(split.device)
    return split.x[:size], split.y[:size]


def _check_output(out: object, yb: torch.Tensor, data: DataBundle, label: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"{label}: the model's forward returned {a_type(out)}; it must return one tensor "
                          "of outputs")
    n, want = len(yb), data.out_features
    shape = "x".join(map(str, out.shape))
    if data.task == "classification":
        ok = out.dim() == 2 and tuple(out.shape) == (n, want) or (want == 1 and tuple(out.shape) == (n,))
        what = f"{data.n_classes} classes" if data.head != "binary" else "the binary head (one logit)"
    else:
        ok = out.dim() >= 1 and out.shape[0] == n and out.numel() == yb.numel()
        what = f"regression targets of {'x'.join(map(str, yb.shape))}"
    if not ok:
        raise ConfigError(f"{label}: the output is {shape} for a batch of {n}; {what} need {n}x{want} "
                          "(build the last layer with num_outputs)")
    return out


def check_one_batch(model: nn.Module, data: DataBundle, loss_fn: nn.Module, label: str) -> DryRun:
    """One batch forward, the loss and backward through the user's code; the model is left as it was."""
    xb, yb = first_batch(data)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    devices = [xb.device.index or 0] if xb.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            model.train()
            try:
                out = model(xb)
            except Exception as exc:  # noqa: BLE001 - the user's forward: their file and line
                raise ConfigError(user_line(exc)) from None
            out = _check_output(out, yb, data, label)
            target = yb.view_as(out) if data.task == "regression" else yb
            try:
                loss = loss_fn(out.float(), target)
                loss.backward()
            except Exception as exc:  # noqa: BLE001
                raise ConfigError(f"{label}: loss or backward failed: {user_line(exc)}") from None
            # host sync: once, before the run starts
            value = float(loss.detach())
    finally:
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
    return DryRun(len(yb), tuple(out.shape), value)
