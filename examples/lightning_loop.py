"""The lecture's Fashion-MNIST MLP as a LightningModule, watched and steered from tui-trainer through one callback:
the lines marked ``# tui-trainer`` are all it takes.

    pip install 'tui-trainer[lightning]'         # or: pip install lightning
    python examples/lightning_loop.py            # one terminal (over SSH: in tmux, or with nohup ... &)
    tui-trainer attach                           # another: curves live; s, c, l, p/n act in the fit
    python examples/lightning_loop.py --devices 2   # data parallel (DDP) on 2 processes: every rank acts together

The module logs ``train_loss`` and ``train_acc`` (per step and per epoch) and ``val_loss`` and ``val_acc`` (per
epoch): the names the callback draws as the curves; anything else it logs is kept as the run's own scalars. Data
as in plain_loop.py (Fashion-MNIST's .gz files, else a small synthetic set; --synthetic N for N synthetic images).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from plain_loop import FASHION_MNIST, fashion_mnist, synthetic  # the same data as the plain loop
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

try:
    import lightning as L
except ImportError:
    sys.exit("this example needs Lightning: pip install 'tui-trainer[lightning]' (or pip install lightning)")

from tui_trainer.run.lightning import TrackCallback  # tui-trainer


class FashionMLP(L.LightningModule):
    """784-512-512-10 ReLU, cross-entropy with label smoothing 0.01, RMSprop."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        outputs = self(x)
        loss = self.loss_fn(outputs, y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, sync_dist=True)
        self.log("train_acc", (outputs.argmax(1) == y).float().mean(), on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        outputs = self(x)
        self.log("val_loss", self.loss_fn(outputs, y), sync_dist=True)
        self.log("val_acc", (outputs.argmax(1) == y).float().mean(), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.RMSprop(self.parameters(), lr=self.hparams.lr, momentum=0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--devices", type=int, default=1, help="processes (DDP when more than 1)")
    parser.add_argument("--accelerator", default="auto", help="auto, cpu, gpu")
    parser.add_argument("--data", type=Path, default=FASHION_MNIST)
    parser.add_argument("--synthetic", type=int, default=0, metavar="N")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--name", default="fmnist-mlp-lightning")
    parser.add_argument("--log-every", type=int, default=50)
    args = parser.parse_args(argv)

    data = None if args.synthetic else fashion_mnist(args.data)
    if data is None:
        n = args.synthetic or 6000
        if not args.synthetic:
            print(f"Fashion-MNIST is not in {args.data}: training on {n} synthetic images of the same shape instead",
                  file=sys.stderr)
        data = synthetic(n, args.seed)
    x_train, y_train, x_test, y_test = data
    L.seed_everything(args.seed, verbose=False)
    train = DataLoader(TensorDataset(x_train.view(-1, 784), y_train), batch_size=args.batch_size, shuffle=True)
    val = DataLoader(TensorDataset(x_test.view(-1, 784), y_test), batch_size=1000)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator=args.accelerator, devices=args.devices,
                        strategy="ddp" if args.devices > 1 else "auto", log_every_n_steps=args.log_every,
                        logger=False, enable_checkpointing=False, enable_progress_bar=sys.stderr.isatty(),
                        enable_model_summary=False,
                        callbacks=[TrackCallback(args.name, config=vars(args), runs_dir=args.runs_dir)])  # tui-trainer
    trainer.fit(FashionMLP(args.lr), train, val)


if __name__ == "__main__":
    main()
