"""What one edit asks for, independent of the widgets that collect it.

Keeping the request as a plain dataclass lets the panel, the automation hook and the tests build
exactly the same ``submit_edit`` call, and keeps Qt out of the validation rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

# The engine's defaults (docs/design.md §7.3), defined once in the vendored protocol package (see
# vendor.py): shown in the advanced settings and sent explicitly.
from sine_protocol.defaults import CONTENT_WEIGHT as DEFAULT_CONTENT_WEIGHT
from sine_protocol.defaults import FINETUNE_METHODS as METHODS
from sine_protocol.defaults import GUIDANCE as DEFAULT_GUIDANCE
from sine_protocol.defaults import MAX_COUNT, STYLES
from sine_protocol.defaults import METHOD as DEFAULT_METHOD
from sine_protocol.defaults import SEED as DEFAULT_SEED
from sine_protocol.defaults import START_MODES as STARTS  # where sampling starts below strength 1
from sine_protocol.defaults import STEPS as DEFAULT_STEPS
from sine_protocol.defaults import STRENGTH as DEFAULT_STRENGTH  # 1.0 is pure noise, as SINE samples
from sine_protocol.defaults import STYLE as DEFAULT_STYLE
from sine_protocol.defaults import STYLE_WEIGHT as DEFAULT_STYLE_WEIGHT
from sine_protocol.defaults import K as DEFAULT_K
from sine_protocol.defaults import V as DEFAULT_V

SOURCES = ("layer", "visible")


@dataclass
class EditSettings:
    """Everything the panel collects; ``None`` sizes / fine-tune steps mean "daemon decides"."""

    prompt: str
    subject: str = ""
    style: str = DEFAULT_STYLE
    seed: int = DEFAULT_SEED
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    v: float = DEFAULT_V
    k: int = DEFAULT_K
    method: str = DEFAULT_METHOD
    finetune_steps: int | None = None
    patch: bool = True
    output_width: int | None = None
    output_height: int | None = None
    source: str = "layer"
    strength: float = DEFAULT_STRENGTH
    start: str = "noise"
    count: int = 1
    style_layer: str = ""  # name of the layer whose picture gives the style ("": no style picture)
    style_weight: float = DEFAULT_STYLE_WEIGHT
    content_weight: float = DEFAULT_CONTENT_WEIGHT  # the source's own model beside the style layer's

    def validate(self) -> None:
        """Raise ValueError with a message fit for the status line."""
        if not self.prompt.strip():
            raise ValueError("Write what to change in the prompt first.")
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}")
        if self.method not in METHODS:
            raise ValueError(f"fine-tune method must be one of {', '.join(METHODS)}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}")
        if self.steps < 1:
            raise ValueError("sampling steps must be at least 1")
        if not 0 <= self.k <= 1000:
            raise ValueError("K must lie in 0..1000")
        if not 0.0 <= self.v <= 1.0:
            raise ValueError("v must lie in 0..1")
        if self.finetune_steps is not None and self.finetune_steps < 1:
            raise ValueError("fine-tune steps must be at least 1 (or automatic)")
        if (self.output_width is None) != (self.output_height is None):
            raise ValueError("give both output width and height, or neither")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError("strength must lie in (0, 1]")
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)}")
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"the number of results must lie in 1..{MAX_COUNT}")
        if not 0.0 <= self.style_weight <= 1.0:
            raise ValueError("style weight must lie in 0..1")
        if not 0.0 <= self.content_weight <= 1.0:
            raise ValueError("content weight must lie in 0..1")
        if self.style_layer and self.style_weight + self.content_weight > 1.0 + 1e-9:
            raise ValueError(f"style weight {self.style_weight:.2f} and content weight {self.content_weight:.2f} "
                             "add up to more than 1: lower one of them")

    def output_size(self, canvas: tuple[int, int]) -> tuple[int, int]:
        """The size the daemon renders at: the canvas unless the user set one."""
        if self.output_width and self.output_height:
            return (self.output_width, self.output_height)
        return canvas

    def submit_kwargs(self, canvas: tuple[int, int]) -> dict[str, Any]:
        """Keyword arguments for ``SineClient.submit_edit`` (image and mask are added by the caller)."""
        self.validate()
        sampling: dict[str, Any] = {
            "steps": int(self.steps),
            "w": float(self.guidance),
            "v": float(self.v),
            "k": int(self.k),
            "strength": float(self.strength),
            "start": self.start,
        }
        if self.style_layer:  # the style picture itself is added by the caller (it reads the layer)
            sampling["style_weight"] = float(self.style_weight)
            sampling["content_weight"] = float(self.content_weight)  # sent as shown (default: 1 − v at the default v)
        kwargs: dict[str, Any] = {
            "prompt": self.prompt.strip(),
            "subject": self.subject.strip(),
            "style": self.style,
            "seed": int(self.seed),
            "sampling": sampling,
            "finetune": {"method": self.method, "steps": self.finetune_steps, "patch": bool(self.patch)},
            "output_size": self.output_size(canvas),
        }
        if self.count != 1:
            kwargs["count"] = int(self.count)
        return kwargs

    def layer_name(self, seed: int) -> str:
        """Name of the result layer, e.g. ``SINE: wearing a red hat (seed 7)``."""
        prompt = " ".join(self.prompt.split())
        if len(prompt) > 60:
            prompt = prompt[:57] + "..."
        return f"SINE: {prompt} (seed {seed})"


# The form fields kept between Krita sessions: all but the style layer, which names a layer of one document.
REMEMBERED = tuple(f.name for f in fields(EditSettings) if f.name not in ("style_layer", "patch"))


def remembered_values(settings: EditSettings) -> dict[str, str]:
    """The form as text, one entry a field, as Krita's ``writeSetting`` keeps it (``None`` as "")."""
    return {name: "" if getattr(settings, name) is None else str(getattr(settings, name)) for name in REMEMBERED}


def restored_values(saved: dict[str, str]) -> dict[str, Any]:
    """Typed form values from :func:`remembered_values`' text; a value that does not parse or that the
    form would refuse is left out (its widget keeps the default), so a damaged kritarc costs one field."""
    types = {f.name: type(getattr(EditSettings(prompt=""), f.name)) for f in fields(EditSettings)}
    optional = {"finetune_steps", "output_width", "output_height"}  # "" / 0: automatic
    restored: dict[str, Any] = {}
    for name in REMEMBERED:
        if name not in saved:
            continue
        text = str(saved[name])
        try:
            if name in optional:
                value: Any = int(text) if text.strip() else None
                if value is not None and value < (1 if name == "finetune_steps" else 0):
                    continue
                restored[name] = value or None
                continue
            value = types[name](text)
            if isinstance(value, float) and not math.isfinite(value):
                continue
            if name == "seed" and not 0 <= value < 2**31:
                continue
            if name not in ("prompt", "subject"):
                EditSettings(prompt="x", **{name: value}).validate()
        except ValueError:
            continue
        restored[name] = value
    return restored


_PHASE_WORDS = {
    "queued": "queued",
    "loading": "loading model",
    "finetune": "fine-tuning",
    "sample": "sampling",
    "decode": "decoding",
}


def progress_text(
    phase: str, step: int | None = None, total: int | None = None, eta_s: float | None = None
) -> str:
    """Short phase text for the progress bar: ``fine-tuning 120/400``, ``sampling 30/100``."""
    word = _PHASE_WORDS.get(phase, phase)
    text = f"{word} {step}/{total}" if total else word
    if eta_s is not None and eta_s >= 1:
        text += f", ~{_format_duration(eta_s)} left"
    return text


def _format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"
