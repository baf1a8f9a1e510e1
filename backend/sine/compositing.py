"""Edits limited to a selection: the result only shows through the (feathered) mask.

The feather fades the result in *inside* the selection, so every pixel outside it is the
source's own pixel, bit for bit.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def feathered_alpha(mask: Image.Image, feather_px: float) -> np.ndarray:
    """Mask (L, 255 = selected) → weights in [0, 1] that are exactly 0 wherever the mask is 0."""
    m = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    if feather_px > 0:
        blurred = np.asarray(mask.convert("L").filter(ImageFilter.GaussianBlur(feather_px)), dtype=np.float32) / 255.0
        m = np.minimum(m, blurred * m)
    m[np.asarray(mask.convert("L")) == 0] = 0.0
    return m


def composite_under_mask(source: Image.Image, result: Image.Image, mask: Image.Image,
                         feather_px: float = 2.0) -> Image.Image:
    """RGBA: the result where the mask is on, the untouched source where it is off."""
    if not (source.size == result.size == mask.size):
        raise ValueError(f"sizes differ: source {source.size}, result {result.size}, mask {mask.size}")
    src = np.asarray(source.convert("RGBA"))
    res = np.asarray(result.convert("RGBA")).astype(np.float32)
    alpha = feathered_alpha(mask, feather_px)[..., None]
    mixed = np.rint(src.astype(np.float32) * (1.0 - alpha) + res * alpha).clip(0, 255).astype(np.uint8)
    out = np.where(alpha > 0, mixed, src)
    return Image.fromarray(out, "RGBA")
