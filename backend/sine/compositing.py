"""Edits limited to a selection: the result only shows through the (feathered) mask.

The feather fades the result in *inside* the selection, so every pixel outside it is the
source's own pixel, bit for bit. `finish_result` is the one last step of `sine edit` and the daemon
alike (the same request gives the same bytes through both).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from .images import with_source_alpha


def finish_result(edited: Image.Image, source: Image.Image, mask: Image.Image | None,
                  size: tuple[int, int]) -> Image.Image:
    """The result as delivered: exactly `size`, RGBA with the source's alpha; with a mask (L, the
    source's size) the source shows through wherever it is 0. For a scaled edit the source is resized
    as the sampler saw it (Lanczos) and the mask as the alpha (bilinear)."""
    result = edited.convert("RGBA")
    if result.size != size:  # the engine promises the exact size; this only guards the contract
        result = result.resize(size, Image.Resampling.LANCZOS)
    result = layer_colours(with_source_alpha(result, source))
    if mask is None:
        return result
    if source.size != size:  # the selection scales with the picture
        source = source.resize(size, Image.Resampling.LANCZOS)
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    return composite_under_mask(source, result, mask)


def layer_colours(result: Image.Image) -> Image.Image:
    """The model drew partly transparent pixels over white (`images.flatten_rgb`): its colour c there is
    a·C + (1 − a)·255. The layer's own colour C = (c − (1 − a)·255) / a, clipped, so the result laid over
    any background shows what the model drew (as c it showed a light fringe: half-transparent red came back
    pink). Opaque and fully transparent pixels are left as drawn."""
    rgba = np.asarray(result.convert("RGBA"))
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    partial = (alpha > 0) & (alpha < 1)
    if not partial.any():
        return result
    colour = rgba[..., :3].astype(np.float32)
    own = (colour - (1.0 - alpha) * 255.0) / np.maximum(alpha, 1.0 / 255.0)
    out = rgba.copy()
    out[..., :3] = np.where(partial, np.rint(own).clip(0, 255), colour).astype(np.uint8)
    return Image.fromarray(out, "RGBA")


def feathered_alpha(mask: Image.Image, feather_px: int) -> np.ndarray:
    """Mask (L, 255 = selected) → weights in [0, 1]: 0 wherever the mask is 0, ramping up over
    `feather_px` pixels inside the selection's edge, the mask's own value deeper inside. The ramp reaches
    the mask's value at a selection's deepest pixels: a selection narrower than twice the feather (2 px
    wide: a quarter of the edit before) gets the whole edit at its middle."""
    mask = mask.convert("L")
    steps = max(1, int(feather_px))
    box = mask.getbbox()  # only the selection and a margin of `steps` px need the filters
    if box is None:
        return np.zeros((mask.height, mask.width), np.float32)
    left, top = max(0, box[0] - steps - 1), max(0, box[1] - steps - 1)
    right, bottom = min(mask.width, box[2] + steps + 1), min(mask.height, box[3] + steps + 1)
    weights = np.zeros((mask.height, mask.width), np.float32)
    weights[top:bottom, left:right] = _feather(mask.crop((left, top, right, bottom)), steps)
    return weights


def _feather(mask: Image.Image, steps: int) -> np.ndarray:
    current = mask
    total = np.zeros((current.height, current.width), np.float32)
    for _ in range(steps):  # the mean of successive 1-px erosions is a linear ramp from the edge
        total += np.asarray(current, dtype=np.float32)
        current = current.filter(ImageFilter.MinFilter(3))
    ramp = total / (255.0 * steps)
    deepest, level = Image.fromarray(ramp, "F"), mask
    for _ in range(steps):  # the most the ramp and the mask reach within `steps` px of each pixel
        deepest, level = deepest.filter(ImageFilter.MaxFilter(3)), level.filter(ImageFilter.MaxFilter(3))
    reach = np.asarray(deepest, dtype=np.float32)
    scale = np.asarray(level, dtype=np.float32) / 255.0 / np.maximum(reach, 1e-6)
    return np.where(ramp > 0, np.minimum(ramp * np.maximum(scale, 1.0), 1.0), 0.0).astype(np.float32)


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
