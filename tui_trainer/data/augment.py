"""Augmentations applied to a whole batch on the device (training split only).

Each takes and returns a normalised float batch (B, C, H, W); randomness is per sample and
comes from torch's generator for the batch's device, so a seeded CPU run is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Augment = Callable[[torch.Tensor], torch.Tensor]


def _per_sample(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    return (torch.rand(x.shape[0], device=x.device) < p).view(-1, 1, 1, 1)


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror left-right with probability 0.5."""
    return torch.where(_per_sample(x), x.flip(-1), x)


def vflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror top-bottom with probability 0.5."""
    return torch.where(_per_sample(x), x.flip(-2), x)


def crop(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random crop of the original size from the image zero-padded by ``pad`` (one gather, no loop)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    idx = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2).contiguous()


def rotate(x: torch.Tensor, max_degrees: float = 15.0) -> torch.Tensor:
    """Rotate each image by a random angle in [-max_degrees, max_degrees] (bilinear)."""
    b = x.shape[0]
    angle = (torch.rand(b, device=x.device) * 2 - 1) * math.radians(max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def jitter(x: torch.Tensor, strength: float = 0.2) -> torch.Tensor:
    """Random brightness (shift) and contrast (scale) per image and channel."""
    shape = (x.shape[0], x.shape[1], 1, 1)
    scale = 1 + (torch.rand(shape, device=x.device) * 2 - 1) * strength
    shift = (torch.rand(shape, device=x.device) * 2 - 1) * strength
    return x * scale + shift


AUGMENTS: dict[str, Augment] = {"hflip": hflip, "vflip": vflip, "crop": crop, "rotate": rotate, "jitter": jitter}


def compose(names: list[str]) -> Augment | None:
    """The named augmentations applied in order, or None for none."""
    if not names:
        return None
    fns = [AUGMENTS[n] for n in names]

    def apply(x: torch.Tensor) -> torch.Tensor:
        for fn in fns:
            x = fn(x)
        return x

    return apply
