"""Architecture registry -> ``nn.Module``: mlp, cnn, resnet and torchvision backbones.

Every model takes a batch shaped like the dataset's ``input_shape`` and returns logits
(classification; one logit for the binary head, log-probabilities for the log_softmax head)
or one value per sample (regression).

How the weights start, in order: ``model.seed`` (when set) reseeds torch's global generator
right before the layers are built, as ``torch.manual_seed(1); model = network(1, 6, 1)`` does
in the notes, so the default initialisation draws the notes' numbers; then ``model.init``
(a named scheme) and last ``model.init_weights`` (explicit values for a tiny mlp).

Also here: a model's layer table (``layer_summary``, printed by ``format_summary``: what RunStarted
and ``tui-trainer summary`` show), and ``state_mismatch`` for checkpoints that do not fit.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from tui_trainer.config import PLUGIN_PREFIX, ConfigError, ModelConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name."""
    return _ACTIVATIONS[name]()


class MLP(nn.Module):
    """Fully connected network: [Linear -> (BatchNorm) -> activation -> (Dropout)] x N -> Linear (-> LogSoftmax).

    ``dropout`` is one probability for every hidden layer or a list with one per hidden layer."""

    def __init__(self, in_features: int, hidden: list[int], out_features: int, act: str = "relu",
                 batch_norm: bool = False, dropout: float | list[float] = 0.0, log_softmax: bool = False) -> None:
        super().__init__()
        rates = list(dropout) if isinstance(dropout, list) else [dropout] * len(hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h, p in zip(hidden, rates, strict=True):
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(activation(act))
            if p > 0:
                layers.append(nn.Dropout(p))
            width = h
        layers.append(nn.Linear(width, out_features))
        if log_softmax:
            layers.append(nn.LogSoftmax(dim=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CNN(nn.Module):
    """Convolution blocks [Conv -> (BN) -> act -> pool -> (Dropout)] then a linear head."""

    def __init__(self, input_shape: tuple[int, ...], cfg: ModelConfig, out_features: int) -> None:
        super().__init__()
        c_in, h, w = input_shape
        blocks: list[nn.Module] = []
        for c in cfg.channels:
            blocks.append(nn.Conv2d(c_in, c, cfg.kernel_size, cfg.stride, cfg.padding, bias=not cfg.batch_norm))
            if cfg.batch_norm:
                blocks.append(nn.BatchNorm2d(c))
            blocks.append(activation(cfg.activation))
            h = (h + 2 * cfg.padding - cfg.kernel_size) // cfg.stride + 1
            w = (w + 2 * cfg.padding - cfg.kernel_size) // cfg.stride + 1
            if cfg.pool != "none" and min(h, w) >= 2:
                blocks.append(nn.MaxPool2d(2) if cfg.pool == "max" else nn.AvgPool2d(2))
                h, w = h // 2, w // 2
            if cfg.dropout > 0:
                blocks.append(nn.Dropout2d(cfg.dropout))
            if h < 1 or w < 1:
                raise ConfigError(f"model.channels = {cfg.channels}: too many blocks for a {input_shape[1]}px image")
            c_in = c
        self.features = nn.Sequential(*blocks)
        head_in = c_in * h * w
        hidden = cfg.hidden[-1] if cfg.hidden else 0
        head: list[nn.Module] = [nn.Flatten()]
        if hidden:
            head += [nn.Linear(head_in, hidden), activation(cfg.activation)]
            if cfg.dropout > 0:
                head.append(nn.Dropout(cfg.dropout))
            head_in = hidden
        head.append(nn.Linear(head_in, out_features))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a skip connection (identity or 1x1 projection)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = activation(act)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # the skip path gives gradients a route around the stack: the lecture's cure for vanishing gradients
        return self.act(out + self.skip(x))


class ResNet(nn.Module):
    """A small ResNet: stem, three stages of ``depth`` residual blocks (width, 2x, 4x), pooled head."""

    def __init__(self, input_shape: tuple[int, ...], cfg: ModelConfig, out_features: int) -> None:
        super().__init__()
        w = cfg.width
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                                  activation(cfg.activation))
        stages: list[nn.Module] = []
        c_in = w
        for i, c in enumerate((w, 2 * w, 4 * w)):
            for j in range(cfg.depth):
                stages.append(ResidualBlock(c_in, c, 2 if (i > 0 and j == 0) else 1, cfg.activation))
                c_in = c
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout),
                                  nn.Linear(c_in, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

Norm = tuple[tuple[float, ...], tuple[float, ...]]


MIN_BACKBONE_SIDE = 32  # densenet121 pools 32x down: smaller images end at 0x0


class ImageNetInput(nn.Module):
    """Turns the dataset's images into what an ImageNet backbone was trained on, inside the model.

    The batch arrives scaled as the data module scaled it, ``(pixel / 255 - mean) / std`` per
    channel (``data_norm``); this undoes that, repeats a grey channel to three (torchvision's
    ``Grayscale(num_output_channels=3)``) and applies ImageNet's ``Normalize``: one
    multiply-add per channel, with constants that are buffers, not parameters (no state saved).
    Images smaller than ``MIN_BACKBONE_SIDE`` are upsampled (bilinear) to it, as transfer
    learning resizes its inputs (to 32 px, not 224: the least every backbone here takes)."""

    def __init__(self, channels: int, data_norm: Norm | None, side: int = MIN_BACKBONE_SIDE) -> None:
        super().__init__()
        self.side = side
        mean_in, std_in = data_norm if data_norm is not None else ((0.0,), (1.0,))
        if data_norm is None and channels == 3:  # unknown scaling: assume ImageNet's already
            mean_in, std_in = IMAGENET_STATS
        m_in = torch.tensor(mean_in, dtype=torch.float32).expand(channels if len(mean_in) == 1 else len(mean_in))
        s_in = torch.tensor(std_in, dtype=torch.float32).expand(len(m_in))
        if channels == 1:
            m_in, s_in = m_in.expand(3), s_in.expand(3)
        m_out, s_out = (torch.tensor(v, dtype=torch.float32) for v in IMAGENET_STATS)
        if data_norm is None and channels == 1:  # unknown scaling: repeat the channel only
            m_out, s_out = m_in, s_in
        self.repeat = 3 if channels == 1 else 1
        self.register_buffer("scale", (s_in / s_out).view(1, 3, 1, 1).clone(), persistent=False)
        self.register_buffer("shift", ((m_in - m_out) / s_out).view(1, 3, 1, 1).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat != 1:
            x = x.expand(-1, 3, -1, -1)
        x = x * self.scale + self.shift
        if min(x.shape[-2:]) < self.side:
            h, w = x.shape[-2:]
            size = (max(h, self.side), max(w, self.side))
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


def needs_imagenet_input(channels: int, data_norm: Norm | None, side: int = MIN_BACKBONE_SIDE) -> bool:
    """Whether a backbone needs ``ImageNetInput`` in front: grey or small images, or colour scaled otherwise
    than ImageNet's."""
    if channels != 3 or side < MIN_BACKBONE_SIDE:
        return True
    if data_norm is None:
        return False
    mean, std = data_norm
    if len(mean) == 1:
        mean, std = mean * 3, std * 3
    return any(abs(a - b) > 1e-6 for a, b in zip((*mean, *std), (*IMAGENET_STATS[0], *IMAGENET_STATS[1]), strict=True))


def _torchvision_model(name: str, cfg: ModelConfig, out_features: int) -> nn.Module:
    import torchvision

    weights = "DEFAULT" if cfg.pretrained else None
    try:
        model = getattr(torchvision.models, name)(weights=weights)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        raise ConfigError(
            f"model.arch = 'torchvision:{name}': pretrained weights are not available offline ({exc.__class__.__name__}); "
            f"put them in $TORCH_HOME/hub/checkpoints or set model.pretrained = false"
        ) from None
    if cfg.freeze_backbone:
        for p in model.parameters():
            p.requires_grad_(False)
    # replace the classifier head with a fresh one for our classes (trainable even when frozen)
    if name.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, out_features)
    elif name.startswith("densenet"):
        model.classifier = nn.Linear(model.classifier.in_features, out_features)
    elif name.startswith("mobilenet"):
        last = model.classifier[-1]
        model.classifier[-1] = nn.Linear(last.in_features, out_features)
    return model


def init_weights(model: nn.Module, scheme: str, act: str) -> None:
    """Apply a weight initialisation scheme to every Linear and Conv layer (biases to zero)."""
    if scheme == "default":
        return
    gain_act = act if act in ("sigmoid", "tanh", "relu", "leaky_relu") else "relu"
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) and m.weight.requires_grad:
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain(gain_act))
            elif scheme == "kaiming":
                nonlin = "leaky_relu" if act == "leaky_relu" else "relu"
                nn.init.kaiming_normal_(m.weight, nonlinearity=nonlin)
            elif scheme == "normal":
                nn.init.normal_(m.weight, 0.0, 0.01)
            elif scheme == "zeros":
                nn.init.zeros_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def set_explicit_weights(model: nn.Module, layers: list[dict]) -> None:
    """Copy ``model.init_weights`` into the linear layers of an mlp, input to output; ConfigError on a shape mismatch."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(linears) != len(layers):
        raise ConfigError(f"model.init_weights has {len(layers)} layers; the model has {len(linears)} linear layers")
    for i, (lin, given) in enumerate(zip(linears, layers, strict=True), start=1):
        weight = torch.tensor(given["weight"], dtype=lin.weight.dtype)
        if tuple(weight.shape) != tuple(lin.weight.shape):
            rows, cols = lin.weight.shape
            raise ConfigError(f"model.init_weights: layer {i} weight is {weight.shape[0]}x{weight.shape[1]} but the "
                              f"model's layer {i} is {rows}x{cols} ({rows} outputs, {cols} inputs)")
        with torch.no_grad():
            lin.weight.copy_(weight)
            if "bias" in given and lin.bias is not None:
                lin.bias.copy_(torch.tensor(given["bias"], dtype=lin.bias.dtype))


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], out_features: int,
                input_norm: Norm | None = None) -> nn.Module:
    """The architecture ``cfg`` names, shaped for the dataset.

    ``input_norm``: how the data module scaled image pixels, per channel ``(mean, std)`` on
    ``pixel / 255`` (a torchvision backbone re-normalises from it to ImageNet's; None: unknown).
    With ``cfg.seed >= 0`` this reseeds torch's global generator first (not on the meta device,
    where nothing is drawn)."""
    if cfg.seed >= 0 and torch.get_default_device().type != "meta":
        torch.manual_seed(cfg.seed)
    log_softmax = cfg.head == "log_softmax"
    if cfg.arch == "custom" or cfg.arch.startswith(PLUGIN_PREFIX):  # the user's own factory (engine/factories.py)
        from tui_trainer.engine.factories import build_own_model

        model: nn.Module = build_own_model(cfg, input_shape, out_features)
    elif cfg.arch == "mlp":
        model = MLP(math.prod(input_shape), cfg.hidden, out_features, cfg.activation,
                               cfg.batch_norm, cfg.dropout, log_softmax=log_softmax)
        log_softmax = False
    elif cfg.arch in ("cnn", "resnet"):
        if len(input_shape) != 3:
            raise ConfigError(f"model.arch = {cfg.arch!r} needs image data; this dataset's samples have shape {input_shape}")
        model = CNN(input_shape, cfg, out_features) if cfg.arch == "cnn" else ResNet(input_shape, cfg, out_features)
    else:
        if len(input_shape) != 3:
            raise ConfigError(f"model.arch = {cfg.arch!r} needs image data; this dataset's samples have shape {input_shape}")
        model = _torchvision_model(cfg.arch.split(":", 1)[1], cfg, out_features)
        if needs_imagenet_input(input_shape[0], input_norm, min(input_shape[1:])):
            if input_shape[0] not in (1, 3):
                raise ConfigError(f"model.arch = {cfg.arch!r} takes 1- or 3-channel images; these have {input_shape[0]}")
            model = nn.Sequential(OrderedDict(input=ImageNetInput(input_shape[0], input_norm), backbone=model))
    if log_softmax:
        model = nn.Sequential(OrderedDict(net=model, log_softmax=nn.LogSoftmax(dim=1)))
    if not cfg.pretrained:
        init_weights(model, cfg.init, cfg.activation)
    if cfg.init_weights:
        set_explicit_weights(model, cfg.init_weights)
    return model


@dataclass(frozen=True)
class LayerRow:
    """One row of a model's layer table."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    trainable: int


def layer_summary(model: nn.Module, input_shape: tuple[int, ...], example: torch.Tensor | None = None) -> list[LayerRow]:
    """Leaf layers with output shapes (from one forward pass of a 2-sample batch: zeros, or the first two samples
    of ``example``) and parameter counts."""
    rows: list[LayerRow] = []
    hooks = []

    def hook(name: str):
        def record(mod: nn.Module, _inp, out) -> None:
            shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()
            params = sum(p.numel() for p in mod.parameters(recurse=False))
            trainable = sum(p.numel() for p in mod.parameters(recurse=False) if p.requires_grad)
            rows.append(LayerRow(name, type(mod).__name__, shape, params, trainable))
        return record

    for name, mod in model.named_modules():
        if not any(True for _ in mod.children()):
            hooks.append(mod.register_forward_hook(hook(name)))
    try:
        device = next(model.parameters()).device
        with torch.no_grad(), eval_mode(model):
            model(example[:2].to(device) if example is not None else torch.zeros((2, *input_shape), device=device))
    finally:
        for h in hooks:
            h.remove()
    return rows


def state_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """Why ``state`` cannot load into ``model`` (first difference, one line), or None if it fits."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            return f"the checkpoint has no {key}"
        theirs = state[key]
        if hasattr(theirs, "shape") and tuple(theirs.shape) != tuple(value.shape):
            shape = "x".join(map(str, theirs.shape)) or "scalar"
            return f"{key} is {shape} in the checkpoint but {'x'.join(map(str, value.shape)) or 'scalar'} in the model"
    extra = [k for k in state if k not in own]
    return f"the checkpoint has {extra[0]}, which the model lacks" if extra else None


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)


def format_summary(rows: list[LayerRow], model: nn.Module) -> str:
    """A plain-text table of layers, output shapes and parameters, with totals."""
    total, trainable = count_params(model)
    width = max([len(r.name) for r in rows] + [5])
    lines = [f"{'layer':<{width}}  {'type':<18} {'output shape':<18} {'params':>12}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        shape = "x".join(str(s) for s in r.output_shape)
        frozen = " (frozen)" if r.params and not r.trainable else ""
        lines.append(f"{r.name:<{width}}  {r.kind:<18} {shape:<18} {r.params:>12,}{frozen}")
    lines.append("-" * len(lines[0]))
    lines.append(f"total params: {total:,}   trainable: {trainable:,}   frozen: {total - trainable:,}")
    return "\n".join(lines)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block, then back to the mode it was in (even if the block raises)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
