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
