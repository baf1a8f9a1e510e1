"""Whole models in one file under key layouts diffusers' single-file loader does not read: only the
EMA copy of the UNet (`model_ema.*`, LDM's dot-less names), or diffusers' own component names
(`unet.*`, `vae.*`, `text_encoder.*`). They were "not a Stable Diffusion checkpoint"; now named,
with what to pass instead, by `sine edit`'s instant check, doctor and the loader."""

from __future__ import annotations

import pytest
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel

from sine.errors import BadModel, ModelMissing
from sine.models import describe_model, load_base_model
from sine.preflight import check_model
from sine.tiny_models import write_single_file

_CALLS = (check_model, describe_model, lambda p: load_base_model(p, device="cpu"))


def _every_entry_point_names(path, words: str) -> None:
    """sine edit's instant check, doctor and the loader all refuse `path` with `words`."""
    for call in _CALLS:
        with pytest.raises(BadModel, match=words):
            call(str(path))


def test_a_file_with_only_the_ema_unet_is_named(tiny_folder, tmp_path):
    state = load_file(str(write_single_file(tiny_folder, tmp_path / "full.safetensors", sidecar=False)))
    unet = "model.diffusion_model."
    ema = {("model_ema." + k[len(unet):].replace(".", "")) if k.startswith(unet) else k: v for k, v in state.items()}
    path = tmp_path / "ema.safetensors"
    save_file(ema, str(path))
    _every_entry_point_names(path, "only the EMA copy of its UNet.*use the file's pruned or EMA-only version")


def test_a_whole_model_in_diffusers_key_names_is_named(tiny_folder, tmp_path):
    state = {}
    for sub, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("text_encoder", CLIPTextModel)):
        state.update({f"{sub}.{k}": v.contiguous() for k, v in cls.from_pretrained(tiny_folder / sub).state_dict().items()})
    path = tmp_path / "diffusers-keys.safetensors"
    save_file(state, str(path))
    _every_entry_point_names(path, "diffusers' key names in one file.*diffusers folder")


def test_a_checkpoint_named_for_another_format_says_the_name_to_give_it(tiny_folder, tmp_path):
    """A pickled checkpoint renamed .safetensors, a .safetensors renamed .ckpt: both were 'download it
    again' (the file is whole, its name is wrong); ComfyUI's .sft suffix was 'neither a folder nor a
    checkpoint file'. Each now says what to rename it to."""
    import shutil

    import torch

    full = write_single_file(tiny_folder, tmp_path / "full.safetensors")
    pickled = tmp_path / "pickled.safetensors"
    torch.save(load_file(str(full)), str(pickled))
    renamed = shutil.copy(full, tmp_path / "renamed.ckpt")
    short = shutil.copy(full, tmp_path / "short.sft")
    for path, words in ((pickled, "pickled PyTorch checkpoint .*named .safetensors: rename it to pickled.ckpt"),
                        (renamed, "a .safetensors file named .ckpt: rename it to renamed.safetensors"),
                        (short, "short suffix .sft: rename it to NAME.safetensors")):
        shutil.copytree(full.with_suffix(".config"), path.with_suffix(".config"))
        for call in _CALLS:
            with pytest.raises((BadModel, ModelMissing), match=words):
                call(str(path))


def test_sdxl_file_with_its_first_text_encoder_under_old_clip_names_loads(tmp_path):
    """An SDXL file whose CLIP-L encoder has no `text_model.` level (`conditioner.embedders.0.transformer.
    embeddings…`, as tools on transformers ≥ 5.6 save it): doctor called it fine and the loader failed
    with diffusers' 'does not seem to contain a valid CLIP model'. It loads, the encoder as the folder's."""
    import shutil

    import torch

    from sine.tiny_models import make_tiny_sdxl, write_sdxl_single_file

    folder = make_tiny_sdxl(tmp_path / "xl")
    full = write_sdxl_single_file(folder, tmp_path / "xl.safetensors")
    level = "conditioner.embedders.0.transformer.text_model."
    old = {k.replace(level, "conditioner.embedders.0.transformer.") if k.startswith(level) else k: v
           for k, v in load_file(str(full)).items()}
    path = tmp_path / "xl-old-clip.safetensors"
    save_file(old, str(path))
    shutil.copytree(full.with_suffix(".config"), path.with_suffix(".config"))
    loaded, reference = load_base_model(path, device="cpu"), load_base_model(folder, device="cpu")
    ids = torch.tensor([[512, 40, 41, 513]])
    with torch.no_grad():
        assert torch.equal(loaded.text_encoder(ids)[0], reference.text_encoder(ids)[0])
    assert loaded.is_xl and describe_model(path) == loaded.kind


def test_a_unet_alone_in_the_original_layout_is_named(tiny_folder, tmp_path):
    """A UNet saved alone with LDM's names and no model.diffusion_model. prefix (how ComfyUI's 'diffusion_models'
    files come) was 'not a Stable Diffusion checkpoint ... its keys start with input_blocks, middle_block': it is a
    UNet without its text encoder and VAE, and the message now says so."""
    state = load_file(str(write_single_file(tiny_folder, tmp_path / "full.safetensors", sidecar=False)))
    unet = "model.diffusion_model."
    path = tmp_path / "unet-only.safetensors"
    save_file({k[len(unet):]: v for k, v in state.items() if k.startswith(unet)}, str(path))
    _every_entry_point_names(path, "a UNet alone .*without its text encoder and VAE")


def test_a_cut_short_safetensors_is_named_by_the_instant_check(tiny_folder, tmp_path):
    """A .safetensors cut short (a download or copy interrupted: half the bytes, a few bytes of its
    header, nothing at all) passed `sine edit`'s instant check and the installer's file check (its header
    is whole, or unread), and was named only by the load; each entry point now says it is cut short."""
    data = write_single_file(tiny_folder, tmp_path / "full.safetensors", sidecar=False).read_bytes()
    for name, size, words in (("half", len(data) // 2, f"is cut short: {len(data) // 2} bytes of {len(data)}"),
                              ("header", 20, "is cut short: 20 bytes, inside its header"),
                              ("empty", 0, "is empty \\(0 bytes\\)")):
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data[:size])
        _every_entry_point_names(path, words + ".*download it again")
    check_model(str(tmp_path / "full.safetensors"))  # the whole file passes


def test_a_file_with_both_the_ema_and_the_training_unet_says_which_is_used(tiny_folder, tmp_path, caplog):
    """An unpruned checkpoint (SD 1.5's `v1-5-pruned.ckpt`) holds the training UNet and its EMA copy
    (`model_ema.*`): the training one was loaded without a word, so a painter who expected the EMA
    weights could not tell. Doctor's model line and the load's log now say which is used; a pruned
    file keeping only `model_ema.decay` / `num_updates` says nothing."""
    import logging
    import shutil

    import torch

    from sine.models import model_report

    plain = write_single_file(tiny_folder, tmp_path / "plain.safetensors")
    state = load_file(str(plain))
    unet = "model.diffusion_model."
    both = dict(state)
    both.update({"model_ema." + k[len("model."):].replace(".", ""): v + 1  # LitEma's names: model_ema.diffusion_modelinput_blocks00weight
                 for k, v in state.items() if k.startswith(unet)})
    both.update({"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(10)})
    pruned = {**state, "model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(10)}
    for name, tensors in (("both.safetensors", both), ("pruned.safetensors", pruned)):
        save_file(tensors, str(tmp_path / name))
        shutil.copytree(plain.with_suffix(".config"), (tmp_path / name).with_suffix(".config"))
    _, notes = model_report(tmp_path / "both.safetensors")
    assert len(notes) == 1 and "both its training UNet weights and their EMA copy" in notes[0], notes
    assert "the training weights (model.diffusion_model.*) are used" in notes[0], notes
    assert model_report(tmp_path / "pruned.safetensors")[1] == []
    with caplog.at_level(logging.WARNING, logger="sine"):
        loaded = load_base_model(tmp_path / "both.safetensors", device="cpu")
    assert "EMA copy" in caplog.text
    reference = load_base_model(plain, device="cpu")
    assert torch.equal(loaded.unet.conv_in.weight, reference.unet.conv_in.weight)  # what the note says
