"""Fine-tuning recipes: the paper's (`full`) and ours (`lora`), and per-model overrides.

A base model folder may carry `sine_recipes.json` ({"lora": {"lr": 1e-3, ...}, ...}) with the step
counts and learning rates that suit it: the paper's numbers are for SD1.x's 860M-parameter UNet and
do nothing to a 1M-parameter demo model, whose own numbers come from the quality benchmark.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path


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


def model_recipes(folder: Path) -> dict[str, Recipe]:
    """RECIPES with the fields the model folder's `sine_recipes.json` overrides (unknown keys ignored)."""
    path = folder / RECIPES_FILE
    if not path.is_file():
        return dict(RECIPES)
    overrides = json.loads(path.read_text())
    known = {f.name for f in fields(Recipe)}
    return {name: replace(recipe, **{k: v for k, v in overrides.get(name, {}).items() if k in known})
            for name, recipe in RECIPES.items()}
