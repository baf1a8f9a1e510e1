"""Files a painter brings as "the model" that are something else (a LoRA, an embedding, a VAE, a
ControlNet, SD3/Flux), whole checkpoints saved in older or partial ways (old CLIP key names, no baked
VAE, .bin, upper-case suffix, fp16-only diffusers folders), and what a checkpoint says about its own
prediction type. Real safetensors/torch files and tiny models loaded through `from_single_file` /
`from_pretrained`; `describe_model` is what `sine doctor` shows."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from sine.checkpoints import CONFIGS_DIR, config_folder, read_checkpoint
from sine.errors import BadModel
from sine.models import describe_model, load_base_model
from sine.tiny_models import make_tiny_sd, make_tiny_sdxl, write_sdxl_single_file, write_single_file


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float(), sb[k].float().reshape(sa[k].shape)) for k in sa)


def _rewrite(path, new, change, sidecar=True):
    """`path`'s tensors through `change`, saved at `new` (with the same config sidecar)."""
    state = change(load_file(str(path)))
    if new.suffix.lower() == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(new))
    else:
        torch.save(state, str(new))
    if sidecar:
        shutil.copytree(path.with_suffix(".config"), new.with_suffix(".config"))
    return new


def _not_models(tiny_folder):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_folder / "vae").state_dict()
    return {
        "kohya-lora.safetensors": ("a LoRA", {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
                                              "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4),
                                              "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0)}),
        "pytorch_lora_weights.safetensors": ("a LoRA", {"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(4, 32),
                                                        "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(32, 4)}),
        "boft.safetensors": ("a LoRA", {"lycoris_unet_down_blocks_0_attentions_0_proj_in.oft_R": torch.zeros(4, 4, 4),
                                        "lycoris_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(1.0)}),
        "embedding.safetensors": ("a textual-inversion embedding", {"emb_params": torch.zeros(2, 768)}),
        "embedding-xl.safetensors": ("a textual-inversion embedding", {"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(2, 1280)}),
        "vae-ft-mse.safetensors": ("a VAE alone", vae),
        "control_canny.safetensors": ("a ControlNet", {"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 3, 3, 3),
                                                       "conv_in.weight": torch.zeros(32, 4, 3, 3)}),
        "sd3_medium.safetensors": ("a Stable Diffusion 3 model", {
            "model.diffusion_model.joint_blocks.0.context_block.attn.qkv.weight": torch.zeros(3, 3),
            "model.diffusion_model.x_embedder.proj.weight": torch.zeros(4, 16, 2, 2)}),
        "flux1-dev.safetensors": ("a Flux model", {"double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(4),
                                                   "img_in.weight": torch.zeros(4, 64)}),
        "ip-adapter_sd15.safetensors": ("an IP-Adapter", {"image_proj.proj.weight": torch.zeros(4, 4),
                                                           "ip_adapter.1.to_k_ip.weight": torch.zeros(4, 4)}),
        "t2iadapter_canny.safetensors": ("a T2I-Adapter", {"adapter.body.0.resnets.0.block1.weight": torch.zeros(4, 4),
                                                           "adapter.conv_in.weight": torch.zeros(4, 4)}),
        "nothing.safetensors": ("an empty file", {}),
    }


def test_files_that_are_not_a_model_are_named_by_doctor_and_loader(tiny_folder, tmp_path):
    """Each is refused by `sine doctor`'s describe_model and by the loader, naming what it is and
    saying to pass a whole checkpoint (they used to be described as "SD1, 512 px" and fail later
    with "Failed to load CLIPTextModel")."""
    for name, (what, state) in _not_models(tiny_folder).items():
        path = tmp_path / name
        save_file(state, str(path))
        for call in (describe_model, lambda p: load_base_model(p, device="cpu")):
            with pytest.raises(BadModel, match=rf"{name} is {what}.*whole text-to-image model"):
                call(path)
    embedding = tmp_path / "embedding.pt"  # A1111's textual-inversion .pt (weights_only can read it)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.zeros(2, 768)}, "name": "x", "step": 9},
               str(embedding))
    with pytest.raises(BadModel, match="embedding.pt is a textual-inversion embedding"):
        describe_model(embedding)
    learned = tmp_path / "learned_embeds.bin"  # diffusers' textual inversion: {"<token>": tensor}
    torch.save({"<cat-toy>": torch.zeros(768)}, str(learned))
    with pytest.raises(BadModel, match="learned_embeds.bin is a textual-inversion embedding"):
        describe_model(learned)


def test_checkpoint_without_vae_is_refused_in_words_or_takes_its_vae_file(tiny_folder, tmp_path):
    full = write_single_file(tiny_folder, tmp_path / "full.safetensors")
    bare = _rewrite(full, tmp_path / "pruned.safetensors",
                    lambda s: {k: v for k, v in s.items() if not k.startswith("first_stage_model.")})
    for call in (describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match=r"pruned\.safetensors has no VAE baked in.*pruned\.vae\.safetensors"):
            call(bare)
    vae_state = {k.removeprefix("first_stage_model."): v for k, v in load_file(str(full)).items()
                 if k.startswith("first_stage_model.")}
    save_file(vae_state, str(tmp_path / "pruned.vae.safetensors"))  # the VAE beside it, as painters' tools expect
    reference = load_base_model(tiny_folder, device="cpu")
    loaded = load_base_model(bare, device="cpu")
    assert _same(reference.vae, loaded.vae) and _same(reference.unet, loaded.unet)


def test_old_clip_key_names_load_the_text_encoder(tiny_folder, tmp_path):
    """Checkpoints saved before CLIP's `text_model.` level (`cond_stage_model.transformer.embeddings…`)."""
    full = write_single_file(tiny_folder, tmp_path / "full.safetensors")
    old = _rewrite(full, tmp_path / "old.safetensors", lambda s: {
        k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): v for k, v in s.items()})
    assert any(k.startswith("cond_stage_model.transformer.embeddings.") for k in load_file(str(old)))
    reference = load_base_model(tiny_folder, device="cpu")
    loaded = load_base_model(old, device="cpu")
    assert _same(reference.text_encoder, loaded.text_encoder)
    assert torch.equal(reference.encode_prompts(["a red disc"]), loaded.encode_prompts(["a red disc"]))


def test_bin_and_upper_case_suffixes_load(tiny_folder, tmp_path):
    full = write_single_file(tiny_folder, tmp_path / "full.safetensors")
    reference = load_base_model(tiny_folder, device="cpu")
    for name in ("model.bin", "MODEL.SAFETENSORS"):
        path = _rewrite(full, tmp_path / name, lambda s: s)
        loaded = load_base_model(path, device="cpu")
        assert _same(reference.unet, loaded.unet), name
    assert not any(p.is_symlink() for p in tmp_path.iterdir())  # nothing written beside the painter's files


def test_fp16_only_diffusers_folder_loads(tiny_folder, tmp_path):
    """A folder with only `*.fp16.safetensors` weights (what `--variant fp16` downloads hold)."""
    folder = shutil.copytree(tiny_folder, tmp_path / "fp16-only")
    for weights in list(folder.rglob("*.safetensors")):
        save_file({k: v.half() for k, v in load_file(str(weights)).items()},
                  str(weights.with_name(weights.stem + ".fp16.safetensors")))
        weights.unlink()
    reference = load_base_model(tiny_folder, device="cpu")
    loaded = load_base_model(folder, device="cpu")
    expected = {k: v.half().float() for k, v in reference.unet.state_dict().items()}
    assert all(torch.equal(expected[k], v) for k, v in loaded.unet.state_dict().items())


def test_v_pred_and_ztsnr_keys_make_an_sdxl_file_v_prediction(tmp_path):
    """v-prediction SDXL fine-tunes carry `v_pred` (and `ztsnr`) keys; their configs say ε."""
    folder = make_tiny_sdxl(tmp_path / "xl")
    path = write_sdxl_single_file(folder, tmp_path / "xl.safetensors")
    vpred = _rewrite(path, tmp_path / "xl-vpred.safetensors",
                     lambda s: {**s, "v_pred": torch.tensor([]), "ztsnr": torch.tensor([])})
    assert describe_model(path).prediction == "epsilon"
    assert describe_model(vpred).prediction == "v_prediction"
    base = load_base_model(vpred, device="cpu")
    assert base.prediction_type == "v_prediction" and base.scheduler_config["rescale_betas_zero_snr"] is True
    assert float(base.new_scheduler(10).alphas_cumprod[-1]) < 1e-6  # zero terminal SNR


def test_edm_sdxl_file_is_refused_by_its_keys(tmp_path):
    """CosXL's file is SDXL-shaped with `edm_vpred.sigma_max/min` keys (an EDM v-prediction model on a
    continuous noise schedule): it loaded as plain SDXL ε and sampled noise. Refused in words now."""
    path = write_sdxl_single_file(make_tiny_sdxl(tmp_path / "xl"), tmp_path / "xl.safetensors")
    cosxl = _rewrite(path, tmp_path / "cosxl.safetensors", lambda s: {
        **s, "edm_vpred.sigma_max": torch.tensor([120.0]), "edm_vpred.sigma_min": torch.tensor([0.002])})
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match=r"cosxl\.safetensors is an EDM-trained SDXL model \(CosXL.*use SDXL base"):
            call(cosxl)


def test_file_of_a_pruned_architecture_says_what_to_put_beside_it(tmp_path):
    """A file whose keys read as SD 1.x but lacks part of its published architecture (a pruned or
    distilled model: BK-SDM, SSD-1B, Vega; or a truncated file) failed "as described by
    …/sine/model_configs/sd1", a folder inside the install; it now says what to do."""
    path = tmp_path / "bk-sdm-small.safetensors"
    save_file({"model.diffusion_model.input_blocks.1.0.in_layers.0.weight": torch.zeros(320),
               "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(768),
               "first_stage_model.decoder.conv_in.weight": torch.zeros(512, 4, 3, 3)}, str(path))
    with pytest.raises(BadModel, match=r"as Stable Diffusion 1\.x's published architecture .*pruned.*"
                                       r"beside it as bk-sdm-small\.config/"):
        load_base_model(path, device="cpu")


def test_a_file_named_v_pred_is_v_prediction_unless_it_says_otherwise(tiny_folder, tmp_path):
    """v-prediction fine-tunes merged or pruned by tools that drop the `v_pred` key are known by their
    name (`…-vpred…`, `…_v-pred…`): sampled as ε they drew noise. The guess is a doctor warning; what
    the file states (its header) wins."""
    from safetensors import safe_open

    from sine.models import model_report

    path = write_single_file(tiny_folder, tmp_path / "plain.safetensors")
    scheduler = path.with_suffix(".config") / "scheduler" / "scheduler_config.json"  # the tiny shapes' configs:
    scheduler.write_text(json.dumps({k: v for k, v in json.loads(scheduler.read_text()).items()  # saying no more
                                     if k != "prediction_type"}))  # than the shipped ones do
    for name in ("animeMix_vpred_v2.safetensors", "model-v-pred.safetensors"):
        named = _rewrite(path, tmp_path / name, lambda s: s)
        kind, notes = model_report(named)
        assert kind.prediction == "v_prediction" and any("from its name" in n for n in notes), (name, notes)
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    said = tmp_path / "said-eps_vpred.safetensors"
    save_file(state, str(said), metadata={"modelspec.prediction_type": "epsilon"})
    shutil.copytree(path.with_suffix(".config"), said.with_suffix(".config"))
    assert model_report(said) == (describe_model(path), [])
    assert load_base_model(tmp_path / "model-v-pred.safetensors", device="cpu").prediction_type == "v_prediction"


def test_configs_whose_projection_kind_contradicts_the_file_load_by_the_file(tmp_path):
    """`use_linear_projection` in `NAME.config/` that contradicts the file's attention projections (SD 2.x
    files hold them as linear 2-D weights, SD 1.x files as 1×1 convolutions) failed with diffusers' shape
    error; the file decides (the two are the same maths), and the UNet answers as the folder's."""
    from sine.tiny_models import make_tiny_sd2

    x, t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    states = torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(1))
    for name, folder in (("sd1", make_tiny_sd(tmp_path / "sd1", attention_everywhere=True)),
                         ("sd2", make_tiny_sd2(tmp_path / "sd2", v_prediction=False))):
        path = write_single_file(folder, tmp_path / f"{name}.safetensors")
        config = path.with_suffix(".config") / "unet" / "config.json"
        settings = json.loads(config.read_text())
        config.write_text(json.dumps({**settings, "use_linear_projection": not settings["use_linear_projection"]}))
        loaded, reference = load_base_model(path, device="cpu"), load_base_model(folder, device="cpu")
        with torch.no_grad():
            assert torch.allclose(loaded.unet(x, t, states).sample, reference.unet(x, t, states).sample, atol=1e-5)


def _sd2_keys() -> dict[str, torch.Tensor]:
    """The keys diffusers tells an SD 2.x checkpoint by (OpenCLIP's 1024-wide cross-attention)."""
    return {"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(2, 1024),
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 4, 3, 3),
            "cond_stage_model.model.ln_final.weight": torch.zeros(2), "first_stage_model.decoder.conv_in.weight": torch.zeros(2)}


def test_sd2_file_says_what_it_predicts(tmp_path):
    """Without its .yaml an SD 2.x file is taken as 768 v, unless it says otherwise: the safetensors
    header's modelspec.prediction_type, or a Lightning .ckpt's global_step 875000 (2.0-base)."""
    plain = tmp_path / "sd21.safetensors"
    save_file(_sd2_keys(), str(plain))
    assert config_folder(plain, read_checkpoint(plain)) == CONFIGS_DIR / "sd2"
    eps = tmp_path / "sd-turbo.safetensors"
    save_file(_sd2_keys(), str(eps), metadata={"modelspec.prediction_type": "epsilon"})
    assert config_folder(eps, read_checkpoint(eps)) == CONFIGS_DIR / "sd2-base"
    v = tmp_path / "sd21-v.safetensors"
    save_file(_sd2_keys(), str(v), metadata={"modelspec.prediction_type": "v"})
    assert config_folder(v, read_checkpoint(v)) == CONFIGS_DIR / "sd2"
    base_ckpt = tmp_path / "512-base-ema.ckpt"
    torch.save({"state_dict": _sd2_keys(), "global_step": 875000, "epoch": 1}, str(base_ckpt))
    assert config_folder(base_ckpt, read_checkpoint(base_ckpt)) == CONFIGS_DIR / "sd2-base"


def test_doctor_refuses_models_the_loader_refuses(tmp_path):
    """`sine doctor` (describe_model) said "SD1, ε-prediction, 32 px" for an inpainting folder."""
    folder = make_tiny_sd(tmp_path / "inpaint", in_channels=9)
    with pytest.raises(BadModel, match="inpainting model"):
        describe_model(folder)


LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 3438167536\n")


def test_files_that_are_not_weights_at_all_say_what_they_are(tiny_folder, tmp_path):
    """A Git LFS pointer (a clone without `git lfs`), a web page saved under the model's name, random
    bytes: each named, never called a pickle that "could run code" or merely "incomplete"."""
    cases = {"pointer.safetensors": (LFS_POINTER, r"Git LFS pointer.*git lfs pull"),
             "pointer.ckpt": (LFS_POINTER, r"Git LFS pointer.*git lfs pull"),
             "login.safetensors": (b"<!DOCTYPE html>\n<html><body>Sign in</body></html>", r"web page \(HTML\)"),
             "noise.ckpt": (bytes(range(7, 256)) * 20, r"not a PyTorch checkpoint")}
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(BadModel, match=rf"{name} is .*{message}"):
            load_base_model(path, device="cpu")
    folder = shutil.copytree(tiny_folder, tmp_path / "cloned")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(LFS_POINTER)
    with pytest.raises(BadModel, match=rf"{weights} is a Git LFS pointer.*git lfs pull"):
        load_base_model(folder, device="cpu")


def test_ldm_yaml_beside_any_file_says_v(tiny_folder, tmp_path):
    """The original LDM yaml beside a checkpoint (`parameterization: v`, quoted or not) makes it a
    v-prediction model whatever its family (SD 1.5 v fine-tunes ship one); without the key: ε."""
    full = write_single_file(tiny_folder, tmp_path / "sd15-v.safetensors")
    assert describe_model(full).prediction == "epsilon"
    for text in ('model:\n  params:\n    parameterization: "v"\n', "model:\n  params:\n    parameterization: v\n"):
        full.with_suffix(".yaml").write_text(text)
        assert describe_model(full).prediction == "v_prediction", text
    full.with_suffix(".yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert describe_model(full).prediction == "epsilon"
    sd2 = tmp_path / "sd2-unquoted.safetensors"
    save_file(_sd2_keys(), str(sd2))
    sd2.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: v\n")
    assert config_folder(sd2, read_checkpoint(sd2)) == CONFIGS_DIR / "sd2"


def test_a_symlinked_file_is_read_by_its_own_name(tiny_folder, tmp_path):
    """A checkpoint in the Hugging Face cache is a symlink named `….safetensors` to a blob named by its
    hash (no suffix); its .yaml / sidecar / VAE sit beside the link. Read by the link's name, not the blob's."""
    blob_dir = tmp_path / "blobs"
    blob = write_single_file(tiny_folder, blob_dir / "full.safetensors", sidecar=False).rename(blob_dir / ("e" * 64))
    snapshot = tmp_path / "snapshots" / ("c" * 40)
    write_single_file(tiny_folder, tmp_path / "configs" / "x.safetensors")  # only for its sidecar folder
    snapshot.mkdir(parents=True)
    link = snapshot / "model.safetensors"
    link.symlink_to(blob)
    shutil.copytree(tmp_path / "configs" / "x.config", snapshot / "model.config")
    assert describe_model(link).family == "SD1"
    loaded = load_base_model(link, device="cpu")
    assert _same(load_base_model(tiny_folder, device="cpu").unet, loaded.unet)


def test_vae_beside_the_checkpoint_overrides_its_baked_vae(tmp_path):
    """`NAME.vae.safetensors` beside a checkpoint that has a VAE replaces it (what painters put it
    there for: many checkpoints' baked VAEs are broken), and is part of the model's revision."""
    a = write_single_file(make_tiny_sd(tmp_path / "a", seed=1), tmp_path / "model.safetensors")
    other = make_tiny_sd(tmp_path / "b", seed=2)
    revision = load_base_model(a, device="cpu").revision
    vae_state = {k.removeprefix("first_stage_model."): v
                 for k, v in load_file(str(write_single_file(other, tmp_path / "b.safetensors", sidecar=False))).items()
                 if k.startswith("first_stage_model.")}
    save_file(vae_state, str(tmp_path / "model.vae.safetensors"))
    loaded = load_base_model(a, device="cpu")
    assert _same(load_base_model(other, device="cpu").vae, loaded.vae)
    assert loaded.revision != revision


def test_vae_beside_the_checkpoint_in_diffusers_layout(tiny_folder, tmp_path):
    """The VAE beside a checkpoint may be in diffusers' layout (`diffusion_pytorch_model.safetensors` of a
    VAE repo, renamed): loaded as well."""
    from diffusers import AutoencoderKL

    full = write_single_file(tiny_folder, tmp_path / "full.safetensors")
    bare = _rewrite(full, tmp_path / "pruned.safetensors",
                    lambda s: {k: v for k, v in s.items() if not k.startswith("first_stage_model.")})
    vae = AutoencoderKL.from_pretrained(tiny_folder / "vae")
    save_file(vae.state_dict(), str(tmp_path / "pruned.vae.safetensors"))
    assert _same(vae, load_base_model(bare, device="cpu").vae)


def test_something_else_beside_the_checkpoint_as_its_vae_is_named(tiny_folder, tmp_path):
    """`NAME.vae.safetensors` that is TAESD (a tiny preview autoencoder) or not a VAE at all: `sine doctor`
    called the model fine and the loader failed with "weights appear to be missing"; both now name it."""
    from diffusers import AutoencoderTiny

    path = write_single_file(tiny_folder, tmp_path / "model.safetensors")
    taesd = AutoencoderTiny(encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16),
                            num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1))
    for state, what in ((taesd.state_dict(), r"TAESD"), ({"emb_params": torch.zeros(2, 32)}, r"holds no VAE")):
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.vae.safetensors"))
        for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
            with pytest.raises(BadModel, match=rf"model\.vae\.safetensors, beside model\.safetensors as its VAE, .*{what}"):
                call(path)


def test_a_whole_checkpoint_with_stray_lora_keys_still_loads(tiny_folder, tmp_path):
    """A merged checkpoint that kept a few LoRA tensors beside its UNet is a model, not a LoRA."""
    full = write_single_file(tiny_folder, tmp_path / "full.safetensors")
    merged = _rewrite(full, tmp_path / "merged.safetensors",
                      lambda s: {**s, "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 32)})
    assert describe_model(merged).family == "SD1"
    assert _same(load_base_model(tiny_folder, device="cpu").unet, load_base_model(merged, device="cpu").unet)


def _scaled_fp8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ComfyUI's "scaled fp8" layout: each UNet matrix divided by its own scale_weight, stored in fp8."""
    out: dict[str, torch.Tensor] = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for key, value in state.items():
        if key.startswith("model.diffusion_model.") and key.endswith(".weight") and value.ndim >= 2:
            scale = value.abs().max() / 448
            out[key], out[key.removesuffix("weight") + "scale_weight"] = (value / scale).to(torch.float8_e4m3fn), scale
        else:
            out[key] = value
    return out


def test_quantized_checkpoints_are_refused_and_plain_fp8_loads(tiny_folder, tmp_path):
    """An int8 file loaded as integers cast to float (a UNet answering 0 everywhere) and a scaled-fp8 one
    without its scales (NaN): both silently. A plain fp8 file is a lossy but usable copy: it loads."""
    from sine.preflight import check_model

    full = write_single_file(tiny_folder, tmp_path / "full.safetensors")
    int8 = _rewrite(full, tmp_path / "model-int8.safetensors",
                    lambda s: {k: v.to(torch.int8) if k.startswith("model.diffusion_model.") else v for k, v in s.items()})
    int8_ckpt = _rewrite(int8, tmp_path / "int8.ckpt", lambda s: s)
    scaled = _rewrite(full, tmp_path / "model_fp8_scaled.safetensors", _scaled_fp8)
    for path, what in ((int8, "integers"), (int8_ckpt, "integers"), (scaled, "scaled fp8")):
        for call in (check_model, describe_model, lambda p: load_base_model(p, device="cpu")):
            if call is check_model and path.suffix == ".ckpt":
                continue  # the instant check reads safetensors headers only
            with pytest.raises(BadModel, match=rf"{path.name} is a quantized checkpoint \({what}.*fp16"):
                call(str(path))
    fp8 = _rewrite(full, tmp_path / "model_fp8_e4m3fn.safetensors",
                   lambda s: {k: v.to(torch.float8_e4m3fn) if v.ndim >= 2 else v for k, v in s.items()})
    reference, loaded = load_base_model(tiny_folder, device="cpu").unet, load_base_model(fp8, device="cpu").unet
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.to(torch.float8_e4m3fn).float() if value.ndim >= 2 else value)


def test_a_quantized_checkpoint_saved_from_a_wrapper_is_refused_too(tiny_folder, tmp_path):
    """The instant check read the int8 UNet of a `module.`-prefixed file through the wrapper; the loader's
    own check looked for plain keys in the header and let it through, to load as integers cast to float."""
    from sine.preflight import check_model

    full = write_single_file(tiny_folder, tmp_path / "full.safetensors")
    int8 = _rewrite(full, tmp_path / "ddp-int8.safetensors", lambda s: {
        "module." + k: v.to(torch.int8) if k.startswith("model.diffusion_model.") else v for k, v in s.items()})
    for call in (check_model, describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match=r"ddp-int8.safetensors is a quantized checkpoint \(integers"):
            call(str(int8))


def test_sdxl_refiner_file_is_refused_as_a_refiner(tmp_path):
    """A refiner file (one OpenCLIP text encoder at conditioner.embedders.0.model.*) too small for diffusers'
    key test was read as SD1 by `sine doctor` and failed to load with a shape error."""
    from sine.preflight import check_model

    whole = write_sdxl_single_file(make_tiny_sdxl(tmp_path / "xl"), tmp_path / "xl.safetensors")
    refiner = _rewrite(whole, tmp_path / "sd_xl_refiner.safetensors", lambda s: {
        k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v for k, v in s.items()
        if not k.startswith("conditioner.embedders.0.")}, sidecar=False)
    for call in (check_model, describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match="is an SDXL refiner.*SDXL base"):
            call(str(refiner))


def test_checkpoints_saved_from_a_wrapper_load(tiny_folder, tmp_path):
    """Whole checkpoints whose tensors sit under a training wrapper's name (DDP's `module.`, a
    Lightning `state_dict.` flattened into the keys, `{"model": ...}`) were refused as "not a Stable
    Diffusion checkpoint"; they are one, and load as the plain file does."""
    from sine.preflight import check_model

    full = write_single_file(tiny_folder, tmp_path / "full.safetensors")
    reference = load_base_model(tiny_folder, device="cpu")
    files = [_rewrite(full, tmp_path / f"{name}.safetensors", lambda s, p=prefix: {p + k: v for k, v in s.items()})
             for name, prefix in (("ddp", "module."), ("flat", "state_dict."), ("twice", "model."))]
    nested = tmp_path / "nested.ckpt"
    torch.save({"model": load_file(str(full)), "optimizer": {}}, str(nested))
    shutil.copytree(full.with_suffix(".config"), nested.with_suffix(".config"))
    files.append(nested)
    for path in files:
        check_model(str(path))
        assert describe_model(path).family == "SD1", path.name
        loaded = load_base_model(path, device="cpu")
        assert _same(reference.unet, loaded.unet) and _same(reference.vae, loaded.vae), path.name
        assert torch.equal(reference.encode_prompts(["a red disc"]), loaded.encode_prompts(["a red disc"])), path.name
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(
        ["full.safetensors", "ddp.safetensors", "flat.safetensors", "twice.safetensors", "nested.ckpt"])


def test_unclip_file_is_refused_by_name(tmp_path):
    """Stable unCLIP files (SD 2.1 conditioned on a picture's CLIP image embedding: a `label_emb` in
    the UNet, `noise_augmentor.*` / `embedder.*` beside it) loaded as plain SD 2.x, the image
    conditioning silently dropped."""
    from sine.preflight import check_model

    folder = make_tiny_sd(tmp_path / "sd")
    full = write_single_file(folder, tmp_path / "full.safetensors")
    unclip = _rewrite(full, tmp_path / "sd21-unclip-h.safetensors", lambda s: {
        **s, "model.diffusion_model.label_emb.0.0.weight": torch.zeros(8, 4),
        "noise_augmentor.betas": torch.zeros(10), "embedder.model.visual.proj": torch.zeros(4, 4)})
    for call in (check_model, describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match="is a Stable unCLIP model.*whole text-to-image model"):
            call(str(unclip))


def test_sd2_file_name_tells_512_base_from_768_v(tmp_path):
    """Stability's own SD 2.x files carry no metadata: v2-1_512-ema-pruned.safetensors (2.1-base, ε)
    and SD-Turbo were taken as 768 v-prediction. Their names say it; the guess is still reported."""
    from sine.checkpoints import prediction_guessed

    for name, configs in (("v2-1_512-ema-pruned.safetensors", "sd2-base"), ("sd_turbo.safetensors", "sd2-base"),
                          ("v2-1_768-ema-pruned.safetensors", "sd2"), ("my-sd2-mix.safetensors", "sd2")):
        path = tmp_path / name
        save_file(_sd2_keys(), str(path))
        assert config_folder(path, read_checkpoint(path)) == CONFIGS_DIR / configs, name
        guess = prediction_guessed(path, read_checkpoint(path))
        assert guess is not None and ("512 ε" if configs == "sd2-base" else "768 v") in guess, (name, guess)


def test_file_of_another_size_without_configs_is_refused_in_words(tiny_folder, tmp_path):
    """A single file of a non-published size with no `<name>.config/` beside it: `sine doctor` called it
    "SD1, 512 px" and the loader failed with diffusers' advice to pass `ignore_mismatched_sizes`."""
    from sine.tiny_models import make_tiny_sd2

    path = write_single_file(tiny_folder, tmp_path / "small.safetensors", sidecar=False)
    for call in (describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match=r"small\.safetensors has a UNet of width 32 where Stable Diffusion 1\.x "
                                           r"has 320.*small\.config/"):
            call(path)
    xl = write_sdxl_single_file(make_tiny_sdxl(tmp_path / "xl"), tmp_path / "xl.safetensors")
    sd2 = write_single_file(make_tiny_sd2(tmp_path / "sd2", v_prediction=True), tmp_path / "sd2.safetensors",
                            sidecar=False)
    for file, family in ((xl, "XL"), (sd2, "2.x")):  # too small for diffusers' key test: told by their layouts
        bare = shutil.copy(file, tmp_path / f"bare-{file.name}")
        with pytest.raises(BadModel, match=rf"has a UNet of width 32 where Stable Diffusion {family} has 320"):
            describe_model(bare)


@pytest.mark.parametrize("part,damage", [("unet/config.json", "delete"), ("unet/config.json", "{bad"),
                                         ("scheduler/scheduler_config.json", "delete"),
                                         ("tokenizer/tokenizer_config.json", "no tokenizer/")])
def test_broken_config_folder_beside_a_file_names_the_file(tiny_folder, tmp_path, part, damage):
    """A `NAME.config/` folder missing a config or holding broken JSON failed with a bare
    FileNotFoundError / JSONDecodeError / OSError (doctor and loader; doctor reads no tokenizer)."""
    from sine.errors import ModelMissing

    path = write_single_file(tiny_folder, tmp_path / "m.safetensors")
    config = tmp_path / "m.config" / part
    if damage == "no tokenizer/":
        shutil.rmtree(config.parent)
    else:
        config.unlink() if damage == "delete" else config.write_text(damage)
    calls = [describe_model] if damage != "no tokenizer/" else []
    for call in (*calls, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises((ModelMissing, BadModel), match=rf"m\.config/{part}"):
            call(path)


def test_checkpoint_without_vae_names_the_vae_of_its_family_and_where_to_get_it(tiny_folder, tmp_path):
    """'Put the VAE meant for it next to it' left a painter offline guessing which one: SD 1.x/2.x
    files are told Stability's ft-MSE VAE, SDXL files SDXL's own, each with its repository and file."""
    sd = write_single_file(tiny_folder, tmp_path / "sd" / "full.safetensors")
    (tmp_path / "xl").mkdir()
    xl = write_sdxl_single_file(make_tiny_sdxl(tmp_path / "xl-folder"), tmp_path / "xl" / "full.safetensors")
    expected = {sd: r"stabilityai/sd-vae-ft-mse-original.*vae-ft-mse-840000-ema-pruned\.safetensors",
                xl: r"stabilityai/sdxl-vae.*sdxl_vae\.safetensors"}
    for full, words in expected.items():
        bare = _rewrite(full, full.with_name("pruned.safetensors"),
                        lambda s: {k: v for k, v in s.items() if not k.startswith("first_stage_model.")})
        for call in (describe_model, lambda p: load_base_model(p, device="cpu")):
            with pytest.raises(BadModel, match=rf"has no VAE baked in.*{words}.*pruned\.vae\.safetensors"):
                call(bare)


def _pickle_with_classes(path, state, classes: dict[str, str]):
    """torch.save of `state` whose "callbacks" are keyed by classes of the given modules (as PyTorch
    Lightning 1.x keyed its callbacks' states by the callback class: SD 1.x's own .ckpt files), saved
    from stand-in modules that are gone when the file is read."""
    import sys
    import types

    made = []
    for module, name in classes.items():
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            made.append(".".join(parts[:i]))
            sys.modules.setdefault(made[-1], types.ModuleType(made[-1]))
        cls = type(name, (), {"__module__": module})
        setattr(sys.modules[module], name, cls)
        state.setdefault("callbacks", {})[cls] = {"best_model_score": torch.tensor(0.25), "monitor": "val/loss"}
    try:
        torch.save(state, str(path))
    finally:
        for name in made:
            sys.modules.pop(name, None)
    return path


def test_lightning_checkpoint_with_callback_classes_loads_and_other_classes_are_refused(tiny_folder, tmp_path):
    """SD 1.x's original .ckpt files (PyTorch Lightning 1.x) name `pytorch_lightning…ModelCheckpoint`
    as a callback's key: weights-only loading refused them ("holds Python objects besides tensors"),
    the official checkpoints included. Lightning's classes are read as empty stand-ins (nothing of
    theirs runs); any other class is still refused."""
    full = write_single_file(tiny_folder, tmp_path / "plain.safetensors")
    state = {"state_dict": dict(load_file(str(full))), "global_step": 470000, "epoch": 5}
    ckpt = _pickle_with_classes(tmp_path / "sd-v1-4.ckpt", dict(state),
                                {"pytorch_lightning.callbacks.model_checkpoint": "ModelCheckpoint"})
    shutil.copytree(full.with_suffix(".config"), ckpt.with_suffix(".config"))
    assert _same(load_base_model(ckpt, device="cpu").unet, load_base_model(full, device="cpu").unet)
    other = _pickle_with_classes(tmp_path / "other.ckpt", dict(state), {"some_trainer.callbacks": "Saver"})
    with pytest.raises(BadModel, match=r"other\.ckpt holds Python objects besides tensors \(some_trainer\.callbacks\.Saver\)"):
        describe_model(other)
