"""What a model file holds, told from its safetensors header or its first bytes, without torch (so
`sine edit` refuses a LoRA or a Git LFS pointer in a second, before any model loads; `checkpoints`
asks the same questions of every file it loads). Standard library only: the installer, which runs
before the backend's venv exists, loads this file from the checkout to check `--model FILE`."""

from __future__ import annotations

import json
import struct
from pathlib import Path

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")  # what is read as a single-file model
UNET_PREFIX = "model.diffusion_model."
TEXT_PREFIXES = ("cond_stage_model.", "conditioner.embedders.")
VAE_PREFIX = "first_stage_model."
OLD_CLIP = "cond_stage_model.transformer."  # before transformers' CLIPTextModel had its text_model level
XL_CLIP = "conditioner.embedders.0.transformer."  # SDXL's CLIP-L, read without that level too
USE_A_MODEL = ("pass the Stable Diffusion 1.x, 2.x or XL checkpoint itself (a .safetensors of 2 GB or more, "
                "or a diffusers folder)")
_FAMILIES = (("sd3", "Stable Diffusion 3"), ("sd35", "Stable Diffusion 3.5"), ("flux", "Flux"), ("chroma", "Chroma"),
             ("controlnet", "ControlNet"), ("stable_cascade", "Stable Cascade"), ("playground", "Playground v2.5"),
             ("xl_refiner", "SDXL refiner (use SDXL base)"), ("upscale", "Stable Diffusion x4 upscaler"),
             ("animatediff", "AnimateDiff motion module"))


def _is_lora(keys: list[str]) -> bool:
    marks = ("lora_down", "lora_up", "lora_A.", "lora_B.", ".lora.", "lora_unet_", "lora_te", "hada_w1", "lokr_w1",
             "lora_linear_layer", "lycoris_", ".oft_R", ".oft_blocks")
    return any(m in k for k in keys for m in marks)


def what_it_holds(keys: list[str], kind: str) -> str | None:
    """What a file that is not a whole SD model holds, in words (None: it looks like one). `kind` is
    diffusers' reading of its keys (`infer_diffusers_model_type`); the keys without a training wrapper's
    prefix (`wrapper_prefix`)."""
    has_unet = any(k.startswith(UNET_PREFIX) for k in keys)
    if _is_lora(keys) and not has_unet:
        return ("a LoRA (a small add-on trained for some base model, not a model by itself; to edit with its look, "
                "merge it into the checkpoint it was trained for, e.g. with kohya's merge_lora.py or a checkpoint "
                "merger, and pass the merged file)")
    if keys and len(keys) <= 4 and all(k.startswith("<") and k.endswith(">") for k in keys):
        return "a textual-inversion embedding (a learned word for some base model, not a model)"  # diffusers'
    if not keys or set(keys) <= {"emb_params", "clip_l", "clip_g", "string_to_param", "string_to_token", "name",
                                 "step", "sd_checkpoint", "sd_checkpoint_name"}:
        return "a textual-inversion embedding (a learned word for some base model, not a model)" if keys else \
            "an empty file (no tensors)"
    if any(k.startswith(("control_model.", "controlnet_")) or "input_hint_block" in k for k in keys):
        return "a ControlNet (it steers a base model, it is not one)"
    if any(k.startswith(("image_proj.", "ip_adapter.")) for k in keys) and not has_unet:
        return "an IP-Adapter (it adds a picture prompt to a base model, it is not one)"
    if any(k.startswith("adapter.") for k in keys) and not has_unet:
        return "a T2I-Adapter (it steers a base model, it is not one)"
    if any(".joint_blocks." in k or k.startswith("joint_blocks.") for k in keys):
        return "a Stable Diffusion 3 model (a transformer, no UNet)"
    if any("double_blocks." in k for k in keys):
        return "a Flux model (a transformer, no UNet)"
    if (what := _family_by_keys(keys)) is not None:
        return what
    if any(k.startswith("conditioner.embedders.0.model.") for k in keys):  # OpenCLIP-G alone, first
        return ("an SDXL refiner (one OpenCLIP text encoder, conditioned on an aesthetic score: it only refines "
                "pictures made by SDXL base; use SDXL base or one of its fine-tunes)")
    for prefix, name in _FAMILIES:
        if kind.startswith(prefix):
            return f"a {name} model"
    if any(k.startswith(("noise_augmentor.", "embedder.model.visual.")) for k in keys) or (
            any(k.startswith(UNET_PREFIX + "label_emb.") for k in keys) and not any(k.startswith("conditioner.") for k in keys)):
        return ("a Stable unCLIP model (conditioned on a picture's CLIP image embedding, which SINE does not give it; "
                "use the Stable Diffusion 2.1 it was made from)")
    if not has_unet and any(k.startswith("model_ema.") for k in keys):
        return ("a checkpoint holding only the EMA copy of its UNet (model_ema.* without model.diffusion_model.* "
                "weights), which diffusers' single-file loader does not read; use the file's pruned or EMA-only "
                "version (EMA weights under model.diffusion_model.*)")
    if not has_unet and {"unet", "vae", "text_encoder"} <= {k.split(".")[0] for k in keys}:
        return ("a whole model in diffusers' key names in one file (unet.*, vae.*, text_encoder.*), which diffusers' "
                "single-file loader does not read; pass the model as a diffusers folder (save_pretrained) or the "
                "original checkpoint")
    if not has_unet and (what := _part_alone(keys)) is not None:
        return what
    if not has_unet:
        vae_keys = [k for k in keys if k.startswith(("encoder.", "decoder.", "quant_conv", "post_quant_conv", VAE_PREFIX))]
        if vae_keys and len(vae_keys) == len(keys):
            return ("a VAE alone (the image decoder that some checkpoints ship separately, not a whole model; to use it, "
                    "put it beside its checkpoint as CHECKPOINT.vae.safetensors)")
        if any(k.startswith(("down_blocks.", "conv_in.")) for k in keys):
            return "a UNet alone in diffusers' layout (not a whole model with its text encoder and VAE)"
        if any(k.startswith("input_blocks.") for k in keys) and any(k.startswith("out.") for k in keys):
            return ("a UNet alone in the original layout (input_blocks.*, without its text encoder and VAE, as "
                    "ComfyUI's diffusion_models files come)")
        return f"not a Stable Diffusion checkpoint (no {UNET_PREFIX}* UNet weights; its keys start with " \
               f"{', '.join(sorted({k.split('.')[0] for k in keys})[:4])})"
    return None


KOLORS = ("a Kolors model (Kwai's SDXL-shaped UNet that reads prompts with a ChatGLM text encoder through its "
          "encoder_hid_proj, not with CLIP), which SINE cannot give its prompts; use SDXL base or one of its fine-tunes")
_TRANSFORMERS = (  # diffusion transformers (no UNet), told by keys of theirs no SD file has: (marks, name)
    (("single_transformer_blocks.",), "a Flux model (a transformer, no UNet)"),
    (("context_embedder.",), "a Stable Diffusion 3 model (a transformer, no UNet)"),
    (("y_embedder.", "caption_projection.", "adaln_single."), "a PixArt model (PixArt-α/Σ or Sana: a transformer, no UNet)"),
    (("mlp_t5.", "text_embedding_padding"), "a Hunyuan-DiT model (a transformer, no UNet)"),
    (("x_embedder.", "t_embedder.", "final_layer."), "a diffusion transformer (DiT, no UNet)"),
)


def _family_by_keys(keys: list[str]) -> str | None:
    """A model of a family other than SD 1.x/2.x/XL told by its keys (diffusers' own reading of the
    keys misses these, or calls them a UNet alone or an image-conditioned model), in words; None."""
    if any(k in ("edm_mean", "edm_std") for k in keys):
        return ("a Playground v2.5 model: SDXL's architecture trained on an EDM noise schedule (edm_mean/edm_std), which "
                "SINE's DDIM sampler on SD's DDPM schedule cannot sample (its pictures would come out as noise); "
                "use SDXL base or an SDXL fine-tune")
    if any(".time_stack." in k or ".time_mixer." in k for k in keys):
        return "a Stable Video Diffusion model (it makes a short video from a picture, not pictures from a prompt)"
    if any(m in k for k in keys for m in ("clip_txt_mapper", "effnet_mapper", ".channelwise.")):
        return "a Stable Cascade model (Würstchen stages, no SD UNet)"
    if any("encoder_hid_proj.image_embeds" in k or "encoder_hid_proj.text_image_embeds" in k for k in keys):
        return "a Kandinsky 2.x UNet (conditioned on its prior's picture embedding, not on CLIP text)"
    if any(k.removeprefix(UNET_PREFIX) == "encoder_hid_proj.weight" for k in keys):
        return KOLORS
    if any("motion_modules." in k for k in keys):
        return "an AnimateDiff motion module (it animates a base model, it is not one)"
    for marks, name in _TRANSFORMERS:
        if not any(k.startswith(UNET_PREFIX) for k in keys) and any(k.startswith(marks) for k in keys):
            return name
    return None


def _part_alone(keys: list[str]) -> str | None:
    """A text or image encoder saved alone (CLIP-L/G in transformers' or OpenCLIP's layout, T5), in
    words; None."""
    if any(k.startswith("vision_model.") or k.startswith("visual.") for k in keys) and not any(
            "text_model." in k for k in keys):
        return "an image encoder alone (CLIP vision, as IP-Adapters and unCLIP read pictures with), not a whole model"
    if any(".SelfAttention." in k or ".DenseReluDense." in k for k in keys):
        return "a text encoder alone (T5, as SD3, Flux and PixArt read prompts with), not a whole model"
    if any(m in k for k in keys for m in ("text_model.encoder.", "transformer.resblocks.", "token_embedding.")):
        return ("a text encoder alone (CLIP: the part of a checkpoint that reads the prompt), not a whole model; a "
                "checkpoint carries its own")
    return None


_COMPONENT_CLASSES = {  # a diffusers/transformers component saved alone (config.json's class): what it is
    "ControlNetModel": "a ControlNet (it steers a base model, it is not one)",
    "AutoencoderKL": ("a VAE alone (the image decoder, not a whole model; to use it, put its "
                      "diffusion_pytorch_model.safetensors beside a checkpoint as CHECKPOINT.vae.safetensors, or this "
                      "folder as the vae/ of a model folder)"),
    "AutoencoderTiny": "TAESD (a tiny preview decoder), not a whole model",
    "UNet2DConditionModel": "a UNet alone (without its text encoder and VAE)",
    "T2IAdapter": "a T2I-Adapter (it steers a base model, it is not one)",
    "MotionAdapter": "an AnimateDiff motion module (it animates a base model, it is not one)",
    "SD3Transformer2DModel": "a Stable Diffusion 3 model's transformer (no UNet)",
    "FluxTransformer2DModel": "a Flux model's transformer (no UNet)",
    "PixArtTransformer2DModel": "a PixArt model's transformer (no UNet)",
    "CLIPTextModel": "a text encoder alone (CLIP), not a whole model",
    "CLIPTextModelWithProjection": "a text encoder alone (CLIP), not a whole model",
    "T5EncoderModel": "a text encoder alone (T5), not a whole model",
    "CLIPVisionModelWithProjection": "an image encoder alone (CLIP vision), not a whole model",
}


def component_folder(folder: Path) -> str | None:
    """What a folder holding one model component or add-on saved alone (its config.json names the
    class, diffusers' `_class_name` or transformers' `architectures`), or a pipeline folder without a
    UNet (its model_index.json: SD3, Flux, Stable Cascade…) is, in words; None otherwise."""
    try:
        index = json.loads((folder / "model_index.json").read_text("utf-8"))
    except (OSError, ValueError):
        index = None
    if isinstance(index, dict) and isinstance(index.get("_class_name"), str) and "unet" not in index:
        return f"a {index['_class_name']} model, which has no UNet (SINE edits with Stable Diffusion 1.x, 2.x or XL)"
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    names = [config.get("_class_name")] + list(config.get("architectures") or [])
    name = next((str(n) for n in names if isinstance(n, str) and n), None)
    if name is None:
        return None
    return _COMPONENT_CLASSES.get(name, f"a single {name} component, not a whole model")


def model_folders_inside(folder: Path) -> list[Path]:
    """The diffusers model folders (a unet/ holding weights) directly inside `folder`, by name: a shelf of
    models, or a download that put the model one level down. A folder of configs alone (the `NAME.config/`
    beside a single file that tells the loader its shapes) is not one: the file beside it is the model."""
    try:
        return sorted(d for d in folder.iterdir() if d.is_dir() and _holds_weights(d / "unet"))
    except OSError:
        return []


def _holds_weights(component: Path) -> bool:
    return component.is_dir() and any(f.suffix in (".safetensors", ".bin") or f.name.endswith(".index.json")
                                      for f in component.iterdir())


WRAPPERS = ("module", "state_dict", "model", "_orig_mod")  # what training wrappers put before a model's keys


def wrapper_prefix(keys: list[str]) -> str:
    """The prefix a training wrapper put before every key of a whole checkpoint (DDP's `module.`, a
    flattened Lightning `state_dict.`, `model.`, torch.compile's `_orig_mod.`); "" when there is none."""
    if any(k.startswith(UNET_PREFIX) for k in keys):
        return ""
    for key in keys:
        at = key.find("." + UNET_PREFIX) + 1
        if at > 0 and all(part in WRAPPERS for part in key[:at - 1].split(".")):
            return key[:at]
    return ""


def not_weights(file: Path) -> str | None:
    """What a weights file really is when its first bytes say it holds no weights: a Git LFS pointer
    (a repository cloned without git-lfs) or a web page saved under the model's name (None otherwise)."""
    try:
        with open(file, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return None
    if head.startswith(b"version https://git-lfs"):
        return ("a Git LFS pointer (a small text file standing for the weights), not the weights: the repository "
                "was cloned without Git LFS; run `git lfs install && git lfs pull` in it, or download the model "
                "with `hf download`")
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return ("a web page (HTML), not a model: the download link led to a sign-in or error page; download "
                "the file itself (signed in, or with `hf download`)")
    return None


def _header(path: Path) -> dict | None:
    """A .safetensors file's JSON header (None when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            size = struct.unpack("<Q", handle.read(8))[0]
            if size > 100_000_000:
                return None
            header = json.loads(handle.read(size))
    except (OSError, ValueError, struct.error):
        return None
    return header if isinstance(header, dict) else None


def cut_short(path: Path) -> str | None:
    """How a .safetensors file is shorter than its header says (a download or copy interrupted), with
    what to do; None when it is whole, or not a .safetensors file its first bytes can tell."""
    if path.suffix.lower() != ".safetensors":
        return None
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    again = "(an interrupted download or copy): download it again"
    if size == 0:
        return f"empty (0 bytes) {again}"
    if size < 8:
        return f"cut short: {size} bytes, not even its header's length {again}"
    length = struct.unpack("<Q", head)[0]
    if length > 100_000_000 or head.startswith((b"PK\x03\x04", b"\x80")):
        return None  # not a .safetensors header (misnamed says what it is, the loader the rest)
    if size < 8 + length:
        return f"cut short: {size} bytes, inside its header {again}"
    header = _header(path)
    ends = [v["data_offsets"][1] for k, v in (header or {}).items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2
            and isinstance(v["data_offsets"][1], int)]
    if ends and size < 8 + length + max(ends):
        return f"cut short: {size} bytes of {8 + length + max(ends)} {again}"
    return None


def misnamed(path: Path) -> str | None:
    """What a checkpoint whose suffix is not its format really is, with the name to give it: a pickled
    PyTorch checkpoint named .safetensors, a .safetensors file named .ckpt/.pt/.pth/.bin (diffusers
    reads a file by its suffix); None when the suffix fits (or the bytes are neither)."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors" and _header(path) is None:
        try:
            with open(path, "rb") as handle:
                head = handle.read(4)
        except OSError:
            return None
        if head.startswith((b"PK\x03\x04", b"\x80")):
            return (f"a pickled PyTorch checkpoint (a {'zip' if head.startswith(b'PK') else 'pickle'}) named "
                    f".safetensors: rename it to {path.stem}.ckpt (it is read weights-only)")
    if suffix in (".ckpt", ".pt", ".pth", ".bin"):
        header = _header(path)
        tensors = [v for k, v in (header or {}).items() if k != "__metadata__"]
        if tensors and all(isinstance(v, dict) and "dtype" in v and "shape" in v for v in tensors):
            return f"a .safetensors file named {path.suffix}: rename it to {path.stem}.safetensors"
    return None


def safetensors_dtypes(path: Path) -> dict[str, str] | None:
    """Tensor name -> dtype ("F16", "I8"...) from a .safetensors file's header (None when it cannot be read)."""
    header = _header(path)
    if header is None:
        return None
    return {k: str(v.get("dtype", "")) if isinstance(v, dict) else "" for k, v in header.items() if k != "__metadata__"}


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The metadata of a .safetensors file's header ({} for other files, none, or an unreadable header)."""
    if path.suffix.lower() != ".safetensors":
        return {}
    meta = (_header(path) or {}).get("__metadata__")
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


# What Stability's model spec (`modelspec.*` header keys, written by Stability's and kohya's tools) says
def stated_prediction(meta: dict[str, str]) -> str | None:
    """"v_prediction" / "epsilon" as the header states it: `modelspec.prediction_type`, else an
    architecture that says it (`stable-diffusion-v2-768-v`: v; `stable-diffusion-v2-512`: ε); None."""
    prediction = meta.get("modelspec.prediction_type", "").strip().lower()
    if prediction in ("v", "v_prediction", "v-prediction"):
        return "v_prediction"
    if prediction in ("epsilon", "eps"):
        return "epsilon"
    architecture = meta.get("modelspec.architecture", "").strip().lower().split("/")[0]
    if architecture.startswith("stable-diffusion") and architecture.endswith("-v"):
        return "v_prediction"
    if architecture == "stable-diffusion-v2-512":
        return "epsilon"
    return None


def stated_resolution(meta: dict[str, str]) -> int | None:
    """The side of the square as large as `modelspec.resolution` ("512x512": 512; "1216x832": 1006, a
    bucket of SDXL's 1024² pixel budget), the size the model was made for; None."""
    sides = meta.get("modelspec.resolution", "").lower().replace(" ", "").split("x")
    if len(sides) != 2 or not all(side.isdigit() and 0 < int(side) <= 16384 for side in sides):
        return None
    return round((int(sides[0]) * int(sides[1])) ** 0.5)


def stated_xl(meta: dict[str, str]) -> bool | None:
    """Whether `modelspec.architecture` says SDXL (True), SD 1.x/2.x (False), or nothing (None)."""
    architecture = meta.get("modelspec.architecture", "").strip().lower()
    if not architecture.startswith("stable-diffusion"):
        return None
    return architecture.startswith("stable-diffusion-xl")


def stated_clip_skip(meta: dict[str, str]) -> int | None:
    """The clip skip a file was trained with, as its header states it (`modelspec.encoder_layer`, as
    kohya's model spec writes it, or `ss_clip_skip`): 2 reads the prompt from the text encoder's
    penultimate layer (A1111's count; ComfyUI's -2 is the same); None when it states none."""
    for key in ("modelspec.encoder_layer", "ss_clip_skip"):
        value = meta.get(key, "").strip()
        if value.lstrip("-").isdigit() and int(value) != 0:
            return abs(int(value))
    return None


def timestep_expert(meta: dict[str, str]) -> str | None:
    """A model tuned on part of the timesteps only (`modelspec.timestep_range` "500,999"), in words; None."""
    bounds = meta.get("modelspec.timestep_range", "").replace(" ", "").split(",")
    if len(bounds) != 2 or not all(b.isdigit() for b in bounds):
        return None
    low, high = int(bounds[0]), int(bounds[1])
    if low <= 0 and high >= 999:
        return None
    return (f"a timestep-expert model (modelspec.timestep_range {low},{high}: tuned for those timesteps only), while "
            "SINE fine-tunes and samples at every timestep; use the whole model it was made from")


def plain_safetensors_dtypes(path: Path) -> dict[str, str] | None:
    """`safetensors_dtypes` with the keys a plain checkpoint gives them (a training wrapper's prefix removed)."""
    dtypes = safetensors_dtypes(path)
    if dtypes is None:
        return None
    prefix = wrapper_prefix(list(dtypes))
    return {k.removeprefix(prefix): v for k, v in dtypes.items()}


def safetensors_keys(path: Path) -> list[str] | None:
    """The tensor names in a .safetensors file's header (None when the header cannot be read)."""
    dtypes = safetensors_dtypes(path)
    return None if dtypes is None else list(dtypes)


_SCALE_MARKS = (".scale_weight", ".weight_scale", ".input_scale")  # per-layer scales of fp8/int8 formats
_BNB_MARKS = (".SCB", ".absmax", ".quant_map", ".quant_state", ".weight_format")  # bitsandbytes


def quantized(integer_weights: list[str], keys: list[str]) -> str | None:
    """Why a checkpoint's UNet weights cannot be used as they are stored, in words (None: they can;
    plain fp8 is a lossy copy that loads). `integer_weights`: its UNet tensors stored as integers."""
    if "scaled_fp8" in keys or any(k.endswith(_SCALE_MARKS) for k in keys):
        return ("a quantized checkpoint (scaled fp8, as ComfyUI saves it: each layer's weights must be multiplied "
                "by its own scale, which diffusers does not do)")
    if any(k.endswith(_BNB_MARKS) for k in keys):
        return "a quantized checkpoint (bitsandbytes int8/nf4 weights with their quantization state)"
    if integer_weights:
        return (f"a quantized checkpoint (integers: {len(integer_weights)} UNet weight tensors stored as int8 or "
                f"other integers, e.g. {integer_weights[0]}, without the scales to turn them back into weights)")
    return None


def fp8_note(dtypes: dict[str, str]) -> str | None:
    """Why a checkpoint whose UNet weights are stored as plain fp8 (F8_E4M3 / F8_E5M2: a lossy copy with
    3 or 2 mantissa bits) edits less faithfully, in words; None when they are not fp8."""
    kinds = sorted({d for k, d in dtypes.items() if k.startswith(UNET_PREFIX) and d.startswith("F8")})
    if not kinds:
        return None
    return (f"its UNet weights are stored in fp8 ({', '.join(kinds)}: a lossy copy of the model), read upcast to the "
            "working precision; the fp16 or fp32 version of this checkpoint edits more faithfully")


def ema_note(keys: list[str]) -> str | None:
    """Which UNet an unpruned checkpoint (`v1-5-pruned.ckpt`: the training weights under
    `model.diffusion_model.*` and their EMA under `model_ema.*`) is edited with, in words; None for a
    file with one UNet (pruned files may keep `model_ema.decay` / `num_updates` alone)."""
    if not (any(k.startswith(UNET_PREFIX) for k in keys) and any(k.startswith("model_ema.diffusion_model") for k in keys)):
        return None
    return ("it holds both its training UNet weights and their EMA copy (model_ema.*): the training weights "
            "(model.diffusion_model.*) are used, as diffusers reads such a file; for the EMA weights pass the "
            "file's EMA-only version (e.g. v1-5-pruned-emaonly)")


QUANTIZED_INSTEAD = "use the fp16 (or fp32, bf16, plain fp8) version of this checkpoint"


def integer_weights(dtypes: dict[str, str]) -> list[str]:
    """The UNet tensors of a safetensors header stored as integers (I8, U8, I16...)."""
    return [k for k, d in dtypes.items() if k.startswith(UNET_PREFIX) and d[:1] in ("I", "U")]


def part_of_model(path: Path) -> str | None:
    """A file inside a diffusers model folder (a component's weights or config, model_index.json): what
    to pass instead (None otherwise). A checkpoint at a snapshot's root, beside unet/, is a model."""
    folder = path.absolute().parent
    if (folder / "config.json").is_file() and (folder.parent / "unet").is_dir():
        return f"{path} is the {folder.name}/ part of a diffusers model: pass the folder {folder.parent}"
    if path.name == "model_index.json" and (folder / "unet").is_dir():
        return f"{path} is a file inside a diffusers model: pass the folder {folder}"
    return None


def file_problem(path: Path) -> str | None:
    """Why a checkpoint file given as the model is not one, told from its first bytes or safetensors
    header alone (a Git LFS pointer, a LoRA, an embedding, a VAE, quantized weights...), with what to
    use instead; None: it may be one (the loader asks the rest)."""
    if (what := not_weights(path) or misnamed(path) or cut_short(path)) is not None:
        return f"{path} is {what}"
    dtypes = plain_safetensors_dtypes(path) if path.suffix.lower() == ".safetensors" else None
    if dtypes is None:
        return None
    if (what := timestep_expert(safetensors_metadata(path))) is not None:
        return f"{path} is {what}"
    if (what := what_it_holds(list(dtypes), "")) is not None:
        return f"{path} is {what}; SINE needs a whole text-to-image model: {USE_A_MODEL}"
    if (what := quantized(integer_weights(dtypes), list(dtypes))) is not None:
        return f"{path} is {what}; {QUANTIZED_INSTEAD}"
    return None


def not_a_model_folder(path: Path) -> str:
    """Why `path`, a folder without unet/, is not a model folder, and what to pass instead: one of the
    checkpoint files it holds, or the model folder it is a part of. Here (standard library) so the
    installer's folder check says what `sine edit` says."""
    message = f"{path} is not a diffusers Stable Diffusion folder (no unet/ inside)"
    files = sorted(f.name for f in path.iterdir() if f.is_file() and f.suffix.lower() in CHECKPOINT_SUFFIXES)
    parent = path.resolve().parent
    if (parent / "unet").is_dir() and (path / "config.json").is_file():
        return f"{message}: it is the {path.name}/ part of a model; pass the model folder {parent}"
    if inside := model_folders_inside(path):
        return f"{message}; it holds a model folder: pass it, e.g. --model {inside[0]}"
    if (what := component_folder(path)) is not None:
        return f"{message}: it is {what}; SINE needs a whole text-to-image model: {USE_A_MODEL}"
    if files and all((why := file_problem(path / f)) is not None for f in files):
        return f"{message}; {why}"  # a LoRA's folder: not "pass its file", refused next
    if files and not (path / "config.json").is_file():
        shown = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
        return f"{message}; it holds checkpoint files ({shown}): pass one of them, e.g. --model {path / files[0]}"
    return message
