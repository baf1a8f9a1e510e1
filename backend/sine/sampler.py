"""Sample an edit: DDIM from pure noise with SINE's model-based classifier-free guidance.

For t ≥ K the pre-trained model (edit prompt c, and the empty prompt) and the fine-tuned model
(source prompt ĉ, whole-picture positional embedding) are mixed; for t < K it is plain CFG on the
pre-trained model. Large outputs are sampled in overlapping tiles under a whole view: every step,
SINE's guided score of the whole picture seen at the model's own size (area-downsampled, at the
lower noise level that gives) sets the layout, the low band; the fine-tuned models add the detail
above it, each tile with the embedding of its place in the whole picture, averaged where tiles
overlap (MultiDiffusion). Full SINE scores per tile instead (`whole_view=False`) let the pre-trained
model draw the edit in every tile: copies. Alternatives above the working size: sample
there and resize (`upscale`), or resize and then run a second, low-strength tiled pass at the full
size (`refine`: the layout of the working-size sample, detail from the full-size pass).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from PIL import Image

from .compiled import unet_call
from .errors import BadInput, Cancelled
from .finetune import FineTuned
from .guidance import Guide, combine, single_model_guides
from .images import check_size, to_pil, to_tensor
from .models import BaseModel
from .positional import region_embedding
from .start import check_start, first_step, inverted_start, needs_source, noised_start, source_at

PreviewFn = Callable[[], Image.Image]
ProgressFn = Callable[[int, int, PreviewFn], None]
StopFn = Callable[[], bool]

STRATEGIES = ("auto", "single", "tiled", "upscale", "refine")
MAX_COUNT = 8  # results per press
DEFAULT_STYLE_WEIGHT = 0.3  # β of the style model in multi-model guidance


@dataclass(frozen=True)
class SamplingSettings:
    steps: int = 100
    guidance: float = 7.5  # w
    v: float = 0.7  # weight of the pre-trained model's conditional score while t ≥ K
    k: int = 400
    seed: int = 0
    strategy: str = "auto"  # auto | single | tiled | upscale | refine (see `plan_strategy`)
    working_size: int | None = None  # px; None: 2× the model's size for SD-sized models, else its own size
    tile_size: int | None = None  # px; None: the model's own training size (where the pre-trained model is good)
    tile_overlap: float = 0.25  # fraction of a tile shared with its neighbour
    tile_batch: int = 8  # tiles evaluated per UNet call
    refine_strength: float = 0.5  # `refine`: share of the steps re-run at full size (noise level of the restart)
    finetuned_prompt: str | None = None  # None: the source prompt ĉ (the paper); set for ablations
    finetuned_only: bool = False  # baseline: plain CFG on the (first) fine-tuned model alone, no pre-trained score
    whole_view: bool = True  # tiles: layout from SINE on the whole picture at the model's size, detail from the tiles
    strength: float = 1.0  # share of the steps run, from the source noised to that level (1: pure noise; sine.start)
    start: str = "noise"  # noise | inversion: random noise, or the source's own noise by DDIM inversion
    batch: int = 4  # results sampled together in one UNet batch (one-latent plans; tiles go one by one)


@dataclass(frozen=True)
class FinetunedGuide:
    """A fine-tuned model taking part in the guidance, with its β and active time range."""

    model: FineTuned
    guide: Guide


@dataclass
class Scores:
    """What the guidance mixes, per region: ε_pre(∅), ε_pre(c), and each active ε_ft with its β."""

    uncond: torch.Tensor
    edit: torch.Tensor
    finetuned: list[torch.Tensor]
    weights: list[float]

    def guided(self, guidance: float) -> torch.Tensor:
        return combine(self.uncond, self.edit, self.finetuned, self.weights, guidance)


@dataclass
class _Plan:
    latent_h: int
    latent_w: int
    render_h: int  # pixel size of the picture as rendered (before cropping the padding / resizing)
    render_w: int
    tiles: list[tuple[int, int, int, int]] = field(default_factory=list)  # (y, x, h, w) in latent cells
    upscale_to: tuple[int, int] | None = None


def timesteps_for(base: BaseModel, steps: int) -> list[int]:
    """The DDIM timesteps SINE samples at (991, 981, …, 1 for 100 steps with SD1's schedule)."""
    scheduler = base.new_scheduler(steps)
    scheduler.set_timesteps(steps)
    return [int(t) for t in scheduler.timesteps]


def default_working_size(base: BaseModel) -> int:
    return 2 * base.sample_size if base.sample_size >= 512 else base.sample_size


def plan_strategy(base: BaseModel, width: int, height: int, settings: SamplingSettings) -> _Plan:
    """The rule: up to the working size (long side) one latent; above it, tiles (auto/tiled) or
    sampling at the working size then resizing (upscale; refine's first pass)."""
    if settings.strategy not in STRATEGIES:
        raise BadInput(f"strategy must be one of {STRATEGIES}, not {settings.strategy!r}")
    f = base.vae_scale_factor
    work = settings.working_size or default_working_size(base)
    big = max(width, height) > work
    if settings.strategy in ("upscale", "refine") and big:
        scale = work / max(width, height)
        w, h = max(f, round(width * scale)), max(f, round(height * scale))
        lh, lw = math.ceil(h / f), math.ceil(w / f)
        return _Plan(lh, lw, h, w, tiles=[(0, 0, lh, lw)], upscale_to=(width, height))
    plan = _Plan(math.ceil(height / f), math.ceil(width / f), height, width)
    if settings.strategy == "tiled" or (settings.strategy == "auto" and big):
        tile = max(1, (settings.tile_size or base.sample_size) // f)
        tile = min(tile, max(plan.latent_h, plan.latent_w))
        stride = max(1, round(tile * (1 - settings.tile_overlap)))
        ys = tile_starts(plan.latent_h, min(tile, plan.latent_h), stride)
        xs = tile_starts(plan.latent_w, min(tile, plan.latent_w), stride)
        plan.tiles = [(y, x, min(tile, plan.latent_h), min(tile, plan.latent_w)) for y in ys for x in xs]
    else:
        plan.tiles = [(0, 0, plan.latent_h, plan.latent_w)]
    return plan


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), the last one flush with the end."""
    if tile >= length:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def _tile_window(h: int, w: int, device: torch.device) -> torch.Tensor:
    """A weight that fades towards tile borders, so overlapping tiles blend without seams."""
    def ramp(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32, device=device)
        return torch.minimum(i + 1, n - i).clamp(max=max(1, n // 4)) / max(1, n // 4)
    return (ramp(h)[:, None] * ramp(w)[None, :])[None, None]


class _Scorer:
    """Noise predictions for one step over a set of latent regions, batched."""

    def __init__(self, base: BaseModel, guides: Sequence[FinetunedGuide], edit_prompt: str,
                 settings: SamplingSettings, full_size: tuple[float, float]) -> None:
        self.base = base
        self.guides = guides
        self.settings = settings
        self.full_size = full_size
        pre = base.encode_prompts(["", edit_prompt])
        self.uncond, self.edit = pre[:1], pre[1:]
        self.ft_states = []
        for g in guides:
            if settings.finetuned_prompt is None:
                self.ft_states.append(g.model.encode_source())
            else:
                ids = base.tokenize([settings.finetuned_prompt])
                self.ft_states.append(g.model.text_encoder(ids)[0].to(g.model.unet.dtype))
        self._pe_cache: dict[tuple, torch.Tensor] = {}
        if settings.finetuned_only and guides:
            model = guides[0].model
            self.ft_uncond = model.text_encoder(base.tokenize([""]))[0].to(base.dtype)

    def _pe(self, g: FinetunedGuide, tile: tuple[int, int, int, int]) -> torch.Tensor | None:
        model = g.model
        if model.pe_table is None:
            return None
        key = (id(model), tile)
        if key not in self._pe_cache:
            y, x, h, w = tile
            self._pe_cache[key] = region_embedding(model.pe_table, self.full_size, (y, x), (h, w), model.pe_mode)
        return self._pe_cache[key]

    def predict(self, regions: list[torch.Tensor], tiles: list[tuple[int, int, int, int]], t: int,
                t_unet: int | None = None) -> Scores:
        """The scores at step t; the UNets get timestep `t_unet` (default t), the noise level of these regions."""
        base, n = self.base, len(regions)
        z = torch.cat(regions)
        t_in = torch.full((2 * n,), t if t_unet is None else t_unet, device=base.device)
        if self.settings.finetuned_only and self.guides:
            return self._predict_finetuned_only(z, tiles, t_in)
        states = torch.cat([self.uncond.expand(n, -1, -1), self.edit.expand(n, -1, -1)])
        eps_pre = unet_call(base.unet)(torch.cat([z, z]), t_in, states)
        eps_uncond, eps_edit = eps_pre[:n], eps_pre[n:]
        active = [i for i, g in enumerate(self.guides) if g.guide.active(t)]
        eps_ft = [self._finetuned_eps(i, z, tiles, t_in[:n]) for i in active]
        weights = [self.guides[i].guide.weight for i in active]
        return Scores(eps_uncond.float(), eps_edit.float(), eps_ft, weights)

    def reconstruct(self, regions: list[torch.Tensor], tiles: list[tuple[int, int, int, int]], t: int) -> torch.Tensor:
        """What DDIM inversion follows: the content model's ε(z, ĉ) with its tiles' PE (no fine-tuned
        model: the pre-trained ε(z, ∅))."""
        z = torch.cat(regions)
        t_in = torch.full((len(regions),), t, device=self.base.device)
        if not self.guides:
            return self.base.unet(z, t_in, self.uncond.expand(len(regions), -1, -1)).sample.float()
        return self._finetuned_eps(0, z, tiles, t_in)

    def detail(self, regions: list[torch.Tensor], tiles: list[tuple[int, int, int, int]], t: int) -> torch.Tensor:
        """The fine-tuned models' β-weighted mean prediction (each with its tiles' PE), whatever their time range."""
        z = torch.cat(regions)
        t_in = torch.full((len(regions),), t, device=self.base.device)
        weights = [g.guide.weight for g in self.guides]
        total = sum(w * self._finetuned_eps(i, z, tiles, t_in) for i, w in enumerate(weights))
        return total / sum(weights)

    def _finetuned_eps(self, i: int, z: torch.Tensor, tiles: list[tuple[int, int, int, int]],
                       t_in: torch.Tensor) -> torch.Tensor:
        """Fine-tuned model i's prediction for the regions `z` of `tiles`, each with its PE, as float."""
        g, n = self.guides[i], len(tiles)
        pes = [self._pe(g, tile) for tile in tiles]
        pe = None if pes[0] is None else torch.stack(pes)
        unet = g.model.unet  # its own dtype (fp16 on CUDA, see finetuned_dtype)
        with g.model.hook.using(pe):
            return unet_call(unet)(z.to(unet.dtype), t_in, self.ft_states[i].expand(n, -1, -1)).float()

    def _predict_finetuned_only(self, z: torch.Tensor, tiles: list[tuple[int, int, int, int]],
                                t_in: torch.Tensor) -> Scores:
        g, n = self.guides[0], len(tiles)
        pes = [self._pe(g, tile) for tile in tiles]
        pe = None if pes[0] is None else torch.stack(pes * 2)
        states = torch.cat([self.ft_uncond.expand(n, -1, -1), self.ft_states[0].expand(n, -1, -1)])
        unet = g.model.unet
        with g.model.hook.using(pe):
            eps = unet(torch.cat([z, z]).to(unet.dtype), t_in, states.to(unet.dtype)).sample.float()
        return Scores(eps[:n], eps[n:], [], [])


class WholeView:
    """SINE's scores for the whole picture seen at the model's own size: the layout of a tiled edit.

    Area-downsampling by k per side divides the latent's noise by k and keeps the picture, so the
    small latent is the picture at a lower noise level: SNR × k², the timestep t' that has it. Every
    model scores it there (the fine-tuned ones with the whole picture's PE). Kept consistent in the
    clean-image estimate x̂₀, a noise prediction at t' upsampled and scaled by √(SNR_t / SNR_t') (1/k)
    is the low band of one at t; the tiles add the band above it.
    """

    def __init__(self, base: BaseModel, guides: Sequence[FinetunedGuide], edit_prompt: str,
                 settings: SamplingSettings, plan: _Plan) -> None:
        f = base.vae_scale_factor
        shrink = min(1.0, base.sample_size // f / max(plan.latent_h, plan.latent_w))
        self.size = (max(1, round(plan.latent_h * shrink)), max(1, round(plan.latent_w * shrink)))
        self.big = (plan.latent_h, plan.latent_w)
        full = (plan.render_h / f * self.size[0] / plan.latent_h, plan.render_w / f * self.size[1] / plan.latent_w)
        self.scorer = _Scorer(base, guides, edit_prompt, settings, full)
        self.k2 = plan.latent_h * plan.latent_w / (self.size[0] * self.size[1])
        self.alphas = base.new_scheduler().alphas_cumprod.float()

    def scores(self, latents: torch.Tensor, t: int) -> Scores:
        a = float(self.alphas[t])
        snr = self.k2 * a / (1 - a)
        t_small = int(torch.argmin((self.alphas - snr / (1 + snr)).abs()))
        a_small = float(self.alphas[t_small])
        small = F.interpolate(latents, size=self.size, mode="area") * math.sqrt(a_small / a)
        s = self.scorer.predict([small.to(self.scorer.base.dtype)], [(0, 0, *self.size)], t, t_unet=t_small)
        scale = math.sqrt(a * (1 - a_small) / (a_small * (1 - a)))

        def lift(e: torch.Tensor) -> torch.Tensor:
            return scale * F.interpolate(e, size=self.big, mode="bilinear", align_corners=False)
        return Scores(lift(s.uncond), lift(s.edit), [lift(e) for e in s.finetuned], s.weights)

    def low_band(self, e: torch.Tensor) -> torch.Tensor:
        """What of `e` the whole view sees: down to its size and back up."""
        small = F.interpolate(e, size=self.size, mode="area")
        return F.interpolate(small, size=self.big, mode="bilinear", align_corners=False)


def _as_guides(finetuned: FineTuned | Sequence[FinetunedGuide] | None, settings: SamplingSettings) -> list[FinetunedGuide]:
    if finetuned is None:
        return []
    if isinstance(finetuned, FineTuned):
        return [FinetunedGuide(finetuned, g) for g in single_model_guides(settings.v, settings.k)]
    return list(finetuned)


def content_and_style_guides(content: FineTuned, style: FineTuned, settings: SamplingSettings,
                             content_weight: float | None = None,
                             style_weight: float | None = None) -> list[FinetunedGuide]:
    """The paper's multi-model guidance: content from one fine-tuned model (β₁, default 1 − v), style from a
    second (β₂, default `DEFAULT_STYLE_WEIGHT`), both for t ≥ K; the pre-trained edit score keeps 1 − β₁ − β₂."""
    c = 1.0 - settings.v if content_weight is None else content_weight
    st = DEFAULT_STYLE_WEIGHT if style_weight is None else style_weight
    if not (0.0 <= c and 0.0 <= st and c + st <= 1.0):
        raise BadInput(f"content weight {c} and style weight {st} must be ≥ 0 and add up to at most 1")
    return [FinetunedGuide(content, Guide(c, settings.k, 10_000)), FinetunedGuide(style, Guide(st, settings.k, 10_000))]


def sample_steps(settings: SamplingSettings, count: int = 1) -> int:
    """UNet steps `sample_edits` reports for `count` results in one latent (inversion included)."""
    run = settings.steps - first_step(settings.steps, settings.strength)
    per_group = run + (run if settings.start == "inversion" else 0)
    return per_group * -(-count // max(1, settings.batch))


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
    source: Image.Image | None = None,
) -> Image.Image:
    """The edited image, RGB, exactly width × height. `finetuned=None` samples the pre-trained model alone.
    `source` (the picture being edited) is needed for strength < 1 and the inversion start."""
    return sample_edits(base, finetuned, edit_prompt, width, height, settings, 1, source, progress, should_stop)[0]


@torch.inference_mode()
def sample_edits(
    base: BaseModel,
    finetuned: FineTuned | Sequence[FinetunedGuide] | None,
    edit_prompt: str,
    width: int,
    height: int,
    settings: SamplingSettings | None = None,
    count: int = 1,
    source: Image.Image | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    seeds: Sequence[int] | None = None,
) -> list[Image.Image]:
    """`count` edits from seeds seed, seed+1, … (or `seeds`, then count = len(seeds)); each is the image
    `sample_edit` gives for its seed, up to batching's float rounding. Sampled `settings.batch` at a time
    in one latent, one at a time in tiles."""
    s = settings or SamplingSettings()
    seeds = list(seeds) if seeds is not None else [s.seed + i for i in range(count)]
    count = len(seeds)
    check_size(width, height)
    if not 1 <= s.steps <= 1000:
        raise BadInput(f"steps must be 1..1000, not {s.steps}")
    if not 0.0 < s.refine_strength <= 1.0:
        raise BadInput(f"refine strength must be in (0, 1], not {s.refine_strength}")
    check_start(s.strength, s.start)
    if not 1 <= count <= MAX_COUNT:
        raise BadInput(f"count must be 1..{MAX_COUNT}, not {count}")
    if s.start == "inversion" and count > 1:
        raise BadInput("the inversion start is deterministic (every seed gives the same picture): ask for one result")
    if needs_source(s.strength, s.start) and source is None:
        raise BadInput("strength below 1 and the inversion start need the source picture")
    guides = _as_guides(finetuned, s)
    plan = plan_strategy(base, width, height, s)
    scheduler = base.new_scheduler(s.steps)
    scheduler.set_timesteps(s.steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    first = first_step(len(timesteps), s.strength)
    refine = s.strategy == "refine" and plan.upscale_to is not None
    restart = min(len(timesteps) - 1, round(len(timesteps) * (1 - s.refine_strength))) if refine else 0
    inversion = len(timesteps) - first if s.start == "inversion" else 0
    per_group = inversion + len(timesteps) - first + (len(timesteps) - restart if refine else 0)
    batch = max(1, s.batch) if len(plan.tiles) == 1 and not refine else 1
    groups = [seeds[i:i + batch] for i in range(0, count, batch)]
    total = per_group * len(groups)
    f = base.vae_scale_factor
    z0 = None
    if needs_source(s.strength, s.start):
        assert source is not None
        z0 = _encode(base, _padded_pixels(source_at(source, (plan.render_w, plan.render_h)), plan, f))
    images: list[Image.Image] = []
    for g, group in enumerate(groups):
        def report(done: int, x0: torch.Tensor, offset: int = g * per_group) -> None:
            if progress is not None:
                progress(offset + done, total, _preview_fn(base, x0[:1]))

        gens = [torch.Generator("cpu").manual_seed(seed) for seed in group]
        channels = base.unet.config.in_channels
        noise = torch.cat([torch.randn((1, channels, plan.latent_h, plan.latent_w), generator=gen) for gen in gens])
        noise = noise.to(base.device, torch.float32)
        if z0 is None:
            latents = noise * scheduler.init_noise_sigma
        elif s.start == "inversion":
            latents = _invert(base, guides, edit_prompt, s, plan, scheduler, z0, timesteps[first], should_stop,
                              lambda done: report(done, z0))
        else:
            latents = noised_start(scheduler, z0.expand_as(noise), noise, timesteps[first])
        latents = _denoise(base, guides, edit_prompt, s, plan, scheduler, timesteps[first:], latents,
                           lambda done, x0: report(inversion + done, x0), should_stop)
        for i, gen in enumerate(gens):
            image = _decode(base, latents[i:i + 1]).crop((0, 0, plan.render_w, plan.render_h))
            if plan.upscale_to is not None:
                image = image.resize(plan.upscale_to, Image.Resampling.LANCZOS)
            if refine:
                image = _refine(base, guides, edit_prompt, s, scheduler, timesteps, restart, image, gen, width, height,
                                lambda done, x0: report(per_group - (len(timesteps) - restart) + done, x0),
                                should_stop)
            images.append(image)
    return images


def _refine(base: BaseModel, guides: list[FinetunedGuide], edit_prompt: str, s: SamplingSettings,
            scheduler: DDIMScheduler, timesteps: list[int], restart: int, image: Image.Image, gen: torch.Generator,
            width: int, height: int, report: Callable[[int, torch.Tensor], None],
            should_stop: StopFn | None) -> Image.Image:
    """`refine`'s second pass: the resized picture, noised back to timesteps[restart], denoised in tiles at full size."""
    full = plan_strategy(base, width, height, replace(s, strategy="tiled"))
    z = _encode(base, _padded_pixels(image, full, base.vae_scale_factor))
    noise = torch.randn(z.shape, generator=gen).to(base.device, torch.float32)
    latents = scheduler.add_noise(z, noise, torch.tensor([timesteps[restart]]))
    latents = _denoise(base, guides, edit_prompt, s, full, scheduler, timesteps[restart:], latents, report,
                       should_stop)
    return _decode(base, latents).crop((0, 0, width, height))


def _invert(base: BaseModel, guides: list[FinetunedGuide], edit_prompt: str, s: SamplingSettings, plan: _Plan,
            scheduler: DDIMScheduler, z0: torch.Tensor, t_target: int, should_stop: StopFn | None,
            report: Callable[[int], None]) -> torch.Tensor:
    """The inversion start: DDIM inversion of z0 with the content model and its PE (per tile, averaged
    where tiles overlap, on a tiled plan)."""
    f = base.vae_scale_factor
    scorer = _Scorer(base, guides, edit_prompt, s, (plan.render_h / f, plan.render_w / f))
    windows = {(h, w): _tile_window(h, w, base.device) for (_, _, h, w) in plan.tiles}

    def eps(z: torch.Tensor, t: int) -> torch.Tensor:
        if len(plan.tiles) == 1:
            return scorer.reconstruct([z.to(base.dtype)], plan.tiles, t)
        return _tiled(scorer.reconstruct, z, plan, windows, t, s.tile_batch, base.dtype)

    return inverted_start(scheduler, s.steps, z0, t_target, eps, should_stop, lambda done, _total: report(done))


def _denoise(base: BaseModel, guides: list[FinetunedGuide], edit_prompt: str, s: SamplingSettings, plan: _Plan,
             scheduler: DDIMScheduler, timesteps: list[int], latents: torch.Tensor, report: Callable[[int, torch.Tensor], None],
             should_stop: StopFn | None) -> torch.Tensor:
    """DDIM over `timesteps` from `latents`, with the guided noise of every tile of `plan` each step."""
    f = base.vae_scale_factor
    scorer = _Scorer(base, guides, edit_prompt, s, (plan.render_h / f, plan.render_w / f))
    windows = {(h, w): _tile_window(h, w, base.device) for (_, _, h, w) in plan.tiles}
    use_whole_view = len(plan.tiles) > 1 and s.whole_view and guides and not s.finetuned_only
    whole = WholeView(base, guides, edit_prompt, s, plan) if use_whole_view else None
    for i, t in enumerate(timesteps):
        if should_stop is not None and should_stop():
            raise Cancelled("sampling cancelled")
        eps = _step_noise(scorer, whole, latents, plan, windows, t, s.tile_batch)
        out = scheduler.step(eps, t, latents, eta=0.0)
        latents = out.prev_sample
        report(i + 1, out.pred_original_sample)
    return latents


def _padded_pixels(image: Image.Image, plan: _Plan, f: int) -> torch.Tensor:
    """[-1, 1] pixels of `image` padded (edge colours repeated) to the plan's latent grid, for the VAE."""
    pixels = to_tensor(image)
    pad_h, pad_w = plan.latent_h * f - pixels.shape[-2], plan.latent_w * f - pixels.shape[-1]
    return F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate")


def _step_noise(scorer: _Scorer, whole: WholeView | None, latents: torch.Tensor, plan: _Plan, windows: dict, t: int,
                batch: int) -> torch.Tensor:
    guidance = scorer.settings.guidance
    if len(plan.tiles) == 1:  # one latent: the batch of results goes through the UNets together
        regions = list(latents.to(scorer.base.dtype).split(1))
        return scorer.predict(regions, plan.tiles * len(regions), t).guided(guidance)
    if whole is None:
        return _tiled(scorer.predict, latents, plan, windows, t, batch, scorer.base.dtype).guided(guidance)
    layout = whole.scores(latents, t)
    detail = _tiled(scorer.detail, latents, plan, windows, t, batch, scorer.base.dtype)
    return layout.guided(guidance) + detail - whole.low_band(detail)


def _tiled(predict: Callable, latents: torch.Tensor, plan: _Plan, windows: dict, t: int, batch: int,
           dtype: torch.dtype) -> torch.Tensor | Scores:
    """`predict` over the overlapping tiles, each output averaged where tiles overlap (MultiDiffusion), with
    weights that fade at tile borders. `predict` gives a tensor or `Scores` per batch of tiles."""
    total: list[torch.Tensor] | None = None
    weight = torch.zeros_like(latents[:, :1])
    for start in range(0, len(plan.tiles), batch):
        tiles = plan.tiles[start:start + batch]
        regions = [latents[:, :, y:y + h, x:x + w].to(dtype) for (y, x, h, w) in tiles]
        out = predict(regions, tiles, t)
        parts = [out] if isinstance(out, torch.Tensor) else [out.uncond, out.edit, *out.finetuned]
        if total is None:
            total = [torch.zeros_like(latents) for _ in parts]
        for i, (y, x, h, w) in enumerate(tiles):
            win = windows[(h, w)]
            for acc, part in zip(total, parts, strict=True):
                acc[:, :, y:y + h, x:x + w] += part[i:i + 1] * win
            weight[:, :, y:y + h, x:x + w] += win
    assert total is not None
    total = [acc / weight for acc in total]
    if isinstance(out, torch.Tensor):
        return total[0]
    return Scores(total[0], total[1], total[2:], out.weights)


@contextmanager
def _vae_tiles(base: BaseModel, latent_side: int) -> Iterator[None]:
    """Large pictures go through the VAE in overlapping tiles (blended by diffusers) to bound memory."""
    big = latent_side * base.vae_scale_factor > 2 * base.sample_size
    if big:
        vae = base.vae
        vae.enable_tiling()
        # small models' configs give tiny tiles: at least 256-px tiles (SD's VAE uses 512)
        vae.tile_sample_min_size = max(256, int(vae.config.sample_size))
        vae.tile_latent_min_size = vae.tile_sample_min_size // base.vae_scale_factor
    try:
        yield
    finally:
        if big:
            base.vae.disable_tiling()


def _decode(base: BaseModel, latents: torch.Tensor) -> Image.Image:
    with _vae_tiles(base, max(latents.shape[-2:])):
        return to_pil(base.decode_latents(latents))


def _encode(base: BaseModel, pixels: torch.Tensor) -> torch.Tensor:
    with _vae_tiles(base, max(pixels.shape[-2:]) // base.vae_scale_factor):
        return base.encode_image(pixels).float()


def _preview_fn(base: BaseModel, x0: torch.Tensor) -> PreviewFn:
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
