"""SDXL through the whole method, on a tiny SDXL-shaped random model built from configs: two text
encoders, pooled embeddings and time_ids, loaded from a folder and from a single file."""

from __future__ import annotations

import pytest
import torch

from sine.finetune import FinetuneSettings, evaluation_loss, finetune
from sine.guidance import combine
from sine.models import load_base_model
from sine.positional import region_embedding
from sine.sampler import SamplingSettings, sample_edit
from sine.tiny_models import make_tiny_sdxl, write_sdxl_single_file
from sine.xl import crop_time_ids, size_conditioning

PROMPT = "picture of a sks disc"


@pytest.fixture(scope="module")
def xl_folder(tmp_path_factory):
    return make_tiny_sdxl(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl")


@pytest.fixture(scope="module")
def xl(xl_folder):
    return load_base_model(xl_folder, device="cpu")


def _by_hand(base, unet, z, t, prompt_states_of, time_ids):
    """A UNet call as diffusers' SDXL pipeline makes it: hidden states of both encoders side by side,
    encoder 2's pooled output as text_embeds, and time_ids."""
    hidden, pooled = prompt_states_of
    return unet(z, t, hidden, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample


def _sdxl_states(base, prompt):
    """What StableDiffusionXLPipeline.encode_prompt computes, written out (penultimate layers, pooled from encoder 2)."""
    hidden = []
    for tok, enc in ((base.tokenizer, base.text_encoder), (base.tokenizer_2, base.text_encoder_2)):
        ids = tok([prompt], padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        out = enc(ids, output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        pooled = out[0]
    if prompt == "":  # force_zeros_for_empty_prompt
        return torch.zeros_like(torch.cat(hidden, -1)), torch.zeros_like(pooled)
    return torch.cat(hidden, -1), pooled


def test_loads_from_a_folder_and_a_single_file(xl, xl_folder, tmp_path):
    assert xl.is_xl and xl.kind.family == "SDXL" and xl.latent_scale == pytest.approx(0.13025)
    assert xl.pe_channels == 32 and xl.pe_grid == 16  # table from block_out_channels[0], 2x the latent side
    single = load_base_model(write_sdxl_single_file(xl_folder, tmp_path / "xl.safetensors"), device="cpu")
    assert single.is_xl and single.kind == xl.kind
    for a, b in ((xl.unet, single.unet), (xl.text_encoder_2, single.text_encoder_2), (xl.vae, single.vae)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].reshape(sa[k].shape)) for k in sa)
    assert torch.equal(xl.encode_prompts(["", PROMPT]), single.encode_prompts(["", PROMPT]))


@torch.no_grad()
def test_packed_states_give_the_pipelines_unet_call(xl):
    """Both encoders, the pooled embedding and the time_ids reach the UNet exactly as diffusers' SDXL
    pipeline passes them; the empty prompt is zeros (force_zeros_for_empty_prompt)."""
    z, t = torch.randn(1, 4, 8, 8), torch.tensor([600])
    for prompt in (PROMPT, ""):
        packed = xl.encode_prompts([prompt])
        by_hand = _by_hand(xl, xl.unet, z, t, _sdxl_states(xl, prompt), torch.tensor([[32.0, 32, 0, 0, 32, 32]]))
        assert torch.allclose(xl.unet(z, t, packed).sample, by_hand, atol=1e-6)
    with size_conditioning((64.0, 48.0), (16.0, 8.0), (32.0, 32.0)):
        told = xl.unet(z, t, xl.encode_prompts([PROMPT])).sample
    by_hand = _by_hand(xl, xl.unet, z, t, _sdxl_states(xl, PROMPT), torch.tensor([[64.0, 48, 16, 8, 32, 32]]))
    assert torch.allclose(told, by_hand, atol=1e-6)
    assert not torch.allclose(told, xl.unet(z, t, xl.encode_prompts([PROMPT])).sample)


def test_crop_conditioning_tells_the_crops_true_place():
    assert crop_time_ids((0, 0, 16, 16), 16, 32) == ((32.0, 32.0), (0.0, 0.0), (32.0, 32.0))  # whole view = native
    original, crop, target = crop_time_ids((4, 8, 12, 16), 16, 32)  # a quarter-area crop, lower right half
    assert original == (64.0, 64.0) and crop == (16.0, 32.0) and target == (32.0, 32.0)


@pytest.mark.parametrize("method,lr", [("lora", 3e-2), ("full", 1e-3)])
def test_finetune_lowers_the_loss_on_the_source(xl, source_image, method, lr):
    assert xl.recipes["full"].train_text_encoder is False  # SDXL's defaults: its text encoders stay frozen
    untrained = finetune(xl, source_image, PROMPT, FinetuneSettings(method=method, steps=0, patch=True))
    trained = finetune(xl, source_image, PROMPT, FinetuneSettings(method=method, steps=25, lr=lr, patch=True))
    assert trained.pe_table.shape == (32, 16, 16)
    before, after = evaluation_loss(xl, untrained, source_image, n=4), evaluation_loss(xl, trained, source_image, n=4)
    assert after < 0.9 * before, (before, after)
    with pytest.raises(Exception, match="text encoders"):
        finetune(xl, source_image, PROMPT, FinetuneSettings(method="full", steps=1, train_text_encoder=True))


def test_sine_guidance_by_hand_for_one_step_with_added_conditioning(xl, source_image):
    """One DDIM step of SINE at the native size, recomputed by hand with diffusers' own SDXL call:
    ε̃ = ε_pre(∅) + w((1−β)ε_pre(c) + β ε_ft(ĉ, PE) − ε_pre(∅)), pooled + time_ids on every call."""
    ft = finetune(xl, source_image, PROMPT, FinetuneSettings(method="lora", steps=2, lr=1e-2, patch=True))
    with torch.no_grad():
        _one_step_by_hand(xl, ft)


def _one_step_by_hand(xl, ft):
    s = SamplingSettings(steps=1, seed=7, k=0, strength=1.0)
    got = sample_edit(xl, ft, "a blue disc", 32, 32, s)
    scheduler = xl.new_scheduler(1)
    scheduler.set_timesteps(1)
    t = int(scheduler.timesteps[0])
    z = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(7)) * scheduler.init_noise_sigma
    ids = torch.tensor([[32.0, 32, 0, 0, 32, 32]])
    tt = torch.tensor([t])
    eps_un = _by_hand(xl, xl.unet, z, tt, _sdxl_states(xl, ""), ids)
    eps_c = _by_hand(xl, xl.unet, z, tt, _sdxl_states(xl, "a blue disc"), ids)
    pe = region_embedding(ft.pe_table, (8.0, 8.0), (0, 0), (8, 8), ft.pe_mode)[None]
    with ft.hook.using(pe):
        eps_ft = _by_hand(xl, ft.unet, z, tt, _sdxl_states(xl, PROMPT), ids)
    beta = 1 - s.v
    eps = eps_un + s.guidance * ((1 - beta) * eps_c + beta * eps_ft - eps_un)
    assert torch.allclose(eps, combine(eps_un, eps_c, [eps_ft], [beta], s.guidance), atol=1e-6)
    latents = scheduler.step(eps, t, z, eta=0.0).prev_sample
    from sine.images import to_pil

    expected = to_pil(xl.decode_latents(latents))
    diff = (torch.tensor(list(got.getdata())) - torch.tensor(list(expected.getdata()))).abs().max()
    assert got.size == (32, 32) and diff <= 1, diff


def test_edit_returns_the_exact_size_asked(xl, source_image):
    ft = finetune(xl, source_image, PROMPT, FinetuneSettings(method="lora", steps=1, patch=True))
    out = sample_edit(xl, ft, "a blue disc", 75, 41, SamplingSettings(steps=2, seed=1), source=source_image)
    assert out.size == (75, 41)


def test_large_canvas_exact_size_and_selection_outside_untouched(xl, source_image):
    """1001×777 through the whole-view tiles at the exact size; under a selection the pixels outside
    stay the source's, bit for bit."""
    import numpy as np
    from PIL import Image

    from sine.compositing import composite_under_mask

    ft = finetune(xl, source_image, PROMPT, FinetuneSettings(method="lora", steps=1, patch=True))
    out = sample_edit(xl, ft, "a blue disc", 1001, 777, SamplingSettings(steps=1, seed=2, tile_batch=32),
                      source=source_image)  # the default strength: from the source
    assert out.size == (1001, 777)
    source = source_image.resize((1001, 777)).convert("RGBA")
    mask = Image.new("L", (1001, 777), 0)
    mask.paste(255, (300, 200, 700, 600))
    result = np.asarray(composite_under_mask(source, out.convert("RGBA"), mask))
    outside = np.asarray(mask) == 0
    assert np.array_equal(result[outside], np.asarray(source)[outside])
    assert not np.array_equal(result[~outside], np.asarray(source)[~outside])


def test_cached_artifact_samples_identically(xl, source_image, tmp_path):
    """What the weight cache stores for an SDXL fine-tune loads back to the same edit."""
    from sine.finetune import FineTuned

    ft = finetune(xl, source_image, PROMPT, FinetuneSettings(method="lora", steps=3, lr=1e-2, patch=True))
    ft.save(tmp_path / "w")
    loaded = FineTuned.load(tmp_path / "w", xl)
    s = SamplingSettings(steps=2, seed=4, strength=1.0)
    assert sample_edit(xl, ft, "a blue disc", 40, 32, s).tobytes() == sample_edit(xl, loaded, "a blue disc", 40, 32, s).tobytes()


def test_ablations_read_prompts_through_both_encoders(xl, source_image):
    """`sine demo`'s fine-tuned-only baseline with its own prompt works on SDXL too."""
    ft = finetune(xl, source_image, PROMPT, FinetuneSettings(method="lora", steps=1, patch=True))
    s = SamplingSettings(steps=1, seed=1, finetuned_only=True, finetuned_prompt="a blue disc", strength=1.0)
    assert sample_edit(xl, ft, "a blue disc", 32, 24, s).size == (32, 24)


def _checkpointed_finetune(base, source_image, monkeypatch, **kw):
    """(fine-tune, its losses, how many UNet blocks ran under torch.utils.checkpoint)."""
    import torch.utils.checkpoint as ckpt

    calls, real = [], ckpt.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ckpt, "checkpoint", counting)
    losses: list[float] = []
    ft = finetune(base, source_image, PROMPT, FinetuneSettings(steps=3, seed=5, **kw),
                  progress=lambda step, total, loss: losses.append(loss))
    monkeypatch.setattr(ckpt, "checkpoint", real)
    return ft, losses, len(calls)


def test_sdxl_finetunes_with_gradient_checkpointing_by_default(xl, base, source_image, monkeypatch):
    """SDXL's UNet is checkpointed while it trains (activation memory for a 24 GB GPU), with the same
    gradients as without; SD1-kind models stay without (their runs unchanged)."""
    on, losses_on, calls_on = _checkpointed_finetune(xl, source_image, monkeypatch)
    off, losses_off, calls_off = _checkpointed_finetune(xl, source_image, monkeypatch, gradient_checkpointing=False)
    assert on.settings.gradient_checkpointing and calls_on > 0 and calls_off == 0
    assert losses_on[0] == pytest.approx(losses_off[0], rel=1e-6)  # Adam then amplifies rounding: compare grads below
    assert losses_on == pytest.approx(losses_off, rel=1e-3)
    assert not any(getattr(m, "gradient_checkpointing", False) for m in on.unet.modules())  # off for sampling
    assert "gradient_checkpointing" not in on.settings.to_dict()  # same result: not part of cache keys
    sd1, _, calls_sd1 = _checkpointed_finetune(base, source_image, monkeypatch)
    assert sd1.settings.gradient_checkpointing is False and calls_sd1 == 0


def test_gradient_checkpointing_gives_the_same_gradients(xl):
    import copy

    z, t = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([700, 300])
    states = xl.encode_prompts([PROMPT, ""])
    grads = []
    for checkpointing in (False, True):
        unet = copy.deepcopy(xl.unet).requires_grad_(True).train()
        if checkpointing:
            unet.enable_gradient_checkpointing()
            assert unet.is_gradient_checkpointing
        with size_conditioning((64.0, 64.0), (16.0, 0.0), (32.0, 32.0)):
            unet(z, t, states).sample.square().mean().backward()
        grads.append({n: p.grad for n, p in unet.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 100
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], rtol=1e-4, atol=1e-7), name
