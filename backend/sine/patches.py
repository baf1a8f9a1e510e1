"""Training views of the one source image: random patches (with their place) or the whole image.

The patch variant is what lets SINE render at any size: the source is viewed at twice the model's
training size as a grid of cells (128×128 for SD1: `BaseModel.pe_grid`); each step crops a random box of independent height and
width (10–100 % of the side), resizes it to the training size, and remembers the box so the
positional embedding can say where the crop came from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image

from .positional import GRID


@dataclass(frozen=True)
class TrainingView:
    image: Image.Image  # RGB, train_size × train_size
    box: tuple[int, int, int, int]  # (y0, x0, y1, x1) in grid cells


def draw_box(rng: random.Random, grid: int = GRID) -> tuple[int, int, int, int]:
    """Side lengths int(grid·U[0.1, 1)) drawn independently, then a uniform offset that fits."""
    h = max(1, int(grid * rng.uniform(0.1, 1.0)))
    w = max(1, int(grid * rng.uniform(0.1, 1.0)))
    y0 = rng.randint(0, grid - h)
    x0 = rng.randint(0, grid - w)
    return y0, x0, y0 + h, x0 + w


class PatchSampler:
    """Random crops of a view of size 2×train_size (1024² for SD1, so one cell = one 8-px latent cell)."""

    def __init__(self, image: Image.Image, train_size: int, rng: random.Random, grid: int = GRID,
                 whole_image_share: float = 0.0) -> None:
        self.train_size = train_size
        self.whole_image_share = whole_image_share  # share of steps that see the whole picture (box = the whole grid)
        self.grid = grid
        self.view_size = 2 * train_size
        self.cell = self.view_size / grid
        self.view = image.convert("RGB").resize((self.view_size, self.view_size), Image.Resampling.BICUBIC)
        self.rng = rng

    def sample(self) -> TrainingView:
        if self.whole_image_share and self.rng.random() < self.whole_image_share:
            y0, x0, y1, x1 = 0, 0, self.grid, self.grid
        else:
            y0, x0, y1, x1 = draw_box(self.rng, self.grid)
        c = self.cell
        crop = self.view.crop((round(x0 * c), round(y0 * c), round(x1 * c), round(y1 * c)))
        size = (self.train_size, self.train_size)
        return TrainingView(crop.resize(size, Image.Resampling.BICUBIC), (y0, x0, y1, x1))


class WholeImageSampler:
    """The paper's plain variant: the whole source, resized to the training size, every step."""

    def __init__(self, image: Image.Image, train_size: int, grid: int = GRID) -> None:
        size = (train_size, train_size)
        self._view = TrainingView(image.convert("RGB").resize(size, Image.Resampling.BICUBIC), (0, 0, grid, grid))

    def sample(self) -> TrainingView:
        return self._view
