"""Where sampling starts: pure noise (SINE), the source noised to a level (SDEdit), or the source inverted.

`strength` s ∈ (0, 1] is the share of the DDIM steps that are run: sampling begins at timestep
index n − round(s·n) (at least one step). At s = 1 with the `noise` start the start is today's pure
noise, drawn exactly as before (bit-identical); below 1 the source's latent is noised to the first
timestep run with that same noise draw (q(z_t | z_0), SDEdit). The `inversion` start instead runs
DDIM inversion of the source up to that timestep with the fine-tuned model (its source prompt ĉ and
its positional embedding), so the start holds the picture's own noise rather than random noise; at
s = 1 it inverts all the way up.

The source is the picture at the plan's render size: resized to the output size (exact sizes,
large canvases in one latent or in tiles), or to the working size for `upscale`/`refine`, whose
first pass runs there; transparent pixels over white, as in fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler
from PIL import Image

from sine_protocol.defaults import START_MODES

from .errors import BadInput, Cancelled
from .images import flatten_rgb

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]


def check_start(strength: float, start: str) -> None:
    if not 0.0 < strength <= 1.0:
        raise BadInput(f"strength must be in (0, 1], not {strength}")
    if start not in START_MODES:
        raise BadInput(f"start must be one of {START_MODES}, not {start!r}")


def first_step(n_steps: int, strength: float) -> int:
    """Index of the first timestep run: 0 at strength 1 (every step), else the last round(s·n) steps (≥ 1)."""
    n_run = max(1, min(n_steps, round(n_steps * strength)))
    return n_steps - n_run


def needs_source(strength: float, start: str) -> bool:
    """Pure noise needs no source; every other start begins from the picture."""
    return strength < 1.0 or start != "noise"


def source_at(source: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The source as the model sees it at the plan's render size (w, h): RGB over white, resized."""
    rgb = flatten_rgb(source)
    return rgb if rgb.size == size else rgb.resize(size, Image.Resampling.LANCZOS)


def noised_start(scheduler: DDIMScheduler, z0: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
    """SDEdit: the clean latent noised to timestep t, q(z_t | z_0) = √ᾱ_t z_0 + √(1−ᾱ_t) ε."""
    return scheduler.add_noise(z0, noise.to(z0), torch.tensor([t]))


def inverse_scheduler(scheduler: DDIMScheduler) -> DDIMInverseScheduler:
    """DDIM inversion over the same timesteps and ᾱ as `scheduler` (ascending), starting from the clean
    image. ᾱ is the sampler's own (`BaseModel.new_scheduler` floors a zero-terminal-SNR model's last
    one): rebuilt from the config, the inversion's last step had ᾱ = 0 and kept nothing of the source."""
    inverse = DDIMInverseScheduler.from_config(scheduler.config, set_alpha_to_one=True)
    inverse.alphas_cumprod = scheduler.alphas_cumprod.clone()
    return inverse


def inverted_start(scheduler: DDIMScheduler, steps: int, z0: torch.Tensor, t_target: int, eps: EpsFn,
                   should_stop: Callable[[], bool] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Deterministic DDIM inversion of `z0` up to timestep `t_target` (one of the sampling timesteps).

    Each step moves z from one timestep to the next one up with ε = eps(z, t_next): the reverse of
    the η = 0 DDIM step the sampler takes, so sampling with the same ε retraces the path.
    """
    inverse = inverse_scheduler(scheduler)
    inverse.set_timesteps(steps)
    ups = [int(t) for t in inverse.timesteps if int(t) <= t_target]
    z = z0.float()
    for i, t in enumerate(ups):
        if should_stop is not None and should_stop():
            raise Cancelled("inversion cancelled")
        z = inverse.step(eps(z, t), t, z).prev_sample
        if progress is not None:
            progress(i + 1, len(ups))
    return z
