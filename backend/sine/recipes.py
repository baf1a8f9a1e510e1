"""Fine-tuning recipes: the paper's (`full`) and ours (`lora`), and per-model overrides.

A base model folder may carry `sine_recipes.json` ({"lora": {"lr": 1e-3, ...}, ...}) with the step
counts and learning rates that suit it: the paper's numbers are for SD1.x's 860M-parameter UNet and
do nothing to a 1M-parameter demo model, whose own numbers come from the quality benchmark.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sine_protocol.paths import read_small_file

from .errors import BadModel


@dataclass(frozen=True)
class Recipe:
    steps: int  # without patches
    patch_steps: int  # with patches (+ positional embedding)
    lr: float
    train_text_encoder: bool
    whole_image_share: float = 0.0  # patch runs: share of steps that see the whole picture
    gradient_checkpointing: bool = False  # recompute the UNet's activations in backward: less memory, ~30 % slower
    patch_batch: int = 1  # patch runs: training views per step (one optimizer step for all); whole-image runs: 1


RECIPES: dict[str, Recipe] = {
    "full": Recipe(800, 10_000, 1e-6, True),  # the paper: UNet + text encoder, AdamW 1e-6
    "lora": Recipe(150, 200, 3e-4, False),  # ours: fast adaptation for interactive use
}

RECIPES_FILE = "sine_recipes.json"
RECIPES_MAX_BYTES = 64 * 1024
# What each overridable field may hold: (kind, low, high); bounds are what any fine-tune could mean.
FIELD_RANGES: dict[str, tuple[type, float, float]] = {
    "steps": (int, 1, 1_000_000), "patch_steps": (int, 1, 1_000_000), "patch_batch": (int, 1, 64),
    "lr": (float, 1e-12, 1.0), "whole_image_share": (float, 0.0, 1.0),
    "train_text_encoder": (bool, 0, 1), "gradient_checkpointing": (bool, 0, 1),
}


def _checked(path: Path, key: str, value: Any) -> Any:
    """`value` for the recipe field `key` (as "lora.steps"), or BadModel naming the file and the field."""
    kind, low, high = FIELD_RANGES[key.split(".")[-1]]
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    else:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and low <= value <= high)
    if not ok:
        wanted = "true or false" if kind is bool else f"{'an integer' if kind is int else 'a number'} {low:g}..{high:g}"
        raise BadModel(f"{path}: {key} is {str(value)[:40]!r}; it must be {wanted} (fix or delete the file)")
    return float(value) if kind is float else value


def model_recipes(folder: Path) -> dict[str, Recipe]:
    """RECIPES with the fields the model folder's `sine_recipes.json` overrides (unknown keys ignored;
    a value no fine-tune can use is refused, naming the file and the field)."""
    path = folder / RECIPES_FILE
    if not path.is_file():  # absent, or a pipe/device in its place: nothing to read
        return dict(RECIPES)
    try:
        overrides = json.loads(read_small_file(path, RECIPES_MAX_BYTES))
    except (OSError, ValueError) as exc:
        raise BadModel(f"{path} is not valid JSON of at most {RECIPES_MAX_BYTES // 1024} KiB ({exc}); "
                       "fix or delete the file") from None
    if not isinstance(overrides, dict):
        raise BadModel(f"{path} must hold an object of recipes ({{\"lora\": {{\"lr\": 0.001}}}}); fix or delete the file")
    recipes = {}
    for name, recipe in RECIPES.items():
        fields_given = overrides.get(name, {})
        if not isinstance(fields_given, dict):
            raise BadModel(f"{path}: {name} must be an object of recipe fields; fix or delete the file")
        recipes[name] = replace(recipe, **{k: _checked(path, f"{name}.{k}", v) for k, v in fields_given.items()
                                           if k in FIELD_RANGES})
    return recipes
