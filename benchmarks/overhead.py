"""Where a training step's time goes on the host: the cost of one tiny op, a minimal
GPU-resident loop, and the engine (eager, diagnostics off, captured), per step, on one device.

    python benchmarks/overhead.py --device cuda                  # the lecture's MLP, batch 128
    python benchmarks/overhead.py --device cuda --hidden 8       # a tiny model: host cost alone
    python benchmarks/overhead.py --device cuda --profile        # + the torch profiler's top ops

What it showed on the H100 of RESULTS.md is why `train.compile` captures the whole step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tui_trainer.config import apply_overrides, load_preset  # noqa: E402
from tui_trainer.engine import fit  # noqa: E402
from tui_trainer.run.events import EpochEnded, ListSink  # noqa: E402

STEPS, BATCH = 400, 128


def op_cost(device: str) -> float:
    """Host microseconds per tiny in-place add (dispatch and launch, no real work)."""
    a = torch.ones(16, device=device)
    for _ in range(1000):
        a.add_(1)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20_000):
        a.add_(1)
    if device == "cuda":
        torch.cuda.synchronize()
    return 1e6 * (time.perf_counter() - t0) / 20_000


def minimal_loop(device: str, hidden: list[int], item: bool) -> float:
    """ms per step of the shortest GPU-resident loop: gather a batch, forward, backward, RMSprop."""
    d = torch.device(device)
    x, y = torch.randn(STEPS * BATCH, 784, device=d), torch.randint(0, 10, (STEPS * BATCH,), device=d)
    layers, width = [], 784
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10)).to(d)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, foreach=True)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.01)
    times = []
    for _ in range(3):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        order = torch.randperm(STEPS * BATCH, device=d)
        for i in range(STEPS):
            idx = order[i * BATCH : (i + 1) * BATCH]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if item:
                loss.item()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / 2 / STEPS * 1e3


def engine(device: str, hidden: list[int], *overrides: str, epochs: int = 3) -> float:
    """ms per training step of the engine (epochs after the first, validation excluded)."""
    cfg = apply_overrides(load_preset("fashion-mnist-mlp"), [
        f'train.device="{device}"', f"data.batch_size={BATCH}", f"data.subset={STEPS * BATCH}",
        f"train.epochs={epochs}", "train.log_every=50", f"model.hidden={hidden}", *overrides])
    sink = ListSink()
    fit(cfg, sink, runs_dir=tempfile.mkdtemp())
    later = sink.of(EpochEnded)[1:]
    if not later:
        raise SystemExit(f"the engine did not finish its epochs: {sink.events[-1]}")
    return sum(BATCH / e.samples_per_s for e in later) / len(later) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden", type=int, nargs="*", default=[512, 512])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    dev, hidden = args.device, args.hidden
    print(f"{dev}  hidden {hidden}  batch {BATCH}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    print(f"  tiny op                      {op_cost(dev):8.1f} us")
    print(f"  minimal loop, loss.item()    {minimal_loop(dev, hidden, True):8.3f} ms/step")
    print(f"  minimal loop, no sync        {minimal_loop(dev, hidden, False):8.3f} ms/step")
    print(f"  engine                       {engine(dev, hidden):8.3f} ms/step")
    print(f"  engine, diagnostics off      {engine(dev, hidden, 'train.diagnostics=false'):8.3f} ms/step")
    print(f"  engine, train.compile        {engine(dev, hidden, 'train.compile=true'):8.3f} ms/step")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
        with profile(activities=activities) as prof:
            engine(dev, hidden, epochs=2)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
