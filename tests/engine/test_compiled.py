"""Compiled UNet calls: eager on the CPU by default, and a failing compiled call falls back to the eager one
with the same pixels."""

from __future__ import annotations

import copy

import torch

from sine.compiled import COMPILE_ENV, UNetCall, unet_call
from sine.finetune import FinetuneSettings, finetune
from sine.sampler import SamplingSettings, sample_edit


def _inputs(base):
    lat = base.sample_size // base.vae_scale_factor
    z = torch.randn(2, 4, lat, lat, generator=torch.Generator().manual_seed(0))
    return z, torch.full((2,), 500), base.encode_prompts(["", "a cat"])


def test_cpu_takes_the_eager_path(base, monkeypatch):
    monkeypatch.setenv(COMPILE_ENV, "1")  # asked for, but only CUDA compiles
    unet = copy.deepcopy(base.unet)
    call = unet_call(unet)
    assert call.compiled is None and unet_call(unet) is call
    z, t, states = _inputs(base)
    with torch.no_grad():
        assert torch.equal(call(z, t, states), unet(z, t, states).sample)
    assert unet_call(copy.deepcopy(unet)).unet is not unet  # a copy never calls the original


def _broken_backend(gm, example_inputs):
    raise RuntimeError("no graphs here")


def test_a_failing_compiled_call_falls_back_to_the_same_pixels(base, source_image, monkeypatch):
    ft = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=1))
    settings = SamplingSettings(steps=3, seed=2, strength=1.0)
    eager = sample_edit(base, ft, "a cat", 64, 64, settings)
    monkeypatch.setenv(COMPILE_ENV, "force")
    for m in (base.unet, ft.unet):
        object.__setattr__(m, "_sine_unet_call", None)  # the eager run made eager calls
    calls = [unet_call(m, backend=_broken_backend) for m in (base.unet, ft.unet)]
    try:
        assert all(c.compiled is not None for c in calls)
        fallback = sample_edit(base, ft, "a cat", 64, 64, settings)
        assert all(c.fell_back and c.compiled is None for c in calls)
        assert fallback.tobytes() == eager.tobytes()
    finally:
        for m in (base.unet, ft.unet):
            object.__setattr__(m, "_sine_unet_call", None)


def test_unetcall_copies_compiled_outputs(base):
    z, t, states = _inputs(base)
    shared = {}

    def reusing(z, t, states):  # like a CUDA graph: the same output buffer every replay
        out = base.unet(z, t, states).sample
        buf = shared.setdefault("buf", torch.empty_like(out))
        buf.copy_(out)
        return type("Out", (), {"sample": buf})()

    call = UNetCall(base.unet, reusing)
    with torch.no_grad():
        first = call(z, t, states)
        call(z * 0, t, states)
    assert not first.data_ptr() == shared["buf"].data_ptr()
