"""Fixed source images with unseen content, and the edits asked of them.

The demo assets and the quality benchmark both use these: each source holds something the base model
never saw in training (a dotted, checkered or noisy object, or a checkered / noisy background), so
only a model fine-tuned on the source can reproduce it, while the requested edit (a colour the source
does not have) must come from the pre-trained model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .world import Background, Scene, Shape

# The shape each source's object is asked to become. Never a circle (the blob a weak base model
# draws whatever it is asked) and never a star (the demo VAE's round trip loses its points).
RESHAPE_TO = {"circle": "square", "square": "triangle", "triangle": "square", "star": "square"}


@dataclass(frozen=True)
class Edit:
    """One requested edit: recolour object `index`, or (index None) give the background `color`, or
    (`shape` set) redraw object `index` as that shape in its own colour."""

    prompt: str
    color: str
    index: int | None
    shape: str | None = None

    @property
    def target(self) -> str:
        if self.shape:
            return "shape"
        return "background" if self.index is None else "object"


@dataclass(frozen=True)
class Source:
    name: str
    scene: Scene
    subject: str
    edits: tuple[Edit, ...]

    @property
    def caption(self) -> str:
        return self.scene.caption(with_size=False, with_position=False)

    @property
    def reshape(self) -> Edit:
        """The shape-change edit: the first object redrawn as `RESHAPE_TO` its kind, nothing else."""
        obj = self.scene.objects[0]
        return _describe(self.scene, 0, obj.color, RESHAPE_TO[obj.kind])

    def reshaped(self) -> Scene:
        """The scene as the shape-change edit asks for it (the judge's ground truth)."""
        edit = self.reshape
        objs = list(self.scene.objects)
        objs[edit.index] = replace(objs[edit.index], kind=edit.shape)
        return replace(self.scene, objects=tuple(objs))


def _recolor(scene: Scene, index: int, color: str) -> Edit:
    return _describe(scene, index, color, None)


def _describe(scene: Scene, index: int, color: str, shape: str | None) -> Edit:
    """Object `index` as `color` (and as `shape` when given); the prompt keeps the description of any
    other object, so only one thing changes."""
    kind = shape or scene.objects[index].kind
    text = " and ".join(f"a {color} {kind}" if i == index else f"a {o.color} {o.kind}"
                        for i, o in enumerate(scene.objects))
    return Edit(f"{text} {_bg_phrase(scene.background)}", color, index, shape)


def _bg_phrase(bg: Background) -> str:
    return f"on a {bg.colors[0]} background"


def _new_background(scene: Scene, color: str) -> Edit:
    objs = " and ".join(f"a {o.color} {o.kind}" for o in scene.objects)
    return Edit(f"{objs} on a {color} background", color, None)


def _source(name: str, scene: Scene, subject: str, recolors: tuple[tuple[int, str], ...], bg: str) -> Source:
    edits = tuple(_recolor(scene, i, c) for i, c in recolors) + (_new_background(scene, bg),)
    return Source(name, scene, subject, edits)


def _one(kind: str, color: str, texture: str | None, background: Background, row: int = 1, col: int = 1,
         size: str = "large", seed: int = 0) -> Scene:
    return Scene((Shape(kind, color, size, row, col, texture=texture),), background, seed=seed)


def benchmark_sources() -> list[Source]:
    """The fixed evaluation set (the first three are also the bundled demo assets)."""
    g, b = Background("plain", ("green",)), Background("plain", ("blue",))
    return [
        _source("dotted_star", _one("star", "yellow", "dotted", g), "star",
                ((0, "red"), (0, "purple")), "blue"),
        _source("checkered_circle", _one("circle", "red", "checkered", b), "circle",
                ((0, "yellow"), (0, "green")), "white"),
        _source("square_on_checkered", _one("square", "purple", None, Background("checkered", ("orange", "white"))),
                "square", ((0, "cyan"), (0, "red")), "green"),
        _source("noisy_triangle", _one("triangle", "blue", "noisy", Background("plain", ("white",)), seed=3),
                "triangle", ((0, "orange"), (0, "green")), "pink"),
        _source("dotted_square", _one("square", "green", "dotted", Background("plain", ("pink",)), col=0,
                                      size="medium"), "square", ((0, "blue"), (0, "yellow")), "cyan"),
        _source("circle_on_noise", _one("circle", "cyan", None, Background("noisy", ("purple",)), seed=5, row=0),
                "circle", ((0, "red"), (0, "orange")), "white"),
        _source("checkered_star", _one("star", "blue", "checkered", Background("plain", ("yellow",)), col=2),
                "star", ((0, "pink"), (0, "red")), "green"),
        _source("two_objects", Scene((
            Shape("circle", "orange", "medium", 1, 0, texture="dotted"),
            Shape("square", "cyan", "medium", 1, 2),
        ), Background("plain", ("black",))), "circle and a square", ((0, "purple"), (1, "green")), "white"),
    ]
