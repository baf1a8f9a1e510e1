"""What sine-edit fetches of a Hugging Face hub repository: the diffusers folder it loads, not the whole
repository. Stable Diffusion repositories hold each component's weights several times (plain, fp16,
non-EMA, pickled .bin) beside whole-model .ckpt/.safetensors files, ONNX/Flax exports and a safety
checker: tens of GB where the model SINE loads is a few."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")
_PREFERRED = ("fp16", "bf16", "ema")  # a component's variants without plain weights, in this order (weight_files)


def _variant(name: str) -> str | None:
    """The variant a weights file name carries (`diffusion_pytorch_model.fp16-00001-of-00002.safetensors`:
    "fp16"); None for the plain weights."""
    stem = _SHARD.sub("", name.rsplit(".", 1)[0])
    return stem.split(".", 1)[1] if "." in stem else None


def _index_of(name: str, suffix: str) -> str | None | bool:
    """For the shard index of `suffix` weights, the variant it lists (None: plain), as now named
    (`….safetensors.index.fp16.json`) or as older diffusers named it (`….safetensors.fp16.index.json`);
    False for any other file."""
    parts = name.split(".")
    if name.endswith(".json") and "index" in parts and suffix.strip(".") in parts:
        rest = [p for p in parts[1:] if p not in ("safetensors", "bin", "index", "json")]
        return rest[0] if rest else None
    return False


def select_files(files: list[str]) -> list[str]:
    """Of a repository's file list, what the loader reads: model_index.json, and for each SD component
    its configs, tokenizer files and one copy of its weights: the plain safetensors when there are
    (else a variant's: fp16, bf16, ema, else the first by name), pickled .bin only for a component
    without safetensors."""
    chosen = [f for f in files if f == "model_index.json"]
    for component in COMPONENTS:
        inside = [f for f in files if PurePosixPath(f).parent == PurePosixPath(component)]
        chosen += [f for f in inside if f.endswith((".json", ".txt")) and ".index." not in f]
        for suffix in (".safetensors", ".bin"):
            weights = [f for f in inside if f.endswith(suffix)]
            found = sorted({str(v) for v in (_variant(PurePosixPath(f).name) for f in weights) if v is not None})
            for variant in (None, *_PREFERRED, *(v for v in found if v not in _PREFERRED)):
                picked = [f for f in weights if _variant(PurePosixPath(f).name) == variant]
                if picked:
                    chosen += picked + [f for f in inside if _index_of(PurePosixPath(f).name, suffix) == variant]
                    break
            if weights:
                break
    return chosen


def cache_snapshot(path: Path) -> Path:
    """A hub cache repository folder (`models--owner--name`, holding refs/ and snapshots/, as painters
    find it in ~/.cache/huggingface/hub) -> the snapshot its refs/main names (or its only snapshot); any other path as it is.
    Standard library only (the installer reads this module from the checkout)."""
    ref, snapshots = path / "refs" / "main", path / "snapshots"
    refs = sorted(r for r in (path / "refs").iterdir() if r.is_file()) if (path / "refs").is_dir() else []
    if snapshots.is_dir() and (ref.is_file() or len(refs) == 1):  # fetched at a branch only (refs/fp16): its ref
        snapshot = snapshots / (ref if ref.is_file() else refs[0]).read_text().strip()
        if snapshot.is_dir():
            return snapshot
    if snapshots.is_dir() and len(only := [p for p in snapshots.iterdir() if p.is_dir()]) == 1:
        return only[0]  # fetched at a revision (no refs/main): its one snapshot
    if snapshots.is_dir() and len(models := _model_snapshots(snapshots)) == 1:
        return models[0]  # no ref says which (a cache copied without refs/): the one holding a model
    return path


def _model_snapshots(snapshots: Path) -> list[Path]:
    """The snapshots holding a model (a unet/ or a checkpoint file), newest first."""
    found = [p for p in snapshots.iterdir() if p.is_dir() and (
        (p / "unet").is_dir() or any(f.suffix in (".safetensors", ".ckpt") for f in p.iterdir()))]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def several_snapshots(path: Path) -> str | None:
    """Why a hub cache repository folder names no model: several snapshots hold one and no ref says
    which is current (a cache copied without refs/), with the folder to pass; None otherwise."""
    snapshots = path / "snapshots"
    if not snapshots.is_dir() or cache_snapshot(path) != path or len(models := _model_snapshots(snapshots)) < 2:
        return None
    return (f"{path} is a Hugging Face cache folder holding {len(models)} snapshots of the model and no refs/main "
            f"saying which is current (a cache copied without refs/): pass one, e.g. --model {models[0]} (the "
            "newest)")


def cache_folder(repo_id: str) -> Path:
    """Where hub id `repo_id` sits in the user's hub cache (HF_HUB_CACHE)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def cached_repo(repo_id: str) -> Path | None:
    """The snapshot of hub id `repo_id` in the user's hub cache as `cache_snapshot` finds it (refs/main,
    or the one ref or snapshot there), when huggingface_hub's own look-up, which reads refs/main only,
    does not; None when it is not there."""
    repo = cache_folder(repo_id)
    snapshot = cache_snapshot(repo) if repo.is_dir() else repo
    return snapshot if snapshot != repo and (snapshot / "model_index.json").is_file() else None


def display_name(path: Path) -> str:
    """A model folder's name as the painter knows it: a hub cache snapshot (`models--owner--name/
    snapshots/<commit>`) by its repository's name, any other path by its own."""
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.parent.parent.name.split("--", 2)[-1]
    return path.name


def download(repo_id: str, revision: str | None = None, cache_dir: str | None = None) -> str:
    """Fetch what `select_files` picks of `repo_id` into the hub cache; the snapshot folder. Offline
    (HF_HUB_OFFLINE, or the hub unreachable) the snapshot already in `cache_dir` or the user's own
    hub cache is taken, as the loader takes it."""
    from huggingface_hub import HfApi, constants, snapshot_download

    try:
        if constants.HF_HUB_OFFLINE:
            raise OSError("HF_HUB_OFFLINE is set")
        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception as exc:  # offline, no network, unknown repository...
        for cache in (cache_dir, None):
            try:
                return snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True)
            except Exception:  # not in this cache: the next one
                continue
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise OSError(f"{repo_id} is not in the Hugging Face cache and could not be fetched ({why}); check the id, "
                      "or download it once while online, or pass a local folder") from None
    return snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=select_files(files))
