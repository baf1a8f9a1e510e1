"""The "shapes world": a procedural, seeded world of coloured shapes with captions and exact masks.

It is both the training distribution of the bundled demo model and the measuring instrument of the
quality benchmark: every scene knows which pixels belong to which object, so an edit's success and
its preservation of untouched regions can be measured exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw

# Hue colours: objects use these. Backgrounds may also use the neutral ones.
HUE_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 15),
    "yellow": (240, 215, 25),
    "green": (35, 170, 50),
    "cyan": (25, 200, 215),
    "blue": (35, 65, 215),
    "purple": (135, 45, 200),
    "pink": (240, 105, 175),
}
NEUTRAL_COLORS: dict[str, tuple[int, int, int]] = {"white": (240, 240, 240), "black": (25, 25, 25)}
COLORS: dict[str, tuple[int, int, int]] = {**HUE_COLORS, **NEUTRAL_COLORS}
OBJECT_COLORS = tuple(HUE_COLORS)
BACKGROUND_COLORS = tuple(COLORS)

SHAPES = ("circle", "square", "triangle", "star")
SIZES = {"small": 0.10, "medium": 0.15, "large": 0.19}  # radius as a fraction of min(width, height)
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
GRID = (0.2, 0.5, 0.8)  # cell centres as fractions of the image side
RELATIONS = ("left of", "right of", "above", "below")

SEEN_BACKGROUNDS = ("plain", "gradient", "striped")
# Content the base model never sees in training: SINE's fine-tuning must bring it in.
UNSEEN_TEXTURES = ("dotted", "checkered", "noisy")
UNSEEN_BACKGROUNDS = ("checkered", "noisy")

STRIPE_PERIOD = 0.25  # one light and one dark stripe per quarter of the width
TEXTURE_CELL = 4  # pixels at 64x64; scaled with the render size


@dataclass(frozen=True)
class Shape:
    """One object: what it is, its colour, size, grid cell, a small jitter and an optional texture."""

    kind: str
    color: str
    size: str
    row: int
    col: int
    dx: float = 0.0  # jitter, fraction of the width
    dy: float = 0.0
    texture: str | None = None

    def phrase(self, with_size: bool = True, with_position: bool = False) -> str:
        words = ["a"]
        if with_size:
            words.append(self.size)
        if self.texture:
            words.append(self.texture)
        words += [self.color, self.kind]
        if with_position:
            words.append(position_phrase(self.row, self.col))
        return " ".join(words)


@dataclass(frozen=True)
class Background:
    """`plain` (one colour), `gradient` (top colour to bottom colour), `striped` (vertical stripes),
    or the unseen `checkered` / `noisy`."""

    kind: str
    colors: tuple[str, ...]

    def phrase(self) -> str:
        if self.kind == "plain":
            return f"on a {self.colors[0]} background"
        if self.kind == "gradient":
            return f"on a {self.colors[0]} to {self.colors[1]} gradient background"
        if self.kind == "noisy":
            return f"on a noisy {self.colors[0]} background"
        return f"on a {self.colors[0]} and {self.colors[1]} {self.kind} background"


@dataclass
class Masks:
    """Per-object visible pixels (later objects occlude earlier ones) and the background's pixels."""

    objects: list[np.ndarray]
    background: np.ndarray

    def union(self) -> np.ndarray:
        out = np.zeros_like(self.background)
        for m in self.objects:
            out |= m
        return out


def position_phrase(row: int, col: int) -> str:
    if row == 1 and col == 1:
        return "at the center"
    if row == 1:
        return f"at the {COLS[col]}"
    if col == 1:
        return f"at the {ROWS[row]}"
    return f"at the {ROWS[row]} {COLS[col]}"


def relation(a: Shape, b: Shape) -> str:
    """Where `a` is relative to `b`; the axis with the larger grid distance wins, ties go vertical."""
    dr, dc = a.row - b.row, a.col - b.col
    if abs(dr) >= abs(dc) and dr != 0:
        return "above" if dr < 0 else "below"
    return "left of" if dc < 0 else "right of"


@dataclass(frozen=True)
class Scene:
    """A full scene. `seed` drives only the noise textures, so rendering is a pure function."""

    objects: tuple[Shape, ...]
    background: Background
    seed: int = 0
    prefix: str = field(default="", compare=False)

    # ----- text
    def caption(self, with_size: bool = True, with_position: bool = True, with_background: bool = True,
                use_relation: bool = True) -> str:
        """The canonical caption; the flags give the shorter variants used in training."""
        objs = self.objects
        if len(objs) == 2 and use_relation:
            text = f"{objs[0].phrase(with_size)} {relation(objs[0], objs[1])} {objs[1].phrase(with_size)}"
        else:
            pos = with_position and len(objs) < 3
            text = " and ".join(o.phrase(with_size, pos) for o in objs)
        if with_background:
            text += " " + self.background.phrase()
        return text

    def random_caption(self, rng: random.Random) -> str:
        """A caption variant: optional attributes dropped at random, sometimes a "picture of" prefix,
        so that short prompts such as "a red circle" are in-distribution."""
        text = self.caption(
            with_size=rng.random() < 0.6,
            with_position=rng.random() < 0.6,
            with_background=rng.random() < 0.8,
            use_relation=rng.random() < 0.7,
        )
        r = rng.random()
        if r < 0.1:
            text = "picture of " + text
        elif r < 0.15:
            text = "painting of " + text
        return text

    # ----- edits (for the benchmark)
    def recolored(self, index: int, color: str) -> Scene:
        objs = list(self.objects)
        objs[index] = replace(objs[index], color=color)
        return replace(self, objects=tuple(objs))

    def with_background(self, background: Background) -> Scene:
        return replace(self, background=background)

    def with_texture(self, index: int, texture: str | None) -> Scene:
        objs = list(self.objects)
        objs[index] = replace(objs[index], texture=texture)
        return replace(self, objects=tuple(objs))

    # ----- pixels
    def render(self, width: int = 64, height: int = 64) -> tuple[Image.Image, Masks]:
        """RGB image and masks at any size: positions scale per axis, shapes by the shorter side."""
        rng = np.random.default_rng(self.seed)
        canvas = render_background(self.background, width, height, rng)
        occupied = np.zeros((height, width), dtype=bool)
        masks: list[np.ndarray] = []
        for shape in self.objects:
            m = shape_mask(shape, width, height)
            fill = texture_fill(shape, width, height, rng)
            canvas[m] = fill[m]
            for prev in masks:
                prev &= ~m
            masks.append(m)
            occupied |= m
        return Image.fromarray(canvas, "RGB"), Masks(objects=masks, background=~occupied)


def shape_geometry(shape: Shape, width: int, height: int) -> tuple[float, float, float]:
    cx = (GRID[shape.col] + shape.dx) * width
    cy = (GRID[shape.row] + shape.dy) * height
    r = SIZES[shape.size] * min(width, height)
    return cx, cy, r


def shape_mask(shape: Shape, width: int, height: int) -> np.ndarray:
    cx, cy, r = shape_geometry(shape, width, height)
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    if shape.kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif shape.kind == "square":
        h = r * 0.85
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=255)
    elif shape.kind == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)], fill=255)
    elif shape.kind == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else 0.45 * r
            ang = -math.pi / 2 + i * math.pi / 5
            pts.append((cx + rad * math.cos(ang), cy + 0.05 * r + rad * math.sin(ang)))
        draw.polygon(pts, fill=255)
    else:
        raise ValueError(f"unknown shape {shape.kind!r}")
    return np.asarray(img) > 127


def _rgb(name: str) -> np.ndarray:
    return np.array(COLORS[name], dtype=np.float32)


def _cells(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    cell = max(1.0, TEXTURE_CELL * min(width, height) / 64)
    ys, xs = np.mgrid[0:height, 0:width]
    return (ys // cell).astype(int), (xs // cell).astype(int)


def _contrast(name: str) -> str:
    return "black" if name in ("yellow", "white", "cyan", "orange", "pink") else "white"


def texture_fill(shape: Shape, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """The object's pixels as a full-size array (only the masked part is used)."""
    base = _rgb(shape.color)
    out = np.broadcast_to(base, (height, width, 3)).copy()
    if shape.texture is None:
        pass
    elif shape.texture == "checkered":
        cy, cx = _cells(width, height)
        out[(cy + cx) % 2 == 1] = _rgb(_contrast(shape.color))
    elif shape.texture == "dotted":
        cell = max(2.0, 5 * min(width, height) / 64)
        ys, xs = np.mgrid[0:height, 0:width]
        fy = (ys % cell) - cell / 2 + 0.5
        fx = (xs % cell) - cell / 2 + 0.5
        out[fy**2 + fx**2 <= (cell * 0.32) ** 2] = _rgb(_contrast(shape.color))
    elif shape.texture == "noisy":
        noise = rng.uniform(0.45, 1.25, size=(height, width, 1)).astype(np.float32)
        out = out * noise
    else:
        raise ValueError(f"unknown texture {shape.texture!r}")
    return np.clip(out, 0, 255).astype(np.uint8)


def render_background(bg: Background, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    c0 = _rgb(bg.colors[0])
    if bg.kind == "plain":
        out = np.broadcast_to(c0, (height, width, 3)).copy()
    elif bg.kind == "gradient":
        c1 = _rgb(bg.colors[1])
        t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        out = np.broadcast_to(c0 * (1 - t) + c1 * t, (height, width, 3)).copy()
    elif bg.kind == "striped":
        c1 = _rgb(bg.colors[1])
        period = STRIPE_PERIOD * width
        xs = np.arange(width)
        first = (xs % period) < period / 2
        row = np.where(first[:, None], c0, c1)
        out = np.broadcast_to(row, (height, width, 3)).copy()
    elif bg.kind == "checkered":
        cy, cx = _cells(width, height)
        out = np.where(((cy + cx) % 2 == 0)[..., None], c0, _rgb(bg.colors[1]))
    elif bg.kind == "noisy":
        out = c0 * rng.uniform(0.5, 1.2, size=(height, width, 1)).astype(np.float32)
    else:
        raise ValueError(f"unknown background {bg.kind!r}")
    return np.clip(out, 0, 255).astype(np.uint8)


def random_background(rng: random.Random, avoid: set[str], kind: str | None = None) -> Background:
    choices = [c for c in BACKGROUND_COLORS if c not in avoid]
    kind = kind or rng.choices(SEEN_BACKGROUNDS, weights=(0.6, 0.2, 0.2))[0]
    if kind in ("plain", "noisy"):
        return Background(kind, (rng.choice(choices),))
    a, b = rng.sample(choices, 2)
    return Background(kind, (a, b))


def random_scene(seed: int, n_objects: int | None = None) -> Scene:
    """A scene from the training distribution (no unseen textures), fully determined by `seed`."""
    rng = random.Random(seed)
    n = n_objects or rng.choices((1, 2, 3), weights=(0.5, 0.35, 0.15))[0]
    cells = rng.sample([(r, c) for r in range(3) for c in range(3)], n)
    colors = rng.sample(OBJECT_COLORS, n)
    objs = []
    for (row, col), color in zip(cells, colors, strict=True):
        size = rng.choice(tuple(SIZES)) if n == 1 else rng.choice(("small", "medium"))
        objs.append(Shape(
            kind=rng.choice(SHAPES), color=color, size=size, row=row, col=col,
            dx=rng.uniform(-0.03, 0.03), dy=rng.uniform(-0.03, 0.03),
        ))
    objs.sort(key=lambda s: (s.row, s.col))
    bg = random_background(rng, avoid=set(colors))
    return Scene(objects=tuple(objs), background=bg, seed=seed)


def caption_words() -> set[str]:
    """Every word a caption (seen or unseen content) can contain."""
    words = {"a", "on", "and", "to", "at", "the", "of", "background", "gradient", "picture", "painting"}
    words |= set(COLORS) | set(SHAPES) | set(SIZES) | set(ROWS) | set(COLS)
    words |= {w for r in RELATIONS for w in r.split()}
    words |= set(SEEN_BACKGROUNDS) | set(UNSEEN_TEXTURES) | set(UNSEEN_BACKGROUNDS)
    return words
