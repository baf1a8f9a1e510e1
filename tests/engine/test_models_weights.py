"""Component weights saved the ways model folders circulate: sharded with an index json (fp16
variant shards, as `save_pretrained(variant="fp16")` and the hub's fp16 downloads name them), an index
with a shard missing or naming a file outside its folder, and VAEs that are not an AutoencoderKL
(TAESD's AutoencoderTiny). Tiny models saved and loaded with the libraries' own `save_pretrained` /
`from_pretrained`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import UNet2DConditionModel

from sine.errors import BadModel, ModelMissing
from sine.models import describe_model, load_base_model


def _shard_unet(folder, dtype=torch.float32, **save):
    """The folder's UNet saved again (in `dtype`) in ~20 shards with an index json."""
    unet = UNet2DConditionModel.from_pretrained(folder / "unet").to(dtype)
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(folder / "unet", max_shard_size="100KB", **save)
    return unet


def test_fp16_sharded_unet_loads(tiny_folder, tmp_path):
    """Only `diffusion_pytorch_model.fp16-0000N-of-0000M.safetensors` and their
    `diffusion_pytorch_model.safetensors.index.fp16.json`: a complete fp16 download, not an incomplete one."""
    folder = shutil.copytree(tiny_folder, tmp_path / "fp16-sharded")
    unet = _shard_unet(folder, torch.float16, variant="fp16")
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors.index.fp16.json").is_file()
    loaded = load_base_model(folder, device="cpu")
    expected = unet.state_dict()
    assert all(torch.equal(expected[k].float(), v) for k, v in loaded.unet.state_dict().items())


def test_index_naming_a_missing_or_outside_shard_is_named(tiny_folder, tmp_path):
    """A shard the index lists is missing: named, as an incomplete download. An index naming a file
    outside its folder (`../x`): refused as such, never read."""
    folder = shutil.copytree(tiny_folder, tmp_path / "missing-shard")
    _shard_unet(folder)
    shards = sorted((folder / "unet").glob("*-of-*.safetensors"))
    shards[1].unlink()
    with pytest.raises(BadModel, match=rf"lacks {shards[1].name}, one of the \d+ shards .*index.*incomplete"):
        load_base_model(folder, device="cpu")

    folder = shutil.copytree(tiny_folder, tmp_path / "outside")
    _shard_unet(folder)
    index = folder / "unet" / "diffusion_pytorch_model.safetensors.index.json"
    content = json.loads(index.read_text())
    first = sorted((folder / "unet").glob("*-of-*.safetensors"))[0]
    shutil.move(first, tmp_path / first.name)
    content["weight_map"] = {k: f"../../{v}" if v == first.name else v for k, v in content["weight_map"].items()}
    index.write_text(json.dumps(content))
    with pytest.raises(BadModel, match=r"index\.json names a file outside its folder \('\.\./\.\./.*'\) as a shard.*download the model again"):
        load_base_model(folder, device="cpu")


def test_tiny_autoencoder_as_the_vae_is_refused_in_words(tiny_folder, tmp_path):
    """TAESD (AutoencoderTiny) in vae/: a preview decoder, not the VAE the model's latents were trained
    with; `sine doctor` and the loader say so (it failed as a broken download, or told a wrong size)."""
    from diffusers import AutoencoderTiny

    folder = shutil.copytree(tiny_folder, tmp_path / "taesd")
    shutil.rmtree(folder / "vae")
    AutoencoderTiny(encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16),
                    num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1)).save_pretrained(folder / "vae")
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match=r"vae/ holds an AutoencoderTiny .*TAESD.*put back the AutoencoderKL"):
            call(folder)


def test_doctor_names_a_component_without_weights(tiny_folder, tmp_path):
    """A hub snapshot whose UNet blob is still a `.incomplete` download (its link dangles): `sine doctor`
    said the model was fine from its configs; now it names the component, as the loader does."""
    folder = shutil.copytree(tiny_folder, tmp_path / "snapshot", symlinks=True)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    blob = tmp_path / "blobs" / "0123abcd"
    blob.parent.mkdir()
    weights.rename(blob.with_name(blob.name + ".incomplete"))
    weights.symlink_to(blob)
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(ModelMissing, match=r"unet holds no weights file .*the download is incomplete"):
            call(folder)


def test_a_folder_of_linked_components_is_told_apart_by_their_content(tiny_folder, tmp_path):
    """Painters share a VAE (or every component) between model folders through folder links. The
    revision (the cache key of fine-tuned weights) did not read inside linked folders: two models
    whose vae/ links to different VAEs, or whose components are all links, had the same one, and one's
    cached fine-tune was reused for the other. Now it reads them, and a farm of links to a model is
    that model."""
    import os

    from sine.checkpoints import content_fingerprint
    from sine.tiny_models import make_tiny_sd

    other = make_tiny_sd(tmp_path / "other", seed=3)
    farms = []
    for name, target in (("farm-a", tiny_folder), ("farm-b", other)):
        farm = tmp_path / name
        farm.mkdir()
        for part in os.listdir(target):
            (farm / part).symlink_to(target / part)
        farms.append(farm)
    assert content_fingerprint(farms[0]) == content_fingerprint(tiny_folder)
    assert content_fingerprint(farms[0]) != content_fingerprint(farms[1])
    shared = []
    for name, vae in (("vae-a", tiny_folder / "vae"), ("vae-b", other / "vae")):
        folder = shutil.copytree(tiny_folder, tmp_path / name, ignore=shutil.ignore_patterns("vae"))
        (folder / "vae").symlink_to(vae)
        shared.append(content_fingerprint(folder))
    assert shared[0] == content_fingerprint(tiny_folder) != shared[1]
    assert load_base_model(farms[1], device="cpu").revision == content_fingerprint(other)


def test_vae_of_other_than_rgb_pictures_is_refused_in_words(tiny_folder, tmp_path):
    """LDM3D's VAE draws RGB + depth (4 channels): it loaded and failed inside the first encode with a
    convolution shape error; now `sine doctor` and the loader say what it is."""
    from diffusers import AutoencoderKL

    folder = shutil.copytree(tiny_folder, tmp_path / "ldm3d")
    shutil.rmtree(folder / "vae")
    AutoencoderKL(in_channels=4, out_channels=4, down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 32), layers_per_block=1,
                  norm_num_groups=16).save_pretrained(folder / "vae")
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match=r"VAE encodes 4-channel pictures \(RGB \+ depth: LDM3D\).*RGB"):
            call(folder)


def test_legacy_fp16_shard_names_and_a_stale_text_encoder_index(tiny_folder, tmp_path):
    """Older diffusers named fp16 shards `diffusion_pytorch_model-00001-of-00002.fp16.safetensors` with a
    `diffusion_pytorch_model.safetensors.fp16.index.json` (still read, deprecated); transformers reads a
    text encoder's single `model.safetensors` before any index beside it, so a stale index there is no
    reason to refuse."""
    import re

    folder = shutil.copytree(tiny_folder, tmp_path / "legacy")
    unet = _shard_unet(folder, torch.float16, variant="fp16")
    index = folder / "unet" / "diffusion_pytorch_model.safetensors.index.fp16.json"
    content = json.loads(index.read_text())
    legacy = {}
    for shard in sorted(set(content["weight_map"].values())):
        legacy[shard] = re.sub(r"\.fp16(-\d{5}-of-\d{5})\.safetensors$", r"\1.fp16.safetensors", shard)
        (folder / "unet" / shard).rename(folder / "unet" / legacy[shard])
    content["weight_map"] = {k: legacy[v] for k, v in content["weight_map"].items()}
    index.unlink()
    (folder / "unet" / "diffusion_pytorch_model.safetensors.fp16.index.json").write_text(json.dumps(content))
    (folder / "text_encoder" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "model-00001-of-00002.safetensors"}}))
    loaded = load_base_model(folder, device="cpu")
    assert all(torch.equal(unet.state_dict()[k].float(), v) for k, v in loaded.unet.state_dict().items())


def test_a_vae_of_the_other_family_is_a_doctor_warning(tiny_folder, tmp_path, caplog):
    """SDXL's VAE in an SD 1.x folder (or SD 1.x's in an SDXL one) has the same shape and loads, but
    its latents are not the ones the UNet was trained on: its scaling factor tells (0.13025 / 0.18215).
    `sine doctor` warns and the loader logs it; the model still loads."""
    import logging

    from sine.models import model_report
    from sine.tiny_models import make_tiny_sdxl

    for name, source, scale, family in (("sd1", tiny_folder, 0.13025, "SDXL"),
                                        ("sdxl", make_tiny_sdxl(tmp_path / "xl"), 0.18215, "SD 1.x/2.x")):
        folder = shutil.copytree(source, tmp_path / f"{name}-other-vae")
        path = folder / "vae" / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "scaling_factor": scale}))
        notes = model_report(folder)[1]
        assert len(notes) == 1 and f"VAE looks like {family}'s" in notes[0], notes
        assert model_report(source)[1] == []
        with caplog.at_level(logging.WARNING, logger="sine.models"):
            load_base_model(folder, device="cpu")
        assert f"VAE looks like {family}'s" in caplog.text


def test_sharded_pickled_unet_loads(tiny_folder, tmp_path):
    """Older folders saved sharded `.bin` weights (`diffusion_pytorch_model.bin.index.json`): called
    an incomplete download; they load (weights-only, as every `.bin`)."""
    folder = shutil.copytree(tiny_folder, tmp_path / "bin-sharded")
    unet = _shard_unet(folder, safe_serialization=False)
    assert (folder / "unet" / "diffusion_pytorch_model.bin.index.json").is_file()
    loaded = load_base_model(folder, device="cpu")
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in loaded.unet.state_dict().items())


def test_component_weights_under_the_other_librarys_name_load(tiny_folder, tmp_path):
    """A UNet/VAE saved as `model.safetensors` (transformers' name) or a text encoder as
    `diffusion_pytorch_model.safetensors` (diffusers'), as some conversion scripts write them: doctor
    called the folder fine and the loader said 'the download may be incomplete: download it again'.
    They load, read through links under the expected names (nothing written beside the model)."""
    folder = shutil.copytree(tiny_folder, tmp_path / "renamed")
    for sub, old, new in (("unet", "diffusion_pytorch_model", "model"), ("vae", "diffusion_pytorch_model", "model"),
                          ("text_encoder", "model", "diffusion_pytorch_model")):
        (folder / sub / f"{old}.safetensors").rename(folder / sub / f"{new}.safetensors")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    loaded, reference = load_base_model(folder, device="cpu"), load_base_model(tiny_folder, device="cpu")
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(loaded, name).state_dict(), getattr(reference, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def _vae_scaled(folder, factor: float, dtype=torch.float16):
    """The folder's VAE saved again in `dtype` with its first convolutions `factor` times larger:
    finite weights whose activations overflow fp16 (as some fine-tuned VAEs' do), fine in fp32."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder / "vae")
    with torch.no_grad():
        vae.encoder.conv_in.weight.mul_(factor)
        vae.decoder.conv_in.weight.mul_(factor)
    shutil.rmtree(folder / "vae")
    vae.to(dtype).save_pretrained(folder / "vae")
    return vae


def test_a_vae_that_overflows_in_half_precision_runs_in_fp32_instead(tiny_folder, tmp_path):
    """In fp16 such a VAE decoded to NaN (a black result after minutes of fine-tuning); it is run in
    fp32 from then on, as diffusers' `force_upcast` and A1111's NaN check do, giving fp32's pixels."""
    folder = shutil.copytree(tiny_folder, tmp_path / "overflowing-vae")
    _vae_scaled(folder, 3e4)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    pixels = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    reference = load_base_model(folder, device="cpu", dtype=torch.float32)
    half = load_base_model(folder, device="cpu", dtype=torch.float16)
    decoded = half.decode_latents(latents)
    assert torch.isfinite(decoded).all()
    assert torch.allclose(decoded, reference.decode_latents(latents), atol=2e-2)
    assert torch.isfinite(half.encode_image(pixels)).all()


def test_weights_that_are_not_finite_are_refused_naming_the_component(tiny_folder, tmp_path):
    """A VAE (or UNet, text encoder) holding inf/NaN weights (a broken merge or conversion) loaded and
    turned every edit black or grey; the load is refused, naming the component and what to do."""
    folder = shutil.copytree(tiny_folder, tmp_path / "broken-vae")
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder / "vae")
    with torch.no_grad():
        vae.decoder.conv_in.weight[0, 0, 0, 0] = float("inf")
    vae.save_pretrained(folder / "vae")
    with pytest.raises(BadModel, match=r"VAE holds non-finite weights \(inf or NaN.*decoder\.conv_in\.weight.*working VAE in its vae/"):
        load_base_model(folder, device="cpu")


@pytest.mark.parametrize("variant", ["bf16", "ema", "non_ema"])
def test_folders_of_other_variants_than_fp16_load(tiny_folder, tmp_path, variant):
    """Components saved only as another variant (`save_pretrained(variant="bf16")`, a training repo's
    `….ema.safetensors` / `….non_ema.safetensors`) were "holds no weights file: the download is
    incomplete"; they load (the text encoder as fp16 beside them, a sharded UNet too)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    from sine.hub import select_files

    folder = shutil.copytree(tiny_folder, tmp_path / f"only-{variant}")
    saved = {}
    for sub, cls, how in (("unet", UNet2DConditionModel, dict(variant=variant, max_shard_size="100KB")),
                          ("vae", AutoencoderKL, dict(variant=variant)), ("text_encoder", CLIPTextModel, dict(variant="fp16"))):
        model = cls.from_pretrained(tiny_folder / sub)
        shutil.rmtree(folder / sub)
        model.save_pretrained(folder / sub, **how)
        saved[sub] = model
    assert not any(p.name.startswith("diffusion_pytorch_model.safetensors") for p in (folder / "vae").iterdir())
    assert describe_model(folder) == describe_model(tiny_folder)
    base = load_base_model(folder, device="cpu")
    for sub, model in saved.items():
        mine = getattr(base, sub).state_dict()
        assert all(torch.equal(mine[k], v) for k, v in model.state_dict().items() if k in mine), sub
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert {f.split("/")[0] for f in select_files(files) if "safetensors" in f} == {"unet", "vae", "text_encoder"}
