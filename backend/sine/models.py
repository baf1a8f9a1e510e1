"""Load a Stable Diffusion model (1.x, 2.x ε or v): a local diffusers folder, a single-file checkpoint
(.safetensors/.ckpt, see `checkpoints`), a hub id from the local cache, or the bundled demo model.
Folders go through the components' own `from_pretrained`, files through diffusers' `from_single_file`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from . import xl
from .checkpoint_contents import safetensors_metadata, stated_clip_skip
from .checkpoints import (
    check_shapes,
    config_folder,
    content_fingerprint,
    is_single_file,
    load_single_file,
    not_weights,
    prediction_guessed,
    read_checkpoint,
    single_file_scheduler,
    stored_note,
    unet_hints,
)
from .devices import apply_cpu_threads, pick_device, pick_dtype, weight_dtype
from .errors import BadInput, BadModel, ModelMissing
from .hub import cache_folder, cache_snapshot, cached_repo, display_name, download, several_snapshots
from .model_folder import (
    check_folder_configs,
    check_pipeline_kind,
    check_text_parts,
    check_vae_folder,
    read_json,
)
from .model_kind import (
    ModelKind,
    check_usable,
    distilled_note,
    forced_scheduler_config,
    latent_side,
    log,
    model_kind,
    vae_note,
)
from .predictions import install_epsilon_outputs
from .preflight import EXPORTS, HUB_PATTERNS, not_a_model_file, not_a_model_folder
from .recipes import RECIPES, Recipe, model_recipes
from .weight_files import (
    WEIGHT_NAMES,
    check_shards,
    linked_under_own_name,
    other_library_file,
    weight_names,
    weights_variant,
)

DEMO_MODEL_NAME = "demo"
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"
PAPER_TRAIN_TIMESTEPS = 1000  # SD's schedule, on which the paper's K (and --k) count timesteps
ZERO_SNR_FLOOR = 2.0**-24  # ᾱ at t=999 of zero-terminal-SNR models, as diffusers' Euler scheduler floors it


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
    scheduler_overrides: list[str] = field(default_factory=list)  # what SINE changed in the model's scheduler config
    text_encoder_2: CLIPTextModelWithProjection | None = None  # SDXL's second (OpenCLIP bigG) encoder
    tokenizer_2: CLIPTokenizer | None = None
    zeros_for_empty_prompt: bool = True  # SDXL base: the empty prompt's embedding is zeros (model_index.json)
    _empty_embedding: torch.Tensor | None = field(default=None, repr=False)
    _cut_prompts: set[str] = field(default_factory=set, repr=False)  # prompts already said to be cut

    @property
    def prediction_type(self) -> str:
        """What the UNet predicts: "epsilon", "v_prediction" or "sample" (the scheduler config's prediction_type)."""
        return str(self.scheduler_config.get("prediction_type", "epsilon"))

    @property
    def is_xl(self) -> bool:
        """SDXL: two text encoders, pooled embeddings and time_ids (see `xl`)."""
        return self.text_encoder_2 is not None

    @property
    def kind(self) -> ModelKind:
        return model_kind(dict(self.unet.config), self.scheduler_config, self.text_encoder.config.to_dict(),
                          self.vae_scale_factor)

    @property
    def unet_params(self) -> int:
        """The UNet's parameter count: what decides whether a second CPU thread pays (devices.py)."""
        return sum(p.numel() for p in self.unet.parameters())

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    def _latent_norm(self, like: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """(shift, scale) with latents = (z − shift) · scale: the VAE's `shift_factor` and
        `scaling_factor`, or per channel its `latents_mean` and `scaling_factor / latents_std` (as
        diffusers' SDXL pipelines read them)."""
        config = self.vae.config
        mean, std = config.get("latents_mean"), config.get("latents_std")
        if mean is not None and std is not None:
            view = (1, -1, 1, 1)
            shift = torch.tensor(mean, dtype=like.dtype, device=like.device).view(view)
            return shift, self.latent_scale / torch.tensor(std, dtype=like.dtype, device=like.device).view(view)
        return float(config.get("shift_factor") or 0.0), self.latent_scale

    @property
    def sample_size(self) -> int:
        """The training resolution in pixels (512 for SD1.5, 64 for the demo model)."""
        return latent_side(dict(self.unet.config)) * self.vae_scale_factor

    @property
    def pe_grid(self) -> int:
        """Cells per side of the positional table: the latent size of the 2×-size view of the source
        that patches are cut from (128 for SD1's 1024-px view, as in the paper; 32 for the demo model).
        Tying it to the model keeps one table cell = one latent cell, so the whole table resized to a
        training-size latent is a 2× downsample for every model, never an aliased 8× one."""
        return 2 * latent_side(dict(self.unet.config))

    @property
    def pe_channels(self) -> int:
        return int(self.unet.config.block_out_channels[0])

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids.to(self.device)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Pre-trained text embeddings (B, L, D) in the inference dtype (SDXL: packed, see `xl`)."""
        self.warn_cut(prompts)
        if self.is_xl:
            return xl.encode([self.tokenizer, self.tokenizer_2], [self.text_encoder, self.text_encoder_2], prompts,
                             self.device, self.zeros_for_empty_prompt).to(self.dtype)
        return self.text_encoder(self.tokenize(prompts))[0].to(self.dtype)

    def warn_cut(self, prompts: list[str] | list[tuple[str, str]]) -> None:
        """The tokenizer cuts a prompt longer than the text encoder reads (CLIP: 75 tokens) without a
        word: log its note (`job_notes`: which words are ignored), once per prompt. A prompt is its text
        or (what the painter calls it, text)."""
        from .job_notes import cut_note

        for item in prompts:
            what, prompt = item if isinstance(item, tuple) else ("a prompt", item)
            if prompt in self._cut_prompts:
                continue
            note = cut_note(self.tokenizer, what, prompt)
            if note is not None:
                self._cut_prompts.add(prompt)
                log.warning("%s; shorten it", note)

    @property
    def train_timesteps(self) -> int:
        """How many timesteps the model was trained with (SD: 1000; some fine-tunes 500 or 2000)."""
        return int(self.scheduler_config.get("num_train_timesteps", PAPER_TRAIN_TIMESTEPS))

    def model_timestep(self, t: int) -> int:
        """A timestep on SD's 1000-step scale (the paper's K, `--k`) as this model's: the same share of
        its schedule, so the fine-tuned model guides the same share of the steps (K = 400: the first 60 %)."""
        return round(t * self.train_timesteps / PAPER_TRAIN_TIMESTEPS)

    def new_scheduler(self, steps: int | None = None) -> DDIMScheduler:
        """DDIM as SINE samples: leading spacing (trailing for models made for it), steps_offset 1, no
        alpha-to-one, eta 0.

        With as many steps as training timesteps the offset would step past the last one: use 0; more
        steps than that are refused in words (diffusers' ValueError came after the fine-tune).
        """
        config, _ = forced_scheduler_config(self.scheduler_config)
        config["prediction_type"] = "epsilon"  # the UNets answer in ε (see predictions.install_epsilon_outputs)
        if steps is not None and steps > self.train_timesteps:
            raise BadInput(f"{steps} sampling steps asked, but this model was trained with {self.train_timesteps} "
                           f"timesteps: ask for {self.train_timesteps} steps or fewer")
        offset = 0 if steps is not None and steps >= self.train_timesteps else 1
        config.update(steps_offset=offset, set_alpha_to_one=False)
        scheduler = DDIMScheduler.from_config(config)
        if config.get("rescale_betas_zero_snr"):  # ᾱ = 0 at the last step: ε → x̂₀ would divide by 0
            scheduler.alphas_cumprod[-1] = max(float(scheduler.alphas_cumprod[-1]), ZERO_SNR_FLOOR)
        return scheduler

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels in [-1, 1] (B, 3, H, W) → scaled latents (B, 4, H/f, W/f)."""
        def encode() -> torch.Tensor:
            dist = self.vae.encode(pixels.to(self.device, weight_dtype(self.vae))).latent_dist
            z = dist.sample(generator) if generator is not None else dist.mean
            shift, scale = self._latent_norm(z)
            return (z - shift) * scale

        return self._finite_vae(encode, pixels, "encodes")

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → pixels in [0, 1] (B, 3, H, W), float32 on the CPU."""
        def decode() -> torch.Tensor:
            z = latents.to(weight_dtype(self.vae))
            shift, scale = self._latent_norm(z)
            return self.vae.decode(z / scale + shift).sample

        images = self._finite_vae(decode, latents, "decodes")
        return ((images.float() + 1) / 2).clamp(0, 1).cpu()

    def _finite_vae(self, run: Callable[[], torch.Tensor], given: torch.Tensor, what: str) -> torch.Tensor:
        """`run()`, the VAE's pass; a half-precision VAE whose activations overflow (NaN/inf from
        finite input) is run in fp32 from then on, as diffusers' `force_upcast` and A1111's NaN check
        do, instead of turning the edit black."""
        out = run()
        if torch.isfinite(out).all() or not torch.isfinite(given).all():
            return out
        if weight_dtype(self.vae) in (torch.float16, torch.bfloat16):
            log.warning("%s: the VAE overflowed in %s when it %s; it runs in fp32 from now on", self.model_id,
                        str(weight_dtype(self.vae)).removeprefix("torch."), what)
            self.vae.float()
            out = run()
        if not torch.isfinite(out).all():
            raise BadModel(f"the VAE of {self.model_id} gives NaN/inf when it {what}, even in fp32: it is broken; "
                           "give the model a working VAE, or download it again")
        return out


def checkpoint_path(model: str | os.PathLike) -> Path:
    """The absolute path of a checkpoint file, symlinks NOT followed: a file in the Hugging Face cache
    is a link to a blob named by its hash, and its .yaml, sidecar and VAE sit beside the link."""
    return Path(os.path.abspath(Path(str(model)).expanduser()))


def resolve_model_folder(model: str | os.PathLike | None, revision: str | None = None) -> tuple[Path, str, str | None]:
    """(folder, model id, revision) for a local folder, "demo", or a hub id found in the local HF cache."""
    if model is None or str(model) == DEMO_MODEL_NAME:
        if not (DEMO_MODEL_DIR / "model_index.json").exists():
            raise ModelMissing(f"the bundled demo model is missing from {DEMO_MODEL_DIR}; reinstall sine-edit "
                               "or pass --model PATH_OR_ID")
        return DEMO_MODEL_DIR, DEMO_MODEL_NAME, None
    path = cache_snapshot(Path(model).expanduser())
    if path.exists():
        check_pipeline_kind(path)
        if not (path / "unet").is_dir():
            raise ModelMissing((several_snapshots(path) or not_a_model_folder(path)) if path.is_dir()
                               else str(not_a_model_file(path)))
        return path.resolve(), str(path.resolve()), None
    repo_id = str(model)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise ModelMissing(f"model {repo_id!r} is neither a folder nor a Hugging Face hub id (owner/name)")
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS, local_files_only=True)
    except Exception:
        if revision is None and (cached := cached_repo(repo_id)) is not None:
            return cached, repo_id, cached.name  # fetched at a branch only (refs/fp16)
        if (why := several_snapshots(cache_folder(repo_id))) is not None:
            raise ModelMissing(f"hub id {repo_id!r}: {why}") from None
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            raise ModelMissing(_fetch_advice(repo_id, "HF_HUB_OFFLINE is set and it is not in the local cache")) from None
        try:
            folder = download(repo_id, revision)
        except Exception as exc:  # no network, unknown repo, auth...
            raise ModelMissing(_fetch_advice(repo_id, f"download failed: {type(exc).__name__}")) from None
    folder_path = Path(folder)
    check_pipeline_kind(folder_path)
    if not (folder_path / "unet").is_dir():  # e.g. a repository of one checkpoint file: name it
        raise ModelMissing(f"hub id {repo_id!r}: {not_a_model_folder(folder_path)}")
    return folder_path, repo_id, folder_path.name  # snapshot folders are named after the commit


def _fetch_advice(repo_id: str, why: str) -> str:
    return (f"model {repo_id!r} is not available ({why}). Fetch it once while online with "
            f"`hf download {repo_id}` (or `python3 installer/install.py --model {repo_id}`), "
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
    """Load every component, frozen, in eval mode, on `device` (auto: CUDA bf16/fp16, else CPU fp32).

    `revision` of a local folder or file is its content fingerprint (cache keys tell checkpoints
    apart by content); of a hub model, its snapshot commit."""
    quiet_libraries()
    dev = device if isinstance(device, torch.device) else pick_device(device)
    dt = pick_dtype(dev, dtype)
    if is_single_file(model):
        path = checkpoint_path(model)
        pipe, configs = load_single_file(path, dt)
        folder, model_id, rev = path, str(path), content_fingerprint(path)
        unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
        text_encoder_2, tokenizer_2 = getattr(pipe, "text_encoder_2", None), getattr(pipe, "tokenizer_2", None)
        zeros = bool(pipe.config.get("force_zeros_for_empty_prompt", True))
        raw_scheduler = dict(pipe.scheduler.config)
        where = str(path)
        if text_encoder_2 is None:
            apply_clip_skip(text_encoder, stated_clip_skip(safetensors_metadata(path)), where)
    else:
        folder, model_id, rev = resolve_model_folder(model, revision)
        if rev is None:
            rev = content_fingerprint(folder)
        unet, vae, text_encoder, tokenizer, raw_scheduler = _load_folder(folder, dt)
        text_encoder_2, tokenizer_2, zeros = _load_xl_parts(folder, dt)
        configs, where = folder, str(folder)
    for tok, encoder in ((tokenizer, text_encoder), (tokenizer_2, text_encoder_2)):
        if tok is not None and encoder is not None:  # no model_max_length in its config reads as 1e30
            tok.model_max_length = min(int(tok.model_max_length), int(encoder.config.max_position_embeddings))
    check_finite_weights(where, unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2)
    scheduler_config, overridden = forced_scheduler_config(raw_scheduler, where)
    for module in (unet, vae, text_encoder, text_encoder_2):
        if module is not None:
            module.requires_grad_(False)
            module.eval()
            module.to(dev)
    if text_encoder_2 is not None:
        xl.install_hook(unet, latent_side(dict(unet.config)) * 2 ** (len(vae.config.block_out_channels) - 1))
        if dt == torch.float16 and vae.config.get("force_upcast", True):
            vae.float()  # SDXL's VAE overflows in fp16: encode/decode in fp32 (what its config asks)
    if dev.type == "cuda":
        unet.to(memory_format=torch.channels_last)
    base = BaseModel(model_id=model_id, revision=rev, folder=folder, vae=vae, unet=unet, text_encoder=text_encoder,
                     tokenizer=tokenizer, scheduler_config=scheduler_config, device=dev, dtype=dt,
                     offset_noise=training_offset_noise(configs), scheduler_overrides=overridden,
                     text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, zeros_for_empty_prompt=zeros)
    if base.prediction_type != "epsilon":  # v or x₀ ("sample"): answered in ε
        install_epsilon_outputs(unet, base.new_scheduler().alphas_cumprod, base.prediction_type)
    distilled = distilled_note(display_name(Path(model_id)), dict(unet.config), raw_scheduler)
    for note in (distilled, vae_note(dict(unet.config), dict(vae.config))):
        if note:
            log.warning("%s %s", model_id, note)
    base.recipes = kind_recipes(base.kind, model_recipes(configs))
    if dev.type == "cpu":
        apply_cpu_threads(model_params=base.unet_params)  # free cores; one for a small model (devices.py)
    return base


def apply_clip_skip(text_encoder: CLIPTextModel, skip: int | None, where: str) -> None:
    """Clip skip `skip` (A1111's count: 2 = the penultimate layer) as the model was trained with it: the
    text encoder's last `skip - 1` layers are dropped, so its output, through its final layer norm, is
    that layer's on every path (prompts, a trained text encoder) as A1111's and diffusers' clip_skip
    read it. SDXL is not given one (it reads penultimate layers already)."""
    layers = getattr(text_encoder, "text_model", text_encoder).encoder.layers  # text_model: transformers < 5.6
    if skip is None or skip == 1:
        return
    if skip > len(layers):  # no layer would be left
        log.warning("%s states clip skip %d, but its text encoder has %d layers: ignored", where, skip, len(layers))
        return
    del layers[len(layers) - (skip - 1):]
    text_encoder.config.num_hidden_layers = len(layers)
    log.info("%s: clip skip %d (its header): prompts read from text encoder layer %d of %d", where, skip,
             len(layers), len(layers) + skip - 1)


_PART_NAMES = {"unet": "UNet", "vae": "VAE", "text_encoder": "text encoder", "text_encoder_2": "second text encoder"}


def check_finite_weights(where: str, **parts: torch.nn.Module | None) -> None:
    """Refuse, naming the part and one tensor, weights holding inf or NaN (a broken merge or
    conversion): they load, then turn every edit black or grey after the fine-tune."""
    single = is_single_file(where)
    for part, module in parts.items():
        for name, tensor in (module.state_dict().items() if module is not None else ()):
            if tensor.is_floating_point() and not torch.isfinite(tensor.sum(dtype=torch.float32)):  # 20× isfinite's speed
                if part == "vae":
                    fix = (f"put a working VAE beside it as {Path(where).stem}.vae.safetensors, or download it again"
                           if single else "put a working VAE in its vae/ folder, or download the model again")
                else:
                    fix = "download it again, or use another version of the model"
                raise BadModel(f"{where}: its {_PART_NAMES[part]} holds non-finite weights (inf or NaN, e.g. {name}): "
                               f"a broken merge or conversion; {fix}")


def _load_folder(folder: Path, dt: torch.dtype) -> tuple:
    """The components of a diffusers folder; a missing or broken file is named in the error."""
    unet_config, scheduler_config = check_folder_configs(folder)
    check_component_files(folder)
    unet = _from_pretrained(UNet2DConditionModel, folder / "unet", dt)
    vae = _from_pretrained(AutoencoderKL, folder / "vae", dt)
    text_encoder = _from_pretrained(CLIPTextModel, folder / "text_encoder", dt)
    tokenizer = _load_tokenizer(folder / "tokenizer")
    return unet, vae, text_encoder, tokenizer, scheduler_config


def check_component_files(folder: Path) -> None:
    """Each weighted component of a diffusers folder holds a weights file (a dangling link to a hub
    blob still downloading counts as none), or the folder is named as an export sine-edit cannot use;
    each tokenizer its vocabulary."""
    for name in ("tokenizer", "tokenizer_2"):
        if (folder / name).is_dir():
            check_vocabulary(folder / name)
    names = ("unet", "vae", "text_encoder") + (("text_encoder_2",) if (folder / "text_encoder_2").is_dir() else ())
    for name in names:
        if not any((folder / name / w).is_file() for w in weight_names(folder / name)):
            exported = sorted({EXPORTS[f.suffix] for f in (folder / name).iterdir() if f.suffix in EXPORTS})
            if exported:
                raise ModelMissing(f"{folder} is an {' / '.join(exported)} export ({folder / name} holds no PyTorch "
                                   "weights), which sine-edit cannot fine-tune; use the PyTorch (safetensors) "
                                   "version of this model")
            raise ModelMissing(f"{folder / name} holds no weights file ({WEIGHT_NAMES[0]} or model.safetensors): "
                               "the download is incomplete; download the model again")


def kind_recipes(kind: ModelKind, recipes: dict[str, Recipe]) -> dict[str, Recipe]:
    """The defaults for this kind of model (`KIND_DEFAULTS`), for each recipe the folder's
    sine_recipes.json leaves as it is."""
    overrides = kind.defaults.recipes
    return {name: replace(r, **overrides.get(name, {})) if r == RECIPES.get(name) else r
            for name, r in recipes.items()}


def _load_xl_parts(folder: Path, dt: torch.dtype) -> tuple:
    """SDXL's second text encoder and tokenizer (None, None for SD1/SD2) and its empty-prompt rule."""
    if not (folder / "text_encoder_2").is_dir():
        return None, None, True
    index = read_json(folder / "model_index.json") if (folder / "model_index.json").is_file() else {}
    encoder = _from_pretrained(CLIPTextModelWithProjection, folder / "text_encoder_2", dt)
    return encoder, _load_tokenizer(folder / "tokenizer_2"), bool(index.get("force_zeros_for_empty_prompt",
                                                                                           True))


def _load_tokenizer(sub: Path) -> CLIPTokenizer:
    """CLIP's tokenizer from a component folder; without its vocabulary transformers builds a
    two-token tokenizer that turns every prompt into <unk> (silently): refused, naming the folder."""
    check_vocabulary(sub)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(sub)
    except Exception as exc:
        raise BadModel(f"{sub} could not be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                       "download the model again") from None
    if len(tokenizer) < 100:
        raise BadModel(_NO_VOCABULARY.format(sub))
    return tokenizer


_NO_VOCABULARY = ("{} holds no vocabulary (vocab.json + merges.txt, or tokenizer.json): every prompt would read as "
                  "unknown words; download the model again")


def check_vocabulary(sub: Path) -> None:
    """A tokenizer folder holds its vocabulary files (without them transformers builds a two-token
    tokenizer that reads every prompt as <unk>)."""
    if not (((sub / "vocab.json").is_file() and (sub / "merges.txt").is_file()) or (sub / "tokenizer.json").is_file()):
        raise BadModel(_NO_VOCABULARY.format(sub))


def _from_pretrained(cls: type, sub: Path, dt: torch.dtype):  # noqa: ANN202 - the class's own type
    """`cls.from_pretrained(sub)`; a weights file named as the other library names it (`other_library_file`)
    is read through a link under its own name in a temporary folder (never written beside the model)."""
    from diffusers import ModelMixin

    diffusers = issubclass(cls, ModelMixin)
    if (weights := other_library_file(sub, diffusers)) is None:
        return _read_component(cls, sub, dt)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sine-component-") as tmp:
        log.info("%s: reading %s as %s names it", sub, weights.name, "diffusers" if diffusers else "transformers")
        linked = linked_under_own_name(sub, weights, diffusers, Path(tmp))
        try:
            return _read_component(cls, linked, dt)
        except BadModel as exc:  # named as the painter's folder, not the temporary one
            raise BadModel(str(exc).replace(str(linked), str(sub))) from None


def _read_component(cls: type, sub: Path, dt: torch.dtype):  # noqa: ANN202 - the class's own type
    check_shards(sub)
    try:
        pickled = not any((sub / w).is_file() for w in weight_names(sub) if ".safetensors" in w)  # .bin only: say so,
        model, info = cls.from_pretrained(sub, torch_dtype=dt, variant=weights_variant(sub), output_loading_info=True,
                                          use_safetensors=False if pickled else None)  # or shards are not looked for
    except Exception as exc:  # truncated or corrupt weights: say which file
        for weights in (sub / w for w in weight_names(sub) if (sub / w).is_file()):
            if (what := not_weights(weights)) is not None:
                raise BadModel(f"{weights} is {what}") from None
            if weights.suffix == ".bin":
                read_checkpoint(weights)  # a pickle that needs more than tensors: refused as such
        files = [str(sub / w) for w in weight_names(sub) if (sub / w).is_file()]
        raise BadModel(f"{files[0] if files else sub} could not be loaded ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200]}); the download may be incomplete: download it again") from None
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith("position_ids"))
    if missing:  # transformers fills them with random values and only warns
        raise BadModel(f"{sub} lacks {len(missing)} weight tensor(s) its config asks for ({', '.join(missing[:3])}): "
                       "it belongs to another kind of model or is incomplete; download the model again")
    return model


def describe_model(model: str | os.PathLike | None) -> ModelKind:
    """The model's kind (SD1/SD2/SDXL, ε/v, size) from its configs alone, no weights loaded; a model
    SINE cannot edit with is refused here as at load time (`check_usable`)."""
    return model_report(model)[0]


def model_report(model: str | os.PathLike | None) -> tuple[ModelKind, list[str]]:
    """(kind, warnings) of a model from its configs alone, read once (`sine doctor`): the warnings are
    about a model that loads but was guessed (prediction type) or distilled for few-step sampling."""
    if is_single_file(model):
        path = checkpoint_path(model)
        state = read_checkpoint(path)
        folder = config_folder(path, state)
        check_shapes(path, state, folder)
        scheduler, where, name = single_file_scheduler(path, state, folder), str(path), path.name
        guessed = prediction_guessed(path, state, folder)
        stored = stored_note(path, state)
    else:
        folder, model_id, _ = resolve_model_folder(model)
        check_vae_folder(folder)
        scheduler = read_json(folder / "scheduler" / "scheduler_config.json")
        where, name, guessed, stored = str(folder), display_name(Path(model_id)), None, None
    unet, vae = read_json(folder / "unet" / "config.json"), read_json(folder / "vae" / "config.json")
    if is_single_file(model):
        unet.update(unet_hints(checkpoint_path(model), folder))
    check_usable(unet, scheduler, where, vae)
    check_text_parts(folder, unet)
    if not is_single_file(model):
        check_component_files(folder)
    model_recipes(folder)  # the recipes file the load reads
    kind = model_kind(unet, scheduler, read_json(folder / "text_encoder" / "config.json"),
                      2 ** (len(vae["block_out_channels"]) - 1))
    notes = (guessed, stored, distilled_note(name, unet, scheduler), vae_note(unet, vae))
    return kind, [note for note in notes if note]


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
