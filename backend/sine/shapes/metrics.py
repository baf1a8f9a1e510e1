"""Measurements on shapes-world images: named colours, objects, shapes, PSNR and SSIM.

They read generated pixels the way a person would judge them ("is the circle red?", "is there one
star or two?"), which is what the base-model check and the SINE quality benchmark need.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from .world import COLORS, SHAPES, Background, Scene, Shape

_NAMES = tuple(COLORS)
_PALETTE = np.array([COLORS[n] for n in _NAMES], dtype=np.float32)


def as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    return np.asarray(image, dtype=np.float32)


def color_labels(image: Image.Image | np.ndarray) -> np.ndarray:
    """Index into the world's colour names of the nearest named colour, per pixel (H, W)."""
    px = as_array(image)
    d = ((px[:, :, None, :] - _PALETTE[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def color_index(name: str) -> int:
    return _NAMES.index(name)


def majority_color(image: Image.Image | np.ndarray, mask: np.ndarray | None = None) -> str | None:
    """The named colour most pixels under `mask` are closest to (None for an empty mask)."""
    labels = color_labels(image)
    values = labels[mask] if mask is not None else labels.ravel()
    if values.size == 0:
        return None
    return _NAMES[int(np.bincount(values, minlength=len(_NAMES)).argmax())]


def components(mask: np.ndarray, min_pixels: int = 1, diagonal: bool = False) -> list[np.ndarray]:
    """Connected components (4-connected, or 8 with `diagonal`) of a boolean mask, largest first,
    ignoring those under `min_pixels`."""
    h, w = mask.shape
    steps = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    if diagonal:
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    seen = np.zeros_like(mask, dtype=bool)
    found: list[np.ndarray] = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        comp = np.zeros_like(mask, dtype=bool)
        queue = deque([(y0, x0)])
        seen[y0, x0] = True
        while queue:
            y, x = queue.popleft()
            comp[y, x] = True
            for dy, dx in steps:
                ny, nx = y + dy, x + dx
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if comp.sum() >= min_pixels:
            found.append(comp)
    found.sort(key=lambda m: -int(m.sum()))
    return found


def dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Binary dilation with a square window: closes the gaps a dotted or checkered fill leaves."""
    out = mask.copy()
    h, w = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            src = mask[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            out[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] |= src
    return out


def erode(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Binary erosion: the inside of a region, away from edges the VAE blurs anyway."""
    return ~dilate(~mask, radius)


def things(grown: np.ndarray, min_pixels: int) -> list[np.ndarray]:
    """Separate things in a mask already dilated (`dilate`), so a textured fill's gaps do not split it."""
    return components(grown, min_pixels=min_pixels, diagonal=True)


def count_separate(mask: np.ndarray, min_pixels: int) -> int:
    """How many separate things a per-pixel mask holds."""
    return len(things(dilate(mask), min_pixels))


def count_objects(image: Image.Image | np.ndarray, color: str, min_pixels: int) -> int:
    """How many separate objects of one named colour an image shows (textured fills count as one)."""
    return count_separate(color_labels(image) == color_index(color), min_pixels)


def count_foreground(image: Image.Image | np.ndarray, background: str, min_pixels: int) -> int:
    """How many separate things stand out from a plain background of one named colour, whatever
    their colour (a fine-tuned model's textured object may come out in a blend of its colours)."""
    return count_separate(color_labels(image) != color_index(background), min_pixels)


@dataclass(frozen=True)
class Placement:
    """Where a thing was drawn against where it belongs (large canvases, where a count alone misleads:
    a big object breaks into pieces that are not duplicates, and small copies are duplicates)."""

    stray: int  # separate things of the colour that lie mostly away from where the object belongs
    coverage: float  # share of the object's true region that holds the colour


def placement(mask: np.ndarray, where: np.ndarray, min_pixels: int, margin: int) -> Placement:
    """`mask`: pixels of the object's colours; `where`: its true region, widened by `margin` px
    (the VAE and the model are allowed to draw the edge a little off)."""
    near = dilate(where, margin)
    grown = dilate(mask)
    stray = sum(1 for c in things(grown, min_pixels) if (c & near).sum() < 0.5 * c.sum())
    coverage = float(grown[where].mean()) if where.any() else 0.0
    return Placement(stray=stray, coverage=coverage)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every enclosed gap filled (a dotted or checkered object judged by its outline)."""
    border = np.zeros_like(mask, dtype=bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    outside = [c for c in components(~mask) if (c & border).any()]
    return ~np.logical_or.reduce(outside) if outside else np.ones_like(mask, dtype=bool)


def fill_ratio(mask: np.ndarray) -> float:
    """Area over bounding-box area: ~1 square, ~0.78 circle, ~0.5 triangle, ~0.35 star."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0.0
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    return float(ys.size / box)


@cache
def reference_fill_ratios() -> dict[str, float]:
    """Fill ratio of each shape as the world draws it (medium and large sizes, averaged)."""
    out = {}
    for kind in SHAPES:
        ratios = []
        for size in ("medium", "large"):
            scene = Scene((Shape(kind, "red", size, 1, 1),), Background("plain", ("white",)))
            ratios.append(fill_ratio(scene.render()[1].objects[0]))
        out[kind] = float(np.mean(ratios))
    return out


def classify_shape(mask: np.ndarray) -> str:
    ratio = fill_ratio(mask)
    refs = reference_fill_ratios()
    return min(refs, key=lambda k: abs(refs[k] - ratio))


def object_pixels(image: Image.Image | np.ndarray, color: str, min_pixels: int = 6) -> list[np.ndarray]:
    """Connected blobs of one named colour, largest first: how many objects of that colour were drawn."""
    mask = color_labels(image) == color_index(color)
    return components(mask, min_pixels=min_pixels)


def psnr(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over the pixels under `mask` (all pixels when None); capped at 100 for identical."""
    x, y = as_array(a), as_array(b)
    diff = (x - y) ** 2
    mse = float(diff[mask].mean()) if mask is not None else float(diff.mean())
    if mse <= 1e-10:
        return 100.0
    return float(10 * np.log10(255.0**2 / mse))


def ssim_map(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> np.ndarray:
    """Per-pixel SSIM on luma (BT.601), scikit-image's `structural_similarity` with Wang et al.'s
    settings: 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, data range 255.

    scikit-image is a benchmark-only dependency: `pip install -e ".[bench]"`.
    """
    try:
        from skimage.metrics import structural_similarity
    except ImportError as exc:  # pragma: no cover - the message is the point
        raise ImportError('SSIM needs scikit-image: pip install -e ".[bench]"') from exc
    w = np.array([0.299, 0.587, 0.114], dtype=np.float64)
    x = as_array(a).astype(np.float64) @ w
    y = as_array(b).astype(np.float64) @ w
    _, full = structural_similarity(x, y, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)
    return full


def ssim(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over the pixels under `mask` (all pixels when None)."""
    m = ssim_map(a, b)
    return float(m[mask].mean()) if mask is not None else float(m.mean())
