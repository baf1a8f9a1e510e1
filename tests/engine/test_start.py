"""Strength and the inversion start; several results per press; two fine-tuned models in one step."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from sine.errors import BadInput
from sine.finetune import FinetuneSettings, finetune
from sine.images import to_tensor
from sine.noise_prediction import content_and_style_guides
from sine.sampler import SamplingSettings, sample_edit, sample_edits, sample_steps, timesteps_for
from sine.start import first_step, inverted_start, noised_start, source_at
from sine_protocol.defaults import result_seeds


@pytest.fixture(scope="module")
def tuned(base, source_image):
    return finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=3))


@pytest.fixture(scope="module")
def style_tuned(base, source_image):
    return finetune(base, source_image.transpose(0), "picture of a sks sunset", FinetuneSettings(steps=3, seed=1))


def test_first_step_runs_the_last_share_of_the_steps():
    assert first_step(100, 1.0) == 0
    assert first_step(100, 0.5) == 50
    assert first_step(50, 0.4) == 30
    assert first_step(10, 0.01) == 9  # at least one step


def test_the_announced_step_total_is_the_one_sampling_reports(base, tuned, source_image):
    """The daemon announces `sample_steps` as the sampling phase starts: tiles and `refine` run each result on
    its own and `refine` adds a pass, so 3 tiled results were announced as 3 steps and ran 9."""
    assert sample_steps(base, 32, 32, SamplingSettings(steps=10, strength=0.5), 1) == 5
    assert sample_steps(base, 32, 32, SamplingSettings(steps=10, strength=0.5, start="inversion"), 1) == 10
    assert sample_steps(base, 32, 32, SamplingSettings(steps=10, batch=2, strength=1.0), 3) == 20
    for strategy, count, start in [("tiled", 3, "noise"), ("refine", 2, "noise"), ("refine", 1, "inversion"),
                                   ("upscale", 3, "noise")]:
        s = SamplingSettings(steps=6, strength=0.5, start=start, strategy=strategy, working_size=32)
        seen: list[int] = []
        sample_edits(base, tuned, "a cat", 80, 48, s, count=count, source=source_image,
                     progress=lambda i, n, p, seen=seen: seen.append(n))
        assert set(seen) == {sample_steps(base, 80, 48, s, count)}, (strategy, count, start)


@pytest.mark.parametrize("size,extra", [((32, 32), {}), ((48, 40), {"working_size": 32}),
                                        ((48, 40), {"working_size": 32, "strategy": "refine"})])
def test_strength_one_from_noise_is_bit_identical_to_before(base, tuned, size, extra, old_sampler):
    old = old_sampler
    new_img = sample_edit(base, tuned, "a cat", *size, SamplingSettings(steps=2, seed=5, strength=1.0, **extra))
    old_img = old.sample_edit(base, tuned, "a cat", *size, old.SamplingSettings(steps=2, seed=5, **extra))
    assert new_img.tobytes() == old_img.tobytes()


def _first_unet_input(base, run) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    hook = base.unet.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()) if not seen else None)
    try:
        run()
    finally:
        hook.remove()
    return seen[0]


def test_noised_start_is_the_source_latent_at_the_first_timestep_run(base, tuned, source_image):
    s = SamplingSettings(steps=10, strength=0.4, seed=3)
    z = _first_unet_input(base, lambda: sample_edit(base, tuned, "a cat", 32, 32, s, source=source_image))
    z0 = base.encode_image(to_tensor(source_at(source_image, (32, 32)))).float()  # the source at the output size
    t = timesteps_for(base, 10)[first_step(10, 0.4)]
    assert t == 301
    a = float(base.new_scheduler(10).alphas_cumprod[t])
    eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(z[:1].float(), math.sqrt(a) * z0 + math.sqrt(1 - a) * eps, atol=1e-5)


def test_steps_run_follow_the_strength(base, tuned, source_image):
    calls: list[int] = []
    hook = base.unet.register_forward_hook(lambda m, i, o: calls.append(int(i[1].flatten()[0])))
    try:
        sample_edit(base, tuned, "a cat", 32, 32, SamplingSettings(steps=10, strength=0.3), source=source_image)
    finally:
        hook.remove()
    assert calls == [201, 101, 1]


def test_inversion_is_the_reverse_of_ddim_sampling(base):
    """With the exact ε of Gaussian data (σ = 0.5), inverting z₀ to t and sampling back with the same ε
    returns z₀; the SDEdit start (random noise at t) does not."""
    sigma2 = 0.25
    alphas = base.new_scheduler(50).alphas_cumprod.float()

    def eps(z: torch.Tensor, t: int) -> torch.Tensor:
        a = float(alphas[t])
        return math.sqrt(1 - a) * z / (a * sigma2 + 1 - a)

    scheduler = base.new_scheduler(50)
    scheduler.set_timesteps(50)
    ts = [int(t) for t in scheduler.timesteps]
    first = first_step(50, 0.6)
    z0 = 0.5 * torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))

    def sample(z: torch.Tensor) -> torch.Tensor:
        for t in ts[first:]:
            z = scheduler.step(eps(z, t), t, z, eta=0.0).prev_sample
        return z

    inverted = inverted_start(scheduler, 50, z0, ts[first], eps)
    noised = noised_start(scheduler, z0, torch.randn(z0.shape, generator=torch.Generator().manual_seed(1)), ts[first])
    err_inv = float((sample(inverted) - z0).abs().mean())
    err_noise = float((sample(noised) - z0).abs().mean())
    assert err_inv < 0.02 < err_noise, (err_inv, err_noise)


def test_inversion_uses_the_content_model_with_its_pe(base, tuned, source_image):
    pes: list[bool] = []
    hook = tuned.unet.register_forward_pre_hook(lambda m, args: pes.append(tuned.hook.value is not None))
    try:
        sample_edit(base, tuned, "a cat", 32, 32, SamplingSettings(steps=10, strength=0.5, start="inversion", k=1000),
                    source=source_image)
    finally:
        hook.remove()
    assert pes == [True] * 5  # K = 1000: sampling never calls it; these 5 calls are the inversion


@pytest.mark.parametrize("size,extra", [((33, 47), {}), ((80, 64), {"working_size": 32}),
                                        ((80, 64), {"working_size": 32, "strategy": "upscale"})])
def test_strength_and_inversion_at_exact_sizes_and_large_canvases(base, tuned, source_image, size, extra):
    for start in ("noise", "inversion"):
        s = SamplingSettings(steps=2, strength=0.5, start=start, **extra)
        assert sample_edit(base, tuned, "a cat", *size, s, source=source_image).size == size


def test_strength_refusals(base, tuned, source_image):
    with pytest.raises(BadInput, match="source"):
        sample_edit(base, tuned, "a cat", 32, 32, SamplingSettings(steps=2, strength=0.5))
    with pytest.raises(BadInput, match="strength"):
        sample_edit(base, tuned, "a cat", 32, 32, SamplingSettings(steps=2, strength=0.0), source=source_image)
    with pytest.raises(BadInput, match="start"):
        sample_edit(base, tuned, "a cat", 32, 32, SamplingSettings(steps=2, start="zoom"), source=source_image)
    with pytest.raises(BadInput, match="one result"):
        sample_edits(base, tuned, "a cat", 32, 32, SamplingSettings(steps=2, start="inversion"), count=2,
                     source=source_image)
    with pytest.raises(BadInput, match="count"):
        sample_edits(base, tuned, "a cat", 32, 32, SamplingSettings(steps=2), count=9)


def test_several_results_are_each_seeds_own_sampled_in_one_batch(base, tuned, source_image):
    s = SamplingSettings(steps=3, seed=40, strength=0.7)
    batches: list[int] = []
    hook = base.unet.register_forward_hook(lambda m, i, o: batches.append(i[0].shape[0]))
    try:
        many = sample_edits(base, tuned, "a cat", 32, 32, s, count=3, source=source_image)
    finally:
        hook.remove()
    assert batches == [6, 6]  # ε(∅), ε(c) for 3 results together; strength 0.7 of 3 steps = 2 steps
    singles = [sample_edit(base, tuned, "a cat", 32, 32, SamplingSettings(steps=3, seed=40 + i, strength=0.7),
                           source=source_image) for i in range(3)]
    for got, want in zip(many, singles, strict=True):
        assert np.abs(np.asarray(got, np.int16) - np.asarray(want, np.int16)).max() <= 2
    assert many[0].tobytes() != many[1].tobytes()


def test_several_results_in_tiles_go_one_by_one(base, tuned):
    s = SamplingSettings(steps=1, seed=1, working_size=32, strength=1.0)
    many = sample_edits(base, tuned, "a cat", 48, 32, s, count=2)
    assert [img.size for img in many] == [(48, 32)] * 2
    assert many[1].tobytes() == sample_edit(base, tuned, "a cat", 48, 32, replace(s, seed=2)).tobytes()


def test_two_finetuned_models_follow_the_papers_formula_for_one_step(base, tuned, style_tuned, monkeypatch):
    """ε̃ = ε(∅) + w·((1 − β₁ − β₂)·ε(c) + β₁·ε₁(ĉ₁) + β₂·ε₂(ĉ₂) − ε(∅)), each fine-tuned model with its PE."""
    s = SamplingSettings(steps=1, guidance=5.0, k=0, seed=9, strength=1.0)  # from pure noise
    guides = content_and_style_guides(tuned, style_tuned, s, content_weight=0.25, style_weight=0.35)
    decoded: list[torch.Tensor] = []
    decode = base.decode_latents
    monkeypatch.setattr(base, "decode_latents", lambda z: decoded.append(z.clone()) or decode(z))
    sample_edit(base, guides, "a cat", 32, 32, s)
    (t,) = timesteps_for(base, 1)
    z = torch.randn((1, base.unet.config.in_channels, 8, 8), generator=torch.Generator().manual_seed(9))
    t_in = torch.tensor([t])
    with torch.no_grad():
        e_u = base.unet(z, t_in, base.encode_prompts([""])).sample
        e_c = base.unet(z, t_in, base.encode_prompts(["a cat"])).sample
        e_ft = []
        for model in (tuned, style_tuned):  # the whole table resized to the latent: the whole picture's PE
            table = torch.nn.functional.interpolate(model.pe_table[None], size=(8, 8), mode="bilinear",
                                                    align_corners=True)
            with model.hook.using(table):
                e_ft.append(model.unet(z, t_in, model.encode_source()).sample)
    want_eps = e_u + 5.0 * ((1 - 0.25 - 0.35) * e_c + 0.25 * e_ft[0] + 0.35 * e_ft[1] - e_u)
    scheduler = base.new_scheduler(1)
    scheduler.set_timesteps(1)
    want = scheduler.step(want_eps, t, z, eta=0.0).prev_sample
    assert len(decoded) == 1
    assert torch.allclose(decoded[0].float(), want, atol=1e-4)
    # and the formula is not trivially met: without the style model the step differs
    plain = e_u + 5.0 * ((1 - 0.25) * e_c + 0.25 * e_ft[0] - e_u)
    assert not torch.allclose(scheduler.step(plain, t, z, eta=0.0).prev_sample, want, atol=1e-3)


def test_style_weights_are_checked(base, tuned, style_tuned):
    with pytest.raises(BadInput):
        content_and_style_guides(tuned, style_tuned, SamplingSettings(), content_weight=0.7, style_weight=0.5)
    guides = content_and_style_guides(tuned, style_tuned, SamplingSettings(v=0.7, k=400))
    assert [round(g.guide.weight, 6) for g in guides] == [0.3, 0.3] and guides[1].model is style_tuned
    assert all(g.guide.t_min == 400 for g in guides)


def test_seeds_wrap_past_the_last_seed_as_the_protocols_do(base, tuned):
    """Result k is the seed's own picture; past 2³² − 1, the last seed, the seeds wrap to 0, the same rule
    for `sine edit` and the daemon."""
    assert result_seeds(2**32 - 1, 3) == [2**32 - 1, 0, 1]
    s = SamplingSettings(steps=2, seed=2**32 - 1, strength=1.0, batch=1)
    last, wrapped = sample_edits(base, tuned, "a cat", 16, 16, s, count=2)
    assert wrapped.tobytes() == sample_edit(base, tuned, "a cat", 16, 16, replace(s, seed=0)).tobytes()
    assert last.tobytes() != wrapped.tobytes()
