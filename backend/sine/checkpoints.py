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
from pathlib import Path
from typing import Any

import torch

from .errors import BadModel, ModelMissing
from .model_kind import check_usable

log = logging.getLogger("sine.models")

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
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
    """The checkpoint's tensors (safetensors: only their shapes, on the meta device), or a clear error."""
    if not path.is_file():
        raise ModelMissing(f"model file {path} does not exist")
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
        except Exception as exc:  # truncated / not safetensors at all
            raise BadModel(f"{path} is not a readable .safetensors file ({type(exc).__name__}: {exc}); "
                           "the download may be incomplete: download it again") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError as exc:
        raise BadModel(f"{path} holds Python objects besides tensors, so loading it could run code; refusing to "
                       f"unpickle it ({str(exc).splitlines()[0][:160]}). Use the .safetensors version of this "
                       "model") from None
    except Exception as exc:
        raise BadModel(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc}); the download may be "
                       "incomplete: download it again") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise BadModel(f"{path} holds no state dict of tensors")
    return state


def _is_zip(path: Path) -> bool:
    import zipfile

    return zipfile.is_zipfile(path)


def config_folder(path: Path, state: dict[str, Any]) -> Path:
    """The diffusers config folder describing the checkpoint: its sidecar, or our shipped one."""
    sidecar = sidecar_folder(path)
    if (sidecar / "model_index.json").is_file():
        return sidecar
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    conv = next((state[k] for k in _CONV_IN if k in state), None)
    if conv is not None and conv.shape[1] != 4:
        check_usable({"in_channels": int(conv.shape[1])}, {}, str(path))
    kind = infer_diffusers_model_type(state)
    if "inpaint" in kind:
        check_usable({"in_channels": 9}, {}, str(path))
    if kind not in _SHIPPED:
        raise BadModel(f"{path} is a {kind!r} checkpoint (as diffusers reads its keys), not a Stable Diffusion 1.x, "
                       "2.x or XL text-to-image model")
    name = _SHIPPED[kind]
    if name == "sd2" and not _is_v_model(path):
        name = "sd2-base"
    return CONFIGS_DIR / name


def _is_v_model(path: Path) -> bool:
    """SD2 checkpoints do not say whether they predict v (2.x 768) or ε (2.x-base 512); the original
    LDM yaml next to the file does (`parameterization: "v"`). Without one: v, as SD 2.1 (768)."""
    yaml = path.with_suffix(".yaml")
    if not yaml.is_file():
        return True
    return "parameterization" in (text := yaml.read_text(errors="replace")) and '"v"' in text.replace("'", '"')


def load_tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer from `folder`; configs without vocab files use the shipped CLIP BPE files."""
    from transformers import CLIPTokenizer

    if (folder / "vocab.json").is_file():
        return CLIPTokenizer.from_pretrained(folder)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings.pop("tokenizer_class", None)
    return CLIPTokenizer(vocab_file=str(TOKENIZER_DIR / "vocab.json"), merges_file=str(TOKENIZER_DIR / "merges.txt"),
                         **settings)


def load_single_file(path: Path, dtype: torch.dtype) -> tuple[Any, Path]:
    """(pipeline, config folder) for a checkpoint file, through `from_single_file`, offline."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    state = read_checkpoint(path)
    folder = config_folder(path, state)
    del state
    index = json.loads((folder / "model_index.json").read_text())
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    scheduler_config = dict(DDIMScheduler.load_config(folder / "scheduler"))
    check_usable(unet_config, scheduler_config, str(path))
    xl = "text_encoder_2" in index
    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    extra: dict[str, Any] = {"tokenizer": load_tokenizer(folder / "tokenizer"),
                             "scheduler": DDIMScheduler.from_config(scheduler_config)}
    if xl:
        extra["tokenizer_2"] = load_tokenizer(folder / "tokenizer_2")
    else:
        extra.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    try:
        pipe = cls.from_single_file(str(path), config=str(folder), local_files_only=True, torch_dtype=dtype, **extra)
    except (BadModel, ModelMissing):
        raise
    except Exception as exc:
        raise BadModel(f"{path} could not be loaded as described by {folder} ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:300]})") from None
    return pipe, folder


# --- telling checkpoints apart by content --------------------------------------------------------

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")


def content_fingerprint(path: Path) -> str:
    """sha256 over the model's weight and config files (a folder) or the file itself, so two
    checkpoints at the same path, or one model at two paths, are told apart / recognised by content.
    Hashes are remembered per (path, size, mtime) so a multi-GB file is read once."""
    path = path.resolve()
    if path.is_file():
        return "sha256:" + _file_sha256(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.suffix == ".json"))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + _file_sha256(file).encode())
    return "sha256:" + digest.hexdigest()


def _memo_path() -> Path:
    from sine_protocol.paths import cache_dir

    return cache_dir() / "model_hashes.json"


def _file_sha256(file: Path) -> str:
    stat = file.stat()
    key = f"{file}|{stat.st_size}|{stat.st_mtime_ns}"
    memo_file = _memo_path()
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return str(memo[key])
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    if stat.st_size >= 1 << 24:  # remember only what is slow to hash again
        memo[key] = value
        try:
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo_file.with_name(f".{memo_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo))
            os.replace(tmp, memo_file)
        except OSError as exc:
            log.debug("could not remember the hash of %s: %s", file, exc)
    return value
