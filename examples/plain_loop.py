"""The lecture's Fashion-MNIST MLP loop, watched and steered from tui-trainer: the lines marked ``# tui-trainer``
are all it takes (the rest is the lecture 6 'Training loop' cell: 784-512-512-10 ReLU, cross-entropy with label
smoothing 0.01, RMSprop lr 1e-3, batch 32).

    python examples/plain_loop.py                # one terminal (over SSH: in tmux, or with nohup ... &)
    tui-trainer attach                           # another: its curves live; s stops it, c saves a checkpoint,
                                                 # l sets the learning rate, p pauses and n takes one step
    tui-trainer runs                             # it is listed beside the tool's own runs
    tui-trainer evaluate runs/<run>/checkpoints/manual-....pt

Data: Fashion-MNIST's four .gz files from /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist) or
--data DIR; when they are not there, a small synthetic set of the same shape (said on stderr), so the example runs
offline anywhere. --synthetic N uses N synthetic images whatever is there (the tests do).
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tui_trainer.run import track  # tui-trainer

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (gzipped): the format MNIST and Fashion-MNIST come in."""
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).view(shape)


def fashion_mnist(folder: Path) -> tuple[torch.Tensor, ...] | None:
    """(train images, train labels, test images, test labels), raw 0-255 pixels as floats; None if not there."""
    paths = [folder / f"{name}.gz" for name in FILES]
    if not all(p.is_file() for p in paths):
        return None
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
    return x_train.float(), y_train.long(), x_test.float(), y_test.long()


def synthetic(n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``n`` 28x28 images of 10 classes (a noisy prototype each), 0-255 like the real ones, a fifth held out."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(10, 28, 28, generator=g) * 255
    y = torch.randint(0, 10, (n,), generator=g)
    x = (prototypes[y] + torch.randn(n, 28, 28, generator=g) * 60).clamp(0, 255)
    cut = n * 4 // 5
    return x[:cut], y[:cut], x[cut:], y[cut:]


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, loss_fn: nn.Module) -> tuple[float, float]:
    """Mean loss and accuracy over ``loader``."""
    model.eval()
    total_loss, correct, total = 0.0, 0, 0
    for x, y in loader:
        outputs = model(x)
        total_loss += loss_fn(outputs, y).item() * len(y)
        correct += (outputs.argmax(1) == y).sum().item()
        total += len(y)
    model.train()
    return total_loss / total, correct / total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=FASHION_MNIST, help="folder of Fashion-MNIST's four .gz files")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="N synthetic images instead")
    parser.add_argument("--runs-dir", default="runs", help="where the run's folder goes (tui-trainer's --runs-dir)")
    parser.add_argument("--name", default="fmnist-mlp-own-loop")
    parser.add_argument("--log-every", type=int, default=50, help="steps between points on the curves")
    args = parser.parse_args(argv)

    data = None if args.synthetic else fashion_mnist(args.data)
    if data is None:
        n = args.synthetic or 6000
        if not args.synthetic:
            print(f"Fashion-MNIST is not in {args.data} (Debian: apt install dataset-fashion-mnist; or --data DIR): "
                  f"training on {n} synthetic images of the same shape instead", file=sys.stderr)
        data = synthetic(n, args.seed)
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(args.seed)
    train_loader = DataLoader(TensorDataset(x_train.view(-1, 784), y_train), batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(TensorDataset(x_test.view(-1, 784), y_test), batch_size=1000)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    cross_entropy = nn.CrossEntropyLoss(label_smoothing=0.01)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=args.lr, momentum=0.0)

    run = track.init(args.name, config=vars(args), runs_dir=args.runs_dir, model=model,  # tui-trainer
                     optimizer=optimizer, epochs=args.epochs, steps_per_epoch=len(train_loader),
                     batch_size=args.batch_size, log_every=args.log_every)
    print(f"watch and steer it: tui-trainer attach {run.path}", file=sys.stderr)
    with run:  # tui-trainer: finished when the block ends, failed if it raises, stopped on s or Ctrl+C
        step = 0
        for epoch in range(1, args.epochs + 1):
            total_loss, correct, total, batches = 0.0, 0, 0, 0
            for x, y in train_loader:
                outputs = model(x)
                loss = cross_entropy(outputs, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total_loss += loss.item()
                correct += (outputs.argmax(1) == y).sum().item()
                total += y.size(0)
                batches += 1
                step += 1
                run.log(step, loss=loss)  # tui-trainer: written every log_every steps (and paused here on p)
                if run.should_stop:  # tui-trainer: s in the app, or tui-trainer stop
                    break
            val_loss, val_acc = evaluate(model, test_loader, cross_entropy)
            print(f"epoch {epoch}: train loss {total_loss / batches:.4f} acc {correct / total:.4f}, "
                  f"val loss {val_loss:.4f} acc {val_acc:.4f}")
            run.epoch(epoch, train_loss=total_loss / batches, val_loss=val_loss,  # tui-trainer
                      train_acc=correct / total, val_acc=val_acc)
            if run.should_stop:  # tui-trainer
                break


if __name__ == "__main__":
    main()
