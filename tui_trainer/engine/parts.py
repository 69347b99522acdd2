"""Small pieces the loop is built from: setup, validation, seeds (the loss is in losses.py, early stopping in
stopping.py; both re-exported here)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tui_trainer.config import PLUGIN_PREFIX, RunConfig, from_dict
from tui_trainer.config.factories import names_code
from tui_trainer.data import DataBundle, load_data, peek_shape
from tui_trainer.engine.device import pick_device
from tui_trainer.engine.dist import World
from tui_trainer.engine.factories import DryRun, check_one_batch, first_batch, model_label, own_model
from tui_trainer.engine.losses import build_loss, correct_count, loss_for
from tui_trainer.engine.models import build_model, count_params, eval_mode, format_summary, layer_summary
from tui_trainer.engine.stopping import EarlyStopping
from tui_trainer.usercode import described

__all__ = ["EarlyStopping", "build_loss", "correct_count", "describe_model", "epoch_seed", "evaluate", "loss_for",
           "prepare",
           "warm_up"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffling seed of one epoch: a resumed run replays exactly the same order."""
    return seed * 1_000_003 + epoch


def prepare(cfg: RunConfig, lap: Callable[[str], None] | None = None) -> tuple[torch.device, DataBundle, nn.Module]:
    """Device, data and model for ``cfg`` (seeded). Raises ConfigError/DataError on bad input. ``lap``: called with
    "device", "data" and "model" as each is ready (engine.progress.Startup)."""
    lap = lap or (lambda _name: None)
    device = pick_device(cfg.train.device)
    if device.type in ("cuda", "mps"):  # the context is made lazily, by the first tensor there: make it here
        torch.empty(0, device=device)
        getattr(torch, device.type).synchronize()
    lap("device")
    torch.manual_seed(cfg.train.seed)
    data = load_data(cfg, device)
    lap("data")
    model = build_model(cfg.model, data.input_shape, data.out_features, input_norm=data.pixel_norm).to(device)
    if cfg.train.channels_last and len(data.input_shape) == 3:
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda" and len(data.input_shape) == 3:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
    if names_code(cfg):  # the user's code: one batch through it before anything trains (errors at their line)
        data.checked = dry_run_code(cfg, data, model).line()
    lap("model")
    return device, data, model


def dry_run_code(cfg: RunConfig, data: DataBundle, model: nn.Module) -> DryRun:
    """One batch forward, loss and backward through the user's model or data; ConfigError at their file:line."""
    from tui_trainer.data.custom import data_label

    label = model_label(cfg.model) if own_model(cfg.model) else data_label(cfg)
    loss_fn = loss_for(cfg, data.task)
    return check_one_batch(model, data, loss_fn, label)


@torch.no_grad()
def evaluate(model: nn.Module, data: DataBundle, loss_fn: nn.Module, amp: bool = False,
             world: World | None = None, collect: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
             ) -> tuple[float, float | None]:
    """Validation loss (summed over samples, divided by their count) and accuracy; under DDP each rank
    validates its share and the sums are all-reduced, so every rank gets the same numbers. ``collect``: also
    called with each batch's outputs and labels, in the split's order (engine/samples.py keeps per-example
    results for the image views from it, without a second pass)."""
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    with eval_mode(model):
        for xb, yb in data.val.epoch(0):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(xb)
            loss_sum += loss_fn(out.float(), yb) * len(yb)
            if collect is not None:
                collect(out, yb)
            hits = correct_count(out, yb, data.task)
            if hits is not None:
                correct += hits
            n += len(yb)
    sums = torch.stack([loss_sum.double(), correct.double(), torch.tensor(float(n), device=device).double()])
    if world is not None:
        world.all_reduce(sums)
    # host sync: once per validation pass
    loss_total, correct_total, count = sums.tolist()
    val_loss = loss_total / max(count, 1)
    return val_loss, (correct_total / max(count, 1) if data.task == "classification" else None)


def describe_model(cfg: RunConfig) -> tuple[int, int, str]:
    """(total, trainable, layer table) of ``cfg``'s model, without loading the data, and never with pretrained
    weights (the shapes and counts are the same, and nothing is downloaded).

    This package's own architectures are built on the CPU, inside ``fork_rng`` so the global generator is left as
    it was: their one forward pass takes milliseconds, where on the meta device it runs torch's Python
    decompositions, which import torch._dynamo and sympy (1.9 s on this 2-core CPU). torchvision's big models
    are built on the meta device (no memory, no weights): densenet121's CPU forward at 224 px costs more."""
    if names_code(cfg):  # the user's code: made, and one batch run through it, on the CPU
        cpu = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device="cpu"))
        with torch.random.fork_rng(devices=[]):
            data = load_data(cpu, torch.device("cpu"))
            model = build_model(cpu.model, data.input_shape, data.out_features, input_norm=data.pixel_norm)
            checked = dry_run_code(cpu, data, model)
            rows = layer_summary(model, data.input_shape, first_batch(data)[0])
        total, trainable = count_params(model)
        heads = [described(kind, choice, factory) for kind, choice, factory in
                 (("model", cfg.model.arch, cfg.model.factory), ("data", cfg.data.dataset, cfg.data.factory))
                 if choice == "custom" or choice.startswith(PLUGIN_PREFIX)]
        return total, trainable, "\n".join([*heads, format_summary(rows, model), checked.line()])
    shape, out = peek_shape(cfg)
    spec = dataclasses.replace(cfg.model, pretrained=False)
    device = "meta" if spec.arch.startswith("torchvision:") else "cpu"
    with torch.random.fork_rng(devices=[]), torch.device(device):
        model = build_model(spec, shape, out)
    total, trainable = count_params(model)
    return total, trainable, format_summary(layer_summary(model, shape), model)


def warm_up() -> None:
    """Pay torch's lazy imports now: the first optimizer built in a process imports torch._dynamo
    and sympy (seconds on a small CPU)."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1e-3, foreach=True)
    (p * 2).sum().backward()
    torch.nn.utils.clip_grad_norm_([p], 1.0, foreach=True)
    opt.step()


def config_from_checkpoint(ck: dict[str, Any]) -> RunConfig:
    """The config a checkpoint carries (validated again)."""
    return from_dict(copy.deepcopy(ck["config"]), source="checkpoint config")
