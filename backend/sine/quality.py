"""`--quality`: the full recipe where there is a GPU, settings sized for the machine on a CPU.

On a CPU the full recipe is hours for a photo-sized picture (1,200 patch fine-tune steps, then 100
tiled sampling steps at the photo's size: 92 minutes for 451×300 with the demo model on a busy 2-core
machine). The `fast` profile renders in one latent at the model's working size and resizes up
(`upscale`), so the patches and positional embedding, which exist to render other sizes, buy nothing:
it fine-tunes with the recipe's whole-picture variant (the better one in one latent in the quality
benchmark, and 4× fewer steps for the demo model) and samples fewer DDIM steps. Values the user gives
always win. Torch-free: decided before the model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from sine_protocol import defaults

QUALITIES = ("auto", "fast", "full")
STEPS = defaults.STEPS  # the paper's DDIM steps
STRATEGY = "auto"
CPU_STEPS = 50  # fast: DDIM steps (the demo's number)
CPU_STRATEGY = "upscale"  # fast: one latent at the working size, resized to the output


@dataclass(frozen=True)
class QualityChoice:
    quality: str  # "fast" or "full"
    steps: int
    strategy: str
    patch: bool


def choose(quality: str, device_type: str, steps: int | None = None, strategy: str | None = None,
           patch: bool | None = None) -> QualityChoice:
    """The sampling steps, strategy and patch flag for `quality` ("auto": fast on a CPU, else full)."""
    fast = quality == "fast" or (quality == "auto" and device_type == "cpu")
    if fast:
        strategy = strategy or CPU_STRATEGY
        one_latent = strategy in ("upscale", "single")
        return QualityChoice("fast", steps or CPU_STEPS, strategy, (not one_latent) if patch is None else patch)
    return QualityChoice("full", steps or STEPS, strategy or STRATEGY, True if patch is None else patch)


def describe_fast(choice: QualityChoice, finetune_steps: int, working_size: int, full_estimate: str) -> str:
    """The one line that says what the fast profile does and how to ask for the full quality."""
    how = "whole-picture fine-tune" if not choice.patch else "patch fine-tune"
    where = f", drawn at up to {working_size} px and resized" if choice.strategy == "upscale" else ""
    return (f"fast CPU settings ({how} {finetune_steps} steps, {choice.steps} sampling steps{where}); "
            f"--quality full for the full recipe (about {full_estimate} here)")
