"""Synthetic test images (generated, no external data)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def synthetic_chest(h: int = 320, w: int = 288, seed: int = 0, kind: str = "normal") -> np.ndarray:
    """A float32 (h, w) image in [0, 1] that looks roughly like a chest X-ray.

    ``kind`` adds opacities: ``covid`` bilateral peripheral haze in the lower
    zones, ``pneumonia`` a dense consolidation in one lower lobe.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = yy / h, xx / w
    body = np.exp(-(((x - 0.5) / 0.42) ** 6 + ((y - 0.55) / 0.55) ** 6))
    img = 0.15 + 0.55 * body
    jitter = rng.uniform(-0.02, 0.02, 4)
    for cx in (0.31 + jitter[0], 0.69 + jitter[1]):
        lung = np.exp(-(((x - cx) / 0.14) ** 2 + ((y - 0.5 - jitter[2]) / 0.27) ** 2) ** 2)
        img -= 0.38 * lung
    img += 0.25 * np.exp(-(((x - 0.5) / 0.07) ** 2 + ((y - 0.55) / 0.35) ** 2))  # mediastinum
    img += 0.05 * (np.sin(y * 2 * np.pi * 9 + 1.5 * np.abs(x - 0.5) * 6) > 0.6) * body  # ribs
    if kind == "covid":
        for cx in (0.22, 0.78):
            img += 0.22 * np.exp(-(((x - cx) / 0.07) ** 2 + ((y - 0.62) / 0.13) ** 2))
    elif kind == "pneumonia":
        cx = 0.3 if seed % 2 else 0.7
        img += 0.35 * np.exp(-(((x - cx) / 0.09) ** 2 + ((y - 0.65) / 0.09) ** 2) ** 2)
    img += rng.normal(0, 0.015, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def to_png8(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
