"""What the tracking API (tui_trainer.run.track) costs a loop of one's own: the lecture's Fashion-MNIST MLP loop
(784-512-512-10 ReLU, RMSprop, batch 32, examples/plain_loop.py) with and without its tracking lines, interleaved
repeats, in one go. Synthetic images of Fashion-MNIST's shape (the cost does not depend on the pixels).

    python benchmarks/track_cost.py                    # 400 steps a repeat, 7 repeats, log_every 50
    python benchmarks/track_cost.py --log-every 1      # a point every step: the most it can cost
    python benchmarks/track_cost.py --quick --json     # that it runs (the tests)

Printed: wall and CPU seconds per repeat, plain and tracked (medians), and the median of the ratios paired by
repeat (target: under 1% more at a log interval of 50 steps, issue 22). With the model handed over, the tracked
loop also gets per-layer gradient norms at each interval; --no-model hands over nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from tui_trainer.run import track  # noqa: E402


def one_repeat(steps: int, tracked: bool, log_every: int, hand_over: bool, runs_dir: Path,
               seed: int) -> tuple[float, float, float]:
    """Wall and CPU seconds (this process's, every thread) for ``steps`` steps of the loop, with or without the
    tracking lines, and the seconds spent inside the tracking calls (timed around each: on a machine other work
    shares, the whole loop's seconds vary by more than the calls cost; this does not)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(steps * 32, 784, generator=g) * 255
    y = torch.randint(0, 10, (steps * 32,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.01)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.0)
    run = None
    if tracked:
        run = track.init("track-cost", config={"seed": seed}, runs_dir=runs_dir, model=model if hand_over else None,
                         optimizer=optimizer if hand_over else None, epochs=1, steps_per_epoch=steps,
                         batch_size=32, log_every=log_every)
    t0, c0 = time.perf_counter(), time.process_time()
    total = inside = 0.0
    for step in range(1, steps + 1):
        xb, yb = x[(step - 1) * 32: step * 32], y[(step - 1) * 32: step * 32]
        outputs = model(xb)
        loss = loss_fn(outputs, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()  # the loop's own running loss, as in the lecture's loop
        if run is not None:
            t = time.perf_counter()
            run.log(step, loss=loss)
            stop = run.should_stop
            inside += time.perf_counter() - t
            if stop:
                break
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if run is not None:
        run.epoch(1, train_loss=total / steps, val_loss=total / steps)
        run.finish()
    return seconds, cpu, inside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--no-model", action="store_true", help="hand over neither the model nor the optimizer")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--quick", action="store_true", help="40 steps, 2 repeats")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeat = 40, 2
    torch.set_num_threads(args.threads)
    plain: list[tuple[float, float]] = []
    tracked: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="tui-trainer-track-cost-") as tmp:
        one_repeat(min(args.steps, 50), False, args.log_every, not args.no_model, Path(tmp), 99)  # warm-up
        for i in range(args.repeat):  # interleaved, alternating which goes first
            order = (False, True) if i % 2 == 0 else (True, False)
            for with_track in order:
                seconds = one_repeat(args.steps, with_track, args.log_every, not args.no_model, Path(tmp) / "runs", i)
                (tracked if with_track else plain).append(seconds)
    result = {"steps": args.steps, "repeat": args.repeat, "log_every": args.log_every, "model": not args.no_model}
    for k, what in ((0, "wall"), (1, "cpu")):
        p, t = statistics.median(r[k] for r in plain), statistics.median(r[k] for r in tracked)
        paired = statistics.median(b[k] / a[k] for a, b in zip(plain, tracked, strict=True))
        result[what] = {"plain_s": p, "tracked_s": t, "overhead": paired - 1,
                        "plain_all": [r[k] for r in plain], "tracked_all": [r[k] for r in tracked]}
    result["inside_s"] = statistics.median(r[2] for r in tracked)
    result["inside_share"] = statistics.median(r[2] / a[0] for a, r in zip(plain, tracked, strict=True))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.steps} steps x {args.repeat} interleaved repeats, log_every {args.log_every}, "
          f"{'model and optimizer handed over' if not args.no_model else 'nothing handed over'}, "
          f"{args.threads} thread(s)")
    for what in ("wall", "cpu"):
        r = result[what]
        print(f"{what:>4}: plain {r['plain_s']:.3f} s, tracked {r['tracked_s']:.3f} s (medians); tracked/plain "
              f"paired by repeat, median: {r['overhead'] * 100:+.2f}%")
    print(f"inside the tracking calls: {result['inside_s'] * 1000:.1f} ms a repeat (median), "
          f"{result['inside_share'] * 100:.2f}% of the plain loop's wall time")


if __name__ == "__main__":
    main()
