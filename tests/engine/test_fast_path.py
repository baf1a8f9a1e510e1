"""Sampling fast paths give the plain path's pixels: LoRA merged into the fine-tuned copy, and the
fine-tuned dtype keeps small weight changes that the base's bf16 would round away."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file

from sine.devices import finetuned_dtype
from sine.finetune import (
    FineTuned,
    FinetuneSettings,
    _unet_lora_state,
    add_unet_lora,
    finetune,
    merge_lora_layerwise,
)
from sine.models import load_base_model
from sine.positional import region_embedding
from sine.sampler import SamplingSettings, sample_edit

PROMPT = "picture of a sks dog"
LAYER = "up_blocks.0.resnets.0.conv1"  # all its weights are below 2^-5 in the tiny model


def _has_adapters(module: torch.nn.Module) -> bool:
    return any(isinstance(m, BaseTunerLayer) for m in module.modules())


def test_merged_lora_gives_the_adapters_pixels_with_a_plain_unet(base, source_image, tmp_path):
    # a large learning rate so the adapters change the output far beyond the tolerance
    ft = finetune(base, source_image, PROMPT, FinetuneSettings(method="lora", steps=4, lr=5e-2, patch=True))
    ft.save(tmp_path / "w")
    merged = FineTuned.load(tmp_path / "w", base)
    unmerged = FineTuned.load(tmp_path / "w", base, merge=False)
    untrained = finetune(base, source_image, PROMPT, FinetuneSettings(method="lora", steps=0, patch=True))
    assert not _has_adapters(merged.unet) and not _has_adapters(ft.unet) and _has_adapters(unmerged.unet)
    assert sum(p.numel() for p in merged.unet.parameters()) == sum(p.numel() for p in base.unet.parameters())
    assert merged.lora_state.keys() == unmerged.lora_state.keys() and merged.nbytes() == unmerged.nbytes()

    # one UNet call with the whole picture's PE through the conv_in hook
    lat = base.sample_size // base.vae_scale_factor
    pe = region_embedding(merged.pe_table, (lat, lat), (0, 0), (lat, lat), merged.pe_mode)[None]
    x = torch.randn(1, 4, lat, lat, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    states = merged.encode_source()

    def eps(model: FineTuned, value: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad(), model.hook.using(value):
            return model.unet(x, t, states).sample

    ref, out, plain = eps(unmerged, pe), eps(merged, pe), eps(untrained, pe)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert (out - plain).abs().max() > 1e-2  # the adapters matter
    assert (eps(merged, None) - out).abs().max() > 1e-3  # the PE hook still acts on the merged copy

    sampling = SamplingSettings(steps=4, seed=3, strength=1.0)
    a = np.asarray(sample_edit(base, merged, "a cat", 64, 64, sampling), dtype=np.int16)
    b = np.asarray(sample_edit(base, unmerged, "a cat", 64, 64, sampling), dtype=np.int16)
    c = np.asarray(sample_edit(base, untrained, "a cat", 64, 64, sampling), dtype=np.int16)
    assert np.abs(a - b).max() <= 1  # fp32 rounding only
    assert np.abs(a - c).mean() > 1.0


def _with_small_change(folder, delta: float) -> None:
    """Rewrite a saved LoRA so that it changes every weight of LAYER by exactly `delta`."""
    path = folder / "unet_lora.safetensors"
    state = load_file(path)
    a_key, b_key = f"{LAYER}.lora_A.weight", f"{LAYER}.lora_B.weight"
    rank = state[a_key].shape[0]
    state[a_key] = torch.full_like(state[a_key], 1.0 / rank)
    state[b_key] = torch.full_like(state[b_key], delta)
    save_file(state, path)


@pytest.mark.parametrize("ft_dtype", ["fp16", "bf16"])
def test_a_1e5_weight_change_survives_the_cuda_sampling_dtypes(tiny_folder, source_image, tmp_path, monkeypatch,
                                                                ft_dtype):
    """The base as CUDA runs it (bf16), the fine-tuned copy in what `finetuned_dtype` picks on CUDA (fp16).
    bf16, what the fine-tuned copy used before, is the failing reference."""
    assert finetuned_dtype(torch.device("cuda"), torch.bfloat16) == torch.float16
    base = load_base_model(tiny_folder, device="cpu", dtype="bf16")
    monkeypatch.setenv("SINE_FT_DTYPE", ft_dtype)
    zero = finetune(base, source_image, PROMPT, FinetuneSettings(method="lora", steps=0, patch=False))
    zero.save(tmp_path / "w")
    _with_small_change(tmp_path / "w", 1e-5)
    changed = FineTuned.load(tmp_path / "w", base)

    w_base = base.unet.get_submodule(LAYER).weight.float()
    w_ft = changed.unet.get_submodule(LAYER).weight
    other = changed.unet.get_submodule("up_blocks.0.resnets.0.conv2").weight
    assert other.dtype == w_ft.dtype
    torch.testing.assert_close(other.float(), base.unet.get_submodule("up_blocks.0.resnets.0.conv2").weight.float(),
                               rtol=0, atol=6e-8)  # untouched weights: the base's (but fp16's subnormals)
    diff = w_ft.float() - w_base
    if ft_dtype == "bf16":  # the old path: the change is gone
        assert (diff == 0).float().mean() > 0.5  # 87 % here
        return
    assert (diff != 0).all(), f"{(diff == 0).float().mean():.0%} of the changes rounded away"
    assert abs(diff.mean().item() - 1e-5) < 2e-6
    # ... and it reaches the fine-tuned UNet's output on the sampler's path
    lat = base.sample_size // base.vae_scale_factor
    x = torch.randn(1, 4, lat, lat, generator=torch.Generator().manual_seed(0)).to(w_ft.dtype)
    t = torch.tensor([500])
    states = changed.encode_source()
    with torch.no_grad():
        a = changed.unet(x, t, states).sample
        b = FineTuned.load(tmp_path / "w", base).unet(x, t, states).sample
        zero_out = zero.unet(x, t, states).sample
    assert torch.equal(a, b)
    assert not torch.equal(a, zero_out)


def test_the_default_sd15_lora_entry_is_at_most_10_mb():
    """SD1.5's UNet shapes (on the meta device: no weights, no download) with the default recipe's adapters."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from lora_entry import SD15_UNET

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
    s = FinetuneSettings().resolved()
    add_unet_lora(unet, s)
    state = _unet_lora_state(unet, s)
    entry = sum(t.numel() * 2 for t in state.values())  # stored in fp16
    assert sum(k.endswith("lora_A.weight") for k in state) == 208 and any(k.startswith("conv_in.") for k in state)
    assert entry <= 10e6, entry / 1e6


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_layerwise_lora_merge_gives_the_whole_model_merges_weights(tiny_folder, dtype):
    """`merge_lora_layerwise` (one fp32 layer at a time) against the whole-UNet path it replaced
    (all of it to fp32, diffusers' `fuse_lora`, one cast), from the bf16 base CUDA runs: bit-equal."""
    base = load_base_model(tiny_folder, device="cpu", dtype="bf16")
    unet = copy.deepcopy(base.unet)
    add_unet_lora(unet, FinetuneSettings(method="lora").resolved(base.recipes))
    gen = torch.Generator().manual_seed(0)
    for name, param in unet.named_parameters():
        if "lora_" in name:  # trained adapters: fp32 master weights, both factors non-zero
            param.data = torch.randn(param.shape, generator=gen) * 0.05
    reference = copy.deepcopy(unet)
    reference.float()
    reference.fuse_lora()
    reference.unload_lora()
    reference.to(dtype)
    merge_lora_layerwise(unet, dtype)
    assert not _has_adapters(unet)
    ref_state, state, base_state = reference.state_dict(), unet.state_dict(), base.unet.state_dict()
    assert ref_state.keys() == state.keys() == base_state.keys()
    for key in state:
        assert state[key].dtype == dtype and torch.equal(state[key], ref_state[key]), key
    changed = [k for k in state if not torch.equal(state[k], base_state[k].to(dtype))]
    assert len(changed) > 10  # the adapters moved the weights, so equality says something


def test_a_stored_lora_entry_merges_into_a_plain_copy_without_adapter_modules(base, source_image, tmp_path,
                                                                             monkeypatch):
    """A cache hit adds ΔW = B·A straight to a copy of the base (`merge_lora_state`): no peft adapter
    modules are built (their injection and peft's conv2d merge took 5 of the 9 s of an SD1.5 load on
    one CPU thread), and the weights are bit for bit those of the fresh fine-tune."""
    import peft.tuners.lora.layer as lora_layer

    ft = finetune(base, source_image, PROMPT, FinetuneSettings(method="lora", steps=3, lr=5e-2, patch=True))
    ft.save(tmp_path / "w")

    def no_adapters(*args, **kwargs):
        raise AssertionError("a LoRA adapter module was built to load a stored entry")

    monkeypatch.setattr(lora_layer.LoraLayer, "__init__", no_adapters)
    loaded = FineTuned.load(tmp_path / "w", base)
    fresh, got = ft.unet.state_dict(), loaded.unet.state_dict()
    assert fresh.keys() == got.keys()
    for key in fresh:
        assert got[key].dtype == fresh[key].dtype and torch.equal(got[key], fresh[key]), key
    assert loaded.lora_state.keys() == ft.lora_state.keys()


def test_a_lora_entry_of_another_base_model_is_refused_in_words(base, source_image, tmp_path):
    from sine.errors import BadInput

    ft = finetune(base, source_image, PROMPT, FinetuneSettings(method="lora", steps=1, patch=True))
    ft.save(tmp_path / "w")
    demo = load_base_model(None, device="cpu")  # the bundled demo model: other layer names and widths
    with pytest.raises(BadInput, match="fine-tune of another model"):
        FineTuned.load(tmp_path / "w", demo)


def test_no_step_walks_the_unet_to_find_its_dtype(base, source_image, monkeypatch):
    """diffusers' `model.dtype` walks every submodule looking for casting hooks: 1.4 ms on an SD1.5
    UNet, several times a guided step (about 20 % of a 15 ms GPU step). The steps of a fine-tune and
    of sampling must not pay it: the walks do not grow with the step count."""
    import diffusers.models.modeling_utils as modeling_utils

    walks = {"n": 0}
    real = modeling_utils.get_parameter_dtype

    def counting(module):
        walks["n"] += 1
        return real(module)

    monkeypatch.setattr(modeling_utils, "get_parameter_dtype", counting)

    def count(run) -> int:
        walks["n"] = 0
        run()
        return walks["n"]

    def tune(steps: int) -> FineTuned:
        return finetune(base, source_image, PROMPT, FinetuneSettings(method="lora", steps=steps, patch=True))

    ft = tune(1)
    assert count(lambda: tune(5)) == count(lambda: tune(1))

    def edit(steps: int) -> None:
        sample_edit(base, ft, "a red dog", 32, 32, SamplingSettings(steps=steps, seed=0, strength=1.0))

    assert count(lambda: edit(6)) == count(lambda: edit(2))
