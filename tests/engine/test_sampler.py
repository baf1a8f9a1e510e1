from dataclasses import replace

import pytest

from sine.errors import BadInput, Cancelled
from sine.finetune import FinetuneSettings, finetune
from sine.large_canvas import plan_strategy, tile_starts
from sine.sampler import SamplingSettings, sample_edit


@pytest.fixture(scope="module")
def finetuned(base, source_image):
    return finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=3))


@pytest.mark.parametrize("size", [(96, 64), (33, 47), (64, 8)])
def test_output_has_exactly_the_requested_size(base, finetuned, source_image, size):
    # at the painter's default strength: from the source (64×64) resized to each size, noised
    assert sample_edit(base, finetuned, "a cat", *size, SamplingSettings(steps=2), source=source_image).size == size


def test_pretrained_only_and_same_seed_reproduces(base):
    s = SamplingSettings(steps=3, seed=11, strength=1.0)
    a = sample_edit(base, None, "a cat", 32, 32, s)
    b = sample_edit(base, None, "a cat", 32, 32, s)
    c = sample_edit(base, None, "a cat", 32, 32, SamplingSettings(steps=3, seed=12, strength=1.0))
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()


def test_progress_and_preview(base, finetuned):
    events = []
    sample_edit(base, finetuned, "a cat", 48, 32, SamplingSettings(steps=4, strength=1.0),
                progress=lambda step, total, preview: events.append((step, total, preview)))
    assert [(s, t) for s, t, _ in events] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    preview = events[-1][2]()
    assert max(preview.size) <= 128 and preview.mode == "RGB"


def test_cancel_within_a_step(base, finetuned):
    steps = []
    with pytest.raises(Cancelled):
        sample_edit(base, finetuned, "a cat", 32, 32, SamplingSettings(steps=20, strength=1.0),
                    progress=lambda s, t, p: steps.append(s), should_stop=lambda: len(steps) >= 2)
    assert steps == [1, 2]


def test_bad_sizes_and_settings_are_refused(base):
    with pytest.raises(BadInput):
        sample_edit(base, None, "x", 4, 32, SamplingSettings(steps=1, strength=1.0))
    with pytest.raises(BadInput):
        sample_edit(base, None, "x", 32, 32, SamplingSettings(steps=0, strength=1.0))
    with pytest.raises(BadInput):
        sample_edit(base, None, "x", 32, 32, SamplingSettings(steps=1, strategy="zoom", strength=1.0))


def test_tiles_cover_everything_and_end_flush():
    assert tile_starts(10, 4, 3) == [0, 3, 6]
    assert tile_starts(4, 8, 6) == [0]
    starts = tile_starts(100, 16, 12)
    assert starts[0] == 0 and starts[-1] == 84 and all(b - a <= 12 for a, b in zip(starts, starts[1:], strict=False))


def test_strategy_rule(base):
    work = SamplingSettings(working_size=64)
    assert len(plan_strategy(base, 64, 64, work).tiles) == 1
    big = plan_strategy(base, 200, 64, work)
    assert len(big.tiles) > 1 and big.upscale_to is None
    up = plan_strategy(base, 200, 64, SamplingSettings(working_size=64, strategy="upscale"))
    assert up.upscale_to == (200, 64) and max(up.latent_h, up.latent_w) * 4 <= 64


@pytest.mark.parametrize("strategy", ["tiled", "upscale", "refine"])
def test_large_strategies_return_the_exact_size(base, finetuned, source_image, strategy):
    s = SamplingSettings(steps=2, strategy=strategy, working_size=32)  # the default strength, from the source
    assert sample_edit(base, finetuned, "a cat", 101, 45, s, source=source_image).size == (101, 45)
    assert sample_edit(base, finetuned, "a cat", 101, 45, replace(s, strength=1.0)).size == (101, 45)


def test_upscale_is_the_working_size_sample_resized(base, finetuned):
    """The upscale strategy samples one latent at the working size, then resizes (it once averaged
    over zero tiles and returned a black picture of the right size)."""
    from PIL import Image

    s = SamplingSettings(steps=2, strategy="upscale", working_size=32, strength=1.0)
    big = sample_edit(base, finetuned, "a cat", 64, 64, s)
    small = sample_edit(base, finetuned, "a cat", 32, 32, SamplingSettings(steps=2, strategy="single", strength=1.0))
    assert big.tobytes() == small.resize((64, 64), Image.Resampling.LANCZOS).tobytes()
    assert max(big.getextrema(), key=lambda e: e[1])[1] > 0


def test_refine_reruns_the_last_steps_at_full_size_in_tiles(base, finetuned):
    """refine: the working-size sample, resized, noised back to step 2 of 4 and denoised in tiles at
    the full size; progress counts both passes."""
    events = []
    s = SamplingSettings(steps=4, strategy="refine", working_size=32, refine_strength=0.5, strength=1.0)
    out = sample_edit(base, finetuned, "a cat", 101, 45, s, progress=lambda i, n, p: events.append((i, n)))
    assert out.size == (101, 45)
    assert events == [(i, 6) for i in range(1, 7)]
    upscaled = sample_edit(base, finetuned, "a cat", 101, 45, SamplingSettings(steps=4, strategy="upscale", working_size=32,
                                                                                     strength=1.0))
    assert out.tobytes() != upscaled.tobytes()
    assert sample_edit(base, finetuned, "a cat", 101, 45, s).tobytes() == out.tobytes()
    with pytest.raises(BadInput):
        sample_edit(base, finetuned, "a cat", 101, 45, SamplingSettings(steps=4, strategy="refine", refine_strength=0,
                                                                                     strength=1.0))
