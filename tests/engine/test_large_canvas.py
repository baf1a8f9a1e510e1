"""Any canvas size: tiled PE-aware sampling keeps memory bounded and sizes exact; masks keep the outside."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from sine.compositing import composite_under_mask, feathered_alpha
from sine.finetune import FinetuneSettings, finetune
from sine.large_canvas import WholeView, plan_strategy
from sine.noise_prediction import NoisePredictor, as_guides
from sine.positional import region_embedding
from sine.sampler import SamplingSettings, sample_edit, timesteps_for

BIG_SCRIPT = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(2)
from PIL import Image
from sine.finetune import FinetuneSettings, finetune
from sine.models import load_base_model
from sine.large_canvas import plan_strategy
from sine.sampler import SamplingSettings, sample_edit
base = load_base_model(sys.argv[1], device="cpu")
ft = finetune(base, Image.new("RGB", (64, 64), "red"), "picture of a sks dog", FinetuneSettings(steps=1))
settings = SamplingSettings(steps=2, tile_size=256)
t0 = time.perf_counter()
source = Image.linear_gradient("L").resize((2048, 1536)).convert("RGB")  # the default strength starts from it
img = sample_edit(base, ft, "a cat", 2048, 1536, settings, source=source)
img.save(sys.argv[2])
print(json.dumps({"size": img.size, "tiles": len(plan_strategy(base, 2048, 1536, settings).tiles),
                  "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PEAK_RSS_BOUND_MB = 2048


@pytest.mark.slow
def test_2048x1536_is_exact_and_memory_bounded(tiny_folder, tmp_path):
    out = tmp_path / "big.png"
    proc = subprocess.run([sys.executable, "-c", BIG_SCRIPT, str(tiny_folder), str(out)], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print("2048x1536 tiled:", report)
    assert tuple(report["size"]) == (2048, 1536)
    assert report["tiles"] > 1
    assert report["peak_rss_mb"] < PEAK_RSS_BOUND_MB
    with Image.open(out) as img:
        assert img.size == (2048, 1536)
        arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    # no dead (never-written) areas: every 256-px block has content
    blocks = arr.reshape(6, 256, 8, 256, 3).std(axis=(1, 3, 4))
    assert (blocks > 1.0).all()


def test_odd_size_comes_back_exact(base, source_image):
    ft = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=1))
    settings = SamplingSettings(steps=1, tile_size=128)  # the default strength: from the source, resized
    assert len(plan_strategy(base, 1001, 777, settings).tiles) > 1
    assert sample_edit(base, ft, "a cat", 1001, 777, settings, source=source_image).size == (1001, 777)


def test_tiles_cover_the_latent_and_get_their_own_embedding(base, source_image):
    ft = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=1))
    settings = SamplingSettings(steps=1, tile_size=64, working_size=64)
    plan = plan_strategy(base, 160, 96, settings)
    covered = np.zeros((plan.latent_h, plan.latent_w), bool)
    for y, x, h, w in plan.tiles:
        covered[y:y + h, x:x + w] = True
    assert covered.all()
    seen = []
    hook = ft.unet.conv_in.register_forward_hook(lambda m, i, o: seen.append(ft.hook.value.clone()))
    try:
        sample_edit(base, ft, "a cat", 160, 96, SamplingSettings(steps=1, k=0, tile_size=64, working_size=64,
                                                                  tile_batch=1, strength=1.0))
    finally:
        hook.remove()
    # first the whole view (the whole picture's embedding at the model's size), then one call per tile
    whole = WholeView(base, as_guides(ft, SamplingSettings()), "a cat", SamplingSettings(), plan)
    assert len(seen) == 1 + len(plan.tiles)
    side = base.sample_size // base.vae_scale_factor  # 40 × 24 latent cells, the long side down to the model's
    assert seen[0].shape[-2:] == whole.size == (round(24 * side / 40), side)
    assert torch.allclose(seen[0][0], region_embedding(ft.pe_table, whole.size, (0, 0), whole.size, ft.pe_mode))
    assert len({tuple(pe.flatten()[:8].tolist()) for pe in seen[1:]}) == len(plan.tiles)  # each tile: its own place


def test_whole_view_sees_the_picture_at_the_model_size_at_the_noise_level_downsampling_gives(base, source_image):
    ft = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=1))
    settings = SamplingSettings(steps=10, tile_size=base.sample_size, working_size=base.sample_size)
    side = base.sample_size // base.vae_scale_factor
    plan = plan_strategy(base, 4 * base.sample_size, 4 * base.sample_size, settings)
    whole = WholeView(base, as_guides(ft, settings), "a cat", settings, plan)
    assert whole.size == (side, side) and whole.k2 == 16
    alphas, seen = whole.alphas, []
    hook = base.unet.register_forward_pre_hook(lambda m, args: seen.append(int(args[1][0])))
    try:
        for t in timesteps_for(base, 10):
            seen.clear()
            layout = whole.scores(torch.randn(1, 4, 4 * side, 4 * side), t)
            snr = 16 * alphas[t] / (1 - alphas[t])
            assert abs(float(alphas[seen[0]]) - float(snr / (1 + snr))) < 0.01  # the timestep with SNR × k²
            assert seen[0] < t and layout.uncond.shape == (1, 4, 4 * side, 4 * side)
    finally:
        hook.remove()


def test_whole_view_of_a_picture_at_the_model_size_is_its_own_score(base, source_image):
    """No downsampling (k = 1): the whole view is the plain SINE score of the whole latent."""
    ft = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=1))
    settings = SamplingSettings(steps=10, k=0, tile_size=base.sample_size // 2, working_size=base.sample_size)
    plan = plan_strategy(base, base.sample_size, base.sample_size, replace(settings, strategy="tiled"))
    assert len(plan.tiles) > 1
    side = base.sample_size // base.vae_scale_factor
    guides = as_guides(ft, settings)
    whole = WholeView(base, guides, "a cat", settings, plan)
    assert whole.size == (side, side) and whole.k2 == 1
    z, t = torch.randn(1, 4, side, side), 501
    direct = NoisePredictor(base, guides, "a cat", settings, (side, side)).predict([z], [(0, 0, side, side)], t)
    view = whole.scores(z, t)
    assert torch.allclose(view.guided(7.5), direct.guided(7.5), atol=1e-5)
    assert not torch.allclose(view.guided(7.5), whole.scores(z, 301).guided(7.5), atol=1e-3)


def test_composite_keeps_outside_pixels_bit_identical():
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA")
    result = Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA")
    mask = Image.new("L", (70, 50), 0)
    mask.paste(255, (10, 5, 40, 30))
    mask.paste(128, (45, 35, 60, 45))  # a soft part
    out = np.asarray(composite_under_mask(source, result, mask, feather_px=3))
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], np.asarray(source)[outside])
    inside_core = np.zeros_like(outside)
    inside_core[15:25, 18:32] = True
    assert np.array_equal(out[inside_core], np.asarray(result)[inside_core])
    alpha = feathered_alpha(mask, 3)
    assert alpha[outside].max() == 0
    assert alpha[5, 20] == pytest.approx(1 / 3) and alpha[6, 20] == pytest.approx(2 / 3) and alpha[7, 20] == 1.0


def test_a_v_of_1_on_tiles_is_the_limit_of_v_below_1_not_a_black_picture(base, source_image):
    """v = 1 (every β 0, the pre-trained model alone) on a tiled canvas: the tiles' detail was the
    fine-tuned predictions' β-weighted mean divided by Σβ = 0, NaN, and the picture came back black. The
    detail is the fine-tuned model's whatever its β (a single model's β cancels out), so v = 1 is the
    picture v just below 1 draws; with several models equal shares."""
    ft = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=1))
    settings = SamplingSettings(steps=4, strength=1.0, strategy="tiled", seed=2)
    assert len(plan_strategy(base, 128, 128, settings).tiles) > 1
    one = np.asarray(sample_edit(base, ft, "a cat", 128, 128, replace(settings, v=1.0)), dtype=np.int16)
    near = np.asarray(sample_edit(base, ft, "a cat", 128, 128, replace(settings, v=1.0 - 1e-9)), dtype=np.int16)
    assert one.std() > 5  # a picture, not one flat colour
    assert np.abs(one - near).max() <= 1
