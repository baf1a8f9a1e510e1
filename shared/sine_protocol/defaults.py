"""One definition of each default of an edit, for the engine, the CLI, the daemon and both plugins.

The sampling numbers are the paper's (SINE: 100 DDIM steps, w = 7.5, v = 0.7, K = 400); the ranges
are what the protocol accepts. Stdlib only: the plugins get this module with the vendored package.
"""

from __future__ import annotations

STEPS = 100  # DDIM sampling steps
GUIDANCE = 7.5  # classifier-free guidance scale w
V = 0.7  # weight of the pre-trained model's conditional score while t ≥ K (the fine-tuned model gets 1 − v)
K = 400  # the fine-tuned model guides for timesteps t ≥ K; below, plain CFG on the pre-trained model
SEED = 0
# Seeds are 0 .. 2³² − 1 everywhere (protocol, `sine edit`, plugins): torch's CPU generator, which draws
# every start noise, keeps only a seed's low 32 bits (seed 2³² drew seed 0's picture).
SEED_COUNT = 2**32

STEPS_RANGE = (1, 1000)
GUIDANCE_RANGE = (0.0, 50.0)
V_RANGE = (0.0, 1.0)
K_RANGE = (0, 1000)

STYLES: tuple[str, ...] = ("photo", "painting")  # the source prompt: "picture of a sks …" / "painting of a sks …"
STYLE = "photo"
FINETUNE_METHODS: tuple[str, ...] = ("lora", "full")  # ours (fast), the paper's
METHOD = "lora"

START_MODES: tuple[str, ...] = ("noise", "inversion")  # where sampling starts (see sine.start)
START = "noise"
# Share of the steps run, from the source noised to that level. 1 is the paper's pure noise (`sine demo`,
# the quality benchmark); 0.6 from noise edited more often AND kept more of the source than 1.0 on the demo
# model (docs/benchmarks.md: edit success 0.56 vs 0.34, PSNR 24.0 vs 20.6 dB), runs 60 % of the steps,
# and still gives a different picture per seed (the inversion start gives one).
STRENGTH = 0.6
PAPER_STRENGTH = 1.0  # SINE as published: every step, from pure noise
STYLE_WEIGHT = 0.3  # β of a style model in multi-model guidance
CONTENT_WEIGHT = round(1.0 - V, 6)  # β of the source's own model beside a style model: the engine's 1 − v
MAX_COUNT = 8  # results per edit request


def result_seeds(seed: int, count: int) -> list[int]:
    """The seeds of `count` results: seed, seed+1, …, wrapping to 0 past 2³² − 1."""
    return [(seed + i) % SEED_COUNT for i in range(count)]


def multi_model_weights(v: float, content_weight: float | None = None,
                        style_weight: float | None = None) -> tuple[float, float]:
    """β₁ (the source's model, default 1 − v) and β₂ (the style model, default STYLE_WEIGHT) of multi-model
    guidance; the pre-trained edit score keeps the rest. ValueError unless both are ≥ 0 and add up to ≤ 1."""
    content = 1.0 - v if content_weight is None else content_weight
    style = STYLE_WEIGHT if style_weight is None else style_weight
    if not (0.0 <= content and 0.0 <= style and content + style <= 1.0):
        raise ValueError(f"content weight {content:.3g} (default 1 - v) and style weight {style:.3g} (default "
                         f"{STYLE_WEIGHT}) must be at least 0 and add up to at most 1")
    return content, style
