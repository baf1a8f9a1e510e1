"""What a diffusers model folder's configs say, checked before any weight loads (standard library only).

`sine edit`'s instant check (preflight) and the loader (models) both call these, so a folder SINE cannot
edit with (an SDXL refiner, another pipeline's UNet, an EDM schedule, a missing VAE) is named in the same
words, in a second, before torch is imported.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import BadModel, ModelMissing
from .model_kind import check_usable

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def read_json(path: Path) -> dict:
    """A model's JSON config, or an error naming the file: missing (incomplete download), or not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelMissing(f"{path} is missing: the download is incomplete") from None
    except ValueError as exc:
        raise BadModel(f"{path} is not valid JSON ({exc}): download the model again") from None


def check_pipeline_kind(folder: Path) -> None:
    """Refuse, by name, diffusers folders of pipelines SINE cannot edit with: those without a UNet
    (SD3, Flux, PixArt…) and SDXL's refiner (no first text encoder, conditioned on an aesthetic score,
    it only refines SDXL base pictures). A folder without model_index.json is left to the component checks."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        return
    index = read_json(index_path)
    name = str(index.get("_class_name", "an unknown pipeline"))
    if _takes_aesthetic_score(folder) or ((folder / "text_encoder_2").is_dir() and not (folder / "text_encoder").is_dir()):
        raise BadModel(f"{folder} is an SDXL refiner ({name}): it has no first text encoder and only refines "
                       "pictures made by SDXL base; use the SDXL base model (or one of its fine-tunes) instead")
    if not (folder / "unet").is_dir() and "unet" not in index:
        raise BadModel(f"{folder} is a {name} model, which has no UNet; SINE edits with Stable Diffusion 1.x, 2.x "
                       "or XL text-to-image models (a diffusers folder with unet/, or a single .safetensors file)")
    if (lacks := _not_sd_parts(index)) is not None:
        raise BadModel(f"{folder} is a {name} model ({lacks}), not Stable Diffusion; SINE edits with Stable Diffusion "
                       "1.x, 2.x or XL text-to-image models (a diffusers folder, or a single .safetensors file)")


def _takes_aesthetic_score(folder: Path) -> bool:
    """Whether the folder's UNet is an SDXL refiner's: its added conditioning takes 5 time ids (the
    aesthetic score in place of the target size), a base's 6. model_index.json's
    `requires_aesthetics_score` is an img2img pipeline's flag, saved with base models too."""
    unet_path, encoder_path = folder / "unet" / "config.json", folder / "text_encoder_2" / "config.json"
    if not (unet_path.is_file() and encoder_path.is_file()):
        return False
    unet, pooled = read_json(unet_path), read_json(encoder_path).get("projection_dim")
    added, time_dim = unet.get("projection_class_embeddings_input_dim"), unet.get("addition_time_embed_dim")
    return unet.get("addition_embed_type") == "text_time" and all(
        isinstance(n, int) for n in (added, time_dim, pooled)) and added == pooled + 5 * time_dim


def _not_sd_parts(index: dict) -> str | None:
    """What a model_index.json with a UNet lists where Stable Diffusion has its 2-D conditional UNet, VAE
    and CLIP text encoder (video UNets, Kandinsky's MoVQ, DeepFloyd IF's pixel-space UNet and T5, Kolors'
    ChatGLM), in words; None: SD's parts."""
    parts = {k: v for k, v in index.items() if isinstance(v, list) and len(v) == 2 and v[1] is not None}
    if "unet" not in parts:
        return None
    if (unet := str(parts["unet"][1])) != "UNet2DConditionModel":
        return f"its UNet is a {unet}"
    if "vae" not in parts:
        return "no VAE: " + ("it decodes with a MoVQ" if "movq" in parts else "its UNet draws pixels")
    if "text_encoder" not in parts:
        return "no text encoder"
    if not (encoder := str(parts["text_encoder"][1])).startswith("CLIPText"):
        return f"text encoder: {encoder}, not CLIP"
    return None


def check_folder_configs(folder: Path) -> tuple[dict, dict]:
    """The loader's checks of a folder with unet/ that need its configs alone: the VAE is there, each
    component is, the model is one SINE can edit with, its text encoders fit its UNet. Returns the
    UNet's and the scheduler's configs."""
    check_vae_folder(folder)
    for name in COMPONENTS:
        if not (folder / name).is_dir():
            raise ModelMissing(f"{folder} lacks the {name}/ component of a Stable Diffusion folder")
    unet_config = read_json(folder / "unet" / "config.json")
    scheduler_config = read_json(folder / "scheduler" / "scheduler_config.json")
    check_usable(unet_config, scheduler_config, str(folder), read_json(folder / "vae" / "config.json"))
    check_text_parts(folder, unet_config)
    return unet_config, scheduler_config


_FAMILY_VAE_REPOS = {False: ("Stable Diffusion 1.x/2.x", "stabilityai/sd-vae-ft-mse"), True: ("SDXL", "stabilityai/sdxl-vae")}


def check_vae_folder(folder: Path) -> None:
    """A model folder shipped without vae/ (UNet-only fine-tune repositories) is told its family's
    published VAE (diffusers layout) and the command that puts it in place."""
    if (folder / "vae").is_dir() or not (folder / "unet" / "config.json").is_file():
        return
    xl = read_json(folder / "unet" / "config.json").get("addition_embed_type") == "text_time"
    family, repo = _FAMILY_VAE_REPOS[xl]
    raise ModelMissing(f"{folder} has no vae/ (shipped without its VAE): download {family}'s VAE into it once while "
                       f"online, `hf download {repo} --local-dir {folder / 'vae'}`, or pass a version of the model "
                       "with its VAE")


def check_text_parts(folder: Path, unet_config: dict) -> None:
    """An SDXL UNet (text_time conditioning) needs the second text encoder and tokenizer beside it, and
    the text encoders' states (side by side for SDXL) must be as wide as the UNet's cross-attention
    takes (a text encoder from another kind of model fails inside the UNet)."""
    xl = unet_config.get("addition_embed_type") == "text_time"
    for name in ("text_encoder_2", "tokenizer_2") if xl else ():
        if not (folder / name).is_dir():
            raise ModelMissing(f"{folder} lacks the {name}/ component of an SDXL folder (its UNet takes the second "
                               "text encoder's pooled embedding): the download is incomplete; download the model again")
    takes = unet_config.get("cross_attention_dim")
    encoders = ("text_encoder", "text_encoder_2") if xl else ("text_encoder",)
    widths = [read_json(folder / name / "config.json").get("hidden_size") for name in encoders]
    if isinstance(takes, int) and all(isinstance(w, int) for w in widths) and sum(widths) != takes:
        raise BadModel(f"{folder}: its text encoder gives {sum(widths)}-wide states but its UNet takes {takes} (a text "
                       "encoder from another kind of model in text_encoder/); put back the one this model was released "
                       "with")
    if xl:
        pooled = read_json(folder / "text_encoder_2" / "config.json").get("projection_dim")
        added = unet_config.get("projection_class_embeddings_input_dim")
        time_dim = unet_config.get("addition_time_embed_dim")
        if all(isinstance(n, int) for n in (pooled, added, time_dim)) and pooled != added - 6 * time_dim:
            raise BadModel(f"{folder}: its text_encoder_2 gives a {pooled}-wide pooled embedding but its UNet takes "
                           f"{added - 6 * time_dim} (a text encoder from another kind of model); put back the one this "
                           "model was released with")
