"""Whole-step CUDA-graph capture for ``train.compile`` on a GPU.

One training step (forward, loss, backward, clipping, the optimizer's step, and the writes of
the step's loss and correct count into the engine's device buffers) is recorded once as a CUDA
graph and replayed for every later step. On the H100 of benchmarks/RESULTS.md an eager step of
the lecture's MLP costs ~2.5 ms of host time (~12 us per kernel launch, ~50 launches and the
optimizer's Python) while the GPU works ~0.3 ms of it; a replay is one launch.

A replay is the same step as an eager one only if:
* every replayed batch has the captured shape (a batch of another size, the epoch's last, runs eagerly);
* nothing in the step syncs with the host or draws host-side randomness (dropout draws from
  the CUDA generator, which graphs support);
* the optimizer keeps its step count and learning rate in device tensors
  (``optim.build_optimizer(capture=True)``), so schedules and a rate set by hand, which fill
  that tensor, reach the replayed kernels;
* the inputs are copied into the graph's static buffers before each replay, and the slot the
  step writes its loss into is a device tensor the graph advances itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

WARM_UP_STEPS = 3  # eager steps on a side stream before capture (lazy init, autotuning, optimizer state)


class StepGraph:
    """A recorded training step. ``body(x, y, slot)`` is the engine's step; ``slot`` a (1,) device tensor."""

    def __init__(self, body: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None], xb: torch.Tensor,
                 yb: torch.Tensor) -> None:
        self.x, self.y = xb.clone(), yb.clone()  # static inputs, same shape, dtype and memory format
        self.slot = torch.zeros(1, dtype=torch.long, device=xb.device)
        self.slot_value = 0  # the host's copy of where the next replay writes
        self.graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()  # host sync: once, before capture (the warm-up stream must be done)
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):  # the UI thread may use CUDA meanwhile
            body(self.x, self.y, self.slot)
            self.slot.add_(1)

    def run(self, xb: torch.Tensor, yb: torch.Tensor, slot: int) -> None:
        """One training step on ``xb, yb``, its loss written at ``slot`` of the engine's buffers."""
        if slot != self.slot_value:  # an eager step or a flush moved the slot since the last replay
            self.slot.fill_(slot)
        self.x.copy_(xb)
        self.y.copy_(yb)
        self.graph.replay()
        self.slot_value = slot + 1

