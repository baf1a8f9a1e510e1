"""What a base model folder says about how to fine-tune it: recipes, offset noise, PE grid."""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import fields

import pytest
import torch
from PIL import Image

from sine.errors import BadModel
from sine.finetune import UNET_LORA_TARGETS, FinetuneSettings, finetune
from sine.models import DEMO_MODEL_DIR, load_base_model, model_report, training_offset_noise
from sine.patches import PatchSampler
from sine.preflight import check_model
from sine.recipes import FIELD_RANGES, RECIPES, Recipe, model_recipes
from sine.sampler import SamplingSettings, sample_edit


def test_a_folder_without_overrides_gets_the_paper_and_lora_recipes(tiny_folder):
    assert model_recipes(tiny_folder) == RECIPES
    assert training_offset_noise(tiny_folder) == 0.0


def test_recipe_overrides_fill_the_settings(tmp_path, tiny_folder):
    folder = tmp_path / "m"
    shutil.copytree(tiny_folder, folder)
    (folder / "sine_recipes.json").write_text(json.dumps({"full": {"lr": 5e-5, "patch_steps": 77, "bogus": 1}}))
    (folder / "training_info.json").write_text(json.dumps({"config": {"offset_noise": 0.25}}))
    base = load_base_model(folder, device="cpu")
    assert base.offset_noise == 0.25
    s = FinetuneSettings(method="full").resolved(base.recipes)
    assert (s.lr, s.steps, s.train_text_encoder) == (5e-5, 77, True)
    assert FinetuneSettings(method="full", steps=5, lr=1.0).resolved(base.recipes).lr == 1.0  # explicit wins
    assert FinetuneSettings(method="lora").resolved(base.recipes) == FinetuneSettings(method="lora").resolved()


def test_the_demo_model_carries_its_own_recipes_and_offset_noise():
    recipes = model_recipes(DEMO_MODEL_DIR)
    assert recipes["full"].lr > RECIPES["full"].lr and recipes["full"].whole_image_share > 0
    # 750 patch steps of 4 views: SINE as good as 4500 single-view steps in a quarter of the time
    # (docs/benchmarks.md, "Views per step"); whole-image runs keep one view per step
    full = FinetuneSettings(method="full", patch=True).resolved(recipes)
    assert (full.steps, full.batch) == (750, 4)
    assert FinetuneSettings(method="full", patch=False).resolved(recipes).batch == 1
    assert training_offset_noise(DEMO_MODEL_DIR) > 0


def test_pe_grid_is_twice_the_latent_size(base):
    assert base.pe_grid == 2 * base.unet.config.sample_size
    ft = finetune(base, Image.new("RGB", (64, 64), (10, 200, 30)), "picture of a sks dog", FinetuneSettings(steps=1))
    assert ft.pe_table.shape[-2:] == (base.pe_grid, base.pe_grid)


def test_whole_image_share_of_patch_steps():
    img = Image.new("RGB", (64, 64), (1, 2, 3))
    always = PatchSampler(img, 32, random.Random(0), grid=16, whole_image_share=1.0)
    assert {always.sample().box for _ in range(20)} == {(0, 0, 16, 16)}
    some = PatchSampler(img, 32, random.Random(0), grid=16, whole_image_share=0.5)
    boxes = [some.sample().box for _ in range(200)]
    whole = sum(b == (0, 0, 16, 16) for b in boxes)
    assert 60 < whole < 140


def test_lora_adapts_the_resnet_blocks_too(base, source_image):
    assert "conv1" in UNET_LORA_TARGETS and "to_q" in UNET_LORA_TARGETS
    ft = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=1, patch=False))
    names = [n for n in ft.lora_state if "lora_A" in n]
    assert any(".conv1." in n for n in names) and any(".to_q." in n for n in names)


def test_finetuned_only_never_calls_the_pretrained_unet(base, source_image):
    ft = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=1))
    calls = {"pre": 0, "ft": 0}
    hooks = [base.unet.register_forward_hook(lambda *_: calls.__setitem__("pre", calls["pre"] + 1)),
             ft.unet.register_forward_hook(lambda *_: calls.__setitem__("ft", calls["ft"] + 1))]
    try:
        size = base.sample_size  # one latent, one UNet call per step
        settings = SamplingSettings(steps=4, finetuned_only=True, finetuned_prompt="a cat", strength=1.0)
        a = sample_edit(base, ft, "a cat", size, size, settings)
        b = sample_edit(base, ft, "a cat", size, size, settings)
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"pre": 0, "ft": 8}
    assert a.tobytes() == b.tobytes()
    sine = sample_edit(base, ft, "a cat", size, size, SamplingSettings(steps=4, strength=1.0))
    assert sine.tobytes() != a.tobytes()


def test_offset_noise_changes_what_is_learned(tmp_path, tiny_folder, source_image):
    folder = tmp_path / "m"
    shutil.copytree(tiny_folder, folder)
    base = load_base_model(folder, device="cpu")
    plain = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=2, patch=False))
    shifted = finetune(base, source_image, "picture of a sks dog",
                       FinetuneSettings(steps=2, patch=False, offset_noise=0.5))
    p = plain.lora_state
    assert any(not torch.equal(p[n], q) for n, q in shifted.lora_state.items() if "lora_" in n)


@pytest.mark.parametrize("text,named", [
    ("{not json", "not valid JSON"),
    ('{"lora": []}', "lora"),
    ('{"lora": {"steps": "many"}}', "lora.steps"),
    ('{"lora": {"steps": true}}', "lora.steps"),
    ('{"lora": {"patch_steps": -3}}', "lora.patch_steps"),
    ('{"lora": {"lr": 1e400}}', "lora.lr"),
    ('{"full": {"lr": 0}}', "full.lr"),
    ('{"lora": {"whole_image_share": 2}}', "lora.whole_image_share"),
    ('{"lora": {"patch_batch": 100000}}', "lora.patch_batch"),
    ('{"lora": {"train_text_encoder": "yes"}}', "lora.train_text_encoder"),
    ("[1, 2]", "an object"),
])
def test_a_recipes_file_no_fine_tune_can_use_is_named(tmp_path, text: str, named: str):
    """A hand-edited sine_recipes.json was read as it came: invalid JSON or a list was a traceback at
    load, a string step count a TypeError minutes later, a negative or infinite one ran nonsense."""
    (tmp_path / "sine_recipes.json").write_text(text)
    with pytest.raises(BadModel) as caught:
        model_recipes(tmp_path)
    assert "sine_recipes.json" in str(caught.value) and named in str(caught.value)


def test_sine_edit_names_a_broken_recipes_file_before_loading(tmp_path, tiny_folder):
    folder = tmp_path / "m"
    shutil.copytree(tiny_folder, folder)
    (folder / "sine_recipes.json").write_text('{"lora": {"lr": "fast"}}')
    with pytest.raises(BadModel, match="lora.lr"):
        check_model(str(folder))
    with pytest.raises(BadModel, match="lora.lr"):  # sine doctor's reading of the model
        model_report(folder)


def test_a_recipes_file_that_is_a_pipe_does_not_hold_the_load(tmp_path):
    os.mkfifo(tmp_path / "sine_recipes.json")  # opening it to read would wait for a writer
    assert model_recipes(tmp_path) == RECIPES


def test_every_recipe_field_has_its_range():
    assert set(FIELD_RANGES) == {f.name for f in fields(Recipe)}
