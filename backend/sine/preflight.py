"""Checks that need no model, run before torch and the model load, so a mistake costs a second, not a minute.

Everything here imports only the standard library, Pillow, numpy and (for hub ids) huggingface_hub;
`tests/cli/test_instant_errors.py` proves it by running `sine edit` with `-X importtime`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .checkpoint_contents import CHECKPOINT_SUFFIXES, not_a_model_folder
from .devices import DTYPE_NAMES, compile_setting, threads_from_env
from .errors import BadInput, BadModel, ModelMissing
from .hub import cache_folder, cache_snapshot, cached_repo, several_snapshots
from .images import MAX_SIDE, MIN_SIDE, check_size, load_image, mask_levels, picture_notes
from .model_folder import check_folder_configs, check_pipeline_kind
from .recipes import model_recipes

DEMO_MODEL_NAME = "demo"  # models.py answers to the same name; it imports torch, so the name is repeated here
HUB_PATTERNS = ["model_index.json", "*/config.json", "*/*.json", "*/*.txt", "*/*.safetensors"]


@dataclass
class EditInputs:
    """What `sine edit` has read and checked before the engine starts."""

    source: Image.Image  # RGBA
    mask: Image.Image | None  # L
    width: int
    height: int
    is_demo_model: bool
    notes: tuple[str, ...] = ()  # said before the work: e.g. only an animation's first frame is used


def int_in(low: int, high: int | None = None) -> type:
    """An argparse `type` for an int in [low, high] (high None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range ({low}..{'' if high is None else high})")
        return value
    parse.__name__ = "int"
    return parse  # type: ignore[return-value]


def float_in(low: float, high: float | None = None, low_open: bool = False) -> type:
    """An argparse `type` for a float in [low, high] ((low, high] with `low_open`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
        too_low = value <= low if low_open else value < low
        if too_low or (high is not None and value > high) or value != value:
            bracket = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"{value} is out of range {bracket}{low}, {'∞' if high is None else high}]")
        return value
    parse.__name__ = "float"
    return parse  # type: ignore[return-value]


def check_edit_inputs(args: argparse.Namespace) -> EditInputs:
    """Source and mask decode as images, the output size is sane, the model can be found offline."""
    source = load_image(args.source)
    check_visible(source, args.source)
    width, height = output_size(source.size, args.width, args.height)
    if args.width is None and args.height is None and max(width, height) > MAX_SIDE:
        raise BadInput(f"{args.source} is {width}×{height}, and so would the result be; each side of a result must"
                       f" be {MIN_SIDE}..{MAX_SIDE} px: pass --width and --height within that")
    check_size(width, height)
    mask_picture = load_image(args.mask) if args.mask else None
    mask = mask_levels(mask_picture) if mask_picture is not None else None
    notes = (*picture_notes(source, args.source), *(picture_notes(mask_picture, args.mask) if mask_picture else ()))
    if mask is not None and mask.getextrema() == (0, 0):  # minutes of fine-tuning for the unchanged picture
        raise BadInput(f"--mask {args.mask} selects nothing (it is black everywhere; white = edit): leave --mask"
                       " out to edit the whole picture")
    if mask is not None and mask.size != source.size:  # as the daemon: a stretched mask edits the wrong place
        raise BadInput(f"the mask is {mask.width}×{mask.height} but the source is {source.width}×{source.height};"
                       " they must be the same size")
    if args.device is not None:
        check_device_name(args.device)
    check_environment(device_given=args.device is not None, dtype_given=args.dtype is not None)
    check_model(args.model)
    return EditInputs(source, mask, width, height, is_demo_model=args.model in (None, DEMO_MODEL_NAME), notes=notes)


def output_size(source: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """`--width`/`--height`: both given, exactly those; one given, the other follows the picture's aspect
    ratio (as an image editor's scale dialog; `--width` alone used to stretch); neither, the source's size."""
    if width is None and height is None:
        return source
    if height is None:
        return width, max(1, round(width * source[1] / source[0]))
    if width is None:
        return max(1, round(height * source[0] / source[1])), height
    return width, height


def check_environment(device_given: bool = False, dtype_given: bool = False) -> None:
    """SINE_THREADS, SINE_COMPILE, SINE_DEVICE, SINE_DTYPE and SINE_FT_DTYPE hold values the engine can use (the flags
    win over the first two): checked before torch, not as a traceback after the model loads or the
    fine-tune ends. Raises BadInput naming the variable."""
    threads_from_env()
    compile_setting()
    if os.environ.get("SINE_DEVICE") and not device_given:
        try:
            check_device_name(os.environ["SINE_DEVICE"])
        except BadInput as exc:
            raise BadInput(f"SINE_DEVICE: {exc}") from None
    for name in ("SINE_FT_DTYPE",) if dtype_given else ("SINE_DTYPE", "SINE_FT_DTYPE"):
        value = os.environ.get(name)
        if value and value.lower() not in DTYPE_NAMES:
            raise BadInput(f"{name}={value[:20]!r} is not a dtype; use one of {', '.join(DTYPE_NAMES)}")


def check_visible(image: Image.Image, path: str | Path) -> None:
    """A picture with no visible pixel (alpha 0 everywhere) would come back invisible: as the daemon,
    refuse it before any work."""
    if image.getchannel("A").getextrema() == (0, 0):
        raise BadInput(f"every pixel of {path} is fully transparent (alpha 0): there is nothing to edit")


def check_text(value: str | None, flag: str) -> None:
    """Text from the command line that the tokenizer can take: bytes that are not UTF-8 (a terminal in
    another encoding) arrive as lone surrogates and failed only after the model had loaded, as a traceback."""
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{flag} is not valid UTF-8 text (is the terminal set to another encoding?)") from None


def check_device_name(name: str) -> None:
    """cpu, cuda, cuda:N, mps: what torch.device accepts for our purposes."""
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise BadInput(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps")


def check_model(model: str | None) -> None:
    """The demo model, an existing local folder or file, or a hub id already in the local HF cache.

    Nothing is downloaded: `sine edit` runs offline. A missing hub id gets the command that installs it.
    """
    if model is None or model == DEMO_MODEL_NAME:
        return
    path = cache_snapshot(Path(model).expanduser())
    if path.is_dir():
        check_pipeline_kind(path)
    if path.is_dir() and not (path / "unet").is_dir():
        raise ModelMissing(several_snapshots(path) or not_a_model_folder(path))
    if (path / "unet" / "config.json").is_file():
        check_folder_configs(path)  # the loader's own checks, before torch: a refiner, an EDM or inpainting model…
    if path.is_file() and (why := not_a_model_file(path)) is not None:
        raise ModelMissing(why)
    if path.is_file():
        check_model_file(path)
    if path.is_dir():
        model_recipes(path)  # a hand-edited sine_recipes.json: named now, not after the load
    if path.exists():
        return  # the loader checks the rest (components, single-file checkpoints)
    hub_like = model.count("/") == 1 and not model.startswith((".", "/", "~")) and path.suffix not in CHECKPOINT_SUFFIXES
    if not hub_like:
        raise ModelMissing(f"no such model folder or file: {model}")
    if not hub_id_cached(model):
        if (why := several_snapshots(cache_folder(model))) is not None:
            raise ModelMissing(f"hub id {model!r}: {why}")
        raise ModelMissing(
            f"model {model!r} is not a local folder and not in the Hugging Face cache (sine edit works offline). "
            f"Install it once while online: `python3 installer/install.py --model {model}` "
            f"(or `hf download {model}`), or pass --model with a local folder")


_SAFETENSORS_INSTEAD = "use the model's .safetensors (or its diffusers folder) instead"
FOREIGN_FORMATS = {  # suffix -> what such a file is; sine-edit fine-tunes with PyTorch weights only
    ".sft": "a .safetensors file under ComfyUI's short suffix .sft: rename it to NAME.safetensors (sine-edit and "
            "diffusers read a checkpoint by its suffix)",
    ".yaml": "an LDM config (.yaml), not the weights: pass the checkpoint beside it (the .yaml is read from there)",
    ".yml": "an LDM config (.yml), not the weights: pass the checkpoint beside it",
    ".gguf": f"a GGUF file (quantized weights for other runtimes), which sine-edit cannot load; {_SAFETENSORS_INSTEAD}",
    ".onnx": f"an ONNX export, which sine-edit cannot load (it fine-tunes with PyTorch); {_SAFETENSORS_INSTEAD}",
    ".msgpack": f"a Flax export, which sine-edit cannot load (it fine-tunes with PyTorch); {_SAFETENSORS_INSTEAD}",
    ".xml": f"an OpenVINO export, which sine-edit cannot load (it fine-tunes with PyTorch); {_SAFETENSORS_INSTEAD}",
}
EXPORTS = {".onnx": "ONNX", ".msgpack": "Flax", ".xml": "OpenVINO"}  # a component folder holding only these


def not_a_model_file(path: Path) -> str | None:
    """Why an existing file given as the model is not one (None: a checkpoint suffix, the loader decides)."""
    from .checkpoint_contents import part_of_model

    if (inside := part_of_model(path)) is not None:
        return inside
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return None
    what = FOREIGN_FORMATS.get(path.suffix.lower())
    if what is not None:
        return f"{path} is {what}"
    return (f"{path} is neither a diffusers Stable Diffusion folder nor a checkpoint file "
            f"({', '.join(CHECKPOINT_SUFFIXES)})")


def check_model_file(path: Path) -> None:
    """Refuse, from its first bytes or safetensors header alone, a file that holds no weights or is
    not a whole model (a LoRA, an embedding, a VAE...); the loader asks the same of what passes."""
    from .checkpoint_contents import file_problem

    if (why := file_problem(path)) is not None:
        raise BadModel(why)


def hub_id_cached(repo_id: str) -> bool:
    """Whether a snapshot of `repo_id` is in the local HF cache (no network: local_files_only)."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=True)
    except Exception:  # LocalEntryNotFoundError, RepositoryNotFoundError, invalid ids...
        return cached_repo(repo_id) is not None  # fetched at a branch only (refs/fp16)
    return True
