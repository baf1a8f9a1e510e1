"""`method=full` is refused before it starts when it cannot fit the GPU (only the reported device memory
is faked; the models are real: the tiny SDXL-shaped one, and SDXL's UNet built from its shipped config)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image

from sine import memory
from sine.checkpoints import CONFIGS_DIR
from sine.errors import BadInput
from sine.finetune import FinetuneSettings, finetune
from sine.models import load_base_model
from sine.tiny_models import make_tiny_sdxl

GIB = 2**30
SOURCE = Image.new("RGB", (32, 32), (200, 60, 60))


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    return load_base_model(make_tiny_sdxl(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl"), device="cpu")


def _fake_device_memory(monkeypatch, nbytes: int) -> None:
    monkeypatch.setattr(memory, "device_total_memory", lambda device: nbytes)


def _full_needs(base) -> int:
    params = sum(p.numel() for p in base.unet.parameters())
    return memory.full_finetune_bytes(params, memory.module_bytes(base.unet))


def test_full_finetune_refused_before_any_step_when_the_gpu_is_too_small(xl, monkeypatch):
    _fake_device_memory(monkeypatch, _full_needs(xl) - 1)
    steps = []
    with pytest.raises(BadInput, match="method=lora"):
        finetune(xl, SOURCE, "picture of a sks disc", FinetuneSettings(method="full", steps=2),
                 progress=lambda *a: steps.append(a))
    assert steps == []


def test_full_finetune_runs_when_it_fits_and_lora_is_never_refused(xl, monkeypatch):
    _fake_device_memory(monkeypatch, _full_needs(xl))
    assert finetune(xl, SOURCE, "picture of a sks disc", FinetuneSettings(method="full", steps=1)) is not None
    _fake_device_memory(monkeypatch, 1)
    assert finetune(xl, SOURCE, "picture of a sks disc", FinetuneSettings(method="lora", steps=1)) is not None


def test_sdxl_unet_full_finetune_floor_is_over_38_gib():
    """SDXL's real UNet (2.57 B parameters, built on the meta device from the shipped config) in place
    of the tiny one: fp32 weights + grads + AdamW alone are 38 GiB."""
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS_DIR / "sdxl" / "unet"))
    params = sum(p.numel() for p in unet.parameters())
    assert 2.5e9 < params < 2.6e9
    assert memory.full_finetune_bytes(params) / GIB > 38


@pytest.mark.parametrize(("gib", "refused"), [(24, True), (80, False)])
def test_sdxl_sized_model_refused_on_24_gib(xl, monkeypatch, gib, refused):
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS_DIR / "sdxl" / "unet"))
    big = dataclasses.replace(xl, unet=unet.to(torch.bfloat16))
    _fake_device_memory(monkeypatch, gib * GIB)
    settings = FinetuneSettings(method="full").resolved(big.recipes)
    if refused:
        with pytest.raises(BadInput, match=r"needs at least 4\d\.\d GiB .* has 24\.0 GiB: use method=lora"):
            memory.check_full_finetune_fits(big, settings)
    else:
        memory.check_full_finetune_fits(big, settings)


def test_no_cuda_reports_no_limit():
    assert memory.device_total_memory(torch.device("cpu")) is None
