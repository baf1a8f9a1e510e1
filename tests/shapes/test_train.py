"""The training script: a few steps give a Stable-Diffusion-shaped folder, reproducibly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sine.shapes.train import CONFIGS, train

TINY = dataclasses.replace(CONFIGS["cpu"], vae_steps=2, vae_batch=4, unet_steps=3, unet_batch=4, latent_scenes=16, decoder_steps=2,
                           threads=1)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    a = train(tmp_path_factory.mktemp("a"), TINY, log=lambda _: None)
    b = train(tmp_path_factory.mktemp("b"), TINY, log=lambda _: None)
    return a, b


def test_layout_matches_stable_diffusion(two_runs: tuple[Path, Path]) -> None:
    folder = two_runs[0]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None] and index["requires_safety_checker"] is False
    for sub in ("vae", "unet", "text_encoder", "tokenizer", "scheduler"):
        assert (folder / sub).is_dir()
    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "DDIMScheduler" and sched["beta_schedule"] == "scaled_linear"
    assert sched["steps_offset"] == 1 and sched["set_alpha_to_one"] is False
    vae = json.loads((folder / "vae" / "config.json").read_text())
    assert vae["scaling_factor"] != 0.18215 and vae["scaling_factor"] > 0
    unet = json.loads((folder / "unet" / "config.json").read_text())
    text = json.loads((folder / "text_encoder" / "config.json").read_text())
    assert unet["cross_attention_dim"] == text["hidden_size"]
    assert unet["block_out_channels"][0] % 4 == 0
    info = json.loads((folder / "training_info.json").read_text())
    assert info["vae_steps"] == 2 and info["unet_steps"] == 3 and info["decoder_steps"] == 2


def test_same_seed_same_weights(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    for rel in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                "vae/diffusion_pytorch_model.safetensors"):
        wa, wb = load_file(a / rel), load_file(b / rel)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_continues_a_finished_run(tmp_path: Path) -> None:
    import shutil

    from sine.shapes.train import resume_unet

    torch.set_num_threads(1)
    folder = train(tmp_path / "m", TINY, log=lambda _: None)
    before = load_file(folder / "unet/diffusion_pytorch_model.safetensors")
    shutil.copytree(folder / "vae", tmp_path / "vae_before")
    assert resume_unet(folder, dataclasses.replace(TINY, unet_steps=2, ema_decay=0.5), log=lambda _: None) == 5
    info = json.loads((folder / "training_info.json").read_text())
    assert info["unet_steps"] == 5 and info["resumed"] == 1
    assert info["history"][-1].startswith("resume round 1 on cpu: batch 4")
    after = load_file(folder / "unet/diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    vae_a = load_file(tmp_path / "vae_before/diffusion_pytorch_model.safetensors")
    vae_b = load_file(folder / "vae/diffusion_pytorch_model.safetensors")
    assert all(torch.equal(vae_a[k], vae_b[k]) for k in vae_a)


def test_resume_budget_counts_the_encoding(tmp_path: Path) -> None:
    """`--minutes` is the whole resume's wall clock, as for a fresh run: a lent GPU session wraps the run in
    a timeout set from it, and re-encoding the scenes (35 s for 100,000 on an H200) used to come on top, so
    the timeout killed the run before it saved. A budget the encoding alone spends leaves one step."""
    from sine.shapes.train import resume_unet

    torch.set_num_threads(1)
    folder = train(tmp_path / "m", TINY, log=lambda _: None)
    cfg = dataclasses.replace(TINY, unet_steps=10**6, latent_scenes=600)  # encoding them takes ~3.5 s here
    assert resume_unet(folder, cfg, log=lambda _: None, minutes=0.02) == 3 + 1  # 1.2 s: ~8 steps before
    assert json.loads((folder / "training_info.json").read_text())["unet_steps"] == 4


def test_cli_resume_takes_the_unet_stage_settings(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    """`sine train-demo --stage resume` with the options the committed model's CPU round used."""
    import shutil

    from sine.cli import main

    folder = tmp_path / "m"
    shutil.copytree(two_runs[0], folder)
    argv = ["train-demo", "--out", str(folder), "--config", "cpu", "--stage", "resume", "--threads", "1",
            "--unet-steps", "2", "--unet-batch", "3", "--unet-lr", "1e-4", "--latent-scenes", "8",
            "--ema-decay", "0.9", "--object-weight", "4"]  # fmt: skip
    assert main(argv) == 0
    info = json.loads((folder / "training_info.json").read_text())
    assert info["unet_steps"] == 5 and info["resumed"] == 1
    assert info["history"][-1] == (
        "resume round 1 on cpu: batch 3, lr 0.0001, ema 0.9, 8 scenes, object weight 4, None min")


def test_cover_is_the_objects_share_of_each_latent_cell(two_runs: tuple[Path, Path]) -> None:
    from diffusers import AutoencoderKL

    from sine.shapes.train import encode_dataset
    from sine.shapes.world import random_scene

    vae = AutoencoderKL.from_pretrained(two_runs[0] / "vae")
    data = encode_dataset(vae, 5, first_seed=0, chunk=2)
    assert data.latents.shape == (5, 4, 16, 16) and data.cover.shape == (5, 1, 16, 16)
    for i in range(5):
        union = random_scene(i).render()[1].union()
        cells = union.reshape(16, 4, 16, 4).mean(axis=(1, 3))  # f=4: one latent cell = 4x4 pixels
        assert torch.allclose(data.cover[i, 0].float(), torch.from_numpy(cells).float(), atol=1e-3)
        assert 0 < data.cover[i].sum() < 256


def test_object_weight_changes_what_the_unet_learns(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    from sine.shapes.train import resume_unet

    torch.set_num_threads(1)
    weights = {}
    for w in (0.0, 4.0):
        folder = tmp_path / f"w{w}"
        shutil.copytree(two_runs[0], folder)
        resume_unet(folder, dataclasses.replace(TINY, unet_steps=2, ema_decay=0.0, object_weight=w), log=lambda _: None)
        weights[w] = load_file(folder / "unet/diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(weights[0.0][k], weights[4.0][k]) for k in weights[0.0])


def test_a_wider_latent_trains_and_edits(tmp_path: Path) -> None:
    """`vae_latent_channels` (a demo-model v3 candidate: the 4-channel latent loses every star's points)
    gives a VAE and a UNet that agree, and the engine fine-tunes and samples such a model like SD."""
    from PIL import Image

    from sine.finetune import FinetuneSettings, finetune
    from sine.models import load_base_model
    from sine.sampler import SamplingSettings, sample_edit

    torch.set_num_threads(1)
    from sine.cli import main

    folder = tmp_path / "m8"
    assert main(["train-demo", "--out", str(folder), "--config", "cpu", "--threads", "1", "--vae-steps", "2",
                 "--unet-steps", "3", "--unet-batch", "4", "--latent-scenes", "16", "--decoder-steps", "2",
                 "--vae-latent-channels", "8"]) == 0
    vae = json.loads((folder / "vae" / "config.json").read_text())
    unet = json.loads((folder / "unet" / "config.json").read_text())
    assert vae["latent_channels"] == unet["in_channels"] == unet["out_channels"] == 8
    base = load_base_model(folder, device="cpu")
    source = Image.new("RGB", (96, 64), (200, 40, 40))
    ft = finetune(base, source, "a red circle", FinetuneSettings(method="full", steps=2))
    edited = sample_edit(base, ft, "a blue circle", 96, 64, SamplingSettings(steps=3), source=source)
    assert edited.size == (96, 64)
