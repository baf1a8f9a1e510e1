"""What differs per kind of model (working size, tile size, recipes) comes from one table, KIND_DEFAULTS."""

from __future__ import annotations

import dataclasses

import pytest

from sine import model_kind
from sine.large_canvas import default_working_size, plan_strategy
from sine.model_kind import KIND_DEFAULTS, ModelKind
from sine.models import load_base_model
from sine.recipes import RECIPES
from sine.sampler import SamplingSettings
from sine.tiny_models import make_tiny_sdxl


@pytest.fixture(scope="module")
def xl_folder(tmp_path_factory):
    return make_tiny_sdxl(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl")


def test_every_family_has_its_row():
    assert set(KIND_DEFAULTS) == {"SD1", "SD2", "SDXL"}
    assert ModelKind("SD1", "epsilon", 512).working_size == 1024  # the paper: SD1 at a 1024-px view
    assert ModelKind("SDXL", "epsilon", 1024).working_size == 1024 * KIND_DEFAULTS["SDXL"].working_scale
    assert ModelKind("SDXL", "epsilon", 1024).tile_size == round(1024 * KIND_DEFAULTS["SDXL"].tile_scale)
    assert ModelKind("SD1", "epsilon", 64).working_size == 64  # a tiny model works at its native size


def test_recipes_come_from_the_kinds_row(xl_folder, base, monkeypatch):
    xl = load_base_model(xl_folder, device="cpu")
    for method, fields in KIND_DEFAULTS["SDXL"].recipes.items():
        assert dataclasses.asdict(xl.recipes[method]) == {**dataclasses.asdict(RECIPES[method]), **fields}
    assert base.recipes == RECIPES and not KIND_DEFAULTS["SD1"].recipes
    row = dataclasses.replace(KIND_DEFAULTS["SDXL"], recipes={"lora": {"lr": 5e-5, "steps": 7}})
    monkeypatch.setitem(model_kind.KIND_DEFAULTS, "SDXL", row)
    changed = load_base_model(xl_folder, device="cpu")
    assert changed.recipes["lora"].lr == 5e-5 and changed.recipes["lora"].steps == 7
    assert changed.recipes["full"] == RECIPES["full"]


def test_large_canvas_sizes_come_from_the_kinds_row(xl_folder, monkeypatch):
    xl = load_base_model(xl_folder, device="cpu")  # 32 px native: a tiny model, works at its native size
    assert default_working_size(xl) == 32 == xl.kind.working_size
    plan = plan_strategy(xl, 64, 64, SamplingSettings(strategy="tiled", tile_overlap=0.0))
    assert {t[2] for t in plan.tiles} == {32 // xl.vae_scale_factor} and len(plan.tiles) == 4  # native size
    monkeypatch.setitem(model_kind.KIND_DEFAULTS, "SDXL", dataclasses.replace(KIND_DEFAULTS["SDXL"], tile_scale=0.5))
    plan = plan_strategy(xl, 64, 64, SamplingSettings(strategy="tiled", tile_overlap=0.0))
    assert {t[2] for t in plan.tiles} == {16 // xl.vae_scale_factor} and len(plan.tiles) == 16
