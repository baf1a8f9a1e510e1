"""SINE's model-based classifier-free guidance, as a pure function of the noise predictions.

ε̃ = ε_pre(z, ∅) + w · ( (1 − Σβ_i) · ε_pre(z, c) + Σ β_i · ε_ft_i(z, ĉ_i) − ε_pre(z, ∅) )

With one fine-tuned model β = 1 − v (v weighs the pre-trained model). With no fine-tuned model
active (t < K) this is plain classifier-free guidance on the pre-trained model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Guide:
    """One fine-tuned model's share β of the conditional score, active for t_min ≤ t ≤ t_max."""

    weight: float
    t_min: int = 0
    t_max: int = 1000

    def active(self, t: int) -> bool:
        return self.t_min <= t <= self.t_max


def combine(
    eps_uncond: torch.Tensor,
    eps_edit: torch.Tensor,
    eps_finetuned: Sequence[torch.Tensor],
    weights: Sequence[float],
    guidance: float,
) -> torch.Tensor:
    """The guided noise from ε_pre(∅), ε_pre(c) and each active fine-tuned ε_ft with its β."""
    if len(eps_finetuned) != len(weights):
        raise ValueError("one weight per fine-tuned prediction")
    conditional = (1.0 - sum(weights)) * eps_edit
    for eps, beta in zip(eps_finetuned, weights, strict=True):
        conditional = conditional + beta * eps
    return eps_uncond + guidance * (conditional - eps_uncond)


def single_model_guides(v: float, k: int) -> list[Guide]:
    """The paper's setting: one fine-tuned model with β = 1 − v for t ≥ K."""
    return [Guide(weight=1.0 - v, t_min=k, t_max=10_000)]
