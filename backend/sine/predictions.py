"""What the UNet predicts (ε or v) and the conversions between its output, the noise ε and the clean
latent x̂₀, for z_t = √ᾱ·x₀ + √(1−ᾱ)·ε and v = √ᾱ·ε − √(1−ᾱ)·x₀.

Every other part of the engine works in ε (the paper's formulas, the guidance, the tiles' whole
view); a v model's output is turned into ε right at the UNet call, which for a fixed z_t is an
affine map with the same coefficients for every model, so guidance mixes commute with it.
"""

from __future__ import annotations

import torch

EPSILON, V_PREDICTION = "epsilon", "v_prediction"


def training_target(z0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor, prediction: str) -> torch.Tensor:
    """What the UNet should output for z_t built from (z0, noise)."""
    if prediction == V_PREDICTION:
        return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * z0
    return noise


def to_epsilon(output: torch.Tensor, z_t: torch.Tensor, alpha_bar: torch.Tensor | float, prediction: str) -> torch.Tensor:
    """The noise ε the output stands for (ε models: the output itself, untouched)."""
    if prediction != V_PREDICTION:
        return output
    a = torch.as_tensor(alpha_bar, dtype=output.dtype, device=output.device)
    return (1 - a).sqrt() * z_t.to(output.dtype) + a.sqrt() * output


def clean_latent(output: torch.Tensor, z_t: torch.Tensor, alpha_bar: torch.Tensor, prediction: str) -> torch.Tensor:
    """x̂₀ from the UNet's output at z_t."""
    if prediction == V_PREDICTION:
        return alpha_bar.sqrt() * z_t - (1 - alpha_bar).sqrt() * output
    return (z_t - (1 - alpha_bar).sqrt() * output) / alpha_bar.sqrt()
