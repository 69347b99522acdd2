"""What the tool does with the objects a user's loop hands to ``track.init``: its model and optimizers.

Per-layer gradient and weight norms (the layers as the engine's ``GradientMonitor`` counts them: modules that
own trainable parameters), the learning rate read and set on every parameter group, a checkpoint of the weights
as the tool writes its own, and the words for the model and its device. Everything here works on the objects
handed over and imports torch only inside its functions, so ``run/`` stays importable without torch; a loop
that hands nothing over never calls it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from tui_trainer.run.events import LayerHealth


def optimizers_of(optimizer: Any) -> list[Any]:
    """``optimizer`` (one, a list or a tuple, or None) as a list; ValueError naming what is not an optimizer."""
    if optimizer is None:
        return []
    found = list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
    for o in found:
        if not hasattr(o, "param_groups") or not hasattr(o, "state_dict"):
            raise ValueError(f"optimizer must be a torch optimizer (or a list of them), not {type(o).__name__}")
    return found


def current_lr(optimizers: list[Any]) -> float:
    """The first group's rate of the first optimizer (``engine.optim.current_lr``: a tensor rate is read, a host
    sync, at the log interval)."""
    from tui_trainer.engine.optim import current_lr as first_rate

    return first_rate(optimizers[0])


def set_lr(optimizers: list[Any], lr: float) -> None:
    """Every group of every optimizer (``engine.optim.set_lr``: a tensor rate is filled in place)."""
    from tui_trainer.engine.optim import set_lr as set_rate

    for optimizer in optimizers:
        set_rate(optimizer, lr)


def unwrap(model: Any) -> Any:
    """The module itself, out of torch.compile (``._orig_mod``) and (Distributed)DataParallel (``.module``)."""
    while True:
        if type(model).__name__ == "OptimizedModule" and hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif type(model).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(model, "module"):
            model = model.module
        else:
            return model


def count_params(model: Any, trainable: bool) -> int:
    """Parameters of ``model`` (those that train, with ``trainable``); 0 without a model."""
    if model is None:
        return 0
    from tui_trainer.engine.models import count_params as counts

    return counts(model)[1 if trainable else 0]


def device_words(model: Any) -> str:
    """Where the model is, in the engine's words ("cuda:0: NVIDIA H200, ..."), or that the loop did not say."""
    if model is None:
        return "your loop's device"
    param = next(iter(model.parameters()), None)
    if param is None:
        return "cpu"
    from tui_trainer.engine.device import describe_device

    return describe_device(param.device).describe()


def model_summary(model: Any, lines: int = 60) -> str:
    """The model as PyTorch prints it, at most ``lines`` lines."""
    if model is None:
        return "(no model was handed to track.init)"
    text = str(model).splitlines()
    return "\n".join(text[:lines] + ([f"… ({len(text) - lines} more lines)"] if len(text) > lines else []))


def save_weights(path: Path, model: Any, optimizers: list[Any], kind: str, **state: Any) -> None:
    """A checkpoint as the tool writes its own (atomically, fsynced; loadable with ``torch.load(path,
    weights_only=True)`` and by ``tui-trainer evaluate``): the unwrapped model's state, the optimizers' and
    ``state`` (epoch, step, the loop's config, its metrics rows ...)."""
    from tui_trainer.engine.checkpoint import FORMAT_VERSION, save_checkpoint

    states = [o.state_dict() for o in optimizers]
    save_checkpoint({"format": FORMAT_VERSION, "kind": kind, "model": unwrap(model).state_dict(),
                     "optimizer": states[0] if len(states) == 1 else states or None, "saved_at": time.time(), **state},
                    path)


class Layers:
    """A model's layers and their gradient and weight norms, computed on the device and read in one transfer.
    The update ratio is not seen from outside the loop's step: nan."""

    def __init__(self, model: Any) -> None:
        import torch

        self.names: list[str] = []
        self.params: list[Any] = []
        index: list[int] = []
        for name, module in unwrap(model).named_modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if own:
                self.names.append(name or type(module).__name__)
                self.params += own
                index += [len(self.names) - 1] * len(own)
        self.device = self.params[0].device if self.params else torch.device("cpu")
        self.index = torch.tensor(index, device=self.device, dtype=torch.long)

    def health(self) -> tuple[LayerHealth, ...]:
        """Each layer's norms now; () when no gradient is there (before the first backward, after zero_grad)."""
        import torch

        if not self.params or all(p.grad is None for p in self.params):
            return ()
        with torch.no_grad():
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
            tensors = [t.detach() for t in grads + self.params]
            try:  # one multi-tensor kernel where torch has it (the engine's diagnostics do the same)
                found = torch._foreach_norm(tensors)
            except (AttributeError, RuntimeError, TypeError):
                found = [torch.linalg.vector_norm(t) for t in tensors]
            squares = torch.stack([n.float().to(self.device) for n in found]).pow(2).view(2, -1)
            per_layer = torch.zeros(2, len(self.names), device=self.device).index_add_(1, self.index, squares).sqrt()
            g, w = per_layer.tolist()  # host sync: once per log interval
        return tuple(LayerHealth(n, gn, wn, math.nan) for n, gn, wn in zip(self.names, g, w, strict=True))

    def memory(self) -> tuple[int, int] | None:
        """(allocated, free) bytes of the model's CUDA device (host-side counters, no stream sync); None elsewhere."""
        if self.device.type != "cuda":
            return None
        from tui_trainer.engine.device import memory_in_use

        return memory_in_use(self.device)


def torch_share(commands: list[dict]) -> list[dict]:
    """Rank 0's commands, on every rank, through the process group the loop set up (a collective: every rank calls
    it at the same point); as they are when there is none yet."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return commands
    box = [commands]
    dist.broadcast_object_list(box, src=0)
    return box[0]
