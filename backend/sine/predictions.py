"""What the UNet predicts (ε, v or x₀: diffusers' "sample") and the conversions between its output,
the noise ε and the clean latent x̂₀, for z_t = √ᾱ·x₀ + √(1−ᾱ)·ε and v = √ᾱ·ε − √(1−ᾱ)·x₀.

Every other part of the engine works in ε (the paper's formulas, the guidance, the tiles' whole
view, DDIM's steps and previews); a v or x₀ model's output is turned into ε right at the UNet call
(`install_epsilon_outputs`), which for a fixed z_t is an affine map with the same coefficients for
every model, so guidance mixes commute with it (diffusers' DDIM does the same sum of ε terms from
a "sample" model's x̂₀). Training reads the raw output (`raw_outputs`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

EPSILON, V_PREDICTION, SAMPLE = "epsilon", "v_prediction", "sample"


def training_target(z0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor, prediction: str) -> torch.Tensor:
    """What the UNet should output for z_t built from (z0, noise)."""
    if prediction == V_PREDICTION:
        return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * z0
    if prediction == SAMPLE:
        return z0
    return noise


def to_epsilon(output: torch.Tensor, z_t: torch.Tensor, alpha_bar: torch.Tensor | float, prediction: str) -> torch.Tensor:
    """The noise ε the output stands for (ε models: the output itself, untouched)."""
    if prediction not in (V_PREDICTION, SAMPLE):
        return output
    a = torch.as_tensor(alpha_bar, dtype=output.dtype, device=output.device)
    if prediction == SAMPLE:
        return (z_t.to(output.dtype) - a.sqrt() * output) / (1 - a).sqrt()
    return (1 - a).sqrt() * z_t.to(output.dtype) + a.sqrt() * output


def clean_latent(output: torch.Tensor, z_t: torch.Tensor, alpha_bar: torch.Tensor, prediction: str) -> torch.Tensor:
    """x̂₀ from the UNet's output at z_t."""
    if prediction == V_PREDICTION:
        return alpha_bar.sqrt() * z_t - (1 - alpha_bar).sqrt() * output
    if prediction == SAMPLE:
        return output
    return (z_t - (1 - alpha_bar).sqrt() * output) / alpha_bar.sqrt()


_RAW: ContextVar[bool] = ContextVar("sine_raw_unet_outputs", default=False)


@contextmanager
def raw_outputs() -> Iterator[None]:
    """Within the block, v- and x₀-prediction UNets return their own output, as training needs."""
    token = _RAW.set(True)
    try:
        yield
    finally:
        _RAW.reset(token)


def install_epsilon_outputs(unet: torch.nn.Module, alphas_cumprod: torch.Tensor,
                            prediction: str = V_PREDICTION) -> None:
    """Make a v- (or x₀-) prediction UNet answer in ε (outside `raw_outputs`): a forward hook converts its output
    with the call's own z_t and timestep, so sampling, guidance, tiles, the whole view, inversion and
    previews (x̂₀ from DDIM's ε formula) need no change. Fine-tuned copies (deep copies) keep it."""
    alphas = alphas_cumprod.detach().float().cpu()

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict, output: object) -> object:
        if _RAW.get():
            return output
        z = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        t = torch.as_tensor(t).reshape(-1).long().cpu()
        a = alphas[t].to(z.device).view(-1, 1, 1, 1)
        if isinstance(output, tuple):
            return (to_epsilon(output[0], z, a.to(output[0].dtype), prediction), *output[1:])
        output.sample = to_epsilon(output.sample, z, a.to(output.sample.dtype), prediction)
        return output

    unet.register_forward_hook(hook, with_kwargs=True)
