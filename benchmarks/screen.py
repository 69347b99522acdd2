"""What the app shows while it trains a preset: SVG screenshots and the device/progress lines.

For machines without tmux or a terminal (a GPU box reached through a batch job): the real app,
driven by Textual's pilot at a real terminal size, presses `r` (which starts a run process that
the app follows), and saves a screenshot after the first epoch and one after the run ends, with
the text of the device and progress lines.

    python benchmarks/screen.py fashion-mnist-mlp --device cuda --epochs 3 --out /tmp/shots
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the run process and the app's helper are children: they import this tree, not an installed copy
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", default="120x36", help="terminal columns x rows")
    parser.add_argument("--out", default=".", help="folder for the SVG screenshots")
    parser.add_argument("--set", action="append", default=[], help="extra section.key=value overrides")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from tui_trainer.config import apply_overrides, load_preset
    from tui_trainer.run.events import EpochEnded, RunFinished
    from tui_trainer.ui.app import make_app
    from tui_trainer.ui.messages import RunEvents

    cfg = apply_overrides(load_preset(args.preset),
                          [f'train.device="{args.device}"', f"train.epochs={args.epochs}", *args.set])
    events: list = []
    report: list[str] = []  # printed after the app exits (the app captures stdout while it runs)

    def hook(message) -> None:
        if isinstance(message, RunEvents):
            events.extend(message.events)

    def lines(app) -> str:
        screen = app.train_screen
        return (f"device:   {screen.query_one('#device').render()}\n"
                f"progress: {screen.query_one('#progress').render()}")

    async def until(condition, what: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)  # the app runs meanwhile; this coroutine only polls

    async def drive() -> None:
        with tempfile.TemporaryDirectory() as runs:
            app = make_app(cfg, runs)
            async with app.run_test(size=(width, height), message_hook=hook) as pilot:
                screen = app.train_screen
                await until(lambda: screen.query("SeriesChart") and screen.query("ConfigField"), "the panels")
                await pilot.press("r")
                await until(lambda: any(isinstance(e, (EpochEnded, RunFinished)) for e in events), "the first epoch")
                if not any(isinstance(e, EpochEnded) for e in events):
                    end = next(e for e in events if isinstance(e, RunFinished))
                    raise SystemExit(f"the run ended before its first epoch: {end.reason}: {end.message}")
                loss = screen.query_one("#loss-chart")

                def drawn(epochs: int) -> bool:  # the loss chart holds and has drawn `epochs` val points
                    return len(loss.series.get("val", ((), ()))[0]) >= epochs and not loss.dirty

                await until(lambda: drawn(1), "the first epoch on the chart")
                report.append("after epoch 1\n" + lines(app))
                app.save_screenshot(f"{args.preset}-{args.size}-epoch1.svg", str(out))
                await until(lambda: any(isinstance(e, RunFinished) for e in events), "the end of the run")
                finished = next(e for e in events if isinstance(e, RunFinished))
                await until(lambda: drawn(finished.epoch), "the last epoch on the chart")
                await pilot.pause()
                report.append("after the run\n" + lines(app))
                report.append(f"run folder: {screen.handle.path}")
                app.save_screenshot(f"{args.preset}-{args.size}-end.svg", str(out))
                report.append(f"run finished: {finished.reason}: {finished.message}")
                for e in events:
                    if isinstance(e, EpochEnded):
                        report.append(f"  epoch {e.epoch}: val_acc {e.val_acc}, {e.epoch_seconds:.2f} s, "
                              f"{e.samples_per_s:,.0f} samples/s")
                await pilot.press("q")

    try:
        asyncio.run(drive())
    finally:
        print("\n".join(report))
        print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
