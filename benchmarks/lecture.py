"""The lecture notes' experiments, the notes' printed numbers beside the tool's (issue 16).

Every lecture preset whose data is here runs through the engine (`engine.fit`, the path
`tui-trainer train` takes); a preset whose data is not on disk (MNIST, the bitmoji folder) is
listed with the error that says where to put the files. Nothing is downloaded.

    python benchmarks/lecture.py                          # every lecture preset, Fashion-MNIST seed 0
    python benchmarks/lecture.py --seeds 0 1 2 3 4        # the seed spread of the Fashion-MNIST run
    python benchmarks/lecture.py --reference              # ...and the notes' own loop in plain PyTorch
    python benchmarks/lecture.py lecture5-early-stopping  # one preset
    python benchmarks/lecture.py --threads 1              # torch.set_num_threads(1): a shared 2-core VM

The notes print numbers for three experiments: the autograd example's gradients and the SGD step
(lecture 5), the epoch at which the regression toy stops early (lecture 5: 53) and the
Fashion-MNIST MLP's loss and accuracy over 5 epochs (lecture 6, one unseeded run on "mps"). The
MNIST notebook prints 5 training losses (its data is not here). The other presets' notes show
only plots or code; for them the table gives the tool's numbers alone.

`--reference` runs the notes' Fashion-MNIST loop as written (a shuffled `DataLoader` over a
`TensorDataset`, `model(X)`, `loss.item()` per batch), with the split drawn as the tool draws it
for the same seed, so the engine and plain PyTorch can be compared seed by seed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from tui_trainer.config import RunConfig, apply_overrides, load_preset  # noqa: E402
from tui_trainer.data import load_data, real  # noqa: E402
from tui_trainer.engine import fit, prepare  # noqa: E402
from tui_trainer.engine.losses import build_loss  # noqa: E402
from tui_trainer.engine.params import parameter_table  # noqa: E402
from tui_trainer.errors import DataError  # noqa: E402
from tui_trainer.run.events import EpochEnded, ListSink  # noqa: E402

PRESETS = ["lecture5-autograd", "lecture5-regression-fit", "lecture5-overfitting", "lecture5-early-stopping",
           "lecture5-bitmoji-mlp", "lecture6-fashion-mnist-mlp", "lecture6-fashion-mnist-early-stopping",
           "lecture6-fashion-mnist-capacity", "lecture6-fashion-mnist-l2", "lecture6-fashion-mnist-dropout",
           "lecture6-fashion-mnist-batchnorm-dropout", "pytorch-intro-mnist-mlp"]

# what the notes print
AUTOGRAD_GRADS = [-0.3480, -1.3032, -0.3480, -1.3032, -2.9191, -2.4229, -3.3142]  # w1 w2 b1 b2 w3 w4 b3
AUTOGRAD_STEP = [1.0348, -0.8697, 1.0348, 2.1303, 1.2919, 2.2423, -0.6686]
EARLY_STOP_EPOCH = 53
FASHION = [(2.3524, 0.7495), (0.5531, 0.8259), (0.5102, 0.8408), (0.4897, 0.8493), (0.4758, 0.8550)]
MNIST_LOSSES = [1.8959971736234897, 0.8684300759644397, 0.537974218426864, 0.43723612014990626, 0.39094475933165945]

Row = tuple[str, str, str, str]  # quantity, notes, tool, command


def _cfg(name: str, *extra: str) -> RunConfig:
    return apply_overrides(load_preset(name), ['train.device="cpu"', *extra])


def _fit(cfg: RunConfig, runs: Path) -> tuple[list[EpochEnded], str]:
    sink = ListSink()
    result = fit(cfg, sink, runs_dir=runs)
    return sink.of(EpochEnded), result.message


def autograd(runs: Path) -> list[Row]:
    cfg = _cfg("lecture5-autograd")
    _device, data, model = prepare(cfg)
    xb, yb = next(iter(data.train.epoch(0)))
    build_loss(data.task)(model(xb), yb).backward()
    grads = [g for _n, _v, g in parameter_table(model)]
    stepped = fit(cfg, ListSink(), runs_dir=runs).model
    values = [v for _n, v, _g in parameter_table(stepped)]
    cmd = "`tui-trainer train lecture5-autograd`"
    fmt = lambda xs: ", ".join(f"{x:.4f}" for x in xs)  # noqa: E731
    return [("gradients after one backward (w1 w2 b1 b2 w3 w4 b3)", fmt(AUTOGRAD_GRADS), fmt(grads), cmd),
            ("weights after one SGD step, lr 0.1", fmt(AUTOGRAD_STEP), fmt(values), cmd)]


def regression(name: str, runs: Path) -> list[Row]:
    ends, message = _fit(_cfg(name), runs)
    cmd = f"`tui-trainer train {name}`"
    last = ends[-1]
    rows = [("epochs run; last train / val loss", "(plot only)",
             f"{len(ends)}; {last.train_loss:.4f} / {last.val_loss:.4f}", cmd)]
    if name == "lecture5-early-stopping":
        rows.insert(0, ("stopped at epoch", str(EARLY_STOP_EPOCH), f"{len(ends)} ({message})", cmd))
    return rows


def _fashion_reference(seed: int, epochs: int, cache: Path) -> list[tuple[float, float]]:
    """The notes' training loop, as written, on the split the tool draws for ``seed``."""
    data = load_data(_cfg("lecture6-fashion-mnist-mlp", f"data.seed={seed}", f'data.cache_dir="{cache}"'),
                     torch.device("cpu"))
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data.train.x.view(-1, 784), data.train.y),
                                         batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    cross_entropy = nn.CrossEntropyLoss(label_smoothing=0.01)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.001, momentum=0.0)
    out = []
    for _ in range(epochs):
        total_loss, correct, total = 0.0, 0, 0
        for x, y in loader:
            outputs = model(x)
            loss = cross_entropy(outputs, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            correct += (outputs.argmax(1) == y).sum().item()
            total += y.size(0)
        out.append((total_loss / len(loader), correct / total))
    return out


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"


def fashion(args: argparse.Namespace, runs: Path) -> list[Row]:
    epochs = min(args.epochs or 5, 5)
    tool: list[list[tuple[float, float]]] = []
    for seed in args.seeds:
        ends, _ = _fit(_cfg("lecture6-fashion-mnist-mlp", f"train.epochs={epochs}", f"data.seed={seed}",
                            f"train.seed={seed}", f'data.cache_dir="{args.cache}"'), runs)
        tool.append([(e.train_loss, e.train_acc) for e in ends])
        print(f"  seed {seed}: " + "  ".join(f"{loss:.4f}/{acc:.4f}" for loss, acc in tool[-1]), file=sys.stderr,
              flush=True)
    ref: list[list[tuple[float, float]]] = []
    if args.reference:
        for seed in args.seeds:
            ref.append(_fashion_reference(seed, epochs, Path(args.cache)))
            print(f"  reference seed {seed}: " + "  ".join(f"{a:.4f}/{b:.4f}" for a, b in ref[-1]), file=sys.stderr,
                  flush=True)
    seeds = " ".join(map(str, args.seeds))
    cmd = f"`python benchmarks/lecture.py lecture6-fashion-mnist-mlp --seeds {seeds}{' --reference' if ref else ''}`"
    rows = []
    for e in range(epochs):
        for k, what in ((0, "train loss"), (1, "train accuracy")):
            cell = _spread([run[e][k] for run in tool])
            if ref:
                cell += f"; plain PyTorch {_spread([run[e][k] for run in ref])}"
            rows.append((f"epoch {e + 1} {what}", f"{FASHION[e][k]:.4f}", cell, cmd))
    return rows


def other(name: str, args: argparse.Namespace, runs: Path) -> list[Row]:
    extra = [f'data.cache_dir="{args.cache}"'] + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    cfg = _cfg(name, *extra)
    try:
        load_data(cfg, torch.device("cpu")) if cfg.data.dataset != "mnist" else real.ensure_dataset(
            "mnist", real.cache_dir(cfg), download=False)
    except DataError as exc:
        notes = "training losses " + ", ".join(f"{v:.4f}" for v in MNIST_LOSSES) if name.startswith("pytorch") else "-"
        return [("(data not here)", notes, f"DataError: {exc}", f"`tui-trainer train {name}`")]
    ends, message = _fit(cfg, runs)
    cmd = f"`tui-trainer train {name}" + (f" --epochs {args.epochs}`" if args.epochs else "`")
    if name == "pytorch-intro-mnist-mlp":
        notes = "training losses " + ", ".join(f"{v:.4f}" for v in MNIST_LOSSES)
        return [("training loss per epoch", notes, ", ".join(f"{e.train_loss:.4f}" for e in ends), cmd)]
    last = ends[-1]
    acc = f", val acc {last.val_acc:.4f}" if last.val_acc is not None else ""
    return [(f"after {len(ends)} epochs: train loss / acc, val loss / acc", "(plot only)",
             f"{last.train_loss:.4f} / {last.train_acc:.4f}, val {last.val_loss:.4f}{acc} ({message})", cmd)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="*", help=f"lecture presets (default: all {len(PRESETS)})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="Fashion-MNIST MLP: data and train seeds")
    parser.add_argument("--reference", action="store_true", help="Fashion-MNIST MLP: also the notes' plain loop")
    parser.add_argument("--epochs", type=int, default=0, help="cap every Fashion-MNIST run at this many epochs")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--cache", default=str(real.cache_dir(RunConfig())), help="dataset cache directory")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.presets or PRESETS
    print("| preset | quantity | notes | tool | command |")
    print("| --- | --- | --- | --- | --- |")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        for name in names:
            t = time.perf_counter()
            if name == "lecture5-autograd":
                rows = autograd(runs)
            elif name.startswith("lecture5-") and name != "lecture5-bitmoji-mlp":
                rows = regression(name, runs)
            elif name == "lecture6-fashion-mnist-mlp":
                rows = fashion(args, runs)
            else:
                rows = other(name, args, runs)
            for quantity, notes, tool, cmd in rows:
                print(f"| {name} | {quantity} | {notes} | {tool} | {cmd} |", flush=True)
            print(f"  {name}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  torch {torch.__version__}  "
          f"threads {torch.get_num_threads()}  {time.perf_counter() - t0:.0f} s  {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
