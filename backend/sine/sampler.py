"""Sample an edit: DDIM with SINE's model-based classifier-free guidance.

For t ≥ K the pre-trained model (edit prompt c, and the empty prompt ∅) and the fine-tuned model
(source prompt ĉ, whole-picture positional embedding) are mixed:

    ε̃ = ε_pre(∅) + w · (v · ε_pre(c) + (1 − v) · ε_ft(ĉ) − ε_pre(∅))

and for t < K it is plain classifier-free guidance on the pre-trained model. Read top to bottom:
the settings, `sample_edits` (groups of results, the passes of the DDIM loop), `start_latents`
(where the loop starts: `start`), `denoise` (the loop, x̂₀ of each step for previews),
`guided_noise` (ε̃ of one latent). Canvases above the working size (tiles under a whole view,
upscale, refine, VAE tiling) live in `large_canvas`; every UNet call in `noise_prediction`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from PIL import Image

from sine_protocol import defaults

from .errors import BadInput, BadModel, Cancelled
from .finetune import FineTuned
from .images import check_size, to_pil
from .large_canvas import CanvasPlan, PartFn, TiledNoise, Tiles, decode, encode, plan_passes
from .models import BaseModel
from .noise_prediction import FinetunedGuide, NoisePredictor, as_guides
from .start import check_start, first_step, inverted_start, needs_source, noised_start, source_at

PreviewFn = Callable[[], Image.Image]
ProgressFn = Callable[[int, int, PreviewFn], None]
StopFn = Callable[[], bool]
NoiseFn = Callable[[torch.Tensor, int], torch.Tensor]  # (z_t, t) -> ε


@dataclass(frozen=True)
class SamplingSettings:
    steps: int = defaults.STEPS
    guidance: float = defaults.GUIDANCE  # w
    v: float = defaults.V  # weight of the pre-trained model's conditional score while t ≥ K
    k: int = defaults.K
    seed: int = defaults.SEED
    strategy: str = "auto"  # auto | single | tiled | upscale | refine (see `large_canvas.plan_strategy`)
    working_size: int | None = None  # px; None: the model kind's (model_kind.KIND_DEFAULTS)
    tile_size: int | None = None  # px; None: the model kind's (its native size)
    tile_overlap: float = 0.25  # fraction of a tile shared with its neighbour
    tile_batch: int = 8  # tiles evaluated per UNet call
    refine_strength: float = 0.5  # `refine`: share of the steps re-run at full size (noise level of the restart)
    finetuned_prompt: str | None = None  # None: the source prompt ĉ (the paper); set for ablations
    finetuned_only: bool = False  # baseline: plain CFG on the (first) fine-tuned model alone, no pre-trained score
    whole_view: bool = True  # tiles: layout from SINE on the whole picture at the model's size, detail from the tiles
    strength: float = defaults.STRENGTH  # share of the steps run, from the source noised to that level (1: pure noise; sine.start)
    start: str = defaults.START  # noise | inversion: random noise, or the source's own noise by DDIM inversion
    batch: int = 4  # results sampled together in one UNet batch (one-latent plans; tiles go one by one)


def timesteps_for(base: BaseModel, steps: int) -> list[int]:
    """The DDIM timesteps SINE samples at (991, 981, …, 1 for 100 steps with SD1's schedule)."""
    scheduler = base.new_scheduler(steps)
    scheduler.set_timesteps(steps)
    return [int(t) for t in scheduler.timesteps]


def sample_steps(base: BaseModel, width: int, height: int, settings: SamplingSettings, count: int = 1) -> int:
    """The step total `sample_edits` reports for `count` results of width × height (inversion, tiles one
    result at a time and `refine`'s second pass included): what a progress bar announces first."""
    passes = plan_passes(base, width, height, settings, settings.steps, first_step(settings.steps, settings.strength))
    return _per_group(passes, settings) * len(_groups(list(range(count)), passes, settings))


def _per_group(passes: list, s: SamplingSettings) -> int:
    """Steps of one group of results: the inversion (first pass), then every pass's steps."""
    inversion = s.steps - passes[0].start if s.start == "inversion" else 0
    return inversion + sum(s.steps - p.start for p in passes)


def _groups(seeds: list[int], passes: list, s: SamplingSettings) -> list[list[int]]:
    """Results sampled together: `batch` at a time in one latent; tiles and `refine` one at a time."""
    batch = max(1, s.batch) if len(passes[0].plan.tiles) == 1 and len(passes) == 1 else 1
    return [seeds[i:i + batch] for i in range(0, len(seeds), batch)]


def sample_edit(base: BaseModel, finetuned: FineTuned | Sequence[FinetunedGuide] | None, edit_prompt: str,
                width: int, height: int, settings: SamplingSettings | None = None, progress: ProgressFn | None = None,
                should_stop: StopFn | None = None, source: Image.Image | None = None) -> Image.Image:
    """The edited image, RGB, exactly width × height. `finetuned=None` samples the pre-trained model alone.
    `source` (the picture being edited) is needed for strength < 1 and the inversion start."""
    return sample_edits(base, finetuned, edit_prompt, width, height, settings, 1, source, progress, should_stop)[0]


@torch.inference_mode()
def sample_edits(base: BaseModel, finetuned: FineTuned | Sequence[FinetunedGuide] | None, edit_prompt: str,
                 width: int, height: int, settings: SamplingSettings | None = None, count: int = 1,
                 source: Image.Image | None = None, progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None, seeds: Sequence[int] | None = None,
                 parts: PartFn | None = None) -> list[Image.Image]:
    """`count` edits from seeds seed, seed+1, … (`defaults.result_seeds`; or `seeds`, then count = len(seeds)); each is the image
    `sample_edit` gives for its seed, up to batching's float rounding. Sampled `settings.batch` at a time
    in one latent, one at a time in tiles. `parts` hears progress inside a step: its tiles, the VAE's tiles."""
    s = settings or SamplingSettings()
    seeds = list(seeds) if seeds is not None else defaults.result_seeds(s.seed, count)
    count = len(seeds)
    _check(s, width, height, count, source)
    guides = as_guides(finetuned, s)
    scheduler = base.new_scheduler(s.steps)
    scheduler.set_timesteps(s.steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    passes = plan_passes(base, width, height, s, len(timesteps), first_step(len(timesteps), s.strength))
    plan = passes[0].plan  # the first pass: from noise, or from the source (strength < 1, inversion)
    inversion = len(timesteps) - passes[0].start if s.start == "inversion" else 0
    per_group = _per_group(passes, s)
    groups = _groups(seeds, passes, s)
    z0 = None
    if source is not None and needs_source(s.strength, s.start):
        z0 = encode(base, source_at(source, (plan.render_w, plan.render_h)), plan, parts)
    total = per_group * len(groups)
    done = 0  # steps reported before the current run

    def report(i: int, x0: torch.Tensor) -> None:
        if progress is not None:
            progress(done + i, total, preview_fn(base, x0[:1]))
    images: list[Image.Image] = []
    for group in groups:
        gens = [torch.Generator("cpu").manual_seed(seed) for seed in group]
        results: list[Image.Image] = []
        for n, p in enumerate(passes):  # `refine`: the resized picture noised back to the restart, in tiles
            start_z = z0 if n == 0 else torch.cat([encode(base, image, p.plan, parts) for image in results])
            invert = (finite_noise(base, content_noise(base, guides, edit_prompt, s, p.plan, parts))
                      if n == 0 and s.start == "inversion" else None)
            latents = start_latents(base, scheduler, gens, p.plan, timesteps, p.start, start_z, invert, should_stop,
                                    lambda i: report(i, z0))
            done += inversion if invert is not None else 0
            latents = denoise(finite_noise(base, guided_noise(base, guides, edit_prompt, s, p.plan, parts)), scheduler,
                              timesteps[p.start:], latents, report, should_stop)
            done += len(timesteps) - p.start
            results = [decode(base, latents[i:i + 1], p.plan, parts) for i in range(len(gens))]
        images += results
    return images


def _check(s: SamplingSettings, width: int, height: int, count: int, source: Image.Image | None) -> None:
    check_size(width, height)
    low, high = defaults.STEPS_RANGE
    if not low <= s.steps <= high:
        raise BadInput(f"steps must be {low}..{high}, not {s.steps}")
    if not 0.0 < s.refine_strength <= 1.0:
        raise BadInput(f"refine strength must be in (0, 1], not {s.refine_strength}")
    check_start(s.strength, s.start)
    if not 1 <= count <= defaults.MAX_COUNT:
        raise BadInput(f"count must be 1..{defaults.MAX_COUNT}, not {count}")
    if s.start == "inversion" and count > 1:
        raise BadInput("the inversion start is deterministic (every seed gives the same picture): ask for one result")
    if needs_source(s.strength, s.start) and source is None:
        raise BadInput("strength below 1 and the inversion start need the source picture")


def start_latents(base: BaseModel, scheduler: DDIMScheduler, gens: list[torch.Generator], plan: CanvasPlan,
                  timesteps: list[int], start: int, z0: torch.Tensor | None = None, invert: NoiseFn | None = None,
                  should_stop: StopFn | None = None, report: Callable[[int], None] | None = None) -> torch.Tensor:
    """Where the loop starts, at timesteps[start]: pure noise (SINE, one draw per seed); or the clean
    latents z0 noised there (SDEdit, `refine`); or z0 inverted there by DDIM with `invert`'s ε."""
    shape = (1, base.unet.config.in_channels, plan.latent_h, plan.latent_w)
    noise = torch.cat([torch.randn(shape, generator=gen) for gen in gens]).to(base.device, torch.float32)
    if z0 is None:
        return noise * scheduler.init_noise_sigma
    if invert is not None:
        return inverted_start(scheduler, len(timesteps), z0, timesteps[start], invert, should_stop,
                              None if report is None else lambda i, _n: report(i))
    return noised_start(scheduler, z0.expand_as(noise), noise, timesteps[start])


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


def finite_noise(base: BaseModel, noise: NoiseFn) -> NoiseFn:
    """`noise`, refusing in words a prediction holding NaN/inf: a UNet whose activations overflow in
    half precision (past fp16's 65504) turns every later latent into NaN and the edit black. One
    reduction per step (a sum, whose NaN/inf shows any element's)."""
    def checked(latents: torch.Tensor, t: int) -> torch.Tensor:
        eps = noise(latents, t)
        if not torch.isfinite(eps.sum(dtype=torch.float32)):  # the start is finite (noise, or the VAE's checked latents)
            raise BadModel(nonfinite_unet(base, t))
        return eps
    return checked


def nonfinite_unet(base: BaseModel, t: int) -> str:
    """Why the UNet's prediction at timestep t holds NaN/inf, and what to do."""
    dtype = str(base.dtype).removeprefix("torch.")
    if base.dtype == torch.float16:
        return (f"the UNet of {base.model_id} overflowed in float16 at timestep {t} (NaN/inf in its prediction): the "
                "edit would come out black; run it in fp32 (`sine edit --dtype fp32`, or SINE_DTYPE=fp32 in the "
                "daemon's environment) or in bf16 on a GPU that has it")
    return (f"the UNet of {base.model_id} gives NaN/inf at timestep {t} even in {dtype}: its weights are broken (a "
            "bad merge or conversion); download it again, or use another version of the model")


def guided_noise(base: BaseModel, guides: list[FinetunedGuide], edit_prompt: str, s: SamplingSettings,
                 plan: CanvasPlan, parts: PartFn | None = None) -> NoiseFn:
    """ε̃(z_t, t) of the plan's latents: SINE's guidance on one latent (a batch of results), or over tiles."""
    if len(plan.tiles) > 1:
        return TiledNoise(base, guides, edit_prompt, s, plan, parts)
    f = base.vae_scale_factor
    predictor = NoisePredictor(base, guides, edit_prompt, s, (plan.render_h / f, plan.render_w / f))

    def noise(latents: torch.Tensor, t: int) -> torch.Tensor:
        regions = list(latents.to(base.dtype).split(1))  # the results of a batch go through the UNets together
        # ε_pre(∅) and ε_pre(c); ε_ft(ĉ) with β = 1 − v while t ≥ K (none below: plain CFG)
        scores = predictor.predict(regions, plan.tiles * len(regions), t)
        return scores.guided(s.guidance)
    return noise


def content_noise(base: BaseModel, guides: list[FinetunedGuide], edit_prompt: str, s: SamplingSettings,
                  plan: CanvasPlan, parts: PartFn | None = None) -> NoiseFn:
    """What DDIM inversion follows: the content model's ε(z, ĉ) with its PE (no fine-tuned model: ε_pre(∅)),
    per tile and blended on a tiled plan."""
    f = base.vae_scale_factor
    predictor = NoisePredictor(base, guides, edit_prompt, s, (plan.render_h / f, plan.render_w / f))
    if len(plan.tiles) == 1:
        return lambda z, t: predictor.reconstruct([z.to(base.dtype)], plan.tiles, t)
    tiles = Tiles(base, s, plan, parts)
    return lambda z, t: tiles.blend(lambda regions, tl: [predictor.reconstruct(regions, tl, t)], z)[0]


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
