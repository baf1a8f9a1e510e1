"""What a Stable Diffusion model is (SD1 / SD2 / SDXL, ε or v, native size), whether SINE can
edit with it, and the scheduler settings SINE forces on it.

Read from the components' configs only, so `sine doctor` can tell without loading any weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .checkpoint_contents import KOLORS
from .errors import BadModel

log = logging.getLogger("sine.models")

PREDICTIONS = {"epsilon": "ε-prediction", "v_prediction": "v-prediction", "sample": "x₀-prediction"}

# The paper's sampler (docs/design.md §7.3): DDIM, leading spacing (trailing for models made for it:
# `timestep_spacing`), steps_offset 1, no alpha-to-one, and
# nothing that bends the latents: no clipping to [-1, 1] (DDIM's default when a config omits the key)
# and no dynamic thresholding, both meant for pixel-space models.
SCHEDULER_SETTINGS: dict[str, object] = {
    "clip_sample": False,
    "thresholding": False,
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "set_alpha_to_one": False,
}
_DDIM_DEFAULTS = {"clip_sample": True, "thresholding": False, "timestep_spacing": "leading", "steps_offset": 0,
                  "set_alpha_to_one": True}


@dataclass(frozen=True)
class KindDefaults:
    """What differs per family of model; sizes relative to its native size."""

    working_scale: int  # one latent up to this × the native size (long side); above: tiles, upscale, refine
    tile_scale: float  # tiles of this × the native size (where the pre-trained model draws well)
    recipes: dict[str, dict[str, object]] = field(default_factory=dict)  # recipe fields per method (sine.recipes)


# The one table of per-kind defaults. SD1 at 2× its size is the paper's 1024-px view. The SDXL row is
# an unmeasured starting point (no GPU was available to choose it; docs/design.md §7.1): LoRA at the
# learning rate common for SDXL LoRAs; its text encoders frozen; the UNet gradient-checkpointed while it
# trains (activation memory on a 24 GB GPU, not measured).
KIND_DEFAULTS: dict[str, KindDefaults] = {
    "SD1": KindDefaults(working_scale=2, tile_scale=1.0),
    "SD2": KindDefaults(working_scale=2, tile_scale=1.0),
    "SDXL": KindDefaults(working_scale=2, tile_scale=1.0, recipes={
        "lora": {"lr": 1e-4, "train_text_encoder": False, "gradient_checkpointing": True},
        "full": {"train_text_encoder": False, "gradient_checkpointing": True}}),
}
SMALL_MODEL = 512  # below this native size (the demo model, tiny test models) work at the native size


@dataclass(frozen=True)
class ModelKind:
    """family: SD1 | SD2 | SDXL; prediction: epsilon | v_prediction | sample; size: native side in pixels."""

    family: str
    prediction: str
    size: int

    def describe(self) -> str:
        return f"{self.family}, {PREDICTIONS.get(self.prediction, self.prediction)}, {self.size} px"

    @property
    def defaults(self) -> KindDefaults:
        return KIND_DEFAULTS[self.family]

    @property
    def working_size(self) -> int:
        """Long side in pixels up to which an edit is one latent."""
        return self.size * self.defaults.working_scale if self.size >= SMALL_MODEL else self.size

    @property
    def tile_size(self) -> int:
        return max(1, round(self.size * self.defaults.tile_scale))


def model_kind(unet_config: dict, scheduler_config: dict, text_config: dict | None, vae_scale: int) -> ModelKind:
    """SDXL: the UNet takes text_time added conditioning; SD2: OpenCLIP's text encoder (gelu, where
    SD1's CLIP ViT-L uses quick_gelu); else SD1."""
    if unet_config.get("addition_embed_type") == "text_time":
        family = "SDXL"
    elif (text_config or {}).get("hidden_act") == "gelu":
        family = "SD2"
    else:
        family = "SD1"
    size = latent_side(unet_config) * vae_scale
    return ModelKind(family, str(scheduler_config.get("prediction_type", "epsilon")), size)


def latent_side(unet_config: dict) -> int:
    """The UNet's training size in latent cells: its `sample_size`, a number or, as some configs write
    it, [height, width] (the longer side). `check_usable` refuses any other in words first."""
    size = unet_config.get("sample_size", 64)
    sides = list(size) if isinstance(size, (list, tuple)) else [size]
    if not sides or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sides):
        raise BadModel(f"its UNet config's sample_size {size!r} is not a size in latent cells")
    return max(sides)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_usable(unet_config: dict, scheduler_config: dict, where: str, vae_config: dict | None = None) -> None:
    """Refuse, with what to do instead, the models SINE cannot edit with."""
    vae_class = str((vae_config or {}).get("_class_name") or "AutoencoderKL")
    if vae_class != "AutoencoderKL":
        article = "an" if vae_class[0] in "AEIOU" else "a"
        raise BadModel(f"{where}: vae/ holds {article} {vae_class}{_OTHER_VAES.get(vae_class, '')}, not the "
                       "AutoencoderKL whose latents the UNet was trained on; put back the AutoencoderKL this model "
                       "was released with")
    pictures = {int((vae_config or {}).get(k, 3)) for k in ("in_channels", "out_channels")}
    if pictures != {3}:
        n = max(pictures - {3})
        what = " (RGB + depth: LDM3D)" if n == 4 else ""
        raise BadModel(f"{where}: its VAE encodes {n}-channel pictures{what}, while SINE edits RGB pictures; use a plain "
                       "Stable Diffusion 1.x, 2.x or XL text-to-image model")
    channels = int(unet_config.get("in_channels", 4))
    latents = int((vae_config or {}).get("latent_channels", 4))
    if vae_config is not None and latents != int(unet_config.get("out_channels", 4)):
        raise BadModel(f"{where}: its VAE makes {latents}-channel latents but its UNet takes "
                       f"{unet_config.get('out_channels', 4)} (a VAE from another kind of model, e.g. SD3 or Flux, "
                       "in vae/); put back the VAE this model was released with")
    plain = latents if vae_config is not None else 4  # a text-to-image UNet takes its VAE's latents alone
    if channels != plain:
        what = {9: "an inpainting model", 8: "an InstructPix2Pix model (the picture's latents beside the noise)",
                5: "a depth-to-image model (a depth map beside the noise)"}.get(
                    channels, f"a UNet with {channels} input channels")
        raise BadModel(f"{where} is {what}; SINE edits with a plain text-to-image model ({plain} latent "
                       "channels): use the base (plain text-to-image) version of this checkpoint")
    if unet_config.get("addition_embed_type") == "text_time" and unet_config.get("encoder_hid_dim") is not None:
        raise BadModel(f"{where} is {KOLORS}")  # SDXL's added conditioning, its text states projected
    if (extra := _extra_conditioning(unet_config)) is not None:
        raise BadModel(f"{where} has a UNet with {extra}, which SINE cannot give it (a UNet of another pipeline, "
                       "e.g. DeepFloyd IF, Kandinsky, unCLIP or the x4 upscaler); SINE edits with a plain Stable "
                       "Diffusion 1.x, 2.x or XL text-to-image model")
    scheduler_class = str(scheduler_config.get("_class_name", ""))
    if scheduler_class.startswith("EDM") or "sigma_data" in scheduler_config:
        raise BadModel(f"{where} is an EDM-trained model ({scheduler_class or 'sigma_data in its scheduler'}, e.g. "
                       "Playground v2.5); SINE samples with DDIM on the DDPM noise schedule SD 1.x/2.x/XL were "
                       "trained with: use SDXL base or one of its fine-tunes")
    if "FlowMatch" in scheduler_class or "use_dynamic_shifting" in scheduler_config:
        raise BadModel(f"{where} is a flow-matching model ({scheduler_class or 'a shifted flow schedule'}): SINE samples "
                       "with DDIM on the DDPM noise schedule SD 1.x/2.x/XL were trained with; use the model it was "
                       "made from")
    try:
        latent_side(unet_config)
    except BadModel as exc:
        raise BadModel(f"{where}: {exc} (the size it was trained at, e.g. 64 for SD 1.x's 512 px); put back the "
                       "config this model was released with") from None
    steps = scheduler_config.get("num_train_timesteps", 1000)
    if not _positive_int(steps):
        raise BadModel(f"{where}: its scheduler config's num_train_timesteps {steps!r} is not a number of timesteps; "
                       "put back the scheduler config this model was released with (SD: 1000)")
    betas = scheduler_config.get("trained_betas")
    if isinstance(betas, list) and betas and len(betas) != steps:
        raise BadModel(f"{where}: its scheduler config lists {len(betas)} trained_betas for {steps} timesteps "
                       "(num_train_timesteps); put back the scheduler config this model was released with")
    schedule = scheduler_config.get("beta_schedule", "linear")
    if schedule not in DDIM_SCHEDULES and not scheduler_config.get("trained_betas"):
        raise BadModel(f"{where} was trained with a {schedule!r} noise schedule, which SINE's DDIM sampler cannot "
                       f"make (it knows {', '.join(DDIM_SCHEDULES)}, or the betas listed as trained_betas); use a "
                       "Stable Diffusion 1.x, 2.x or XL model")
    prediction = scheduler_config.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise BadModel(f"{where} predicts {prediction!r}; SINE supports ε-prediction (epsilon), v-prediction "
                       "(v_prediction) and x₀-prediction (sample) models: put back the scheduler config this model "
                       "was released with")


_OTHER_VAES = {  # VAE classes found in vae/ of SD-shaped folders, in words
    "AutoencoderTiny": " (TAESD: a tiny preview decoder that approximates the VAE, too rough to fine-tune on)",
    "ConsistencyDecoderVAE": " (OpenAI's consistency decoder: a diffusion model itself, it cannot encode the picture)",
    "AsymmetricAutoencoderKL": " (an inpainting decoder that needs the mask and masked picture)",
}
DDIM_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")  # what diffusers' DDIMScheduler implements


def _extra_conditioning(unet_config: dict) -> str | None:
    """The conditioning besides the prompt's text states and the timestep that a UNet's config asks
    for, in words (None: none, or SDXL's text_time, which `xl` gives)."""
    added = unet_config.get("addition_embed_type")
    if added not in (None, "text_time"):
        return f"added {str(added).replace('_', ' and ')} conditioning (addition_embed_type {added!r})"
    if unet_config.get("class_embed_type") is not None or unet_config.get("num_class_embeds") is not None:
        return "class conditioning (class_embed_type / num_class_embeds)"
    if unet_config.get("encoder_hid_dim_type") is not None or unet_config.get("encoder_hid_dim") is not None:
        how = unet_config.get("encoder_hid_dim_type") or "text_proj"  # diffusers' default for an encoder_hid_dim
        return f"an encoder_hid_dim_type {how!r} that projects its text states"
    return None


_DISTILLED_SCHEDULERS = {"LCMScheduler": "an LCM scheduler", "TCDScheduler": "a TCD scheduler"}
_DISTILLED_NAMES = ("turbo", "lightning", "lcm", "hyper-sd", "hypersd", "dmd2")


def distilled_note(name: str, unet_config: dict, scheduler_config: dict) -> str | None:
    """Why the model looks distilled for few-step sampling (LCM, Turbo, Lightning, Hyper), or None.
    Such models load, but SINE fine-tunes them and samples with guidance over many DDIM steps, which
    they were not made for."""
    scheduler = scheduler_config.get("_class_name")
    if scheduler in _DISTILLED_SCHEDULERS or unet_config.get("time_cond_proj_dim"):
        why = _DISTILLED_SCHEDULERS.get(str(scheduler), "a guidance-embedding UNet")
    elif any(word in name.lower() for word in _DISTILLED_NAMES):
        why = f"its name {name!r}"
    else:
        return None
    return (f"looks distilled for few-step sampling ({why}): made for 1-8 steps without guidance, while SINE samples "
            "with guidance over many steps; expect poor edits, prefer the model it was distilled from")


_VAE_SCALES = {"SD 1.x/2.x": 0.18215, "SDXL": 0.13025}  # the published VAEs' scaling factors


def vae_note(unet_config: dict, vae_config: dict) -> str | None:
    """Why the VAE looks like the other family's (None: it does not): SDXL's and SD 1.x/2.x's VAEs have
    one shape, so either loads in the other's folder, but the UNet was trained on its own VAE's
    latents; their scaling factors tell them apart."""
    family, other = ("SDXL", "SD 1.x/2.x") if unet_config.get("addition_embed_type") == "text_time" else (
        "SD 1.x/2.x", "SDXL")
    scale = vae_config.get("scaling_factor")
    if not isinstance(scale, (int, float)) or abs(scale - _VAE_SCALES[other]) > 1e-9:
        return None
    return (f"its VAE looks like {other}'s (scaling factor {scale}) while its UNet is {family}'s: edits will look "
            "wrong unless this UNet was trained with that VAE; put back the VAE this model was released with")


def timestep_spacing(config: dict) -> str:
    """The paper's leading timesteps, unless the model was made for trailing ones: its config says so
    (Turbo-like models), or it has zero terminal SNR, whose pure noise is t = T−1 (Lin et al. 2023,
    "sample from the last timestep"). "linspace" is not offered: DDIM inversion has no such spacing."""
    if config.get("timestep_spacing") == "trailing" or config.get("rescale_betas_zero_snr"):
        return "trailing"
    return "leading"


def forced_scheduler_config(config: dict, where: str = "model") -> tuple[dict, list[str]]:
    """(`config` with SCHEDULER_SETTINGS forced, what changed); every change is logged (a missing key
    counts as DDIM's default, e.g. clip_sample=True). The spacing is `timestep_spacing`'s."""
    out = dict(config)
    changed = []
    for key, value in {**SCHEDULER_SETTINGS, "timestep_spacing": timestep_spacing(config)}.items():
        old = config.get(key, _DDIM_DEFAULTS[key])
        if old != value:
            changed.append(f"{key}: {old!r}{'' if key in config else ' (unset)'} -> {value!r}")
        out[key] = value
    if changed:
        log.info("%s: scheduler settings overridden for SINE: %s", where, "; ".join(changed))
    return out, changed
