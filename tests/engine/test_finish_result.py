"""The delivered result (`compositing.finish_result`, the CLI's and the daemon's last step) on a picture with
soft transparency, through the bundled demo model at a strength that keeps the picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sine.compositing import finish_result
from sine.demo import load_asset
from sine.models import load_base_model
from sine.sampler import SamplingSettings, sample_edit

ALPHAS = (1, 8, 64, 128, 200, 255)


@pytest.fixture(scope="module")
def demo_base():
    return load_base_model(None, device="cpu")


def test_partly_transparent_pixels_keep_their_colour_not_the_white_they_were_drawn_over(demo_base):
    """The model sees transparent pixels over white; its colour there is the layer over white. Returned as the
    layer's own colour, a half-transparent red came back pink: a light fringe over any darker background."""
    picture, _ = load_asset("dotted_star")
    pixels = np.asarray(picture.convert("RGBA")).copy()
    for i, alpha in enumerate(ALPHAS):
        pixels[i * 10:(i + 1) * 10, :, 3] = alpha
    source = Image.fromarray(pixels, "RGBA")
    edited = sample_edit(demo_base, None, "a yellow star on a green background", 64, 64,
                         SamplingSettings(steps=50, strength=0.02, seed=1), source=source)  # one step: ≈ the source
    result = np.asarray(finish_result(edited, source, None, (64, 64))).astype(np.float32)
    assert (result[..., 3] == pixels[..., 3]).all()

    def error_over(background: float, band: int) -> float:
        """Mean error of the band composited over a grey level, result against source."""
        rows = slice(band * 10, (band + 1) * 10)
        a = pixels[rows, :, 3:].astype(np.float32) / 255
        over = [rgba[rows, :, :3].astype(np.float32) * a + background * (1 - a) for rgba in (result, pixels)]
        return float(np.abs(over[0] - over[1]).mean())

    opaque = error_over(0.0, ALPHAS.index(255))  # what the VAE and one step cost anywhere
    for band, alpha in enumerate(ALPHAS[:-1]):
        for background in (0.0, 255.0):  # was 42 levels at alpha 128, 3× the opaque pixels' 14
            assert error_over(background, band) <= opaque + 2.0, (alpha, background)


@pytest.mark.parametrize("width", [1, 2, 4, 6, 12])
def test_a_narrow_selection_gets_the_whole_edit_at_its_middle(width):
    """The feather fades the edit in over 4 px inside the selection: a selection narrower than 8 px never
    reached full weight (1–2 px wide: a quarter of the edit, 4 px: half). The fade now reaches full weight at
    the selection's deepest pixels; wide selections keep their 4-px ramp, the outside stays the source's."""
    from sine.compositing import composite_under_mask, feathered_alpha

    selection = np.zeros((20, 30), np.uint8)
    selection[:, 5:5 + width] = 255
    mask = Image.fromarray(selection, "L")
    weights = feathered_alpha(mask, 4)[10, 5:5 + width]
    assert weights.max() == 1.0
    if width >= 8:
        assert weights[:4].tolist() == [0.25, 0.5, 0.75, 1.0]
    source, result = Image.new("RGBA", (30, 20), (10, 20, 30, 255)), Image.new("RGBA", (30, 20), (200, 100, 50, 255))
    out = np.asarray(composite_under_mask(source, result, mask))
    assert (out[selection == 0] == (10, 20, 30, 255)).all()
    assert (out[10, 5 + (width - 1) // 2] == (200, 100, 50, 255)).all()


def test_a_grey_selection_still_blends_by_its_level():
    from sine.compositing import feathered_alpha

    assert np.allclose(feathered_alpha(Image.new("L", (16, 16), 128), 4), 128 / 255)
    ramp = np.tile(np.linspace(0, 255, 32).round().astype(np.uint8), (8, 1))  # a soft edge the host made
    weights = feathered_alpha(Image.fromarray(ramp, "L"), 4)
    assert (weights <= ramp / 255 + 1e-6).all() and weights[:, -1].min() == 1.0
