"""The weight files of a diffusers component folder (unet/, vae/, text_encoder/…) as the libraries
save them: one file, or shards listed by an index json; plain or as the `fp16` variant, whose names
carry the variant before their last suffix (`diffusion_pytorch_model.fp16.safetensors`,
`diffusion_pytorch_model.safetensors.index.fp16.json`), as diffusers' and transformers' `_add_variant`
write them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import BadModel

_PLAIN = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "model.safetensors",
          "pytorch_model.bin", "diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json",
          "diffusion_pytorch_model.bin.index.json", "pytorch_model.bin.index.json")


def with_variant(name: str, variant: str) -> str:
    """`name` with `variant` before its last suffix, as the libraries name variant files."""
    stem, _, last = name.rpartition(".")
    return f"{stem}.{variant}.{last}"


# older diffusers named a variant's shard index `diffusion_pytorch_model.safetensors.fp16.index.json` (still read)
_LEGACY_INDEX = "diffusion_pytorch_model.safetensors.fp16.index.json"
WEIGHT_NAMES = _PLAIN + tuple(with_variant(name, "fp16") for name in _PLAIN) + (_LEGACY_INDEX,)


_STEMS = r"(?:diffusion_pytorch_model|model|pytorch_model)"
_SHARD = r"(?:-\d{5}-of-\d{5})?"
_FILE = re.compile(rf"{_STEMS}{_SHARD}(?:\.(\w+?))?{_SHARD}\.(?:safetensors|bin)")
_INDEX = re.compile(rf"{_STEMS}\.(?:safetensors|bin)(?:\.(\w+))?\.index(?:\.(\w+))?\.json")
PREFERRED_VARIANTS = ("fp16", "bf16", "ema")  # when a component has no plain weights; then any other, by name


def variant_of(name: str) -> str | None | bool:
    """The variant a weights or shard index file name carries ("fp16", "bf16", "ema", "non_ema"…;
    None: the plain weights); False for a file that is neither."""
    if (match := _FILE.fullmatch(name)) is not None:
        return match.group(1)
    if (match := _INDEX.fullmatch(name)) is not None:
        return match.group(1) or match.group(2)
    return False


def pick_variant(variants: set[str | None]) -> str | None:
    """Which of the variants found to read: the plain weights, else fp16, bf16, ema, else the first by name."""
    if None in variants or not variants:
        return None
    return next((v for v in PREFERRED_VARIANTS if v in variants), None) or sorted(str(v) for v in variants)[0]


def weight_names(sub: Path) -> tuple[str, ...]:
    """The weight file names the libraries read in `sub`: `WEIGHT_NAMES` and those of every other
    variant saved there (`….bf16.safetensors`, `….ema.safetensors`)."""
    found = {variant_of(f.name) for f in sub.iterdir() if f.is_file()} if sub.is_dir() else set()
    others = sorted(v for v in found if isinstance(v, str) and v != "fp16")
    return WEIGHT_NAMES + tuple(with_variant(name, v) for v in others for name in _PLAIN) + tuple(
        f"diffusion_pytorch_model.safetensors.{v}.index.json" for v in others)


def weights_variant(sub: Path) -> str | None:
    """The variant a component folder holding no plain weights has ("fp16" as fp16 hub downloads are,
    "bf16", a training repo's "ema"…); None when the plain weights are there (they are preferred)."""
    if any((sub / w).is_file() for w in _PLAIN):
        return None
    return pick_variant({v for v in (variant_of(n) for n in weight_names(sub) if (sub / n).is_file()) if v})


def check_shards(sub: Path) -> None:
    """Every shard the index json that will be read lists is a file in its folder: a missing shard is
    named (an incomplete download), and a name outside the folder (`../x`) is refused before any read."""
    variant = weights_variant(sub)
    for name in (n for n in weight_names(sub) if n.endswith(".json") and variant_of(n) == variant):
        index = sub / name
        single = with_variant(name.split(".index", 1)[0], variant) if variant else name.split(".index", 1)[0]
        if not index.is_file() or (name.startswith(("model.", "pytorch_model.")) and (sub / single).is_file()):
            continue  # transformers reads a single weights file before any index beside it
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BadModel(f"{index} is not a weights index (no weight_map of shard files): download the model "
                           "again") from None
        for shard in shards:
            if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
                raise BadModel(f"{index} names a file outside its folder ({shard!r}) as a shard: it was not saved "
                               "by diffusers or transformers; download the model again")
            if not (sub / shard).is_file():
                raise BadModel(f"{sub} lacks {shard}, one of the {len(shards)} shards its index {index.name} lists: "
                               "the download is incomplete; download the model again")


_DIFFUSERS_FILE, _TRANSFORMERS_FILE = "diffusion_pytorch_model.safetensors", "model.safetensors"


def other_library_file(sub: Path, diffusers: bool) -> Path | None:
    """The component's one safetensors file when it carries the other library's name and nothing the
    reading library looks for is there (a UNet's `model.safetensors`, a text encoder's
    `diffusion_pytorch_model.safetensors`, as some conversion scripts save them); None otherwise."""
    own = [n for n in weight_names(sub) if n.startswith("diffusion_pytorch_model") == diffusers]
    if any((sub / n).is_file() for n in own):
        return None
    other = sub / (_TRANSFORMERS_FILE if diffusers else _DIFFUSERS_FILE)
    return other if other.is_file() else None


def linked_under_own_name(sub: Path, weights: Path, diffusers: bool, tmp: Path) -> Path:
    """A folder in `tmp` linking `sub`'s files, with `weights` under the name the reading library reads."""
    folder = tmp / sub.name
    folder.mkdir()
    for file in sub.iterdir():
        if file.is_file() and file != weights:
            (folder / file.name).symlink_to(file.resolve())
    (folder / (_DIFFUSERS_FILE if diffusers else _TRANSFORMERS_FILE)).symlink_to(weights.resolve())
    return folder
