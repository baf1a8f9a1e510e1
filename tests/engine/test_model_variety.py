"""Every kind of SD checkpoint a painter brings: SD1 ε, SD2 ε and v, folders with odd scheduler configs,
single files (.safetensors, .ckpt), inpainting models and broken downloads. Tiny random models built
from configs, loaded through `from_pretrained` / `from_single_file` like real ones."""

from __future__ import annotations

import json
import logging
import os
import pickle

import pytest
import torch

from sine.checkpoints import CONFIGS_DIR, config_folder, read_checkpoint
from sine.errors import BadModel, ModelMissing
from sine.finetune import FinetuneSettings, evaluation_loss, finetune
from sine.models import describe_model, load_base_model
from sine.patches import PatchSampler
from sine.tiny_models import SD1_SCHEDULER, make_tiny_sd, make_tiny_sd2, write_single_file

PROMPT = "picture of a sks disc"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("variety")
    return {
        "sd2": make_tiny_sd2(root / "sd2", v_prediction=False),
        "sd2v": make_tiny_sd2(root / "sd2v", v_prediction=True),
        "root": root,
    }


def test_kinds_are_told_apart_from_configs(tiny_folder, models):
    sd1, sd2, sd2v = (load_base_model(f, device="cpu") for f in (tiny_folder, models["sd2"], models["sd2v"]))
    assert (sd1.kind.family, sd1.kind.prediction, sd1.kind.size) == ("SD1", "epsilon", 32)
    assert (sd2.kind.family, sd2.kind.prediction, sd2.kind.size) == ("SD2", "epsilon", 32)
    assert (sd2v.kind.family, sd2v.kind.prediction, sd2v.kind.size) == ("SD2", "v_prediction", 48)
    assert describe_model(models["sd2v"]) == sd2v.kind  # configs only, no weights loaded
    assert "v-prediction" in sd2v.kind.describe() and "48 px" in sd2v.kind.describe()


def test_pe_grid_follows_the_model_size(models, source_image):
    base = load_base_model(models["sd2v"], device="cpu")
    assert base.sample_size == 48 and base.pe_grid == 24  # twice the latent side, as 128 for SD1's 64
    ft = finetune(base, source_image, PROMPT, FinetuneSettings(method="lora", steps=1, patch=True))
    assert ft.pe_table.shape == (base.pe_channels, 24, 24)
    import random
    view = PatchSampler(source_image, base.sample_size, random.Random(0), base.pe_grid).sample()
    assert view.image.size == (48, 48) and max(view.box) <= 24


def test_v_model_finetune_lowers_the_v_loss(models, source_image, monkeypatch):
    """A v-prediction model fine-tuned on its source has a lower v-loss there, and far lower than
    the same fine-tune against ε (the old behaviour, forced here for comparison): with the target
    forced to ε in the engine both runs are the same and this fails."""
    base = load_base_model(models["sd2v"], device="cpu")
    assert base.prediction_type == "v_prediction"
    settings = FinetuneSettings(method="full", steps=10, lr=1e-3, patch=False)
    untrained = finetune(base, source_image, PROMPT, FinetuneSettings(method="full", steps=0, patch=False))
    trained_v = finetune(base, source_image, PROMPT, settings)
    import sine.finetune as ft_module

    monkeypatch.setattr(ft_module, "training_target", lambda z0, noise, a, prediction: noise)
    trained_eps = finetune(base, source_image, PROMPT, settings)
    monkeypatch.undo()
    before = evaluation_loss(base, untrained, source_image, n=4)  # evaluation measures the v-loss
    after_v = evaluation_loss(base, trained_v, source_image, n=4)
    after_eps = evaluation_loss(base, trained_eps, source_image, n=4)
    assert after_v < 0.8 * before, (before, after_v)
    assert after_v < 0.7 * after_eps, (after_v, after_eps)


def test_missing_clip_sample_is_forced_off_and_logged(models, caplog):
    folder = make_tiny_sd(models["root"] / "no-clip", scheduler={k: v for k, v in SD1_SCHEDULER.items()
                                                                 if k not in ("clip_sample", "set_alpha_to_one")})
    assert "clip_sample" not in json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    with caplog.at_level(logging.INFO, logger="sine.models"):
        base = load_base_model(folder, device="cpu")
    scheduler = base.new_scheduler(10)
    assert scheduler.config.clip_sample is False and scheduler.config.thresholding is False
    assert scheduler.config.set_alpha_to_one is False
    assert any("clip_sample" in o for o in base.scheduler_overrides)
    assert "clip_sample: True (unset) -> False" in caplog.text
    # DDIM with the config as the folder has it would clip x̂0 to [-1, 1]; ours does not
    z = torch.full((1, 4, 8, 8), 5.0)
    scheduler.set_timesteps(10)
    out = scheduler.step(torch.zeros_like(z), int(scheduler.timesteps[0]), z).pred_original_sample
    assert out.abs().max() > 1.0


def test_single_file_sd1_loads_like_its_folder(tiny_folder, tmp_path):
    path = write_single_file(tiny_folder, tmp_path / "tiny-sd1.safetensors")
    folder_model = load_base_model(tiny_folder, device="cpu")
    file_model = load_base_model(path, device="cpu")
    assert file_model.folder == path.resolve() and file_model.kind == folder_model.kind
    for a, b in ((folder_model.unet, file_model.unet), (folder_model.vae, file_model.vae),
                 (folder_model.text_encoder, file_model.text_encoder)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k].reshape(sa[k].shape)) for k in sa)
    assert torch.equal(folder_model.encode_prompts([PROMPT]), file_model.encode_prompts([PROMPT]))


@pytest.mark.parametrize("name", ["sd2", "sd2v"])
def test_sd2_open_clip_single_file_loads_like_its_folder(models, tmp_path, name):
    """SD 2.x files carry the text encoder in OpenCLIP's layout (`cond_stage_model.model.*`, q/k/v fused
    in in_proj): its weights, the kind and the prediction type come out as from the folder."""
    from safetensors import safe_open

    path = write_single_file(models[name], tmp_path / f"{name}.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in f.keys()
    folder_model, file_model = load_base_model(models[name], device="cpu"), load_base_model(path, device="cpu")
    assert file_model.kind == folder_model.kind == describe_model(path) and file_model.kind.family == "SD2"
    assert file_model.prediction_type == folder_model.prediction_type
    for a, b in ((folder_model.unet, file_model.unet), (folder_model.text_encoder, file_model.text_encoder)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(folder_model.encode_prompts([PROMPT]), file_model.encode_prompts([PROMPT]))


def test_plain_ckpt_loads_and_a_pickle_with_code_is_refused(tiny_folder, tmp_path):
    path = write_single_file(tiny_folder, tmp_path / "tiny.ckpt")
    assert load_base_model(path, device="cpu").kind.family == "SD1"
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state = torch.load(path, weights_only=True)
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as handle:
        pickle.dump({"state_dict": state, "payload": Evil()}, handle)
    (tmp_path / "evil.config").symlink_to(tmp_path / "tiny.config")
    with pytest.raises(BadModel, match=r"evil\.ckpt.*could run code"):
        load_base_model(evil, device="cpu")
    assert not marker.exists()


def test_inpainting_models_are_refused_clearly(tmp_path):
    folder = make_tiny_sd(tmp_path / "inpaint", in_channels=9)
    with pytest.raises(BadModel, match="inpainting model"):
        load_base_model(folder, device="cpu")
    path = write_single_file(folder, tmp_path / "inpaint.safetensors", sidecar=False)  # the shipped-config path
    with pytest.raises(BadModel, match=r"inpaint\.safetensors is an inpainting model"):
        load_base_model(path, device="cpu")


def test_sample_prediction_samples_as_diffusers_sample_ddim_and_finetunes(tmp_path, source_image):
    """An x₀-prediction model (`prediction_type` "sample") was refused; its UNet now answers in ε (the
    ε its x̂₀ stands for at the call's z_t and t), so one guided DDIM step equals diffusers' own
    sample-prediction DDIM step on the guided x̂₀, and fine-tuning trains against x₀."""
    from diffusers import DDIMScheduler

    from sine.images import to_pil
    from sine.model_kind import forced_scheduler_config
    from sine.predictions import raw_outputs
    from sine.sampler import SamplingSettings, sample_edit

    folder = make_tiny_sd(tmp_path / "x0", scheduler=dict(SD1_SCHEDULER, prediction_type="sample"))
    assert describe_model(folder).describe() == "SD1, x₀-prediction, 32 px"
    base = load_base_model(folder, device="cpu")
    reference = DDIMScheduler.from_config(forced_scheduler_config(base.scheduler_config)[0])
    assert reference.config.prediction_type == "sample"
    reference.set_timesteps(1)
    t = int(reference.timesteps[0])
    with torch.no_grad():
        z = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(3)) * reference.init_noise_sigma
        states = base.encode_prompts(["", "a blue disc"])
        tt = torch.tensor([t, t])
        with raw_outputs():
            x0 = base.unet(torch.cat([z, z]), tt, states).sample
        eps = base.unet(torch.cat([z, z]), tt, states).sample
        a = reference.alphas_cumprod[t]
        assert torch.allclose(eps, (z - a.sqrt() * x0) / (1 - a).sqrt(), atol=1e-5)
        s = SamplingSettings(steps=1, seed=3, strength=1.0)
        guided = x0[:1] + s.guidance * (x0[1:] - x0[:1])
        expected = to_pil(base.decode_latents(reference.step(guided, t, z, eta=0.0).prev_sample))
        got = sample_edit(base, None, "a blue disc", 32, 32, s)
    diff = (torch.tensor(list(got.getdata())) - torch.tensor(list(expected.getdata()))).abs().max()
    assert diff <= 1, diff
    untrained = finetune(base, source_image, PROMPT, FinetuneSettings(method="full", steps=0, patch=False))
    trained = finetune(base, source_image, PROMPT, FinetuneSettings(method="full", steps=10, lr=1e-3, patch=False))
    before = evaluation_loss(base, untrained, source_image, n=4)  # evaluation measures the x₀-loss
    after = evaluation_loss(base, trained, source_image, n=4)
    assert after < 0.8 * before, (before, after)


def test_broken_downloads_name_the_file(tiny_folder, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_folder, tmp_path / "partial")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(BadModel, match=str(weights)):
        load_base_model(folder, device="cpu")
    weights.unlink()
    with pytest.raises(ModelMissing, match=str(folder / "unet")):
        load_base_model(folder, device="cpu")
    single = write_single_file(tiny_folder, tmp_path / "cut.safetensors")
    single.write_bytes(single.read_bytes()[:1000])
    with pytest.raises(BadModel, match=r"cut\.safetensors is cut short.*download it again"):
        load_base_model(single, device="cpu")
    with pytest.raises(ModelMissing, match="nowhere.safetensors does not exist"):
        load_base_model(tmp_path / "nowhere.safetensors", device="cpu")


def test_checkpoints_are_told_apart_by_content_not_path(tmp_path):
    a = write_single_file(make_tiny_sd(tmp_path / "a", seed=1), tmp_path / "m.safetensors")
    rev_a = load_base_model(a, device="cpu").revision
    write_single_file(make_tiny_sd(tmp_path / "b", seed=2), tmp_path / "m.safetensors")  # same path, new content
    rev_b = load_base_model(a, device="cpu").revision
    assert rev_a != rev_b and rev_a.startswith("sha256:")
    copy = write_single_file(tmp_path / "b", tmp_path / "elsewhere" / "copy.safetensors")
    assert load_base_model(copy, device="cpu").revision == rev_b  # same content, another path


def test_shipped_configs_are_the_published_architectures(tiny_folder, tmp_path):
    """The configs shipped for real single files build SD1.5 / SD2.1 / SDXL exactly (published
    parameter counts), and a checkpoint without a sidecar gets the one for its keys."""
    from diffusers import UNet2DConditionModel

    counts = {"sd1": 859_520_964, "sd2": 865_910_724, "sd2-base": 865_910_724, "sdxl": 2_567_463_684}
    for name, count in counts.items():
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS_DIR / name / "unet"))
        assert sum(p.numel() for p in unet.parameters()) == count, name
    path = write_single_file(tiny_folder, tmp_path / "bare.safetensors", sidecar=False)
    assert config_folder(path, read_checkpoint(path)) == CONFIGS_DIR / "sd1"  # (too small for them: refused)


def test_sine_edit_runs_offline_on_a_single_file(tiny_folder, source_image, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    path = write_single_file(tiny_folder, tmp_path / "painter.safetensors")
    source_image.save(tmp_path / "src.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "edit", str(tmp_path / "src.png"), "--prompt", "a blue disc",
                           "--subject", "disc", "--model", str(path), "--finetune-steps", "2", "--steps", "2",
                           "--width", "40", "--height", "24", "--out", str(tmp_path / "out.png"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "out.png") as img:
        assert img.size == (40, 24)


def test_v_model_samples_as_diffusers_v_ddim(models):
    """Sampling a v model: its UNet answers in ε (raw output v converted with the call's z_t and t),
    and one guided DDIM step equals diffusers' own v-prediction DDIM step on the guided v."""
    from diffusers import DDIMScheduler

    from sine.images import to_pil
    from sine.model_kind import forced_scheduler_config
    from sine.predictions import raw_outputs
    from sine.sampler import SamplingSettings, sample_edit

    base = load_base_model(models["sd2v"], device="cpu")
    reference = DDIMScheduler.from_config(forced_scheduler_config(base.scheduler_config)[0])
    assert reference.config.prediction_type == "v_prediction"
    reference.set_timesteps(1)
    t = int(reference.timesteps[0])
    with torch.no_grad():
        z = torch.randn((1, 4, 12, 12), generator=torch.Generator("cpu").manual_seed(3)) * reference.init_noise_sigma
        states = base.encode_prompts(["", "a blue disc"])
        tt = torch.tensor([t, t])
        with raw_outputs():
            v = base.unet(torch.cat([z, z]), tt, states).sample
        eps = base.unet(torch.cat([z, z]), tt, states).sample
        a = reference.alphas_cumprod[t]
        assert torch.allclose(eps, (1 - a).sqrt() * z + a.sqrt() * v, atol=1e-5)
        s = SamplingSettings(steps=1, seed=3, strength=1.0)
        guided_v = v[:1] + s.guidance * (v[1:] - v[:1])
        expected = to_pil(base.decode_latents(reference.step(guided_v, t, z, eta=0.0).prev_sample))
        got = sample_edit(base, None, "a blue disc", 48, 48, s)
    diff = (torch.tensor(list(got.getdata())) - torch.tensor(list(expected.getdata()))).abs().max()
    assert diff <= 1, diff


def test_other_pipelines_are_named_not_called_incomplete(tmp_path):
    """A folder of another diffusers pipeline (no UNet: SD3, Flux, PixArt…) says what it is, instead of
    telling the painter the download is incomplete."""
    flux = tmp_path / "flux"
    (flux / "transformer").mkdir(parents=True)
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline", "transformer": ["x", "y"]}))
    with pytest.raises(BadModel, match=r"FluxPipeline.*Stable Diffusion 1\.x, 2\.x or XL"):
        load_base_model(flux, device="cpu")


def test_sdxl_refiner_folder_is_refused_as_a_refiner(tmp_path):
    """SDXL's refiner has no first text encoder and is conditioned on an aesthetic score: it only
    refines SDXL base pictures, so SINE cannot fine-tune and guide with it."""
    from sine.tiny_models import make_tiny_sdxl

    folder = make_tiny_sdxl(tmp_path / "refiner")
    for name in ("text_encoder", "tokenizer"):
        for f in (folder / name).iterdir():
            f.unlink()
        (folder / name).rmdir()
    index = json.loads((folder / "model_index.json").read_text())
    index.update(_class_name="StableDiffusionXLImg2ImgPipeline", requires_aesthetics_score=True,
                 text_encoder=[None, None], tokenizer=[None, None])
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(BadModel, match="SDXL refiner.*base"):
        load_base_model(folder, device="cpu")
