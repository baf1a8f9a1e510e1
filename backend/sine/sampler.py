"""Sample an edit: DDIM from pure noise with SINE's model-based classifier-free guidance.

For t ≥ K the pre-trained model (edit prompt c, and the empty prompt ∅) and the fine-tuned model
(source prompt ĉ, whole-picture positional embedding) are mixed:

    ε̃ = ε_pre(∅) + w · (v · ε_pre(c) + (1 − v) · ε_ft(ĉ) − ε_pre(∅))

and for t < K it is plain classifier-free guidance on the pre-trained model. Read top to bottom:
the settings, `sample_edit` (the passes of the DDIM loop), `start_latents`, `denoise` (the loop),
`guided_noise` (ε̃ of one latent), the previews. Canvases above the working size (tiles under a
whole view, upscale, refine, VAE tiling) live in `large_canvas`; the UNet calls in `noise_prediction`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from PIL import Image

from .errors import BadInput, Cancelled
from .finetune import FineTuned
from .images import check_size, to_pil
from .large_canvas import CanvasPlan, TiledNoise, decode, encode, plan_passes
from .models import BaseModel
from .noise_prediction import FinetunedGuide, NoisePredictor, as_guides

PreviewFn = Callable[[], Image.Image]
ProgressFn = Callable[[int, int, PreviewFn], None]
StopFn = Callable[[], bool]
NoiseFn = Callable[[torch.Tensor, int], torch.Tensor]  # (z_t, t) -> ε̃


@dataclass(frozen=True)
class SamplingSettings:
    steps: int = 100
    guidance: float = 7.5  # w
    v: float = 0.7  # weight of the pre-trained model's conditional score while t ≥ K
    k: int = 400
    seed: int = 0
    strategy: str = "auto"  # auto | single | tiled | upscale | refine (see `large_canvas.plan_strategy`)
    working_size: int | None = None  # px; None: 2× the model's size for SD-sized models, else its own size
    tile_size: int | None = None  # px; None: the model's own training size (where the pre-trained model is good)
    tile_overlap: float = 0.25  # fraction of a tile shared with its neighbour
    tile_batch: int = 8  # tiles evaluated per UNet call
    refine_strength: float = 0.5  # `refine`: share of the steps re-run at full size (noise level of the restart)
    finetuned_prompt: str | None = None  # None: the source prompt ĉ (the paper); set for ablations
    finetuned_only: bool = False  # baseline: plain CFG on the (first) fine-tuned model alone, no pre-trained score
    whole_view: bool = True  # tiles: layout from SINE on the whole picture at the model's size, detail from the tiles


def timesteps_for(base: BaseModel, steps: int) -> list[int]:
    """The DDIM timesteps SINE samples at (991, 981, …, 1 for 100 steps with SD1's schedule)."""
    scheduler = base.new_scheduler(steps)
    scheduler.set_timesteps(steps)
    return [int(t) for t in scheduler.timesteps]


@torch.inference_mode()
def sample_edit(
    base: BaseModel,
    finetuned: FineTuned | Sequence[FinetunedGuide] | None,
    edit_prompt: str,
    width: int,
    height: int,
    settings: SamplingSettings | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Image.Image:
    """The edited image, RGB, exactly width × height. `finetuned=None` samples the pre-trained model alone."""
    s = settings or SamplingSettings()
    check_size(width, height)
    if not 1 <= s.steps <= 1000:
        raise BadInput(f"steps must be 1..1000, not {s.steps}")
    if not 0.0 < s.refine_strength <= 1.0:
        raise BadInput(f"refine strength must be in (0, 1], not {s.refine_strength}")
    guides = as_guides(finetuned, s)
    scheduler = base.new_scheduler(s.steps)
    scheduler.set_timesteps(s.steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    passes = plan_passes(base, width, height, s, len(timesteps))  # one; `refine`: a second at full size
    total = sum(len(timesteps) - p.start for p in passes)
    gen = torch.Generator("cpu").manual_seed(s.seed)
    image: Image.Image | None = None
    done = 0
    for p in passes:
        latents = start_latents(base, scheduler, gen, p.plan, timesteps[p.start], image)

        def report(i: int, x0: torch.Tensor, offset: int = done) -> None:
            if progress is not None:
                progress(offset + i, total, preview_fn(base, x0))

        noise = guided_noise(base, guides, edit_prompt, s, p.plan)
        latents = denoise(noise, scheduler, timesteps[p.start:], latents, report, should_stop)
        image = decode(base, latents, p.plan)
        done += len(timesteps) - p.start
    assert image is not None
    return image


def start_latents(base: BaseModel, scheduler: DDIMScheduler, gen: torch.Generator, plan: CanvasPlan, t: int,
                  image: Image.Image | None = None) -> torch.Tensor:
    """z_T: pure noise of the plan's latent size; or, from `image`, its latents noised to timestep t."""
    if image is None:
        shape = (1, base.unet.config.in_channels, plan.latent_h, plan.latent_w)
        noise = torch.randn(shape, generator=gen).to(base.device, torch.float32)
        return noise * scheduler.init_noise_sigma
    z = encode(base, image, plan)
    noise = torch.randn(z.shape, generator=gen).to(base.device, torch.float32)
    return scheduler.add_noise(z, noise, torch.tensor([t]))


def denoise(noise: NoiseFn, scheduler: DDIMScheduler, timesteps: list[int], latents: torch.Tensor,
            report: Callable[[int, torch.Tensor], None], should_stop: StopFn | None) -> torch.Tensor:
    """The DDIM loop (η = 0) over `timesteps` from `latents`, with the guided noise ε̃ of each step."""
    for i, t in enumerate(timesteps):
        if should_stop is not None and should_stop():
            raise Cancelled("sampling cancelled")
        out = scheduler.step(noise(latents, t), t, latents, eta=0.0)
        latents = out.prev_sample
        report(i + 1, out.pred_original_sample)  # x̂₀, the clean-image estimate of this step: the preview
    return latents


def guided_noise(base: BaseModel, guides: list[FinetunedGuide], edit_prompt: str, s: SamplingSettings,
                 plan: CanvasPlan) -> NoiseFn:
    """ε̃(z_t, t) of the plan's latent: SINE's guidance on one latent, or over tiles (`large_canvas`)."""
    if len(plan.tiles) > 1:
        return TiledNoise(base, guides, edit_prompt, s, plan)
    f = base.vae_scale_factor
    predictor = NoisePredictor(base, guides, edit_prompt, s, (plan.render_h / f, plan.render_w / f))

    def noise(latents: torch.Tensor, t: int) -> torch.Tensor:
        # ε_pre(∅) and ε_pre(c); ε_ft(ĉ) with β = 1 − v while t ≥ K (none below: plain CFG)
        scores = predictor.predict([latents.to(base.dtype)], plan.tiles, t)
        return scores.guided(s.guidance)
    return noise


def preview_fn(base: BaseModel, x0: torch.Tensor) -> PreviewFn:
    """Lazily decode a small preview of the current clean-image estimate (only when asked)."""
    def preview() -> Image.Image:
        z = x0
        longest = max(z.shape[-2:])
        if longest > 32:
            scale = 32 / longest
            size = (max(1, round(z.shape[-2] * scale)), max(1, round(z.shape[-1] * scale)))
            z = F.interpolate(z.float(), size=size, mode="bilinear", align_corners=False)
        img = to_pil(base.decode_latents(z))
        img.thumbnail((128, 128))
        return img
    return preview
