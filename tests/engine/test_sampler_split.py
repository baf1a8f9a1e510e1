"""The sampler split (paper's loop in `sampler`, large canvases in `large_canvas`) changed no pixel.

The implementation before the split is read from git at `SAMPLER_BEFORE` (tests/engine/conftest.py) and run side by side with
today's on every engine case: one latent, tiles under the whole view, SINE per tile, upscale,
refine, the fine-tuned-only baseline, several guides, small and odd sizes. Final latents, images and
the last preview must be bit-identical. Skipped where the repository's history is not at hand.
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from sine import sampler as new
from sine.finetune import FinetuneSettings, finetune
from sine.guidance import Guide


@pytest.fixture(scope="module")
def old(old_sampler: ModuleType) -> ModuleType:
    return old_sampler


@pytest.fixture(scope="module")
def models(base, source_image):
    a = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=2))
    b = finetune(base, source_image.transpose(0), "picture of a sks dog", FinetuneSettings(steps=2, seed=1))
    return a, b


TILES = dict(tile_size=64, working_size=64)
CASES = {  # name: (width, height, settings, which fine-tuned models: "one" | "none" | "two")
    "single latent": (48, 32, dict(steps=3), "one"),
    "pre-trained only": (32, 32, dict(steps=3, seed=5), "none"),
    "small 33x47": (33, 47, dict(steps=2), "one"),
    "small 64x8": (64, 8, dict(steps=2), "one"),
    "finetuned prompt": (40, 40, dict(steps=3, finetuned_prompt="a sks cat"), "one"),
    "finetuned only": (64, 64, dict(steps=3, finetuned_only=True, finetuned_prompt="a cat"), "one"),
    "tiled whole view": (160, 96, dict(steps=3, **TILES), "one"),
    "tiled per tile": (160, 96, dict(steps=3, whole_view=False, **TILES), "one"),
    "tiled batch of 1": (160, 96, dict(steps=2, tile_batch=1, k=0, **TILES), "one"),
    "tiled pre-trained only": (160, 96, dict(steps=2, **TILES), "none"),
    "tiled finetuned only": (160, 96, dict(steps=2, finetuned_only=True, **TILES), "one"),
    "tiled odd size": (101, 45, dict(steps=2, strategy="tiled", working_size=32), "one"),
    "upscale": (101, 45, dict(steps=2, strategy="upscale", working_size=32), "one"),
    "refine": (101, 45, dict(steps=4, strategy="refine", working_size=32, refine_strength=0.5), "one"),
    "two guides": (48, 48, dict(steps=4), "two"),
    "two guides tiled": (160, 96, dict(steps=3, **TILES), "two"),
    "two guides per tile": (160, 96, dict(steps=3, whole_view=False, **TILES), "two"),
}


def _run(module: ModuleType, base, models, width: int, height: int, settings: dict, which: str):
    """Image, every latent the VAE decoded (final and preview) and the progress events of one edit."""
    if which == "none":
        finetuned = None
    elif which == "one":
        finetuned = models[0]
    else:
        finetuned = [module.FinetunedGuide(models[0], Guide(0.2, t_min=300)),
                     module.FinetunedGuide(models[1], Guide(0.1, t_max=700))]
    decoded, events = [], []
    plain_decode = base.decode_latents

    def recording_decode(latents: torch.Tensor) -> torch.Tensor:
        decoded.append(latents.clone())
        return plain_decode(latents)

    def progress(done: int, total: int, preview) -> None:
        events.append((done, total))
        if done == total:
            events.append(preview().tobytes())

    paper = {} if module is not new else {"strength": 1.0}  # the old sampler knew only pure noise
    s = module.SamplingSettings(guidance=7.5, v=0.7, k=settings.pop("k", 400), **paper, **settings)
    base.decode_latents = recording_decode
    try:
        image = module.sample_edit(base, finetuned, "a cat", width, height, s, progress=progress)
    finally:
        del base.decode_latents
    return image, decoded, events


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_the_split_changed_no_pixel(old, base, models, case):
    width, height, settings, which = CASES[case]
    before = _run(old, base, models, width, height, dict(settings), which)
    after = _run(new, base, models, width, height, dict(settings), which)
    assert after[0].size == (width, height)
    assert after[0].tobytes() == before[0].tobytes()
    assert len(after[1]) == len(before[1]) and all(torch.equal(a, b) for a, b in zip(after[1], before[1], strict=True))
    assert after[2] == before[2]
