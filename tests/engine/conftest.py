"""Shared fixtures for the engine tests: one tiny SD-shaped model, loaded through from_pretrained."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sine.models import load_base_model
from sine.tiny_models import make_tiny_sd

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory):
    return make_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def base(tiny_folder):
    return load_base_model(tiny_folder, device="cpu")


@pytest.fixture(scope="session")
def attention_base(tmp_path_factory: pytest.TempPathFactory):
    """A tiny model with attention at both levels: more places for LoRA to adapt."""
    folder = make_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd-attn", attention_everywhere=True)
    return load_base_model(folder, device="cpu")


@pytest.fixture(scope="session")
def source_image() -> Image.Image:
    """A 64×64 picture with structure (a disc on stripes), so the loss has something to learn."""
    yy, xx = np.mgrid[0:64, 0:64]
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 1] = np.where((yy // 8) % 2 == 0, 200, 60)
    disc = (yy - 30) ** 2 + (xx - 34) ** 2 < 14 ** 2
    img[disc] = (220, 30, 30)
    return Image.fromarray(img, "RGB")
