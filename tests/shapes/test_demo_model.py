"""The committed demo model: loads like Stable Diffusion, component by component, and draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from sine.shapes.evaluate import ShapesModel, evaluate, text_probe, vae_ceiling
from sine.shapes.tokenizer import world_vocabulary

MODEL = Path(__file__).resolve().parents[2] / "backend" / "sine" / "demo_model"


def test_folder_is_small_and_complete() -> None:
    files = [p for p in MODEL.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 10 * 2**20
    index = json.loads((MODEL / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    info = json.loads((MODEL / "training_info.json").read_text())
    assert info["partial"] is False and info["unet_steps"] > 0


def test_each_component_loads_with_from_pretrained() -> None:
    torch.set_num_threads(1)
    vae = AutoencoderKL.from_pretrained(MODEL / "vae")
    unet = UNet2DConditionModel.from_pretrained(MODEL / "unet")
    text = CLIPTextModel.from_pretrained(MODEL / "text_encoder", dtype=torch.float32)
    tok = CLIPTokenizer.from_pretrained(MODEL / "tokenizer")
    sched = DDIMScheduler.from_pretrained(MODEL / "scheduler")
    assert 2 ** (len(vae.config.block_out_channels) - 1) * unet.config.sample_size == 64
    assert unet.config.cross_attention_dim == text.config.hidden_size
    assert unet.config.block_out_channels[0] % 4 == 0
    assert sched.config.num_train_timesteps == 1000 and sched.config.prediction_type == "epsilon"
    for word in world_vocabulary():
        assert len(tok(word, add_special_tokens=False).input_ids) == 1
    z = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        states = text(tok(["a red circle"], padding="max_length", return_tensors="pt").input_ids)[0]
        eps = unet(z, 500, states).sample
        image = vae.decode(z / vae.config.scaling_factor).sample
    assert eps.shape == z.shape and image.shape == (1, 3, 64, 64)


def test_stable_diffusion_pipeline_draws_64px() -> None:
    torch.set_num_threads(1)
    pipe = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None)
    out = pipe("a red circle on a white background", num_inference_steps=4, guidance_scale=6.0,
               generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert out.shape == (64, 64, 3) and np.isfinite(out).all()


@pytest.mark.slow
def test_base_model_draws_the_asked_colour_and_background() -> None:
    """On held-out captions the base model gets the background colour right almost always and the
    object colour most of the time (these 16: 1.00 and 0.94; before the CPU training round, 0.34 object
    colour on 128); shapes it follows only a little above chance, positions not (see the README)."""
    torch.set_num_threads(2)
    rates = evaluate(ShapesModel.load(MODEL), n=16, steps=25, guidance=6.0, batch=16)
    assert rates["background"] >= 0.8 and rates["color"] >= 0.6, rates


def test_the_judge_reads_the_worlds_own_pictures() -> None:
    """The held-out judge on true pictures after a VAE round trip (what the base model is compared
    with): colour and position read right, the shape only ~70 % (the VAE rounds corners)."""
    torch.set_num_threads(1)
    ceiling = vae_ceiling(ShapesModel.load(MODEL), n=32)
    assert ceiling["color"] >= 0.9 and ceiling["position"] >= 0.9 and ceiling["background"] >= 0.9, ceiling
    assert 0.5 <= ceiling["shape"] < 1.0, ceiling


def test_text_probe_tells_what_the_caption_carries() -> None:
    """Lightly noised, the picture itself shows its colour (caption or not); heavily noised, only the
    caption does. On 128 held-out captions at t=700: colour 0.71 with the caption, 0.33 without; the
    shape 0.28 / 0.21, and at t=300 0.39 / 0.41: the text does not carry the shape (see the README)."""
    torch.set_num_threads(2)
    probe = text_probe(ShapesModel.load(MODEL), n=32, timesteps=(100, 700))
    assert probe[100]["caption"]["color"] >= 0.9 and probe[100]["empty"]["color"] >= 0.9, probe
    assert probe[100]["empty"]["position"] >= 0.9, probe
    assert probe[700]["caption"]["color"] >= probe[700]["empty"]["color"] + 0.2, probe


def test_vae_reproduces_the_benchmark_sources() -> None:
    """Fine-tuning can at best reproduce what the VAE gives back: the earlier CPU-trained VAE (343
    steps) turned every textured object into a blob (mean 18.6 dB here); the GPU-trained one: 21.6 dB."""
    from sine.images import to_pil, to_tensor
    from sine.models import load_base_model
    from sine.shapes.metrics import psnr
    from sine.shapes.sources import benchmark_sources

    torch.set_num_threads(1)
    base = load_base_model(MODEL, device="cpu")
    scores = []
    for src in benchmark_sources():
        image = src.scene.render()[0]
        back = to_pil(base.decode_latents(base.encode_image(to_tensor(image))))
        scores.append(psnr(np.asarray(back), np.asarray(image), np.ones((64, 64), bool)))
    assert np.mean(scores) >= 20.5 and min(scores) >= 16.0, scores
