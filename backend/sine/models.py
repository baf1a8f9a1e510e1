"""Load a Stable Diffusion 1.x/2.x model: a local diffusers folder, a hub id from the local cache,
or the bundled demo model. Everything goes through the components' own `from_pretrained`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from .devices import apply_cpu_threads, pick_device, pick_dtype
from .errors import ModelMissing
from .recipes import RECIPES, Recipe, model_recipes

DEMO_MODEL_NAME = "demo"
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"
_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


@dataclass
class BaseModel:
    """The frozen pre-trained model. Fine-tuning works on copies; this one is never modified."""

    model_id: str
    revision: str | None
    folder: Path
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler_config: dict
    device: torch.device
    dtype: torch.dtype
    offset_noise: float = 0.0  # how the base model was trained (see `training_offset_noise`)
    recipes: dict[str, Recipe] = field(default_factory=lambda: dict(RECIPES))  # fine-tune defaults for this model
    _empty_embedding: torch.Tensor | None = field(default=None, repr=False)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def sample_size(self) -> int:
        """The training resolution in pixels (512 for SD1.5, 64 for the demo model)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def pe_grid(self) -> int:
        """Cells per side of the positional table: the latent size of the 2×-size view of the source
        that patches are cut from (128 for SD1's 1024-px view, as in the paper; 32 for the demo model).
        Tying it to the model keeps one table cell = one latent cell, so the whole table resized to a
        training-size latent is a 2× downsample for every model, never an aliased 8× one."""
        return 2 * int(self.unet.config.sample_size)

    @property
    def pe_channels(self) -> int:
        return int(self.unet.config.block_out_channels[0])

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids.to(self.device)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Pre-trained text embeddings (B, L, D) in the inference dtype."""
        return self.text_encoder(self.tokenize(prompts))[0].to(self.dtype)

    def new_scheduler(self, steps: int | None = None) -> DDIMScheduler:
        """DDIM as SINE samples: leading spacing, steps_offset 1, no alpha-to-one, eta 0.

        With as many steps as training timesteps the offset would step past the last one: use 0.
        """
        config = dict(self.scheduler_config)
        offset = 0 if steps is not None and steps >= config.get("num_train_timesteps", 1000) else 1
        config.update(timestep_spacing="leading", steps_offset=offset, set_alpha_to_one=False)
        return DDIMScheduler.from_config(config)

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels in [-1, 1] (B, 3, H, W) → scaled latents (B, 4, H/f, W/f)."""
        dist = self.vae.encode(pixels.to(self.device, self.dtype)).latent_dist
        z = dist.sample(generator) if generator is not None else dist.mean
        return z * self.latent_scale

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → pixels in [0, 1] (B, 3, H, W), float32 on the CPU."""
        images = self.vae.decode(latents.to(self.dtype) / self.latent_scale).sample
        return ((images.float() + 1) / 2).clamp(0, 1).cpu()


def resolve_model_folder(model: str | os.PathLike | None, revision: str | None = None) -> tuple[Path, str, str | None]:
    """(folder, model id, revision) for a local folder, "demo", or a hub id found in the local HF cache."""
    if model is None or str(model) == DEMO_MODEL_NAME:
        if not (DEMO_MODEL_DIR / "model_index.json").exists():
            raise ModelMissing(f"the bundled demo model is missing from {DEMO_MODEL_DIR}; reinstall sine-edit "
                               "or pass --model PATH_OR_ID")
        return DEMO_MODEL_DIR, DEMO_MODEL_NAME, None
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "unet").is_dir():
            raise ModelMissing(f"{path} is not a diffusers Stable Diffusion folder (no unet/ inside)")
        return path.resolve(), str(path.resolve()), None
    repo_id = str(model)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise ModelMissing(f"model {repo_id!r} is neither a folder nor a Hugging Face hub id (owner/name)")
    from huggingface_hub import snapshot_download

    patterns = ["model_index.json", "*/config.json", "*/*.json", "*/*.txt", "*/*.safetensors"]
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_files_only=True)
    except Exception:
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            raise ModelMissing(_fetch_advice(repo_id, "HF_HUB_OFFLINE is set and it is not in the local cache")) from None
        try:
            folder = snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
        except Exception as exc:  # no network, unknown repo, auth...
            raise ModelMissing(_fetch_advice(repo_id, f"download failed: {type(exc).__name__}")) from None
    folder_path = Path(folder)
    return folder_path, repo_id, folder_path.name  # snapshot folders are named after the commit


def _fetch_advice(repo_id: str, why: str) -> str:
    return (f"model {repo_id!r} is not available ({why}). Fetch it once while online with "
            f"`huggingface-cli download {repo_id}` (or `python installer/install.py --model {repo_id}`), "
            "or pass a local diffusers folder with --model PATH")


def quiet_libraries() -> None:
    """Silence the libraries' per-load progress bars and dtype chatter (our own progress is enough)."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_base_model(
    model: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
) -> BaseModel:
    """Load every component, frozen, in eval mode, on `device` (auto: CUDA bf16/fp16, else CPU fp32)."""
    quiet_libraries()
    folder, model_id, rev = resolve_model_folder(model, revision)
    for name in _COMPONENTS:
        if not (folder / name).is_dir():
            raise ModelMissing(f"{folder} lacks the {name}/ component of a Stable Diffusion folder")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    if dev.type == "cpu":
        apply_cpu_threads()  # no more threads than free cores (see devices.py)
    dt = pick_dtype(dev, dtype)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=dt)
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=dt)
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=dt)
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    scheduler_config = dict(DDIMScheduler.load_config(folder / "scheduler"))
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
        module.eval()
        module.to(dev)
    if dev.type == "cuda":
        unet.to(memory_format=torch.channels_last)
    return BaseModel(model_id=model_id, revision=rev, folder=folder, vae=vae, unet=unet, text_encoder=text_encoder,
                     tokenizer=tokenizer, scheduler_config=scheduler_config, device=dev, dtype=dt,
                     offset_noise=training_offset_noise(folder), recipes=model_recipes(folder))


def training_offset_noise(folder: Path) -> float:
    """The "offset noise" the base model was trained with, from its `training_info.json` (our demo
    model writes one; SD folders have none: 0). Fine-tuning must use the same noise: a model trained
    with offset noise learned not to read the picture's mean colour off z_t, but a fine-tune without
    it teaches exactly that, and at sampling time the mean of the starting noise then picks the colours."""
    info = folder / "training_info.json"
    if not info.is_file():
        return 0.0
    try:
        return float(json.loads(info.read_text()).get("config", {}).get("offset_noise", 0.0))
    except (ValueError, TypeError, AttributeError):
        return 0.0
