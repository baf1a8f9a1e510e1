"""Canvases above the working size: plans, tiles under a whole view, upscale and refine, VAE tiling.

The sampler asks this module for: `plan_passes` (how a width × height canvas is sampled: one
latent, tiles, or a working-size sample resized and, for `refine`, re-run in tiles at full size),
`TiledNoise` (the guided noise of a latent made of several tiles), `Tiles` (any prediction blended
over the tiles), `encode` and `decode` (pixels ↔ latents of a plan, through the VAE in tiles when big).

Tiles under a whole view: every step, SINE's guided score of the whole picture seen at the model's
own size (area-downsampled, at the lower noise level that gives) sets the layout, the low band; the
fine-tuned models add the detail above it, each tile with the embedding of its place in the whole
picture, averaged where tiles overlap (MultiDiffusion). Full SINE scores per tile instead
(`whole_view=False`) let the pre-trained model draw the edit in every tile: copies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from PIL import Image

from .errors import BadInput
from .images import to_pil, to_tensor
from .models import BaseModel
from .noise_prediction import FinetunedGuide, NoisePredictor, Region, Scores

if TYPE_CHECKING:
    from .sampler import SamplingSettings

STRATEGIES = ("auto", "single", "tiled", "upscale", "refine")
# Progress inside one step: (what, part, parts) after each part, e.g. ("tile", 16, 24) once the tiles up to
# the 16th are predicted, ("decode tile", 3, 12) after the VAE's third tile. Only reports: the maths is the same.
PartFn = Callable[[str, int, int], None]


@dataclass
class CanvasPlan:
    latent_h: int
    latent_w: int
    render_h: int  # pixel size of the picture as rendered (before cropping the padding / resizing)
    render_w: int
    tiles: list[Region] = field(default_factory=list)
    upscale_to: tuple[int, int] | None = None


@dataclass
class Pass:
    """One run of the DDIM loop: over `plan`, from timestep index `start` (0: from pure noise)."""

    plan: CanvasPlan
    start: int = 0


def default_working_size(base: BaseModel) -> int:
    """The model kind's (`model_kind.KIND_DEFAULTS`)."""
    return base.kind.working_size


def plan_strategy(base: BaseModel, width: int, height: int, settings: SamplingSettings) -> CanvasPlan:
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
        return CanvasPlan(lh, lw, h, w, tiles=[(0, 0, lh, lw)], upscale_to=(width, height))
    plan = CanvasPlan(math.ceil(height / f), math.ceil(width / f), height, width)
    if settings.strategy == "tiled" or (settings.strategy == "auto" and big):
        tile = max(1, (settings.tile_size or base.kind.tile_size) // f)
        tile = min(tile, max(plan.latent_h, plan.latent_w))
        stride = max(1, round(tile * (1 - settings.tile_overlap)))
        ys = tile_starts(plan.latent_h, min(tile, plan.latent_h), stride)
        xs = tile_starts(plan.latent_w, min(tile, plan.latent_w), stride)
        plan.tiles = [(y, x, min(tile, plan.latent_h), min(tile, plan.latent_w)) for y in ys for x in xs]
    else:
        plan.tiles = [(0, 0, plan.latent_h, plan.latent_w)]
    return plan


def plan_passes(base: BaseModel, width: int, height: int, settings: SamplingSettings, steps: int,
                first: int = 0) -> list[Pass]:
    """One pass from timestep index `first`; `refine` above the working size adds a second, tiled at full
    size, that restarts from the resized first picture at the last `refine_strength` share of the steps."""
    plan = plan_strategy(base, width, height, settings)
    if settings.strategy != "refine" or plan.upscale_to is None:
        return [Pass(plan, first)]
    restart = min(steps - 1, round(steps * (1 - settings.refine_strength)))
    return [Pass(plan, first), Pass(plan_strategy(base, width, height, replace(settings, strategy="tiled")), restart)]


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), the last one flush with the end."""
    if tile >= length:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def tile_window(h: int, w: int, device: torch.device) -> torch.Tensor:
    """A weight that fades towards tile borders, so overlapping tiles blend without seams."""
    def ramp(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32, device=device)
        return torch.minimum(i + 1, n - i).clamp(max=max(1, n // 4)) / max(1, n // 4)
    return (ramp(h)[:, None] * ramp(w)[None, :])[None, None]


class WholeView:
    """SINE's scores for the whole picture seen at the model's own size: the layout of a tiled edit.

    Area-downsampling by k per side divides the latent's noise by k and keeps the picture, so the
    small latent is the picture at a lower noise level: SNR × k², the timestep t' that has it. Every
    model scores it there (the fine-tuned ones with the whole picture's PE). Kept consistent in the
    clean-image estimate x̂₀, a noise prediction at t' upsampled and scaled by √(SNR_t / SNR_t') (1/k)
    is the low band of one at t; the tiles add the band above it.
    """

    def __init__(self, base: BaseModel, guides: Sequence[FinetunedGuide], edit_prompt: str,
                 settings: SamplingSettings, plan: CanvasPlan) -> None:
        f = base.vae_scale_factor
        shrink = min(1.0, base.sample_size // f / max(plan.latent_h, plan.latent_w))
        self.size = (max(1, round(plan.latent_h * shrink)), max(1, round(plan.latent_w * shrink)))
        self.big = (plan.latent_h, plan.latent_w)
        full = (plan.render_h / f * self.size[0] / plan.latent_h, plan.render_w / f * self.size[1] / plan.latent_w)
        self.predictor = NoisePredictor(base, guides, edit_prompt, settings, full)
        self.k2 = plan.latent_h * plan.latent_w / (self.size[0] * self.size[1])
        self.alphas = base.new_scheduler().alphas_cumprod.float()

    def scores(self, latents: torch.Tensor, t: int) -> Scores:
        a = float(self.alphas[t])
        snr = self.k2 * a / (1 - a)
        t_small = int(torch.argmin((self.alphas - snr / (1 + snr)).abs()))
        a_small = float(self.alphas[t_small])
        small = F.interpolate(latents, size=self.size, mode="area") * math.sqrt(a_small / a)
        s = self.predictor.predict([small.to(self.predictor.base.dtype)], [(0, 0, *self.size)], t, t_unet=t_small)
        scale = math.sqrt(a * (1 - a_small) / (a_small * (1 - a)))

        def lift(e: torch.Tensor) -> torch.Tensor:
            return scale * F.interpolate(e, size=self.big, mode="bilinear", align_corners=False)
        return Scores(lift(s.uncond), lift(s.edit), [lift(e) for e in s.finetuned], s.weights)

    def low_band(self, e: torch.Tensor) -> torch.Tensor:
        """What of `e` the whole view sees: down to its size and back up."""
        small = F.interpolate(e, size=self.size, mode="area")
        return F.interpolate(small, size=self.big, mode="bilinear", align_corners=False)


class Tiles:
    """The plan's overlapping tiles, predicted `tile_batch` at a time and blended (MultiDiffusion)."""

    def __init__(self, base: BaseModel, settings: SamplingSettings, plan: CanvasPlan,
                 on_part: PartFn | None = None) -> None:
        self.tiles, self.batch, self.dtype = plan.tiles, settings.tile_batch, base.dtype
        self.on_part = on_part
        self.windows = {(h, w): tile_window(h, w, base.device) for (_, _, h, w) in plan.tiles}

    def blend(self, predict: Callable[[list[torch.Tensor], list[Region]], list[torch.Tensor]],
              latents: torch.Tensor) -> list[torch.Tensor]:
        """Each of `predict`'s outputs over the whole latent: averaged where tiles overlap, with weights that
        fade at tile borders."""
        total: list[torch.Tensor] = []
        weight = torch.zeros_like(latents[:, :1])
        for start in range(0, len(self.tiles), self.batch):
            tiles = self.tiles[start:start + self.batch]
            parts = predict([latents[:, :, y:y + h, x:x + w].to(self.dtype) for (y, x, h, w) in tiles], tiles)
            if not total:
                total = [torch.zeros_like(latents) for _ in parts]
            for i, (y, x, h, w) in enumerate(tiles):
                win = self.windows[(h, w)]
                for acc, part in zip(total, parts, strict=True):
                    acc[:, :, y:y + h, x:x + w] += part[i:i + 1] * win
                weight[:, :, y:y + h, x:x + w] += win
            if self.on_part is not None:
                self.on_part("tile", start + len(tiles), len(self.tiles))
        return [acc / weight for acc in total]


class TiledNoise:
    """The guided noise ε̃ of a latent sampled in overlapping tiles, one step at a time.

    Under the whole view (guides present, not the fine-tuned-only baseline, `whole_view` set): the
    whole view's guided score plus the tiles' fine-tuned detail above its band. Otherwise SINE's
    scores per tile, blended, then guided.
    """

    def __init__(self, base: BaseModel, guides: Sequence[FinetunedGuide], edit_prompt: str,
                 settings: SamplingSettings, plan: CanvasPlan, on_part: PartFn | None = None) -> None:
        f = base.vae_scale_factor
        self.guidance = settings.guidance
        self.tiles = Tiles(base, settings, plan, on_part)
        self.predictor = NoisePredictor(base, guides, edit_prompt, settings, (plan.render_h / f, plan.render_w / f))
        use_whole_view = settings.whole_view and guides and not settings.finetuned_only
        self.whole = WholeView(base, guides, edit_prompt, settings, plan) if use_whole_view else None

    def __call__(self, latents: torch.Tensor, t: int) -> torch.Tensor:
        if self.whole is None:
            weights: list[float] = []

            def scores(regions: list[torch.Tensor], tiles: list[Region]) -> list[torch.Tensor]:
                s = self.predictor.predict(regions, tiles, t)
                weights[:] = s.weights
                return [s.uncond, s.edit, *s.finetuned]
            uncond, edit, *finetuned = self.tiles.blend(scores, latents)
            return Scores(uncond, edit, finetuned, weights).guided(self.guidance)
        layout = self.whole.scores(latents, t)
        detail, = self.tiles.blend(lambda regions, tiles: [self.predictor.detail(regions, tiles, t)], latents)
        return layout.guided(self.guidance) + detail - self.whole.low_band(detail)


@contextmanager
def vae_tiling(base: BaseModel, latent_shape: Sequence[int], what: str = "decode",
               on_part: PartFn | None = None) -> Iterator[None]:
    """Large pictures go through the VAE in overlapping tiles (blended by diffusers) to bound memory.

    `on_part` hears (`what` tile, n, of) after each tile: diffusers calls the VAE's encoder or decoder
    once per tile, so a forward hook counts them; the count of tiles is diffusers' own grid."""
    f = base.vae_scale_factor
    big = max(latent_shape) * f > 2 * base.sample_size
    vae = base.vae
    if big:
        vae.enable_tiling()
        # small models' configs give tiny tiles: at least 256-px tiles (SD's VAE uses 512)
        vae.tile_sample_min_size = max(256, int(vae.config.sample_size))
        vae.tile_latent_min_size = vae.tile_sample_min_size // f
    hook = None
    coder = getattr(vae, "decoder" if what == "decode" else "encoder", None)
    if big and on_part is not None and isinstance(coder, torch.nn.Module):
        side = vae.tile_latent_min_size if what == "decode" else vae.tile_sample_min_size
        grid = latent_shape if what == "decode" else [n * f for n in latent_shape]
        stride = max(1, int(side * (1 - vae.tile_overlap_factor)))
        parts = math.prod(math.ceil(n / stride) for n in grid) if max(grid) > side else 1
        done = [0]

        def count(*_args: object) -> None:
            done[0] += 1
            on_part(f"{what} tile", done[0], max(parts, done[0]))
        hook = coder.register_forward_hook(count)
    try:
        yield
    finally:
        if hook is not None:
            hook.remove()
        if big:
            vae.disable_tiling()


def decode(base: BaseModel, latents: torch.Tensor, plan: CanvasPlan, on_part: PartFn | None = None) -> Image.Image:
    """The plan's picture from its latents: the padding cropped, resized to `upscale_to` if set."""
    with vae_tiling(base, latents.shape[-2:], "decode", on_part):
        image = to_pil(base.decode_latents(latents))
    image = image.crop((0, 0, plan.render_w, plan.render_h))
    return image if plan.upscale_to is None else image.resize(plan.upscale_to, Image.Resampling.LANCZOS)


def encode(base: BaseModel, image: Image.Image, plan: CanvasPlan, on_part: PartFn | None = None) -> torch.Tensor:
    """The clean latents of `image`, padded (edge colours repeated) to the plan's latent grid."""
    f = base.vae_scale_factor
    pixels = to_tensor(image)
    pad_h, pad_w = plan.latent_h * f - pixels.shape[-2], plan.latent_w * f - pixels.shape[-1]
    pixels = F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate")
    with vae_tiling(base, [n // f for n in pixels.shape[-2:]], "encode", on_part):
        return base.encode_image(pixels).float()
