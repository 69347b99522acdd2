"""The images the image views show: a validation sample picked at epoch ends, and training examples per class.

* ``SampleCollector`` rides along the epoch's validation pass (``parts.evaluate(collect=...)``): per example it
  keeps the loss (cross-entropy without smoothing, ``-log p(true)``), the predicted class and its probability,
  on the device; ``pick`` then reads them once (one host copy of 4 x N numbers) and chooses a bounded
  ``run.samples.SampleSet``: the highest losses, the most confused pairs with examples, a few right and wrong per
  class, and a CNN's first-layer filters as small images. No second forward pass: on fashion-mnist-mlp (CPU,
  2 cores) the collector takes 2 ms and picking and writing the sample 5-22 ms an epoch, 0.03-0.4% of it
  (benchmarks/images.py).
* ``training_examples``: the first few training images of each class, raw and as the network is fed them
  (after the preset's scaling and augmentation), for the app's helper (its ``examples`` op) and
  ``tui-trainer examples`` (``examples_of``: a config's data loaded on the CPU).

Pixels are stored as uint8: scaled images go back through the split's ``pixel_norm`` (x * std + mean) * 255.
Under data parallelism the validation pass is shared out between the ranks; no sample is taken there (yet).
"""

from __future__ import annotations

import base64
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tui_trainer.config import RunConfig
from tui_trainer.data import DataBundle, LoaderBatches, Norm, TensorBatches, load_data, peek_shape
from tui_trainer.errors import ConfigError
from tui_trainer.run.samples import (
    CONFUSED_PAIRS,
    FILTER_SCALE,
    MAX_FILTERS,
    MAX_SIDE,
    PER_CLASS,
    PER_PAIR,
    TOP_LOSSES,
    Example,
    SampleSet,
)


def is_image_classifier(data: DataBundle) -> bool:
    """A classifier of images (C x H x W inputs whose pixel scaling is known): the image views apply."""
    return data.task == "classification" and len(data.input_shape) == 3 and data.pixel_norm is not None


class SampleCollector:
    """Per-example loss, prediction and probability of one validation pass, kept on the device."""

    def __init__(self) -> None:
        self.parts: list[torch.Tensor] = []

    def __call__(self, out: torch.Tensor, yb: torch.Tensor) -> None:
        out = out.float()
        if out.dim() == 2 and out.shape[1] == 1:  # a binary head: one logit for two classes
            z = out[:, 0]
            logp = torch.stack([torch.nn.functional.logsigmoid(-z), torch.nn.functional.logsigmoid(z)], 1)
        else:
            logp = torch.log_softmax(out, 1)  # of a log_softmax head too: the same probabilities
        prob, pred = logp.exp().max(1)
        loss = -logp.gather(1, yb.view(-1, 1))[:, 0]  # exact where a probability underflows: confident mistakes rank
        self.parts.append(torch.stack([loss, pred.float(), prob, yb.view(-1).float()], 1))

    def table(self) -> torch.Tensor:
        """(N, 4) rows of loss, predicted, probability, true on the host (the one host sync of the sample)."""
        if not self.parts:
            return torch.zeros(0, 4)
        return torch.cat(self.parts).cpu()


def pick(table: torch.Tensor, data: DataBundle, epoch: int, model: nn.Module | None = None) -> SampleSet:
    """The sample of one validation pass (``table``: ``SampleCollector.table()``, rows in the split's order), and
    ``model``'s first convolution's filters."""
    loss, pred, prob, true = table[:, 0], table[:, 1].long(), table[:, 2], table[:, 3].long()
    k = data.n_classes
    names = tuple(data.class_names) if len(data.class_names) == k else tuple(str(i) for i in range(k))
    by_loss = torch.argsort(loss, descending=True, stable=True)
    top = by_loss[:TOP_LOSSES].tolist()
    counts = torch.bincount(true * k + pred, minlength=k * k).view(k, k)
    off = counts.clone()
    off.fill_diagonal_(0)
    confused = []
    for flat in torch.argsort(off.flatten(), descending=True, stable=True)[:CONFUSED_PAIRS].tolist():
        t, p = divmod(flat, k)
        if off[t, p] == 0:
            break
        confused.append((t, p, int(off[t, p]), _worst(by_loss, (true == t) & (pred == p), PER_PAIR)))
    per_class = []
    for c in range(min(k, 100)):
        right = _worst(by_loss.flip(0), (true == c) & (pred == c), PER_CLASS)  # the surest right ones
        per_class.append((c, right, _worst(by_loss, (true == c) & (pred != c), PER_CLASS)))
    chosen = sorted({*top, *(i for *_, idx in confused for i in idx), *(i for _c, r, w in per_class for i in (*r, *w))})
    pixels = val_pixels(data, chosen)
    examples = tuple(Example(i, int(true[i]), int(pred[i]), float(prob[i]), float(loss[i]), bytes(px.numpy().tobytes()))
                     for i, px in zip(chosen, pixels, strict=True))
    shape = tuple(pixels.shape[1:]) if len(chosen) else _stored_shape(data.input_shape)
    filters, filter_shape, ranges = first_filters(model) if model is not None else ((), (0, 0, 0), ())
    return SampleSet(epoch, names, shape, examples, tuple(top), tuple(confused), tuple(per_class),  # type: ignore[arg-type]
                     val_samples=len(table), filters=filters, filter_shape=filter_shape, filter_ranges=ranges)


@torch.no_grad()
def first_filters(model: nn.Module) -> tuple[tuple[bytes, ...], tuple[int, int, int], tuple[tuple[float, float], ...]]:
    """The first convolution's filters as images, when it looks at the image itself (1 or 3 input channels): each
    scaled from its own smallest to largest weight to 0-255 and enlarged ``FILTER_SCALE`` times; their shape and
    weight ranges. Nothing for a model that does not start with a convolution of a few pixels."""
    conv = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if not isinstance(conv, nn.Conv2d) or conv.in_channels not in (1, 3) or max(conv.kernel_size) > 16:
        return (), (0, 0, 0), ()
    w = conv.weight.detach().float().cpu()[:MAX_FILTERS]  # host copy: once an epoch, a few hundred numbers
    flat = w.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    scaled = (w - lo.view(-1, 1, 1, 1)) / (hi - lo).clamp_min(1e-12).view(-1, 1, 1, 1) * 255
    big = scaled.repeat_interleave(FILTER_SCALE, 2).repeat_interleave(FILTER_SCALE, 3).round().to(torch.uint8)
    return (tuple(f.contiguous().numpy().tobytes() for f in big), tuple(big.shape[1:]),  # type: ignore[return-value]
            tuple(zip(lo.tolist(), hi.tolist(), strict=True)))


def _worst(order: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[int, ...]:
    """The first ``n`` indices of ``order`` where ``mask`` holds."""
    return tuple(order[mask[order]][:n].tolist())


def _stored_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    c, h, w = shape
    scale = min(1.0, MAX_SIDE / max(h, w))
    return c, max(1, round(h * scale)), max(1, round(w * scale))


def split_images(split: TensorBatches | LoaderBatches, indices: list[int]) -> torch.Tensor:
    """The (scaled, unaugmented) images of a split at ``indices``, on the host."""
    if not indices:
        return torch.zeros(0)
    if isinstance(split, TensorBatches):
        return split.x[torch.tensor(indices, device=split.x.device)].float().cpu()
    return torch.stack([split.dataset[i][0] for i in indices]).float()  # type: ignore[index]


def to_uint8(x: torch.Tensor, norm: Norm | None) -> torch.Tensor:
    """Scaled images back to 0-255 pixels (``norm``: the data's per-channel mean and std on pixel / 255)."""
    if norm is not None:
        mean = torch.tensor(norm[0]).view(1, -1, 1, 1)
        std = torch.tensor(norm[1]).view(1, -1, 1, 1)
        x = (x * std + mean) * 255
    return x.round().clamp(0, 255).to(torch.uint8)


def shrink(x: torch.Tensor) -> torch.Tensor:
    """Images no larger than ``MAX_SIDE`` a side (area averaging); smaller ones as they are."""
    _n, _c, h, w = x.shape
    if max(h, w) <= MAX_SIDE:
        return x
    _c, nh, nw = _stored_shape((_c, h, w))
    return F.interpolate(x, size=(nh, nw), mode="area")


def val_pixels(data: DataBundle, indices: list[int]) -> torch.Tensor:
    """uint8 pixels (N, C, H, W) of validation images, shrunk to at most ``MAX_SIDE``."""
    if not indices:
        return torch.zeros(0, dtype=torch.uint8)
    return to_uint8(shrink(split_images(data.val, indices)), data.pixel_norm)


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.contiguous().numpy().tobytes()).decode("ascii")


def training_examples(data: DataBundle, per_class: int = 8, seed: int = 0) -> dict[str, Any]:
    """The first ``per_class`` training images of each class, raw (uint8 pixels) and as fed (after scaling and the
    preset's augmentation, its values mapped from their range over all the images to 0-255), as JSON-ready
    primitives: {class_names, shape, raw: [[class, base64], ...], fed: [...], fed_range: [lo, hi], augment}."""
    split = data.train
    y = split.y.cpu() if isinstance(split, TensorBatches) else torch.tensor(
        [int(split.dataset[i][1]) for i in range(min(split.n_samples, 20_000))])  # type: ignore[index]
    picked: list[int] = []
    for c in range(data.n_classes):
        picked += torch.nonzero(y == c).view(-1)[:per_class].tolist()
    x = split_images(split, picked)
    raw = to_uint8(shrink(x), data.pixel_norm)
    fed = x
    if split.augment is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fed = split.augment(x)
    lo, hi = (float(fed.min()), float(fed.max())) if len(picked) else (0.0, 1.0)
    fed_px = shrink((fed - lo) / max(hi - lo, 1e-12) * 255).round().clamp(0, 255).to(torch.uint8)
    labels = [int(y[i]) for i in picked]
    k = data.n_classes
    return {"class_names": list(data.class_names) if len(data.class_names) == k else [str(i) for i in range(k)],
            "shape": list(raw.shape[1:]) if len(picked) else list(_stored_shape(data.input_shape)),
            "raw": [[c, _b64(px)] for c, px in zip(labels, raw, strict=True)],
            "fed": [[c, _b64(px)] for c, px in zip(labels, fed_px, strict=True)],
            "fed_range": [lo, hi]}


def examples_of(cfg: RunConfig, per_class: int = 6) -> dict[str, Any]:
    """``training_examples`` of a config's data, loaded on the CPU (the app's helper, ``tui-trainer examples``);
    ConfigError for data that are not images of classes."""
    if cfg.task != "classification" or len(peek_shape(cfg)[0]) != 3:
        raise ConfigError(f"no images: {cfg.data.dataset} is not an image dataset (the image views show image "
                          "classifiers' data)")
    data = load_data(cfg, torch.device("cpu"))
    if not is_image_classifier(data):
        raise ConfigError(f"no images: {cfg.data.dataset}'s data are not images of known scaling")
    return training_examples(data, per_class, seed=cfg.train.seed)
