"""Photo-like pictures made from numbers, for tests and benchmarks that must not ship a photo.

Smooth, many-hued colour fields with shading and sensor-like noise: what makes a photo unlike the
demo model's flat shapes world (many colours, no flat regions), without being one.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """An RGB picture: a blurry random landscape of colours, a soft light, and fine noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ys /= max(height, width)
    xs /= max(height, width)
    out = np.zeros((height, width, 3), np.float32)
    for _ in range(12):  # sums of random low-frequency waves per channel
        fy, fx = rng.uniform(0.5, 6.0, 2)
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(10, 40, 3)
        wave = np.sin(2 * np.pi * (fy * ys + fx * xs) + phase)
        out += wave[..., None] * amp
    out += rng.uniform(60, 180, 3)
    light = 0.6 + 0.4 * np.exp(-(((xs - 0.4) ** 2 + (ys - 0.3) ** 2) / 0.15))
    out = out * light[..., None] + rng.normal(0, 6, out.shape)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")
