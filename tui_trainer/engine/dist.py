"""Data-parallel training through PyTorch's own ``torch.distributed`` (DDP, launched by torchrun).

``World`` is this process's place in the job: its rank, the number of ranks, and the collectives the
loop needs. With one process every method is a no-op, so the loop reads the same either way.

What crosses ranks, and when (measured in benchmarks/RESULTS.md):
* gradients: DDP's all-reduce inside backward, every step;
* the interval's loss sum, correct count, sample count and non-finite count: one all-reduce per log
  interval, where a single process reads its device buffers anyway;
* validation sums: one all-reduce per epoch;
* on CUDA, each rank's memory in use and free: one all-gather per log interval, for the app's display;
* commands (stop, save, set_lr, pause, resume, step): only rank 0 has the control endpoint; it
  broadcasts what it received at each log interval, and every rank acts on it at that same step. A
  broadcast per step would need a host sync per step on a GPU; under DDP "within one step" therefore
  becomes "within one log interval" (train.log_every steps).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from tui_trainer.run.controls import COMMANDS, Command

MAX_COMMANDS = 8  # per broadcast; more wait for the next one
_FIELDS = 1 + 2 * MAX_COMMANDS


@dataclass
class World:
    """This process's rank among ``size`` ranks (``local_rank`` on its machine)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # where collectives run (the training device)

    @property
    def distributed(self) -> bool:
        """More than one rank."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run directory and owns the control endpoint."""
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place (no-op with one rank)."""
        if self.distributed:
            torch.distributed.all_reduce(tensor)
        return tensor

    def share_commands(self, commands: list[Command]) -> list[Command]:
        """Rank 0's commands, on every rank (rank 0 keeps its own, to acknowledge them). One broadcast."""
        if not self.distributed:
            return commands
        packed = torch.zeros(_FIELDS, dtype=torch.float64, device=self.device)
        if self.main:
            taken = commands[:MAX_COMMANDS]
            packed[0] = len(taken)
            for i, c in enumerate(taken):
                packed[1 + 2 * i] = COMMANDS.index(c.name) + 1
                packed[2 + 2 * i] = float(c.args.get("lr", 0.0))
        torch.distributed.broadcast(packed, src=0)
        if self.main:
            return commands[:MAX_COMMANDS]
        values = packed.tolist()  # host sync: at a log interval, where the interval's read already waited
        out = []
        for i in range(int(values[0])):
            name = COMMANDS[int(values[1 + 2 * i]) - 1]
            out.append(Command(name, {"lr": values[2 + 2 * i]} if name == "set_lr" else {}))
        return out

    def gather_memory(self, mine: tuple[int, int] | None) -> tuple[tuple[int, int], ...]:
        """Every rank's (allocated, free) device bytes, in rank order; empty with one rank or off CUDA
        (every rank passes None there alike). One all-gather of two integers, at a log interval."""
        if not self.distributed or mine is None:
            return ()
        local = torch.tensor(mine, dtype=torch.int64, device=self.device)
        every = [torch.empty_like(local) for _ in range(self.size)]
        torch.distributed.all_gather(every, local)
        return tuple((int(a), int(b)) for a, b in torch.stack(every).tolist())

    def close(self) -> None:
        """Leave the process group."""
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def world_from_env(device_kind: str) -> World:
    """The World torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK); the process group
    is joined here (gloo on a CPU, nccl on CUDA). Without torchrun: one rank."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device_kind == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"train.nproc asks for {os.environ.get('LOCAL_WORLD_SIZE', local_rank + 1)} processes here "
                             f"but {torch.cuda.device_count()} GPU(s) are visible; allowed: 1 to {torch.cuda.device_count()}")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    timeout = datetime.timedelta(seconds=float(os.environ.get("TUI_TRAINER_DIST_TIMEOUT", "600")))
    torch.distributed.init_process_group(backend, timeout=timeout)
    return World(rank=rank, size=size, local_rank=local_rank, device=device)
