"""A UNet whose activations overflow in half precision (values past fp16's 65504; some merges and
fine-tunes do, as the SD 2.1 and SDXL VAEs famously did): the sampler notices the NaN/inf in its
prediction and stops with an error in words, instead of returning a black picture. A tiny model
loaded with `from_pretrained` whose first convolution's bias is 60000: finite in fp32, inf in fp16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sine.errors import BadModel
from sine.models import load_base_model
from sine.sampler import SamplingSettings, sample_edit
from sine.tiny_models import make_tiny_sd

NOISE = SamplingSettings(steps=3, strength=1.0, start="noise")


@pytest.fixture(scope="module")
def overflowing(tmp_path_factory: pytest.TempPathFactory):
    folder = make_tiny_sd(tmp_path_factory.mktemp("overflow") / "m")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["conv_in.bias"] = torch.full_like(state["conv_in.bias"], 60000.0)  # fits fp16; its sums do not
    save_file(state, weights)
    return folder


def test_fp32_edit_of_the_model_is_a_picture(overflowing):
    image = sample_edit(load_base_model(overflowing, device="cpu"), None, "a disc", 32, 32, NOISE)
    assert np.asarray(image).mean() > 10


@pytest.mark.parametrize("settings", [NOISE, SamplingSettings(steps=3, strength=0.5, start="inversion")],
                         ids=["noise", "inversion"])
def test_fp16_overflow_stops_in_words_not_a_black_picture(overflowing, source_image, settings):
    base = load_base_model(overflowing, device="cpu", dtype="fp16")
    with pytest.raises(BadModel) as caught:
        sample_edit(base, None, "a disc", 32, 32, settings, source=source_image)
    message = str(caught.value)
    assert "float16" in message and "--dtype fp32" in message and "SINE_DTYPE=fp32" in message, message
