"""Shared fixtures for the engine tests: one tiny SD-shaped model, loaded through from_pretrained."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

import sine
from sine.models import load_base_model
from sine.tiny_models import make_tiny_sd

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)  # a worker shares 2 cores


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


# The sampler as it was before the split and the controls (sampler.py: 423 lines): what strength 1 and
# the split sampler must reproduce bit for bit.
SAMPLER_BEFORE = "67cc64096033ed7522ce87b87e1c18a0e0434a4d"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def old_sampler() -> ModuleType:
    """backend/sine/sampler.py at SAMPLER_BEFORE, from git, run against today's other modules."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    proc = subprocess.run(["git", "-C", str(REPO), "show", f"{SAMPLER_BEFORE}:backend/sine/sampler.py"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"the old sampler is not in this checkout's history ({SAMPLER_BEFORE[:7]})")
    name = "sine._sampler_before"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = sine.__name__
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    try:
        exec(compile(proc.stdout, f"sampler.py@{SAMPLER_BEFORE[:7]}", "exec"), module.__dict__)
    except ImportError as exc:  # the modules it imports have moved on since
        pytest.skip(f"the old sampler no longer imports: {exc}")
    return module
