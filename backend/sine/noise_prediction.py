"""The models' noise predictions for latent regions: what SINE's guidance mixes.

ε_pre(z, ∅) and ε_pre(z, c) come from the pre-trained UNet in one batched call; ε_ft_i(z, ĉ) from
each fine-tuned UNet whose guide is active at t, with the positional embedding of the region's place
in the whole picture. One latent is the region (0, 0, h, w) of itself; tiles are regions of a larger
latent. Every UNet call of the sampler is made here (the place for prediction types and added
conditioning).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from sine_protocol import defaults

from .compiled import unet_call
from .devices import weight_dtype
from .errors import BadInput
from .finetune import FineTuned
from .guidance import Guide, combine, single_model_guides
from .models import BaseModel
from .positional import region_embedding

if TYPE_CHECKING:
    from .sampler import SamplingSettings

Region = tuple[int, int, int, int]  # (y, x, h, w) in latent cells


@dataclass(frozen=True)
class FinetunedGuide:
    """A fine-tuned model taking part in the guidance, with its β and active time range."""

    model: FineTuned
    guide: Guide


def as_guides(finetuned: FineTuned | Sequence[FinetunedGuide] | None, settings: SamplingSettings) -> list[FinetunedGuide]:
    """One fine-tuned model: the paper's guide (β = 1 − v for t ≥ K, K on the model's schedule:
    `BaseModel.model_timestep`); a list is taken as given."""
    if finetuned is None:
        return []
    if isinstance(finetuned, FineTuned):
        k = finetuned.base.model_timestep(settings.k)
        return [FinetunedGuide(finetuned, g) for g in single_model_guides(settings.v, k)]
    return list(finetuned)


def style_model_used(v: float, content_weight: float | None = None, style_weight: float | None = None) -> bool:
    """Whether the style picture's model takes part in the guidance: with β₂ = 0 its term is 0·ε₂, so the
    guided score is the content model's alone to the bit, and fine-tuning the style picture is wasted time."""
    try:
        return defaults.multi_model_weights(v, content_weight, style_weight)[1] > 0
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def content_and_style_guides(content: FineTuned, style: FineTuned | None, settings: SamplingSettings,
                             content_weight: float | None = None,
                             style_weight: float | None = None) -> list[FinetunedGuide]:
    """The paper's multi-model guidance: content from one fine-tuned model (β₁, default 1 − v), style from a
    second (β₂, default `defaults.STYLE_WEIGHT`), both for t ≥ K; the pre-trained edit score keeps 1 − β₁ − β₂.
    With β₂ = 0 the style model is left out (`style_model_used`; `style` may then be None): same pixels,
    one UNet call less per step."""
    try:
        c, st = defaults.multi_model_weights(settings.v, content_weight, style_weight)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    k = content.base.model_timestep(settings.k)
    guides = [FinetunedGuide(content, Guide(c, k, 10_000))]
    if st > 0:
        if style is None:
            raise ValueError("a style weight above 0 needs the style picture's fine-tuned model")
        guides.append(FinetunedGuide(style, Guide(st, k, 10_000)))
    return guides


@dataclass
class Scores:
    """What the guidance mixes, per region: ε_pre(∅), ε_pre(c), and each active ε_ft with its β."""

    uncond: torch.Tensor
    edit: torch.Tensor
    finetuned: list[torch.Tensor]
    weights: list[float]

    def guided(self, guidance: float) -> torch.Tensor:
        """ε̃ = ε_pre(∅) + w·((1 − Σβ)·ε_pre(c) + Σβ·ε_ft(ĉ) − ε_pre(∅)): with no ε_ft active, plain CFG."""
        return combine(self.uncond, self.edit, self.finetuned, self.weights, guidance)


class NoisePredictor:
    """Noise predictions for one step over a batch of latent regions of a picture of `full_size` cells."""

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
                self.ft_states.append(g.model.encode_prompts([settings.finetuned_prompt]))
        self._pe_cache: dict[tuple, torch.Tensor] = {}
        if settings.finetuned_only and guides:
            model = guides[0].model
            self.ft_uncond = model.encode_prompts([""]).to(base.dtype)

    def predict(self, regions: list[torch.Tensor], tiles: list[Region], t: int, t_unet: int | None = None) -> Scores:
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

    def reconstruct(self, regions: list[torch.Tensor], tiles: list[Region], t: int) -> torch.Tensor:
        """What DDIM inversion follows: the content model's ε(z, ĉ) with its tiles' PE (no fine-tuned
        model: the pre-trained ε(z, ∅))."""
        z = torch.cat(regions)
        t_in = torch.full((len(regions),), t, device=self.base.device)
        if not self.guides:
            return self.base.unet(z, t_in, self.uncond.expand(len(regions), -1, -1)).sample.float()
        return self._finetuned_eps(0, z, tiles, t_in)

    def detail(self, regions: list[torch.Tensor], tiles: list[Region], t: int) -> torch.Tensor:
        """The fine-tuned models' β-weighted mean prediction (each with its tiles' PE), whatever their time range.
        With every β 0 (v = 1, or content and style weights 0) the models share equally: a single model's β
        cancels out of its mean, so v = 1 draws what v just below 1 draws (0/0 made the picture NaN: black)."""
        z = torch.cat(regions)
        t_in = torch.full((len(regions),), t, device=self.base.device)
        weights = [g.guide.weight for g in self.guides]
        if sum(weights) <= 0:
            weights = [1.0] * len(weights)
        total = sum(w * self._finetuned_eps(i, z, tiles, t_in) for i, w in enumerate(weights))
        return total / sum(weights)

    def _pe(self, g: FinetunedGuide, tile: Region) -> torch.Tensor | None:
        model = g.model
        if model.pe_table is None:
            return None
        key = (id(model), tile)
        if key not in self._pe_cache:
            y, x, h, w = tile
            self._pe_cache[key] = region_embedding(model.pe_table, self.full_size, (y, x), (h, w), model.pe_mode)
        return self._pe_cache[key]

    def _finetuned_eps(self, i: int, z: torch.Tensor, tiles: list[Region], t_in: torch.Tensor) -> torch.Tensor:
        """Fine-tuned model i's prediction for the regions `z` of `tiles`, each with its PE, as float."""
        g, n = self.guides[i], len(tiles)
        pes = [self._pe(g, tile) for tile in tiles]
        pe = None if pes[0] is None else torch.stack(pes)
        unet = g.model.unet  # its own dtype (fp16 on CUDA, see finetuned_dtype)
        with g.model.hook.using(pe):
            return unet_call(unet)(z.to(weight_dtype(unet)), t_in, self.ft_states[i].expand(n, -1, -1)).float()

    def _predict_finetuned_only(self, z: torch.Tensor, tiles: list[Region], t_in: torch.Tensor) -> Scores:
        """The baseline: plain CFG on the first fine-tuned model, ε_ft(∅) and ε_ft(prompt), no pre-trained score."""
        g, n = self.guides[0], len(tiles)
        pes = [self._pe(g, tile) for tile in tiles]
        pe = None if pes[0] is None else torch.stack(pes * 2)
        states = torch.cat([self.ft_uncond.expand(n, -1, -1), self.ft_states[0].expand(n, -1, -1)])
        unet = g.model.unet
        with g.model.hook.using(pe):
            dtype = weight_dtype(unet)
            eps = unet(torch.cat([z, z]).to(dtype), t_in, states.to(dtype)).sample.float()
        return Scores(eps[:n], eps[n:], [], [])
