"""Optimizer, learning-rate schedule, weight-decay groups, L1 penalty and gradient clipping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tui_trainer.config import OptimizerConfig, RegularizationConfig


def param_groups(model: nn.Module, weight_decay: float, decay_biases: bool = False) -> list[dict]:
    """Weight decay on weight matrices and kernels (dim >= 2) only; with ``decay_biases`` on every
    parameter, biases and norm scales too, as ``optimizer(model.parameters(), weight_decay=...)``."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if decay_biases:
        return [{"params": trainable, "weight_decay": weight_decay}]
    decay = [p for p in trainable if p.dim() >= 2]
    no_decay = [p for p in trainable if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


# Optimizers whose step can be recorded in a CUDA graph: their step count lives on the device
# (capturable=True, or the fused kernels) and they take the learning rate as a device tensor.
# Adagrad cannot: its step keeps the count on the host.
CAPTURABLE = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adamax")


def build_optimizer(model: nn.Module, opt: OptimizerConfig, reg: RegularizationConfig,
                    device: torch.device, capture: bool = False) -> torch.optim.Optimizer:
    """The optimizer ``opt.name`` over ``model``'s trainable parameters.

    Multi-tensor (foreach) kernels everywhere; the fused single-kernel step for Adam-family and
    SGD on CUDA, where it saves a launch per parameter. ``capture`` (CUDA, a name in
    CAPTURABLE): the step count on the device and the learning rate a device tensor, so that a
    CUDA graph of the step replays with the current rate (schedules and ``set_lr`` fill it).
    """
    groups = param_groups(model, reg.weight_decay, reg.decay_biases)
    fast: dict = {"foreach": True}
    if device.type == "cuda" and opt.name in ("adam", "adamw", "sgd", "momentum", "nesterov"):
        fast = {"fused": True}
    name = opt.name
    lr: float | torch.Tensor = opt.lr
    if capture:
        lr = torch.tensor(opt.lr, device=device)
        if name not in ("sgd", "momentum", "nesterov"):  # SGD keeps no step count
            fast["capturable"] = True
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, **fast)
    if name == "momentum":
        return torch.optim.SGD(groups, lr=lr, momentum=opt.momentum, **fast)
    if name == "nesterov":
        return torch.optim.SGD(groups, lr=lr, momentum=opt.momentum or 0.9, nesterov=True, **fast)
    if name == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr, eps=opt.eps, **fast)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, eps=opt.eps, momentum=0.0, **fast)
    betas = (opt.beta1, opt.beta2)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=opt.eps, **fast)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=opt.eps, **fast)
    if name == "adamax":
        return torch.optim.Adamax(groups, lr=lr, betas=betas, eps=opt.eps, **fast)
    raise ValueError(name)  # pragma: no cover - the config validator rejects other names


_IMPLEMENTATION = ("foreach", "fused", "capturable", "differentiable")


def _plain(value: Any) -> Any:
    """A one-element tensor as a float, lists and dicts of them likewise; anything else as is."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())  # host sync: only when a checkpoint is written
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` with learning rates and other group settings as plain floats,
    so a checkpoint resumes on any device, with or without graph capture."""
    state = optimizer.state_dict()
    state["param_groups"] = [{k: (v if k == "params" else _plain(v)) for k, v in g.items()}
                             for g in state["param_groups"]]
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved state into ``optimizer`` but keep how this optimizer runs: its foreach, fused
    and capturable flags, a tensor learning rate (filled with the saved value) and step counts on
    the device when it needs them there."""
    mine = [{k: g[k] for k in (*_IMPLEMENTATION, "lr") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, own in zip(optimizer.param_groups, mine, strict=True):
        for key in _IMPLEMENTATION:
            if key in own:
                group[key] = own[key]
        saved = group["lr"]
        if isinstance(own["lr"], torch.Tensor):
            own["lr"].fill_(float(saved))
            group["lr"] = own["lr"]
        else:
            group["lr"] = float(saved)
        on_device = group.get("capturable") or group.get("fused")
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            if isinstance(st.get("step"), torch.Tensor):
                st["step"] = st["step"].to(device=p.device if on_device else "cpu", dtype=torch.float32)


@dataclass
class Schedule:
    """A scheduler and when it steps: after every batch, after every epoch, or on a metric."""

    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None
    per_step: bool = False
    on_metric: bool = False

    def step_batch(self) -> None:
        """Call after each optimizer step."""
        if self.scheduler is not None and self.per_step:
            self.scheduler.step()

    def step_epoch(self, metric: float) -> None:
        """Call after each epoch's validation with the monitored metric (lower is better)."""
        if self.scheduler is None or self.per_step:
            return
        if self.on_metric:
            self.scheduler.step(metric)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        """Scheduler state for a checkpoint ({} when there is none), rates as plain floats."""
        return {} if self.scheduler is None else _plain(self.scheduler.state_dict())

    def load_state_dict(self, state: dict) -> None:
        """Restore from a checkpoint, keeping this run's horizon (a resume may ask for more epochs)."""
        if self.scheduler is not None and state:
            fresh = self.scheduler.state_dict()
            state = dict(state)
            for key in ("total_steps", "_schedule_phases", "T_max"):  # one-cycle and cosine length
                if key in fresh:
                    state[key] = fresh[key]
            self.scheduler.load_state_dict(state)


def build_schedule(optimizer: torch.optim.Optimizer, opt: OptimizerConfig, epochs: int,
                   steps_per_epoch: int) -> Schedule:
    """The learning-rate schedule ``opt.schedule``."""
    s = torch.optim.lr_scheduler
    kind = opt.schedule
    peak = opt.max_lr or opt.lr * 10
    if kind == "none":
        return Schedule(None)
    if kind == "step":
        return Schedule(s.StepLR(optimizer, step_size=opt.step_size, gamma=opt.gamma))
    if kind == "exponential":
        return Schedule(s.ExponentialLR(optimizer, gamma=opt.gamma))
    if kind == "cosine":
        return Schedule(s.CosineAnnealingLR(optimizer, T_max=max(1, epochs), eta_min=opt.min_lr))
    if kind == "one-cycle":
        return Schedule(s.OneCycleLR(optimizer, max_lr=peak, epochs=epochs, steps_per_epoch=max(1, steps_per_epoch),
                                     cycle_momentum=False), per_step=True)
    if kind == "cyclic":
        return Schedule(s.CyclicLR(optimizer, base_lr=opt.lr, max_lr=peak, step_size_up=max(1, steps_per_epoch),
                                   cycle_momentum=False), per_step=True)
    if kind == "plateau":
        return Schedule(s.ReduceLROnPlateau(optimizer, factor=opt.gamma, patience=opt.plateau_patience,
                                            min_lr=opt.min_lr), on_metric=True)
    raise ValueError(kind)  # pragma: no cover


def l1_penalty(model: nn.Module, include_biases: bool = False) -> torch.Tensor:
    """Sum of absolute values of the weight matrices (dim >= 2; every parameter with ``include_biases``,
    as the notes' ``sum(p.abs().sum() for p in self.parameters())``), as one device tensor."""
    weights = [p for p in model.parameters() if p.requires_grad and (include_biases or p.dim() >= 2)]
    return torch.stack([w.abs().sum() for w in weights]).sum()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the first parameter group."""
    lr = optimizer.param_groups[0]["lr"]
    # host sync when the rate is a device tensor (captured steps): called at log intervals and
    # epoch ends only, right after the interval's own read of the loss buffers
    return float(lr.item() if isinstance(lr, torch.Tensor) else lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate (a change made by hand during a run)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
