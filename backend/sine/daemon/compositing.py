"""Put an edit back only under the selection: outside the mask the source pixels stay bit-identical."""

from __future__ import annotations

import numpy as np
from PIL import Image


def _box_blur(values: np.ndarray, radius: int) -> np.ndarray:
    """Separable box blur with edge clamping (cumulative sums; no SciPy needed)."""
    if radius <= 0:
        return values
    out = values
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in range(2)], mode="edge")
        csum = np.cumsum(padded, axis=axis, dtype=np.float64)
        csum = np.concatenate([np.zeros_like(csum.take([0], axis=axis)), csum], axis=axis)
        size = out.shape[axis]
        hi = csum.take(np.arange(2 * radius + 1, 2 * radius + 1 + size), axis=axis)
        lo = csum.take(np.arange(0, size), axis=axis)
        out = (hi - lo) / (2 * radius + 1)
    return out


def feathered_weights(mask: np.ndarray, radius: int | None = None) -> np.ndarray:
    """Blend weights in [0, 1] from an 8-bit mask, softened inward only: zero wherever the mask is zero."""
    alpha = mask.astype(np.float64) / 255.0
    if radius is None:
        radius = max(1, min(mask.shape) // 64)
    return np.minimum(alpha, _box_blur(alpha, radius))


def composite_under_mask(source: Image.Image, result: Image.Image, mask: Image.Image, radius: int | None = None) -> Image.Image:
    """Blend ``result`` over ``source`` (both RGBA, same size) with ``mask`` (mode L) as a feathered weight.

    Pixels where the mask is 0 are copied from ``source`` byte for byte.
    """
    if not (source.size == result.size == mask.size):
        raise ValueError(f"sizes differ: source {source.size}, result {result.size}, mask {mask.size}")
    src = np.asarray(source.convert("RGBA"), dtype=np.uint8)
    res = np.asarray(result.convert("RGBA"), dtype=np.uint8)
    m = np.asarray(mask.convert("L"), dtype=np.uint8)
    weight = feathered_weights(m, radius)[..., None]
    blended = np.rint(src * (1.0 - weight) + res * weight).clip(0, 255).astype(np.uint8)
    out = np.where((m == 0)[..., None], src, blended)
    return Image.fromarray(out, "RGBA")
