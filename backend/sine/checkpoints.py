"""Single-file checkpoints (`.safetensors`, `.ckpt`, as painters download them), loaded with diffusers'
own `from_single_file`, offline.

diffusers needs a diffusers-layout folder of configs beside the weights; it would fetch one from the
hub. We give it one instead (`config=`): a `<file>.config/` folder next to the checkpoint when there
is one (a diffusers folder without weights: how our tests describe tiny models), else the configs
shipped in `model_configs/` for the kind diffusers infers from the checkpoint's keys (SD1, SD2, SDXL),
with CLIP's tokenizer files shipped once. Configs only, never weights.

A `.ckpt` is a pickle: it is read with `torch.load(weights_only=True)` (as diffusers does), which
unpickles tensors and plain containers only; one that needs anything else is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from sine_protocol.paths import replace_privately

from .checkpoint_contents import (
    OLD_CLIP,
    QUANTIZED_INSTEAD,
    TEXT_PREFIXES,
    UNET_PREFIX,
    USE_A_MODEL,
    VAE_PREFIX,
    WRAPPERS,
    XL_CLIP,
    cut_short,
    ema_note,
    fp8_note,
    integer_weights,
    misnamed,
    not_weights,
    part_of_model,
    plain_safetensors_dtypes,
    quantized,
    safetensors_metadata,
    stated_prediction,
    stated_resolution,
    stated_xl,
    timestep_expert,
    what_it_holds,
    wrapper_prefix,
)
from .errors import BadModel, ModelMissing
from .model_folder import read_json
from .model_kind import check_usable

log = logging.getLogger("sine.models")

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
CONFIGS_DIR = Path(__file__).resolve().parent / "model_configs"
TOKENIZER_DIR = CONFIGS_DIR / "clip_tokenizer"  # CLIP's BPE (SD1, SD2 and both SDXL encoders share it)
SIDECAR_SUFFIX = ".config"
_SHIPPED = {"v1": "sd1", "v2": "sd2", "xl_base": "sdxl"}  # diffusers' inferred type -> our shipped configs
_CONV_IN = ("model.diffusion_model.input_blocks.0.0.weight", "conv_in.weight")


def is_single_file(model: str | os.PathLike | None) -> bool:
    if model is None:
        return False
    path = Path(model).expanduser()
    return path.suffix.lower() in SINGLE_FILE_SUFFIXES and not path.is_dir()


def sidecar_folder(path: Path) -> Path:
    """`model.safetensors` -> `model.config/`: a diffusers folder of configs describing it."""
    return path.with_suffix(SIDECAR_SUFFIX)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's tensors (safetensors: only their shapes, on the meta device), or a clear error;
    the keys as a plain checkpoint names them (see `_unwrap`)."""
    return _unwrap(_read_raw(path))[0]


def _unwrap(state: Any) -> tuple[Any, bool]:
    """(the model's state dict, whether diffusers could not read it as saved): a whole checkpoint
    saved from a training wrapper, nested under `model`/`module` (diffusers unwraps `state_dict`
    itself) or with the wrapper's prefix on every key (`wrapper_prefix`)."""
    wrapped = False
    while isinstance(state, dict) and not any(isinstance(k, str) and k.startswith(UNET_PREFIX) for k in state):
        name = next((w for w in ("state_dict", *WRAPPERS) if isinstance(state.get(w), dict)), None)
        if name is None:
            break
        wrapped, state = wrapped or name != "state_dict", state[name]
    if isinstance(state, dict) and (prefix := wrapper_prefix([k for k in state if isinstance(k, str)])):
        state = {k.removeprefix(prefix) if isinstance(k, str) else k: v for k, v in state.items()}
        wrapped = True
    return state, wrapped


def _plain_copy(path: Path, state: dict[str, Any], tmp: Path) -> Path:
    """For a checkpoint saved from a wrapper (`_unwrap`; `state` its unwrapped tensors), a copy in
    `tmp` with plain keys, which diffusers' `from_single_file` reads (never beside the painter's file)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        state = _unwrap(load_file(str(path)))[0]
    copy = tmp / f"{path.stem}.plain.ckpt"
    torch.save({k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, str(copy))
    return copy


def _read_raw(path: Path) -> Any:
    """The checkpoint as saved (safetensors: shapes on the meta device), or a clear error."""
    if not path.is_file():
        raise ModelMissing(f"model file {path} does not exist")
    if (what := not_weights(path) or misnamed(path) or cut_short(path)) is not None:
        raise BadModel(f"{path} is {what}")
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        except Exception as exc:  # truncated / not safetensors at all
            raise BadModel(f"{path} is not a readable .safetensors file ({type(exc).__name__}: {exc}); "
                           "the download may be incomplete: download it again") from None
    try:
        with _allowing(lightning_stand_ins(path)):
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError:
        if not _is_zip(path) and _first_byte(path) != b"\x80":  # a pickle starts with its PROTO opcode
            raise BadModel(f"{path} is not a PyTorch checkpoint (its bytes are neither a zip nor a pickle of "
                           "tensors); download the model again") from None
        named = ", ".join(_pickled_globals(path)[:3]) or "objects torch does not know"
        raise BadModel(f"{path} holds Python objects besides tensors ({named}), so loading it could run code; "
                       "refusing to unpickle it. Use the .safetensors version of this model") from None
    except Exception as exc:
        raise BadModel(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc}); the download may be "
                       "incomplete: download it again") from None
    if not isinstance(state, dict) or not state:
        raise BadModel(f"{path} holds no state dict of tensors")
    return state


_LIGHTNING = ("pytorch_lightning.", "lightning.")  # PyTorch Lightning 1.x keyed callback states by their class


def _pickled_globals(path: Path) -> list[str]:
    """The classes and functions a zip checkpoint's pickle names besides torch's own (none: [])."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # torch < 2.5, not a zip checkpoint, unreadable: torch.load says so
        return []


def _allowing(classes: list[type]) -> Any:
    """torch's `safe_globals(classes)` (torch ≥ 2.5; nothing to allow: a no-op context)."""
    import contextlib

    if not classes or not hasattr(torch.serialization, "safe_globals"):
        return contextlib.nullcontext()
    return torch.serialization.safe_globals(classes)


def lightning_stand_ins(path: Path) -> list[type]:
    """Empty classes standing for the PyTorch Lightning classes a checkpoint's pickle names (SD 1.x's
    own .ckpt files key a callback's state by `pytorch_lightning…ModelCheckpoint`), so the
    weights-only unpickler reads it: nothing of theirs runs. [] when it names anything else too."""
    if path.suffix.lower() == ".safetensors" or not _is_zip(path):
        return []
    names = _pickled_globals(path)
    if not names or not all(n.startswith(_LIGHTNING) for n in names):
        return []
    return [type(n.rsplit(".", 1)[1], (), {"__module__": n.rsplit(".", 1)[0]}) for n in names]


def _first_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(1)


def _is_zip(path: Path) -> bool:
    import zipfile

    return zipfile.is_zipfile(path)


def config_folder(path: Path, state: dict[str, Any]) -> Path:
    """The diffusers config folder describing the checkpoint: its sidecar, or our shipped one. A file
    that is not a whole SD model is refused here, naming what it is (`check_contents`)."""
    check_contents(path, state)
    sidecar = sidecar_folder(path)
    if (sidecar / "model_index.json").is_file():
        return sidecar
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    conv = next((state[k] for k in _CONV_IN if k in state), None)
    if conv is not None and conv.shape[1] != 4:
        check_usable({"in_channels": int(conv.shape[1])}, {}, str(path))
    kind = infer_diffusers_model_type(state)
    if kind == "v1":  # diffusers' fallback (its key test wants published sizes): the text encoders' layouts
        if any(isinstance(k, str) and k.startswith("conditioner.embedders.1.model.") for k in state):
            kind = "xl_base"
        elif any(isinstance(k, str) and k.startswith("cond_stage_model.model.") for k in state):
            kind = "v2"
    if "inpaint" in kind:
        check_usable({"in_channels": 9}, {}, str(path))
    if kind not in _SHIPPED:
        raise BadModel(f"{path} is a {kind!r} checkpoint (as diffusers reads its keys), not a Stable Diffusion 1.x, "
                       "2.x or XL text-to-image model")
    name = _SHIPPED[kind]
    if name == "sd2" and not _is_v_model(path, state):
        name = "sd2-base"
    return CONFIGS_DIR / name


_WIDTHS = (  # what, the keys that hold its width (first found), which dimension, its config, the config's width
    ("a UNet", ("model.diffusion_model.input_blocks.0.0.weight",), 0, "unet", ("block_out_channels", 0)),
    ("a text encoder", (OLD_CLIP + "text_model.embeddings.token_embedding.weight", OLD_CLIP + "embeddings.token_embedding.weight",
                        "cond_stage_model.model.token_embedding.weight",
                        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
                        XL_CLIP + "embeddings.token_embedding.weight"),
     1, "text_encoder", ("hidden_size", None)),
    ("a VAE", (VAE_PREFIX + "encoder.conv_in.weight",), 0, "vae", ("block_out_channels", 0)),
)
_FAMILY_NAMES = {"sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x", "sd2-base": "Stable Diffusion 2.x",
                 "sdxl": "Stable Diffusion XL"}


def check_shapes(path: Path, state: dict[str, Any], folder: Path) -> None:
    """A file read with the shipped configs (no `<name>.config/` beside it) must have their sizes;
    one of another size is refused in words, before diffusers fails on the first mismatched tensor."""
    if folder.parent != CONFIGS_DIR:
        return
    for what, keys, dim, sub, (field, index) in _WIDTHS:
        key = next((k for k in keys if k in state), None)
        if key is None or len(state[key].shape) <= dim:
            continue
        config = read_json(folder / sub / "config.json")
        expected = int(config[field] if index is None else config[field][index])
        if (got := int(state[key].shape[dim])) != expected:
            raise BadModel(f"{path} has {what} of width {got} where {_FAMILY_NAMES[folder.name]} has {expected}: a "
                           "model of another size than the published one its keys resemble. Pass it as a diffusers "
                           f"folder, or put its configs (a diffusers folder without weights) beside it as "
                           f"{sidecar_folder(path).name}/")


def scheduler_hints(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Scheduler settings a checkpoint states itself, over its config folder's: a `v_pred` key (and
    `ztsnr`, zero terminal SNR), as v-prediction SDXL fine-tunes carry, or the safetensors header's
    model spec (`modelspec.prediction_type` "v" / "epsilon", else an architecture that says it:
    `stable-diffusion-v2-768-v`), as Stability's and kohya's tools write, or the original LDM `.yaml`
    beside the file (`parameterization: "v"`)."""
    hints: dict[str, Any] = {}
    prediction = "v_prediction" if _yaml_says_v(path) else stated_prediction(safetensors_metadata(path))
    if prediction is not None:
        hints["prediction_type"] = prediction
    if "v_pred" in state:
        hints["prediction_type"] = "v_prediction"
    if "ztsnr" in state:
        hints["rescale_betas_zero_snr"] = True
    return hints


def unet_hints(path: Path, folder: Path) -> dict[str, Any]:
    """UNet settings the file states over the shipped configs it is read with: the size it was made
    for (`modelspec.resolution`, e.g. SDXL-Turbo's 512x512 where SDXL base's configs say 1024). A
    `NAME.config/` beside the file describes it as it is and wins; a name ("turbo") does not say it:
    many SDXL "turbo" fine-tunes work at 1024."""
    resolution = stated_resolution(safetensors_metadata(path))
    if folder.parent != CONFIGS_DIR or resolution is None:
        return {}
    scale = 2 ** (len(read_json(folder / "vae" / "config.json")["block_out_channels"]) - 1)
    size = max(1, resolution // scale)
    return {} if size == read_json(folder / "unet" / "config.json").get("sample_size") else {"sample_size": size}


def _is_v_model(path: Path, state: dict[str, Any]) -> bool:
    """SD2 checkpoints do not say whether they predict v (2.x 768) or ε (2.x-base 512, SD-Turbo) in
    their keys. Asked in turn: what the file states (`scheduler_hints`: its .yaml, header, keys), a
    .ckpt's training step (875000: 2.0-base, as diffusers' converter reads it), its name (`_name_says_base`).
    Without any: v, as SD 2.1 (768). A guess is said in the log."""
    if path.with_suffix(".yaml").is_file():  # the LDM config: v when it says so, else ε
        return _yaml_says_v(path)
    stated = scheduler_hints(path, state).get("prediction_type")
    if stated is not None:
        return bool(stated == "v_prediction")
    if _global_step(path) == 875000:
        return False
    log.warning("%s: %s", path, _sd2_guess(path))
    return not _name_says_base(path)


_BASE_NAME = re.compile(r"512|turbo|(^|[^a-z])base([^a-z]|$)")


def _name_says_base(path: Path) -> bool:
    """Whether the file says 512 ε by the size its header states (`modelspec.resolution` 512x512; 768
    says v), else by its name (Stability's `v2-1_512-ema-pruned`, `512-base-ema`, `sd_turbo`): the last
    hints an SD 2.x file without a stated prediction gives; "768" in the name says v."""
    resolution = stated_resolution(safetensors_metadata(path))
    if resolution in (512, 768):
        return resolution == 512
    name = path.name.lower()
    return "768" not in name and _BASE_NAME.search(name) is not None


def _sd2_guess(path: Path) -> str:
    """What is assumed of an SD 2.x file that does not say what it predicts, and how to correct it."""
    yaml = path.with_suffix(".yaml").name
    resolution = stated_resolution(safetensors_metadata(path))
    source = "its header's resolution" if resolution in (512, 768) else "its name"
    if _name_says_base(path):
        return (f"assumed SD 2.x 512 ε-prediction from {source} (the file does not say); for a 768 v model put its "
                f".yaml (with parameterization: v) beside it as {yaml}")
    if resolution == 768:
        return (f"assumed SD 2.x 768 v-prediction from {source} (the file does not say); for an ε model put its "
                f".yaml beside it as {yaml}")
    return (f"assumed SD 2.x 768 v-prediction (the file does not say); for a 512 ε model (2.x-base, SD-Turbo) put "
            f"its .yaml beside it as {yaml}")


def stored_note(path: Path, state: dict[str, Any]) -> str | None:
    """What a checkpoint's storage costs its edits (`fp8_note`), from its header or tensors, and which of
    its UNets is used (`ema_note`); None."""
    dtypes = plain_safetensors_dtypes(path) if path.suffix.lower() == ".safetensors" else None
    if dtypes is None:
        dtypes = {k: ("F8" + str(v.dtype).removeprefix("torch.float8")).upper() for k, v in state.items()
                  if isinstance(k, str) and isinstance(v, torch.Tensor) and str(v.dtype).startswith("torch.float8")}
    notes = [n for n in (fp8_note(dtypes), ema_note([k for k in state if isinstance(k, str)])) if n]
    return "; ".join(notes) or None


def prediction_guessed(path: Path, state: dict[str, Any], folder: Path | None = None) -> str | None:
    """What was assumed about a file that does not say what it predicts: v from its name
    (`_name_decides_v`), or SD 2.x's guess (the same questions `_is_v_model` asks, without its log
    line); None when it says, has a sidecar, or is not SD 2.x."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    if _name_decides_v(path, state, folder or config_folder(path, state)):
        return (f"assumed v-prediction from its name {path.name!r} (the file does not say); for an ε model put its "
                f".yaml (with parameterization: eps) beside it as {path.with_suffix('.yaml').name}")
    if (sidecar_folder(path) / "model_index.json").is_file() or infer_diffusers_model_type(state) != "v2":
        return None
    if path.with_suffix(".yaml").is_file() or "prediction_type" in scheduler_hints(path, state):
        return None
    if _global_step(path) is not None:
        return None
    return _sd2_guess(path)


def _yaml_says_v(path: Path) -> bool:
    """Whether the original LDM `.yaml` beside the checkpoint says `parameterization: "v"` (quoted or not)."""
    yaml = path.with_suffix(".yaml")
    text = yaml.read_text(errors="replace") if yaml.is_file() else ""
    return re.search(r"^\s*parameterization:\s*[\"']?v[\"']?\s*(#.*)?$", text, re.MULTILINE) is not None


def _global_step(path: Path) -> int | None:
    """The training step a Lightning .ckpt records beside its state_dict (None when absent)."""
    if path.suffix.lower() == ".safetensors":
        return None
    try:
        outer = torch.load(str(path), map_location="meta", weights_only=True, mmap=_is_zip(path))
    except Exception:
        return None
    step = outer.get("global_step") if isinstance(outer, dict) else None
    return step if isinstance(step, int) else None


def load_tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer from `folder`; configs without vocab files use the shipped CLIP BPE files."""
    from transformers import CLIPTokenizer

    if (folder / "vocab.json").is_file():
        return CLIPTokenizer.from_pretrained(folder)
    settings = read_json(folder / "tokenizer_config.json")
    settings.pop("tokenizer_class", None)
    return CLIPTokenizer(vocab_file=str(TOKENIZER_DIR / "vocab.json"), merges_file=str(TOKENIZER_DIR / "merges.txt"),
                         **settings)


def single_file_scheduler(path: Path, state: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The scheduler config of a checkpoint: its config folder's, with what the file states itself,
    or failing both what its name says (`_name_decides_v`)."""
    config = {**read_json(folder / "scheduler" / "scheduler_config.json"), **scheduler_hints(path, state)}
    if _name_decides_v(path, state, folder):
        config["prediction_type"] = "v_prediction"
    return {**config, **_trained_schedule(path, state, config)}


def _trained_schedule(path: Path, state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The noise schedule an LDM checkpoint carries in its `betas` buffer (one per training timestep,
    as the original code registers it from its .yaml), as scheduler settings, when it is not the
    config's: a model trained with 500 or 2000 timesteps, or another beta range ({} otherwise)."""
    betas = state.get("betas")
    if not isinstance(betas, torch.Tensor) or len(betas.shape) != 1 or betas.shape[0] < 2:
        return {}
    try:
        if betas.is_meta:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                betas = f.get_tensor("betas")
        betas = betas.double()
    except Exception:  # a wrapped key name, an unreadable tensor: the config's schedule stands
        return {}
    if not bool(((betas > 0) & (betas < 1)).all()):
        return {}
    from diffusers import DDIMScheduler

    try:
        expected = DDIMScheduler.from_config({**config, "rescale_betas_zero_snr": False}).betas.double()  # as saved
    except Exception:  # check_usable names what is wrong with the config
        return {}
    if expected.shape == betas.shape and torch.allclose(expected, betas, rtol=2e-3, atol=1e-7):
        return {}
    log.info("%s: the noise schedule of its betas buffer (%d timesteps), not its config's", path, betas.shape[0])
    return {"num_train_timesteps": int(betas.shape[0]), "trained_betas": betas.tolist()}


_V_NAME = re.compile(r"v[-_ ]?pred")


def _name_decides_v(path: Path, state: dict[str, Any], folder: Path) -> bool:
    """A file named `…vpred…`/`…v-pred…` that states no prediction type (header, `v_pred` key, .yaml),
    read with configs that do not either (the shipped ones are defaults): v-prediction fine-tunes
    merged or pruned by tools that drop the `v_pred` key are known by their name only."""
    if _V_NAME.search(path.name.lower()) is None or "prediction_type" in scheduler_hints(path, state):
        return False
    if path.with_suffix(".yaml").is_file():
        return False
    return folder.parent == CONFIGS_DIR or "prediction_type" not in read_json(folder / "scheduler" / "scheduler_config.json")


def load_single_file(path: Path, dtype: torch.dtype) -> tuple[Any, Path]:
    """(pipeline, config folder) for a checkpoint file, through `from_single_file`, offline."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    state, wrapped = _unwrap(_read_raw(path))
    wrapped = wrapped or bool(lightning_stand_ins(path))  # diffusers' own weights-only read refuses it
    folder = config_folder(path, state)
    check_shapes(path, state, folder)
    scheduler_config = single_file_scheduler(path, state, folder)
    if _name_decides_v(path, state, folder):
        log.warning("%s: assumed v-prediction from its name (the file does not say)", path)
    if (note := stored_note(path, state)) is not None:
        log.warning("%s: %s", path, note)
    old_clip = old_clip_prefix(list(state))
    no_vae = not any(isinstance(k, str) and k.startswith(VAE_PREFIX) for k in state)
    linear = _linear_projections(state)
    if not wrapped:
        del state
    index = read_json(folder / "model_index.json")
    unet_config = read_json(folder / "unet" / "config.json")
    check_usable(unet_config, scheduler_config, str(path), read_json(folder / "vae" / "config.json"))
    xl = "text_encoder_2" in index
    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    extra: dict[str, Any] = {"tokenizer": load_tokenizer(folder / "tokenizer"),
                             "scheduler": DDIMScheduler.from_config(scheduler_config)}
    if xl:
        extra["tokenizer_2"] = load_tokenizer(folder / "tokenizer_2")
    else:
        extra.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sine-checkpoint-") as tmp:
        try:
            described = folder  # what from_single_file reads; the folder returned stays the original
            changes = dict(unet_hints(path, folder))
            if linear is not None and linear != bool(unet_config.get("use_linear_projection", False)):
                changes["use_linear_projection"] = linear
            if changes:
                described = _patched_configs(folder, changes, Path(tmp))
            source = _plain_copy(path, state, Path(tmp)) if wrapped else path
            if old_clip is not None:
                extra["text_encoder"] = _text_encoder_from_old_keys(source, folder, dtype, old_clip)
            if no_vae or vae_companion(path) is not None:  # beside it: overrides a baked VAE
                extra["vae"] = _companion_vae(path, folder, dtype, Path(tmp))
            pipe = cls.from_single_file(str(_lowercase_suffix(source, Path(tmp))), config=str(described),
                                        local_files_only=True, torch_dtype=dtype, **extra)
        except (BadModel, ModelMissing):
            raise
        except Exception as exc:
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            if folder.parent == CONFIGS_DIR:  # the published architecture its keys resemble
                raise BadModel(f"{path} could not be loaded as {_FAMILY_NAMES[folder.name]}'s published architecture "
                               f"({why}): the file is incomplete, or it is a smaller or pruned version of it (e.g. "
                               "BK-SDM, SSD-1B, Segmind Vega); put its configs (a diffusers folder without weights) "
                               f"beside it as {sidecar_folder(path).name}/, or pass its diffusers folder") from None
            raise BadModel(f"{path} could not be loaded as described by {folder} ({why})") from None
    return pipe, folder


def _linear_projections(state: dict[str, Any]) -> bool | None:
    """Whether the file's UNet attention projections are linear (2-D, as SD 2.x and XL hold them) or
    1×1 convolutions (4-D, SD 1.x); None without any."""
    key = next((k for k in state if isinstance(k, str) and k.startswith(UNET_PREFIX) and k.endswith(".proj_in.weight")),
               None)
    return None if key is None else len(state[key].shape) == 2


def _patched_configs(folder: Path, unet_changes: dict[str, Any], tmp: Path) -> Path:
    """A copy of the config folder in `tmp` whose UNet config says what the file says of itself: its
    projection kind (the same maths either way; a `NAME.config/` that contradicts the file loads by
    the file), the size it was made for (`unet_hints`)."""
    import shutil

    copy = Path(shutil.copytree(folder, tmp / "configs"))
    config = read_json(copy / "unet" / "config.json")
    (copy / "unet" / "config.json").write_text(json.dumps({**config, **unet_changes}))
    log.info("%s: %s, as the checkpoint says", folder, ", ".join(f"{k} {v}" for k, v in unet_changes.items()))
    return copy


def _lowercase_suffix(path: Path, tmp: Path) -> Path:
    """diffusers reads a file as safetensors only when its suffix is lowercase: give an upper-case
    `.SAFETENSORS` a lowercase name through a link in `tmp` (never beside the painter's file)."""
    if path.suffix == path.suffix.lower():
        return path
    link = tmp / (path.stem + path.suffix.lower())
    link.symlink_to(path)
    return link


def _read_tensors(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors whose keys start with `prefix`, with the prefix taken off."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    state = read_checkpoint(path)
    return {k[len(prefix):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}


def _text_encoder_from_old_keys(path: Path, folder: Path, dtype: torch.dtype, prefix: str) -> Any:
    """The CLIP text encoder of a checkpoint with the old key names under `prefix` (see `old_clip_prefix`)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    model = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    level = "text_model." if hasattr(model, "text_model") else ""  # transformers >= 5.6 dropped the level
    state = {level + k: v for k, v in _read_tensors(path, prefix).items()}
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        raise BadModel(f"{path}: its text encoder (old {prefix}* names) lacks {len(missing)} weights, e.g. "
                       f"{missing[0]}; the file is incomplete: download it again")
    return model.to(dtype).eval()


def _companion_vae(path: Path, folder: Path, dtype: torch.dtype, tmp: Path) -> Any:
    """The VAE from `vae_companion` for a checkpoint shipped without one."""
    from diffusers import AutoencoderKL

    vae_path = vae_companion(path)
    if vae_path is None:  # check_contents refuses these first
        raise BadModel(f"{path} has no VAE baked in and no {path.stem}.vae.safetensors beside it")
    try:
        return AutoencoderKL.from_single_file(str(_lowercase_suffix(vae_path, tmp)), config=str(folder),
                                              subfolder="vae", local_files_only=True, torch_dtype=dtype)
    except Exception as exc:
        raise BadModel(f"{vae_path} (the VAE for {path.name}) could not be loaded ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200]}); it must be a VAE for this kind of model") from None


# --- telling checkpoints apart by content --------------------------------------------------------

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")


def content_fingerprint(path: Path) -> str:
    """sha256 over the model's weight and config files (a folder) or the file itself, so two
    checkpoints at the same path, or one model at two paths, are told apart / recognised by content.
    Hashes are remembered per (path, size, mtime) so a multi-GB file is read once."""
    if path.is_file():
        companion = vae_companion(path)  # the VAE beside a checkpoint is part of the model
        digest = _file_sha256(path.resolve())
        if companion is not None:
            digest = hashlib.sha256(f"{digest}+vae:{_file_sha256(companion.resolve())}".encode()).hexdigest()
        return "sha256:" + digest
    path = path.resolve()
    files = sorted(p for p in _files_within(path) if p.suffix in _WEIGHT_SUFFIXES or p.suffix == ".json")
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + _file_sha256(file).encode())
    return "sha256:" + digest.hexdigest()


def _files_within(folder: Path) -> list[Path]:
    """The files under `folder`, inside its SD component folders even when they are links (a `vae/`
    shared between model folders through a link is part of each model; `Path.rglob` does not enter
    links). Other links are not followed: a link to a big tree elsewhere is not read."""
    from .hub import COMPONENTS

    found = [p for p in folder.iterdir() if p.is_file()]
    for component in (p for p in folder.iterdir() if p.is_dir() and (p.name in COMPONENTS or not p.is_symlink())):
        for root, _, names in os.walk(component):  # inside a component: links to folders not followed
            found += [p for p in (Path(root) / n for n in names) if p.is_file()]
    return found


def _memo_path(create: bool) -> Path | None:
    """The hash memo in the weight-cache folder, only in one the cache owns: SINE_CACHE_DIR may name a folder
    of the user's. `create`: make and mark a new or empty folder as the cache first (as the daemon would), so a
    memo written before the daemon's first start does not make the daemon refuse the folder."""
    from sine_protocol.paths import cache_dir

    from .cache import HASH_MEMO, MARKER, WeightCache

    root = cache_dir()
    if not (root / MARKER).is_file():
        if not create:
            return None
        try:
            WeightCache(root)
        except OSError as exc:  # NotACacheFolder: a folder of the user's files; the hash is simply not kept
            log.debug("not remembering model hashes in %s: %s", root, exc)
            return None
    return root / HASH_MEMO


def _file_sha256(file: Path) -> str:
    stat = file.stat()
    key = f"{file}|{stat.st_size}|{stat.st_mtime_ns}"
    memo_file = _memo_path(create=False)
    try:
        memo = json.loads(memo_file.read_text()) if memo_file is not None else {}
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return str(memo[key])
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    if stat.st_size >= 1 << 24 and (memo_file := _memo_path(create=True)) is not None:  # slow to hash again
        memo[key] = value
        try:
            replace_privately(memo_file, json.dumps(memo).encode("utf-8"))
        except OSError as exc:
            log.debug("could not remember the hash of %s: %s", file, exc)
    return value


def check_contents(path: Path, state: dict[str, Any]) -> None:
    """Refuse, naming what it is and what to use instead, a file that is not a whole SD model: a LoRA,
    an embedding, a VAE, a ControlNet, SD3/Flux, or a checkpoint without its VAE or text encoder."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    if (inside := part_of_model(path)) is not None:
        raise ModelMissing(inside)
    keys = [k for k in state if isinstance(k, str)]
    kind = infer_diffusers_model_type(state) if keys else "none"
    what = what_it_holds(keys, kind)
    if what is not None:
        raise BadModel(f"{path} is {what}; SINE needs a whole text-to-image model: {USE_A_MODEL}")
    if any(k.startswith("edm_vpred.") for k in keys):  # how ComfyUI tells CosXL's sampling too
        raise BadModel(f"{path} is an EDM-trained SDXL model (CosXL: its edm_vpred.* keys), a v-prediction model on a "
                       "continuous noise schedule, which SINE's DDIM sampler on the DDPM schedule SD 1.x/2.x/XL were "
                       "trained with cannot sample; use SDXL base or one of its fine-tunes")
    dtypes = plain_safetensors_dtypes(path) if path.suffix.lower() == ".safetensors" else None
    ints = integer_weights(dtypes) if dtypes is not None else [
        k for k in keys if k.startswith(UNET_PREFIX) and isinstance(state[k], torch.Tensor)
        and not state[k].is_floating_point()]
    if (what := quantized(ints, keys)) is not None:
        raise BadModel(f"{path} is {what}; {QUANTIZED_INSTEAD}")
    if not any(k.startswith(TEXT_PREFIXES) for k in keys):
        raise BadModel(f"{path} holds a UNet but no text encoder (no cond_stage_model.* / conditioner.* weights); "
                       f"{USE_A_MODEL} with its text encoder")
    if not any(k.startswith(VAE_PREFIX) for k in keys) and vae_companion(path) is None:
        raise BadModel(f"{path} has no VAE baked in (no {VAE_PREFIX}* weights). {_vae_to_get(path, keys)}, or use a "
                       "version of the checkpoint with the VAE baked in")
    if (what := timestep_expert(safetensors_metadata(path))) is not None:
        raise BadModel(f"{path} is {what}")
    if (companion := vae_companion(path)) is not None:
        xl = any(k.startswith("conditioner.embedders.") for k in keys)
        why = not_a_vae(read_checkpoint(companion)) or _other_family(_vae_family(companion), xl)
        if why is not None:
            raise BadModel(f"{companion}, beside {path.name} as its VAE, {why}: put the VAE made for this model "
                           "there (or remove it, when the checkpoint has its VAE baked in)")


_FAMILY_VAES = {False: ("Stable Diffusion 1.x/2.x", "stabilityai/sd-vae-ft-mse-original",
                         "vae-ft-mse-840000-ema-pruned.safetensors"),
                 True: ("SDXL", "stabilityai/sdxl-vae", "sdxl_vae.safetensors")}


def _vae_to_get(path: Path, keys: list[str]) -> str:
    """Which VAE a checkpoint shipped without one takes (its family's published one), where to get it
    and where to put it."""
    family, repo, file = _FAMILY_VAES[any(k.startswith("conditioner.embedders.") for k in keys)]
    return (f"Download {family}'s VAE once while online ({file} from huggingface.co/{repo}, e.g. `hf download {repo} "
            f"{file}`) and put it next to the checkpoint as {path.stem}.vae.safetensors (a copy or a link)")


_XL_VAE_NAME = re.compile(r"sdxl|sd_xl|(^|[^a-z])xl[-_ ]?vae")
_SD_VAE_NAME = re.compile(r"vae-ft-(mse|ema)|sd[-_ ]?(1|v1|15|21)|v[12]-[15]")


def _vae_family(companion: Path) -> tuple[bool, str] | None:
    """(whether the VAE beside a checkpoint is SDXL's, what says so): its header's
    `modelspec.architecture`, else the name of the file it links to (painters link one shared VAE file
    beside several checkpoints: `sdxl_vae.safetensors`, `vae-ft-mse-840000-ema-pruned.safetensors`).
    None: nothing says; SD 1.x/2.x's and SDXL's VAEs have the same shapes and keys."""
    if (xl := stated_xl(safetensors_metadata(companion))) is not None:
        return xl, "its header's modelspec.architecture says so"
    target = companion.resolve().name.lower()
    if companion.is_symlink() and target != companion.name.lower():
        for xl, pattern in ((True, _XL_VAE_NAME), (False, _SD_VAE_NAME)):
            if pattern.search(target):
                return xl, f"it links to {companion.resolve().name}"
    return None


def _other_family(vae: tuple[bool, str] | None, model_xl: bool) -> str | None:
    """Why a VAE whose family something names (`_vae_family`) is not the checkpoint's (None: it is, or
    nothing says)."""
    if vae is None or vae[0] == model_xl:
        return None
    names = ("SDXL", "Stable Diffusion 1.x/2.x")
    family, model = (names if vae[0] else names[::-1])
    return (f"is {family}'s VAE ({vae[1]}) while the checkpoint is {model}: the UNet was trained on its own "
            "family's latents")


def not_a_vae(state: dict[str, Any]) -> str | None:
    """Why the tensors of a file put beside a checkpoint as its VAE are not an SD VAE (None: they are,
    in the original or diffusers layout)."""
    keys = [k for k in state if isinstance(k, str)]
    if any(k.startswith(("encoder.layers.", "decoder.layers.")) for k in keys):
        return "is TAESD (a tiny preview autoencoder that approximates the VAE, too rough to fine-tune on)"
    if not any(k.endswith("encoder.conv_in.weight") for k in keys):
        return "holds no VAE (no encoder.conv_in weights)"
    out = next((state[k] for k in keys if k.endswith("encoder.conv_out.weight") and not k.endswith("decoder.conv_out.weight")), None)
    if out is not None and len(out.shape) == 4 and out.shape[0] not in (4, 8):  # 2 × latents: mean and variance
        return (f"is a VAE of {out.shape[0] // 2}-channel latents (as SD3's and Flux's VAEs make), not the 4-channel "
                "latents of Stable Diffusion 1.x/2.x/XL")
    return None


def vae_companion(path: Path) -> Path | None:
    """`model.vae.safetensors` (or .pt/.ckpt) beside `model.safetensors`: the VAE for a checkpoint
    shipped without one, or replacing its baked one (the convention painters' tools use)."""
    for suffix in (".safetensors", ".pt", ".ckpt"):
        candidate = path.with_name(f"{path.stem}.vae{suffix}")
        if candidate.is_file():
            return candidate
    return None


def old_clip_prefix(keys: list[str]) -> str | None:
    """Where a checkpoint holds its CLIP text encoder without transformers' `text_model.` level
    (`cond_stage_model.transformer.embeddings…` in files saved before CLIP had it, SDXL's
    `conditioner.embedders.0.transformer.embeddings…` from tools on transformers ≥ 5.6, which
    dropped it), which diffusers does not read; None when it has the level."""
    return next((p for p in (OLD_CLIP, XL_CLIP) if any(k.startswith(p + "embeddings.") for k in keys)), None)
