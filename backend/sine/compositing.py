"""Edits limited to a selection: the result only shows through the (feathered) mask.

The feather fades the result in *inside* the selection, so every pixel outside it is the
source's own pixel, bit for bit.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def feathered_alpha(mask: Image.Image, feather_px: int) -> np.ndarray:
    """Mask (L, 255 = selected) → weights in [0, 1]: 0 wherever the mask is 0, ramping up over
    `feather_px` pixels inside the selection's edge, the mask's own value deeper inside."""
    current = mask.convert("L")
    steps = max(1, int(feather_px))
    total = np.zeros((current.height, current.width), np.float32)
    for _ in range(steps):  # the mean of successive 1-px erosions is a linear ramp from the edge
        total += np.asarray(current, dtype=np.float32)
        current = current.filter(ImageFilter.MinFilter(3))
    return total / (255.0 * steps)


def composite_under_mask(source: Image.Image, result: Image.Image, mask: Image.Image,
                         feather_px: int = 4) -> Image.Image:
    """RGBA: the result where the mask is on, the untouched source where it is off."""
    if not (source.size == result.size == mask.size):
        raise ValueError(f"sizes differ: source {source.size}, result {result.size}, mask {mask.size}")
    src = np.asarray(source.convert("RGBA"))
    res = np.asarray(result.convert("RGBA")).astype(np.float32)
    alpha = feathered_alpha(mask, feather_px)[..., None]
    mixed = np.rint(src.astype(np.float32) * (1.0 - alpha) + res * alpha).clip(0, 255).astype(np.uint8)
    out = np.where(alpha > 0, mixed, src)
    return Image.fromarray(out, "RGBA")
