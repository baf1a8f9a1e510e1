"""The weight files of a diffusers component folder (unet/, vae/, text_encoder/…) as the libraries
save them: one file, or shards listed by an index json; plain or as the `fp16` variant, whose names
carry the variant before their last suffix (`diffusion_pytorch_model.fp16.safetensors`,
`diffusion_pytorch_model.safetensors.index.fp16.json`), as diffusers' and transformers' `_add_variant`
write them."""

from __future__ import annotations

import json
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


def weights_variant(sub: Path) -> str | None:
    """"fp16" for a component folder holding only fp16-variant weights (as fp16 hub downloads are);
    None when the plain weights are there (they are preferred)."""
    if any((sub / w).is_file() for w in _PLAIN):
        return None
    return "fp16" if any((sub / w).is_file() for w in WEIGHT_NAMES) else None


def check_shards(sub: Path) -> None:
    """Every shard the index json that will be read lists is a file in its folder: a missing shard is
    named (an incomplete download), and a name outside the folder (`../x`) is refused before any read."""
    variant = weights_variant(sub)
    for name in (n for n in WEIGHT_NAMES if n.endswith(".json") and (variant is None) == (".fp16." not in n)):
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
    own = [n for n in WEIGHT_NAMES if n.startswith("diffusion_pytorch_model") == diffusers]
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
