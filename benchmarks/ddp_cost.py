"""What the run's own collectives cost a data-parallel step, beside the step itself.

Two ranks (``torch.multiprocessing`` spawn, the gloo backend on a CPU; nccl with ``--device cuda``
and as many GPUs as ``--nproc``) time, interleaved, in one process group:

* step: one DDP training step of the lecture's Fashion-MNIST MLP (784-512-512-10, RMSprop, batch
  ``--batch-size`` per rank, random data): forward, loss, backward with DDP's gradient all-reduce,
  optimizer step, synchronised at its end (``.item()`` of the loss, as a host read would);
* plain_step: the same step of an identical model without DDP (no gradient all-reduce): with
  ``--nproc 1`` the step/plain_step ratio is what DDP alone costs one GPU;
* share_commands: ``World.share_commands`` as the engine calls it, an empty command list broadcast
  from rank 0 (17 float64 values) and read on the host by the other ranks;
* gather_memory: ``World.gather_memory``, every rank's two memory counters (CUDA only in the
  engine; timed here on any device for the cost of the collective);
* all_reduce: the interval's 4 sums (``World.all_reduce``).

The engine runs share_commands and gather_memory once per log interval (train.log_every steps), not
once per step; this says what a per-step broadcast would add.

    python benchmarks/ddp_cost.py                       # CPU, 2 ranks, 300 timed steps
    python benchmarks/ddp_cost.py --device cuda --nproc 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _timed(fn, sync) -> float:
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def _rank(rank: int, args: argparse.Namespace, store: str, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch import nn

    from tui_trainer.engine.dist import World

    cuda = args.device == "cuda"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // args.nproc))
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{store}", rank=rank,
                            world_size=args.nproc)
    world = World(rank=rank, size=args.nproc, device=device)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10)).to(device)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10)).to(device)
    plain.load_state_dict(model.state_dict())
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.RMSprop(ddp.parameters(), lr=1e-3)
    plain_optimizer = torch.optim.RMSprop(plain.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    xb = torch.randn(args.batch_size, 1, 28, 28, device=device)
    yb = torch.randint(0, 10, (args.batch_size,), device=device)
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step(net: nn.Module = ddp, opt: torch.optim.Optimizer = optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xb), yb)
        loss.backward()
        opt.step()
        loss.item()

    work = {"step": step, "plain_step": lambda: step(plain, plain_optimizer), "share_commands": lambda: world.share_commands([]),
            "gather_memory": lambda: world.gather_memory((1, 2)), "all_reduce": lambda: world.all_reduce(sums)}
    for _ in range(args.warmup):
        for fn in work.values():
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(args.steps):
        for name, fn in work.items():
            dist.barrier()  # every rank starts each timed call together: the time is the call's, not a wait
            times[name].append(_timed(fn, sync))
    if rank == 0:
        Path(out).write_text(json.dumps({name: statistics.median(t) for name, t in times.items()}))
    dist.barrier()  # leave together: a rank whose peer has torn down gloo's pairs can abort at exit
    dist.destroy_process_group()
    # Skip the interpreter's teardown, as the run process does (runner.py): DDP's reducer still holds gloo's
    # threads and destroying them there aborts one run in ~15 ("terminate called without an active
    # exception", SIGABRT, after destroy_process_group). The result file is written and closed above.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        mp.spawn(_rank, args=(args, os.path.join(tmp, "store"), out), nprocs=args.nproc)
        medians = json.loads(Path(out).read_text())
    step = medians["step"]
    result = {"device": args.device, "nproc": args.nproc, "batch_size": args.batch_size, "steps": args.steps,
              **{f"{k}_ms": v * 1e3 for k, v in medians.items()},
              **{f"{k}_per_step": v / step for k, v in medians.items() if k != "step"}}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.nproc} ranks on {args.device}, batch {args.batch_size} per rank, median of {args.steps}:")
    print(f"  DDP step            {step * 1e3:8.3f} ms")
    print(f"  plain step          {medians['plain_step'] * 1e3:8.3f} ms  (DDP step / plain step "
          f"{step / medians['plain_step']:.3f})")
    for name in ("share_commands", "gather_memory", "all_reduce"):  # the engine's own, per log interval
        print(f"  {name:<19} {medians[name] * 1e3:8.3f} ms  ({medians[name] / step:.1%} of a step)")


if __name__ == "__main__":
    main()
