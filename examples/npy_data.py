"""Your own data for tui-trainer: ``data.dataset = "custom"``, ``data.factory = "npy_data.py:build"``.

``build(**data.args)`` returns the training and validation sets and the class names. With ``folder`` it reads
``x_train.npy``, ``y_train.npy``, ``x_val.npy`` and ``y_val.npy`` from it (images N x C x H x W, float; labels N,
integers) and ``classes.txt`` if there is one; without, it generates ``n`` 1 x 16 x 16 images of three patterns
(horizontal bars, vertical bars, a diagonal) with noise, so the example runs offline anywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tui_trainer.data.custom import CustomData

CLASSES = ["horizontal", "vertical", "diagonal"]


def _patterns(n: int, side: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.normal(0.0, noise, size=(n, 1, side, side)).astype(np.float32)
    rows = np.arange(side)
    for i, label in enumerate(y):
        offset = rng.integers(0, 2)
        if label == 0:
            x[i, 0, offset::2, :] += 1.0
        elif label == 1:
            x[i, 0, :, offset::2] += 1.0
        else:
            x[i, 0, rows, rows] += 2.0
            x[i, 0, rows, (rows + 1) % side] += 2.0
    return x, y.astype(np.int64)


def build(folder: str = "", n: int = 600, side: int = 16, noise: float = 1.0, seed: int = 0) -> CustomData:
    """Images from a folder of .npy arrays, or three generated patterns (bars across, bars down, a diagonal)."""
    if folder:
        root = Path(folder)
        arrays = {name: np.load(root / f"{name}.npy") for name in ("x_train", "y_train", "x_val", "y_val")}
        names = root / "classes.txt"
        classes = names.read_text().split() if names.is_file() else sorted({int(v) for v in arrays["y_train"]})
        return CustomData(train=(arrays["x_train"], arrays["y_train"]), val=(arrays["x_val"], arrays["y_val"]),
                          classes=[str(c) for c in classes])
    x, y = _patterns(n, side, noise, seed)
    cut = n * 4 // 5
    return CustomData(train=(x[:cut], y[:cut]), val=(x[cut:], y[cut:]), classes=CLASSES)
