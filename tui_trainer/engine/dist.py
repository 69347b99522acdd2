"""Data-parallel training through PyTorch's own ``torch.distributed`` (DDP, launched by torchrun).

``World`` is this process's place in the job: its rank, the number of ranks, and the collectives the
loop needs. With one process every method is a no-op, so the loop reads the same either way.

``strategy(world, cfg)`` is the one object through which the loop follows the data-parallel rules (as
Lightning keeps DDP in a Strategy): ``OneProcess`` takes the data whole, the model as it is, the step
``steps.choose_step`` picks, and acts on commands between steps; ``DataParallel`` shards the data,
wraps the model in DistributedDataParallel, takes eager steps, seeds each rank's dropout, shares rank
0's commands at log intervals (``SharedCommands``), and names a failure caused by another rank.

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
from torch import nn

from tui_trainer.config import RunConfig
from tui_trainer.data import DataBundle
from tui_trainer.engine.optim import Schedule
from tui_trainer.engine.steps import EagerStep, StepBody, TrainStep, choose_step
from tui_trainer.errors import first_line
from tui_trainer.run.controls import COMMANDS, Command, Controls
from tui_trainer.run.events import LogMessage, Sink

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


class OwnCommands:
    """One process: the commands sent since the last step, acted on before the next one."""

    shared = False  # acted on between steps, not only at log intervals

    def __init__(self, controls: Controls) -> None:
        self.controls = controls

    def between_steps(self) -> list[Command]:
        """Commands to act on before the next step (one truth test when none)."""
        return self.controls.poll()

    def wait(self, seconds: float) -> list[Command]:
        """Commands to act on now, waiting up to ``seconds`` for one (while paused)."""
        if seconds > 0:
            self.controls.wait(seconds)
        return self.controls.poll()


class SharedCommands:
    """Under DDP only rank 0 has the control endpoint: it collects commands between steps, and at each log interval
    broadcasts them so that every rank acts on them at that same step (while paused rank 0 broadcasts every
    ``wait`` seconds, so the ranks keep meeting)."""

    shared = True

    def __init__(self, controls: Controls, world: World) -> None:
        self.controls, self.world = controls, world
        self.pending: list[Command] = []  # rank 0: waiting for the next log interval

    def between_steps(self) -> list[Command]:
        """Nothing to act on between steps: rank 0 keeps what came for the next log interval."""
        if self.world.main:
            self.pending += self.controls.poll()
        return []

    def wait(self, seconds: float) -> list[Command]:
        """Rank 0's commands, on every rank (one broadcast; rank 0 first waits up to ``seconds`` for one)."""
        if self.world.main:
            if seconds > 0:
                self.controls.wait(seconds)
            self.pending += self.controls.poll()
        shared = self.world.share_commands(self.pending)
        if self.world.main:
            self.pending = self.pending[len(shared):]
        return shared


Commands = OwnCommands | SharedCommands


class OneProcess:
    """Training in one process: the data whole, the model as it is, the step chosen for the device, commands acted
    on between steps."""

    def __init__(self, world: World, cfg: RunConfig) -> None:
        self.world, self.cfg = world, cfg

    def shard(self, data: DataBundle) -> None:
        """Each rank's part of every batch: here all of it."""

    def wrap(self, body: StepBody, sink: Sink) -> nn.Module:
        """The module the fit trains and checkpoints hold (here ``body.model`` itself)."""
        return body.model

    def train_step(self, body: StepBody, schedule: Schedule, sink: Sink) -> TrainStep:
        """How each step runs (``steps.choose_step``: eager, compiled or captured)."""
        return choose_step(self.cfg, body, schedule, sink)

    def commands(self, controls: Controls) -> Commands:
        """Where the loop takes its commands from."""
        return OwnCommands(controls)

    def seed(self, step: int) -> None:
        """Seed this rank's own randomness (one process: the seed the setup drew from stays)."""

    def failure(self, exc: BaseException, where: str) -> str | None:
        """What to say when ``exc`` is another rank's failure, not this one's (one process: never)."""
        return None


class DataParallel(OneProcess):
    """Training as one rank of several (DDP): see the module docstring for what crosses ranks and when."""

    def shard(self, data: DataBundle) -> None:
        """Each rank takes its part of every batch (see data.Sharding)."""
        w = self.world
        data.train.shard(w.rank, w.size, even=True)
        data.val.shard(w.rank, w.size, even=False)

    def wrap(self, body: StepBody, sink: Sink) -> nn.Module:
        """The model in DistributedDataParallel for the step's forward (SyncBatchNorm first when asked); the plain
        module is returned, so checkpoints hold its state and resume on any number of ranks."""
        if self.cfg.train.sync_batch_norm:
            body.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(body.model)
        if self.cfg.train.compile != "off" and body.device.type == "cuda":
            sink.emit(LogMessage("info", f"train.compile = {self.cfg.train.compile}: the captured step is off under "
                                         "data parallel (not yet shown to be exact there); eager steps"))
        ids = [self.world.local_rank] if body.device.type == "cuda" else None
        body.forward = nn.parallel.DistributedDataParallel(body.model, device_ids=ids)
        return body.model

    def train_step(self, body: StepBody, schedule: Schedule, sink: Sink) -> TrainStep:
        """Eager steps (the forward is DDP's, wrapped above)."""
        return EagerStep(body, schedule, sink)

    def commands(self, controls: Controls) -> Commands:
        """Rank 0's commands, shared at log intervals."""
        return SharedCommands(controls, self.world)

    def seed(self, step: int) -> None:
        """Dropout and augmentation draw differently on each rank (the weights started equal: every rank seeded the
        same before building the model, and DDP broadcasts rank 0's anyway)."""
        from tui_trainer.engine.parts import epoch_seed  # parts imports this module

        torch.manual_seed(epoch_seed(self.cfg.train.seed, step * 101 + self.world.rank + 1))

    def failure(self, exc: BaseException, where: str) -> str | None:
        """A collective that failed because another rank went away (gloo and nccl say it in their own words)."""
        text = str(exc).lower()
        if isinstance(exc, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection", "peer", "timed out")):
            return (f"another rank of this data-parallel run failed or was killed {where}, so every rank stops "
                    f"({first_line(exc, 100)})")
        return None


def strategy(world: World, cfg: RunConfig) -> OneProcess:
    """The data-parallel rules for ``world``: ``DataParallel`` with several ranks, else ``OneProcess``."""
    return DataParallel(world, cfg) if world.distributed else OneProcess(world, cfg)


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
