"""Diffusers folders with settings real models carry: a VAE with a `shift_factor` (latents are
(z − shift) · scale, as diffusers' pipelines use it), and a VAE whose latents SINE's 4-channel UNets
cannot take. Tiny models loaded with `from_pretrained`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sine.errors import BadModel, ModelMissing
from sine.models import describe_model, load_base_model
from sine.tiny_models import make_tiny_sd


def _edit_vae_config(folder, **changes):
    path = folder / "vae" / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_vae_shift_factor_is_applied_both_ways(tmp_path):
    folder = make_tiny_sd(tmp_path / "shifted")
    _edit_vae_config(folder, shift_factor=0.25, scaling_factor=0.5)
    base = load_base_model(folder, device="cpu")
    pixels = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        raw = base.vae.encode(pixels).latent_dist.mean
        expected_pixels = ((base.vae.decode(raw).sample + 1) / 2).clamp(0, 1)
    z = base.encode_image(pixels)
    assert torch.allclose(z, (raw - 0.25) * 0.5, atol=1e-6)
    assert torch.allclose(base.decode_latents(z), expected_pixels, atol=1e-5)


def test_vae_with_other_latent_channels_is_refused(tmp_path):
    """A 16-channel VAE (SD3/Flux's) in a 4-channel model folder: named, before any weights load."""
    from diffusers import AutoencoderKL

    folder = make_tiny_sd(tmp_path / "mixed")
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        block_out_channels=(16, 32, 32), layers_per_block=1, latent_channels=16, norm_num_groups=16)
    vae.save_pretrained(folder / "vae")
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match=r"VAE makes 16-channel latents.*UNet takes 4"):
            call(folder)


def test_zero_terminal_snr_v_model_samples_finite_at_every_step_count(tmp_path):
    """`rescale_betas_zero_snr` makes ᾱ at t=999 exactly 0: a DDIM step there from the ε the v model's
    output is turned into divides by √ᾱ (NaN: a black picture at 1000 steps). With ᾱ floored at 2⁻²⁴
    (what diffusers' Euler does for these models) the step's x̂₀ is the v formula's √ᾱ·z − √(1−ᾱ)·v."""
    from sine.predictions import raw_outputs
    from sine.tiny_models import make_tiny_sd2

    folder = make_tiny_sd2(tmp_path / "zsnr", v_prediction=True)
    path = folder / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "rescale_betas_zero_snr": True}))
    base = load_base_model(folder, device="cpu")
    scheduler = base.new_scheduler(1000)
    scheduler.set_timesteps(1000)
    t = int(scheduler.timesteps[0])
    assert t == 999
    z = torch.randn(1, 4, 12, 12, generator=torch.Generator().manual_seed(0))
    states = base.encode_prompts(["a disc"])
    with torch.no_grad():
        eps = base.unet(z, torch.tensor([t]), states).sample
        with raw_outputs():
            v = base.unet(z, torch.tensor([t]), states).sample
    step = scheduler.step(eps, t, z)
    a = scheduler.alphas_cumprod[t]
    assert torch.isfinite(step.prev_sample).all()
    assert torch.allclose(step.pred_original_sample, a.sqrt() * z - (1 - a).sqrt() * v, atol=1e-2)


def test_folders_that_are_not_a_model_folder_say_what_to_pass(tiny_folder, tmp_path):
    """A painter's folder of checkpoint files, or a model's unet/ part: the refusal says what to pass
    instead (the file, or the parent folder), from `sine edit`'s instant check and from the loader."""
    from sine.errors import ModelMissing
    from sine.preflight import check_model
    from sine.tiny_models import write_single_file

    shelf = tmp_path / "Stable-diffusion"
    write_single_file(tiny_folder, shelf / "dreamshaper_8.safetensors", sidecar=False)
    part = tiny_folder / "unet"
    for folder, advice in ((shelf, r"dreamshaper_8\.safetensors"), (part, rf"the unet/ part of a model.*{tiny_folder}")):
        for call in (check_model, describe_model, lambda f: load_base_model(f, device="cpu")):
            with pytest.raises(ModelMissing, match=advice):
                call(str(folder))


def test_doctor_describes_a_folder_without_model_index_that_loads(tiny_folder, tmp_path):
    """A diffusers folder without model_index.json loads for `sine edit`; doctor said FAIL for it."""
    import shutil

    from sine.commands.doctor import check_model as doctor_model

    folder = shutil.copytree(tiny_folder, tmp_path / "no-index")
    (folder / "model_index.json").unlink()
    assert load_base_model(folder, device="cpu").kind.family == "SD1"
    check = doctor_model(str(folder))
    assert check.status == "ok" and "SD1, ε-prediction, 32 px" in check.detail, check


def test_vae_latents_mean_and_std_are_applied(tmp_path):
    """Per-channel `latents_mean`/`latents_std` in the VAE config (as diffusers' SDXL pipelines read
    them): latents are (z − mean) · scale / std."""
    folder = make_tiny_sd(tmp_path / "normalised")
    mean, std = [0.1, -0.2, 0.3, 0.0], [0.5, 2.0, 1.0, 0.25]
    _edit_vae_config(folder, latents_mean=mean, latents_std=std, scaling_factor=0.5)
    base = load_base_model(folder, device="cpu")
    pixels = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        raw = base.vae.encode(pixels).latent_dist.mean
        expected_pixels = ((base.vae.decode(raw).sample + 1) / 2).clamp(0, 1)
    m, s = torch.tensor(mean).view(1, 4, 1, 1), torch.tensor(std).view(1, 4, 1, 1)
    z = base.encode_image(pixels)
    assert torch.allclose(z, (raw - m) * 0.5 / s, atol=1e-6)
    assert torch.allclose(base.decode_latents(z), expected_pixels, atol=1e-5)


def test_edm_models_are_refused_by_name(tmp_path):
    """Playground v2.5-style folders (an EDM scheduler): SINE's DDIM on the DDPM schedule cannot sample them."""
    from sine.tiny_models import make_tiny_sdxl

    folder = make_tiny_sdxl(tmp_path / "edm")
    path = folder / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "_class_name": "EDMDPMSolverMultistepScheduler",
                                "sigma_data": 0.5}))
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match="EDM.*DDPM"):
            call(folder)


def test_other_formats_are_named_with_what_to_use(tiny_folder, tmp_path):
    """A file inside a model folder, an LDM .yaml, a GGUF/ONNX file, and folders exported for other
    runtimes (ONNX, Flax) are refused naming the format and what to pass instead (they were "neither a
    folder nor a checkpoint" or "the download is incomplete")."""
    import shutil

    from sine.errors import ModelMissing
    from sine.preflight import check_model

    yaml = tmp_path / "v2-inference-v.yaml"
    yaml.write_text("model:\n  params:\n    parameterization: v\n")
    gguf = tmp_path / "flux1-dev-Q4_0.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(bytes(64))
    cases = [(tiny_folder / "model_index.json", rf"pass the folder {tiny_folder}"),
             (yaml, r"\.yaml.*config.*not the weights.*checkpoint beside it"),
             (gguf, r"\.gguf.*quantized.*\.safetensors"), (onnx_file, r"\.onnx.*ONNX.*\.safetensors")]
    for path, advice in cases:
        for call in (check_model, describe_model, lambda p: load_base_model(p, device="cpu")):
            with pytest.raises(ModelMissing, match=advice):
                call(str(path))
    for runtime, weights in (("ONNX", "model.onnx"), ("Flax", "diffusion_flax_model.msgpack")):
        folder = shutil.copytree(tiny_folder, tmp_path / runtime)
        for old in (folder / "unet").glob("*.safetensors"):
            old.unlink()
        (folder / "unet" / weights).write_bytes(bytes(64))
        with pytest.raises(ModelMissing, match=rf"{runtime} export.*PyTorch"):
            load_base_model(folder, device="cpu")


def test_doctor_warns_about_distilled_and_guessed_models(tiny_folder, tmp_path, caplog):
    """Models that load but were guessed or are made for something else are a `warn` line saying
    why: an LCM-distilled folder (LCMScheduler, a guidance-embedding UNet), a file named like a
    Turbo/Lightning checkpoint, an SD 2.x file that does not say what it predicts."""
    import logging
    import re
    import shutil

    from safetensors.torch import save_file

    from sine.commands.doctor import check_model as doctor_model
    from sine.tiny_models import write_single_file

    lcm = shutil.copytree(tiny_folder, tmp_path / "lcm-dreamshaper")
    path = lcm / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "_class_name": "LCMScheduler"}))
    turbo = write_single_file(tiny_folder, tmp_path / "dreamshaperXL_turbo.safetensors")
    sd2 = tmp_path / "sd21.safetensors"
    save_file({"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(2, 1024),
               "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),  # SD 2.x's widths
               "cond_stage_model.model.ln_final.weight": torch.zeros(2),
               "first_stage_model.decoder.conv_in.weight": torch.zeros(2)}, str(sd2))
    for model, note in ((lcm, "distilled"), (turbo, "distilled"), (sd2, r"assumed.*\.yaml")):
        check = doctor_model(str(model))
        assert check.status == "warn", check
        assert re.search(note, check.detail), check
    assert doctor_model(str(tiny_folder)).status == "ok"
    with caplog.at_level(logging.WARNING, logger="sine.models"):
        load_base_model(lcm, device="cpu")
    assert "distilled" in caplog.text


def test_text_encoder_weights_missing_tensors_are_refused(tmp_path):
    """An SDXL text_encoder_2 saved without its projection (a plain CLIPTextModel) loaded with a random
    `text_projection`, different at every load (transformers only warns); now refused naming it."""
    import shutil

    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from sine.tiny_models import make_tiny_sdxl

    folder = make_tiny_sdxl(tmp_path / "xl")
    full = CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2")
    plain = CLIPTextModel(full.config)
    plain.load_state_dict({k.removeprefix("text_model."): v for k, v in full.state_dict().items()
                           if not k.startswith("text_projection")}, strict=False)
    shutil.rmtree(folder / "text_encoder_2")
    plain.save_pretrained(folder / "text_encoder_2")
    with pytest.raises(BadModel, match=r"text_encoder_2.*lacks.*text_projection"):
        load_base_model(folder, device="cpu")


def test_missing_or_broken_scheduler_config_is_named(tiny_folder, tmp_path):
    import shutil

    from sine.errors import ModelMissing

    folder = shutil.copytree(tiny_folder, tmp_path / "partial")
    config = folder / "scheduler" / "scheduler_config.json"
    config.write_text("{not json")
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match=rf"{config} is not valid JSON"):
            call(folder)
    config.unlink()
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(ModelMissing, match=rf"{config} is missing"):
            call(folder)


def test_broken_tokenizer_folder_is_named(tiny_folder, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_folder, tmp_path / "no-vocab")
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (folder / "tokenizer" / name).unlink(missing_ok=True)
    with pytest.raises(BadModel, match=rf"{folder / 'tokenizer'}.*download the model again"):
        load_base_model(folder, device="cpu")


def test_a_component_weights_file_names_its_model_folder(tiny_folder):
    """unet/diffusion_pytorch_model.safetensors given as the model: pass the folder it belongs to."""
    from sine.errors import ModelMissing
    from sine.preflight import check_model

    weights = tiny_folder / "unet" / "diffusion_pytorch_model.safetensors"
    for call in (check_model, describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(ModelMissing, match=rf"unet/ part of a diffusers model.*pass the folder {tiny_folder}$"):
            call(str(weights))


@pytest.mark.parametrize("channels,name", [(8, "InstructPix2Pix"), (5, "depth-to-image")])
def test_image_conditioned_unets_are_named(tmp_path, channels, name):
    folder = make_tiny_sd(tmp_path / f"in{channels}", in_channels=channels)
    with pytest.raises(BadModel, match=rf"is an? {name} model.*plain text-to-image"):
        describe_model(folder)


@pytest.mark.parametrize("options,name", [
    ({"addition_embed_type": "text", "encoder_hid_dim": 32}, "added text conditioning"),
    ({"addition_embed_type": "image", "encoder_hid_dim": 32}, "added image conditioning"),
    ({"class_embed_type": "timestep"}, "class conditioning"),
    ({"num_class_embeds": 10}, "class conditioning"),
    ({"encoder_hid_dim": 64, "encoder_hid_dim_type": "text_proj"}, "projects its text states"),
])
def test_unets_conditioned_on_more_than_the_prompt_are_refused(tmp_path, options, name):
    """UNets of other pipelines (DeepFloyd IF, Kandinsky, the x4 upscaler, unCLIP) loaded with their
    weights, `sine doctor` called them SD1, and the edit failed inside the UNet's forward."""
    folder = make_tiny_sd(tmp_path / "other", unet_options=options)
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match=rf"{name}.*plain Stable Diffusion"):
            call(folder)


def test_noise_schedule_ddim_cannot_make_is_refused(tmp_path):
    """A `beta_schedule` DDIM does not implement (sigmoid) loaded, and every edit then failed with
    diffusers' NotImplementedError; one with its `trained_betas` listed is DDIM's own."""
    folder = make_tiny_sd(tmp_path / "sigmoid")
    path = folder / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "beta_schedule": "sigmoid"}))
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match="'sigmoid' noise schedule"):
            call(folder)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    path.write_text(json.dumps({**json.loads(path.read_text()), "trained_betas": betas.tolist()}))
    assert load_base_model(folder, device="cpu").new_scheduler(4).alphas_cumprod.shape == (1000,)


@pytest.mark.parametrize("pipeline,drop,changes", [
    ("KandinskyV22Pipeline", ("vae", "text_encoder", "tokenizer"), {"movq": ["diffusers", "VQModel"]}),
    ("IFPipeline", ("vae",), {"text_encoder": ["transformers", "T5EncoderModel"]}),
    ("Kandinsky3Pipeline", (), {"text_encoder": ["transformers", "T5EncoderModel"], "vae": None,
                                "movq": ["diffusers", "VQModel"]}),
    ("TextToVideoSDPipeline", (), {"unet": ["diffusers", "UNet3DConditionModel"]}),
    ("StableVideoDiffusionPipeline", ("text_encoder", "tokenizer"),
     {"unet": ["diffusers", "UNetSpatioTemporalConditionModel"]}),
])
def test_folders_of_other_unet_pipelines_are_named_not_called_incomplete(tmp_path, pipeline, drop, changes):
    """Kandinsky and DeepFloyd IF folders have a unet/ but no SD VAE or a T5 text encoder: `sine doctor`
    and the loader said "vae/config.json is missing: the download is incomplete"."""
    import shutil

    folder = make_tiny_sd(tmp_path / pipeline)
    for name in drop:
        shutil.rmtree(folder / name)
    index = json.loads((folder / "model_index.json").read_text())
    index.update(_class_name=pipeline, **changes)
    for name in drop:
        index.pop(name)
    (folder / "model_index.json").write_text(json.dumps({k: v for k, v in index.items() if v is not None}))
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match=rf"is a {pipeline} model \(.*\).*Stable Diffusion 1\.x, 2\.x or XL"):
            call(folder)


def test_flow_matching_unets_are_refused_by_name(tmp_path):
    """A UNet trained for rectified flow (a FlowMatch scheduler: no DDPM betas in its config) loaded with
    DDIM's default linear betas, silently the wrong noise schedule."""
    folder = make_tiny_sd(tmp_path / "flow")
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}))
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match="flow-matching.*FlowMatchEulerDiscreteScheduler"):
            call(folder)


class _RunsCode:
    def __reduce__(self):  # unpickling this would call print: what a malicious pickle does with os.system
        return (print, ("unpickled",))


@pytest.mark.parametrize("component,weights", [("unet", "diffusion_pytorch_model.bin"),
                                               ("text_encoder", "pytorch_model.bin")])
def test_component_pickle_with_code_is_refused_as_such(tmp_path, capsys, component, weights):
    """A folder whose `.bin` weights are a pickle that runs code was never unpickled, but was refused
    as "could not be loaded ...; the download may be incomplete"."""
    folder = make_tiny_sd(tmp_path / "m")
    for file in (folder / component).glob("*.safetensors"):
        file.unlink()
    torch.save({"weight": _RunsCode()}, str(folder / component / weights))
    with pytest.raises(BadModel, match=rf"{component}/{weights} holds Python objects besides tensors.*could run code"):
        load_base_model(folder, device="cpu")
    assert "unpickled" not in capsys.readouterr().out


def test_sdxl_folder_without_its_second_text_encoder_is_refused(tmp_path):
    """An SDXL folder missing text_encoder_2/ loaded as SDXL without its pooled embedding, and every
    edit failed inside the UNet ("argument of type 'NoneType' is not iterable")."""
    import shutil

    from sine.tiny_models import make_tiny_sdxl

    folder = make_tiny_sdxl(tmp_path / "xl")
    shutil.rmtree(folder / "text_encoder_2")
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(ModelMissing, match=r"lacks the text_encoder_2/ component of an SDXL folder"):
            call(folder)


def test_text_encoder_of_another_width_than_the_unet_takes_is_refused(tmp_path):
    """A folder with a text encoder from another kind of model (states 48 wide, the UNet's cross-attention
    takes 32) loaded, and every edit failed inside the UNet with a matrix-shape error."""
    import shutil

    from transformers import CLIPTextConfig, CLIPTextModel

    folder = make_tiny_sd(tmp_path / "mixed")
    shutil.rmtree(folder / "text_encoder")
    config = CLIPTextConfig(vocab_size=514, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=32, bos_token_id=512, eos_token_id=513,
                            pad_token_id=513)
    CLIPTextModel(config).save_pretrained(folder / "text_encoder")
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match=r"text encoder gives 48-wide states but its UNet takes 32"):
            call(folder)


def test_tokenizer_without_a_length_pads_to_what_the_text_encoder_takes(tmp_path):
    """A tokenizer_config.json without model_max_length (or none at all) gives transformers' 1e30:
    every prompt was padded to that length, and the first edit failed."""
    folder = make_tiny_sd(tmp_path / "m")
    config = folder / "tokenizer" / "tokenizer_config.json"
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "model_max_length"}))
    base = load_base_model(folder, device="cpu")
    assert base.tokenize(["a red disc"]).shape == (1, 32)
    assert base.encode_prompts(["a red disc"]).shape == (1, 32, 32)


def test_unet_sample_size_as_height_and_width(tiny_folder, tmp_path):
    """A UNet config whose sample_size is [height, width] (diffusers accepts it) failed in doctor and the
    loader with int()'s TypeError; it is the native size. One that is no size (null) is refused in words."""
    for name, size in (("pair", [8, 8]), ("none", None)):
        folder = shutil.copytree(tiny_folder, tmp_path / name)
        config = folder / "unet" / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "sample_size": size}))
        if size is None:
            with pytest.raises(BadModel, match="sample_size None is not a size in latent cells"):
                describe_model(folder)
            continue
        base = load_base_model(folder, device="cpu")
        assert describe_model(folder) == base.kind == describe_model(tiny_folder)
        assert (base.sample_size, base.pe_grid) == (32, 16)


def test_pickles_beside_safetensors_are_never_read(tmp_path, capsys):
    """A folder holding both .safetensors and .bin weights (as older hub repositories do) loads the
    safetensors; a .bin beside them that runs code is never unpickled, by the loader or by doctor."""
    folder = make_tiny_sd(tmp_path / "both")
    for component, weights in (("unet", "diffusion_pytorch_model.bin"), ("vae", "diffusion_pytorch_model.bin"),
                               ("text_encoder", "pytorch_model.bin")):
        torch.save({"weight": _RunsCode()}, str(folder / component / weights))
    assert load_base_model(folder, device="cpu").kind == describe_model(folder)
    assert "unpickled" not in capsys.readouterr().out


def test_folders_of_one_component_or_an_add_on_are_named_with_what_to_do(tmp_path):
    """A ControlNet, VAE, UNet, text encoder or SD3 transformer saved alone as a diffusers folder was
    "not a diffusers Stable Diffusion folder (no unet/ inside)", nothing said of what it is; a LoRA's
    folder was answered "pass one of its files", the LoRA itself, which is refused next. From `sine
    edit`'s instant check, doctor and the loader."""
    from safetensors.torch import save_file

    from sine.preflight import check_model

    components = {"controlnet": ({"_class_name": "ControlNetModel"}, "a ControlNet"),
                  "sd-vae-ft-mse": ({"_class_name": "AutoencoderKL"}, r"a VAE alone.*vae\.safetensors"),
                  "my-unet": ({"_class_name": "UNet2DConditionModel"}, "a UNet alone"),
                  "clip-vit-large": ({"architectures": ["CLIPTextModel"], "model_type": "clip_text_model"},
                                     "a text encoder alone"),
                  "sd3-transformer": ({"_class_name": "SD3Transformer2DModel"}, "a Stable Diffusion 3 model")}
    cases = []
    for name, (config, words) in components.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        save_file({"w": torch.zeros(2)}, str(folder / "diffusion_pytorch_model.safetensors"))
        cases.append((folder, words))
    lora = tmp_path / "my-style-lora"
    lora.mkdir()
    save_file({"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(4, 32)},
              str(lora / "pytorch_lora_weights.safetensors"))
    cases.append((lora, r"pytorch_lora_weights\.safetensors is a LoRA"))
    for folder, words in cases:
        for call in (check_model, describe_model, lambda f: load_base_model(f, device="cpu")):
            with pytest.raises(ModelMissing, match=rf"{folder.name} is .*{words}.*whole text-to-image model"):
                call(str(folder))


def test_folder_without_its_vae_names_the_vae_to_fetch_and_where(tiny_folder, tmp_path):
    """A diffusers folder shipped without vae/ (UNet-only fine-tune repositories) was "lacks the vae/
    component" (loader) and "vae/config.json is missing: the download is incomplete" (doctor); both
    name its family's VAE and the command that puts it there."""
    from sine.tiny_models import make_tiny_sdxl

    sd = shutil.copytree(tiny_folder, tmp_path / "sd-unet-only")
    xl = make_tiny_sdxl(tmp_path / "xl-unet-only")
    for folder, repo in ((sd, "stabilityai/sd-vae-ft-mse"), (xl, "stabilityai/sdxl-vae")):
        shutil.rmtree(folder / "vae")
        for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
            with pytest.raises(ModelMissing, match=rf"{folder.name} has no vae/.*hf download {repo} --local-dir "
                                                   rf"{folder}/vae"):
                call(folder)


def test_pipeline_folders_without_a_unet_are_named_by_the_instant_check_too(tmp_path):
    """An SD3, Flux or Stable Cascade diffusers folder: the loader named the pipeline, but `sine edit`'s
    instant check (and so the painter) saw "not a diffusers Stable Diffusion folder (no unet/ inside)"."""
    from sine.preflight import check_model

    for name, parts in (("StableDiffusion3Pipeline", {"transformer": ["diffusers", "SD3Transformer2DModel"]}),
                        ("FluxPipeline", {"transformer": ["diffusers", "FluxTransformer2DModel"]}),
                        ("StableCascadeCombinedPipeline", {"decoder": ["diffusers", "StableCascadeUNet"]})):
        folder = tmp_path / name
        (folder / next(iter(parts))).mkdir(parents=True)
        (folder / "model_index.json").write_text(json.dumps({"_class_name": name, **parts}))
        for call in (check_model, describe_model):
            with pytest.raises((ModelMissing, BadModel), match=rf"is a {name} model.*no UNet"):
                call(str(folder))


def test_a_folder_holding_model_folders_names_them(tiny_folder, tmp_path):
    """`--model ~/models` (a shelf of diffusers folders, or a download that put the model one level
    down) was "not a diffusers Stable Diffusion folder (no unet/ inside)"; it names the model folders
    inside to pass, from `sine edit`'s instant check, doctor and the loader."""
    from sine.preflight import check_model

    shelf = tmp_path / "models"
    shutil.copytree(tiny_folder, shelf / "my-sd15")
    (shelf / "notes").mkdir()
    for call in (check_model, describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(ModelMissing, match=rf"holds a model folder: pass it, e.g. --model {shelf / 'my-sd15'}"):
            call(str(shelf))
