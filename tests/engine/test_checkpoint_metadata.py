"""What a single file's safetensors header says of itself (Stability's model spec, `modelspec.*`,
as Stability's and kohya's tools write it) where its shapes cannot: v- or ε-prediction from the
architecture, the size it was made for (SDXL-Turbo's 512x512), a timestep-expert model, and the
family of a VAE put beside it (SD 1.x/2.x's and SDXL's VAEs have the same shapes and keys). Real
safetensors files; tiny models loaded through `from_single_file`; `describe_model`/`model_report`
are what `sine doctor` shows, `check_model` is `sine edit`'s instant check."""

from __future__ import annotations

import shutil

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

from sine.checkpoints import CONFIGS_DIR, config_folder, prediction_guessed, read_checkpoint
from sine.errors import BadModel
from sine.models import describe_model, load_base_model, model_report
from sine.preflight import check_model
from sine.tiny_models import write_single_file


def _sd2_keys() -> dict[str, torch.Tensor]:
    """The keys diffusers tells an SD 2.x checkpoint by (OpenCLIP's 1024-wide cross-attention)."""
    return {"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(2, 1024),
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 4, 3, 3),
            "cond_stage_model.model.ln_final.weight": torch.zeros(2), "first_stage_model.decoder.conv_in.weight": torch.zeros(2)}


def _sdxl_keys() -> dict[str, torch.Tensor]:
    """Keys an SDXL base checkpoint is told by (both text encoders under conditioner.embedders), no weights."""
    return {"model.diffusion_model.label_emb.0.0.weight": torch.zeros(2, 2),
            "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(2, 2048),
            "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": torch.zeros(2),
            "conditioner.embedders.1.model.ln_final.weight": torch.zeros(2),
            "first_stage_model.decoder.conv_in.weight": torch.zeros(2)}


def test_sd2_architecture_in_the_header_says_v_or_epsilon(tmp_path):
    """`modelspec.architecture` tells SD 2.x 768 v (`stable-diffusion-v2-768-v`) from 512 ε
    (`stable-diffusion-v2-512`) where the file has no `modelspec.prediction_type`: it was ignored, and a
    2.x-512 file with a neutral name was sampled as v (a guess, with a warning)."""
    for architecture, name, configs in (("stable-diffusion-v2-512", "my-sd2-mix.safetensors", "sd2-base"),
                                        ("stable-diffusion-v2-768-v", "my-512-mix.safetensors", "sd2")):
        path = tmp_path / name
        save_file(_sd2_keys(), str(path), metadata={"modelspec.sai_model_spec": "1.0.0",
                                                    "modelspec.architecture": architecture})
        assert config_folder(path, read_checkpoint(path)) == CONFIGS_DIR / configs, architecture
        assert prediction_guessed(path, read_checkpoint(path)) is None, architecture


def test_sdxl_file_made_for_512_is_512_px_by_its_header(tmp_path):
    """SDXL-Turbo's file is SDXL base's architecture made for 512x512; read with SDXL base's configs it
    was taken as 1024 px (the edit worked at twice its size). `modelspec.resolution` says it; a name
    with "turbo" does not (many SDXL "turbo" fine-tunes work at 1024)."""
    turbo = tmp_path / "sd_xl_turbo_1.0.safetensors"
    save_file(_sdxl_keys(), str(turbo), metadata={"modelspec.architecture": "stable-diffusion-xl-v1-base",
                                                  "modelspec.resolution": "512x512"})
    kind = model_report(turbo)[0]
    assert (kind.family, kind.size) == ("SDXL", 512)
    from sine.checkpoints import unet_hints

    assert unet_hints(turbo, config_folder(turbo, read_checkpoint(turbo))) == {"sample_size": 64}  # from_single_file's
    named = tmp_path / "dreamshaperXL_turbo.safetensors"
    save_file(_sdxl_keys(), str(named))
    assert model_report(named)[0].size == 1024
    base = tmp_path / "sd_xl_base_1.0.safetensors"
    save_file(_sdxl_keys(), str(base), metadata={"modelspec.resolution": "1024x1024"})
    assert model_report(base)[0].size == 1024 and unet_hints(base, CONFIGS_DIR / "sdxl") == {}
    bucket = tmp_path / "trained-on-a-bucket.safetensors"  # the pixel budget, not the long side
    save_file(_sdxl_keys(), str(bucket), metadata={"modelspec.resolution": "1216x832"})
    assert model_report(bucket)[0].size == 1000  # √(1216·832) = 1006 px: 125 latent cells


def test_timestep_expert_file_is_refused_in_words(tiny_folder, tmp_path):
    """A model tuned on part of the timesteps only (`modelspec.timestep_range` 500,999) loaded as a whole
    model: SINE fine-tunes and samples it at every timestep."""
    path = write_single_file(tiny_folder, tmp_path / "plain.safetensors")
    expert = tmp_path / "expert.safetensors"
    save_file(load_file(str(path)), str(expert), metadata={"modelspec.timestep_range": "500,999"})
    shutil.copytree(path.with_suffix(".config"), expert.with_suffix(".config"))
    for call in (check_model, describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match="timestep-expert model.*500,999.*every timestep"):
            call(str(expert))
    whole = tmp_path / "whole.safetensors"
    save_file(load_file(str(path)), str(whole), metadata={"modelspec.timestep_range": "0,999"})
    shutil.copytree(path.with_suffix(".config"), whole.with_suffix(".config"))
    assert describe_model(whole) == describe_model(path)


def test_vae_beside_a_checkpoint_of_another_family_is_refused_in_words(tiny_folder, tmp_path):
    """`NAME.vae.safetensors` beside an SD 1.x file that is SDXL's VAE (its header says so: the shapes
    cannot) or an SD3/Flux VAE (16-channel latents) loaded, or failed in diffusers' shape error."""
    path = write_single_file(tiny_folder, tmp_path / "sd1.safetensors")
    vae = {k: v.contiguous() for k, v in AutoencoderKL.from_pretrained(tiny_folder / "vae").state_dict().items()}
    companion = tmp_path / "sd1.vae.safetensors"
    save_file(vae, str(companion), metadata={"modelspec.architecture": "stable-diffusion-xl-v1-base/vae"})
    for call in (describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match="sd1.vae.safetensors.* is SDXL's VAE .*checkpoint is Stable Diffusion 1"):
            call(str(path))
    save_file(vae, str(companion), metadata={"modelspec.architecture": "stable-diffusion-v1/vae"})
    assert load_base_model(path, device="cpu").kind.family == "SD1"
    wide = AutoencoderKL(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=16, norm_num_groups=16,
                         layers_per_block=1)
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(companion))
    for call in (describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match="is a VAE of 16-channel latents"):
            call(str(path))


def test_fp8_checkpoint_loads_with_a_warning(tiny_folder, tmp_path):
    """A plain fp8 (e4m3) checkpoint, as circulated to save space, loaded upcast without a word: doctor
    called it fine. It loads (the working precision, fp32 on a CPU) and doctor and the log say what it costs."""
    path = write_single_file(tiny_folder, tmp_path / "plain.safetensors")
    unet = "model.diffusion_model."
    state = {k: v.to(torch.float8_e4m3fn) if k.startswith(unet) and v.ndim > 1 else v
             for k, v in load_file(str(path)).items()}
    for name in ("fp8.safetensors", "fp8.ckpt"):
        fp8 = tmp_path / name
        if fp8.suffix == ".ckpt":
            torch.save(state, str(fp8))
        else:
            save_file(state, str(fp8))
        shutil.copytree(path.with_suffix(".config"), fp8.with_suffix(".config"), dirs_exist_ok=True)
        kind, notes = model_report(fp8)
        assert kind == describe_model(path) and len(notes) == 1, notes
        assert "stored in fp8 (F8_E4M3" in notes[0] and "fp16 or fp32 version" in notes[0], notes
    loaded = load_base_model(tmp_path / "fp8.safetensors", device="cpu")
    assert {p.dtype for p in loaded.unet.parameters()} == {torch.float32}
    assert model_report(path)[1] == []


def test_vae_linked_beside_a_checkpoint_is_known_by_the_file_it_links_to(tiny_folder, tmp_path):
    """Painters link one shared VAE file beside several checkpoints: `sd1.vae.safetensors` ->
    `sdxl_vae.safetensors` beside an SD 1.x file loaded SDXL's VAE (same shapes and keys) silently.
    The linked file's name says the family; SD 1.x's own (`vae-ft-mse-840000-ema-pruned`) loads."""
    path = write_single_file(tiny_folder, tmp_path / "sd1.safetensors")
    vae = {k: v.contiguous() for k, v in AutoencoderKL.from_pretrained(tiny_folder / "vae").state_dict().items()}
    shared = tmp_path / "vaes"
    shared.mkdir()
    save_file(vae, str(shared / "sdxl_vae.safetensors"))
    save_file(vae, str(shared / "vae-ft-mse-840000-ema-pruned.safetensors"))
    companion = tmp_path / "sd1.vae.safetensors"
    companion.symlink_to(shared / "sdxl_vae.safetensors")
    for call in (describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match="is SDXL's VAE \\(it links to sdxl_vae.safetensors\\)"):
            call(str(path))
    companion.unlink()
    companion.symlink_to(shared / "vae-ft-mse-840000-ema-pruned.safetensors")
    assert load_base_model(path, device="cpu").kind.family == "SD1"


def test_sd2_resolution_in_the_header_tells_512_eps_from_768_v(tmp_path):
    """An SD 2.x file whose header states only its resolution (no prediction type, no architecture): a
    512x512 one with a neutral name was assumed 768 v, and its size then read as 512 from the header.
    The resolution decides as the name would (still said as a guess), and wins over the name."""
    for resolution, name, configs, words in (("512x512", "my-sd2-mix.safetensors", "sd2-base", "512 ε"),
                                             ("768x768", "sd2_base_mix.safetensors", "sd2", "768 v")):
        path = tmp_path / name
        save_file(_sd2_keys(), str(path), metadata={"modelspec.resolution": resolution})
        assert config_folder(path, read_checkpoint(path)) == CONFIGS_DIR / configs, resolution
        guess = prediction_guessed(path, read_checkpoint(path))
        assert guess is not None and f"assumed SD 2.x {words}-prediction from its header's resolution" in guess, guess


def test_clip_skip_in_the_header_reads_the_prompt_from_that_layer(tiny_folder, tmp_path):
    """A file trained with clip skip 2 (kohya's model spec `modelspec.encoder_layer`, or `ss_clip_skip`)
    read the prompt from the text encoder's last layer, not the one it was trained on; its prompts
    are now the penultimate layer's states through the final layer norm (A1111's clip skip, diffusers'
    clip_skip=1). ComfyUI's -2 means the same; a value past the encoder's layers is ignored."""
    plain = write_single_file(tiny_folder, tmp_path / "plain.safetensors")
    reference = load_base_model(plain, device="cpu")
    with torch.no_grad():
        ids = reference.tokenize(["a red disc"])
        hidden = reference.text_encoder(ids, output_hidden_states=True).hidden_states
        text_model = getattr(reference.text_encoder, "text_model", reference.text_encoder)  # transformers < 5.6
        penultimate = text_model.final_layer_norm(hidden[-2])
        last = reference.encode_prompts(["a red disc"])
    assert not torch.allclose(penultimate, last, atol=1e-4)
    for key, value, expected in (("modelspec.encoder_layer", "2", penultimate), ("ss_clip_skip", "2", penultimate),
                                 ("modelspec.encoder_layer", "-2", penultimate), ("ss_clip_skip", "1", last),
                                 ("ss_clip_skip", "9", last)):
        path = tmp_path / f"skip_{key}_{value}.safetensors"
        save_file(load_file(str(plain)), str(path), metadata={key: value})
        shutil.copytree(plain.with_suffix(".config"), path.with_suffix(".config"))
        with torch.no_grad():
            got = load_base_model(path, device="cpu").encode_prompts(["a red disc"])
        assert torch.allclose(got, expected, atol=1e-5), (key, value)
