import pytest
import torch

from sine.finetune import FinetuneSettings, finetune
from sine.guidance import Guide, combine
from sine.sampler import SamplingSettings, sample_edit, timesteps_for


def test_combination_formula_by_hand():
    uncond = torch.tensor([1.0, 2.0])
    edit = torch.tensor([3.0, -1.0])
    ft = torch.tensor([0.5, 4.0])
    w, v = 7.5, 0.7
    got = combine(uncond, edit, [ft], [1 - v], w)
    # ε̃ = ε∅ + w·(v·ε_c + (1−v)·ε_ft − ε∅)
    want = torch.tensor([1.0 + 7.5 * (0.7 * 3.0 + 0.3 * 0.5 - 1.0), 2.0 + 7.5 * (0.7 * -1.0 + 0.3 * 4.0 - 2.0)])
    assert torch.allclose(got, want)


def test_no_finetuned_model_is_plain_cfg():
    uncond, edit = torch.randn(4), torch.randn(4)
    assert torch.allclose(combine(uncond, edit, [], [], 5.0), uncond + 5.0 * (edit - uncond))


def test_multi_model_weights_take_from_the_pretrained_share():
    uncond, edit, a, b = (torch.full((1,), x) for x in (0.0, 1.0, 10.0, 100.0))
    got = combine(uncond, edit, [a, b], [0.2, 0.3], 1.0)
    assert got.item() == pytest.approx(0.5 * 1.0 + 0.2 * 10.0 + 0.3 * 100.0)


def test_guide_time_range():
    g = Guide(weight=0.3, t_min=400, t_max=800)
    assert g.active(400) and g.active(800) and not g.active(399) and not g.active(801)


def test_timesteps_are_leading_with_offset_one(base):
    ts = timesteps_for(base, 100)
    assert ts == list(range(991, 0, -10))
    assert timesteps_for(base, 10)[:2] == [901, 801] and timesteps_for(base, 10)[-1] == 1


@pytest.mark.parametrize("k,expected_ft_calls", [(400, 6), (0, 10), (1000, 0)])
def test_k_switch_decides_when_the_finetuned_model_guides(base, source_image, k, expected_ft_calls):
    ft = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=1))
    ft_calls, pre_calls = [], []
    h1 = ft.unet.register_forward_hook(lambda m, i, o: ft_calls.append(int(i[1].flatten()[0])))
    h2 = base.unet.register_forward_hook(lambda m, i, o: pre_calls.append(i[0].shape[0]))
    try:
        img = sample_edit(base, ft, "a cat", 32, 32, SamplingSettings(steps=10, k=k, strength=1.0))
    finally:
        h1.remove()
        h2.remove()
    assert img.size == (32, 32)
    assert len(ft_calls) == expected_ft_calls
    assert all(t >= k for t in ft_calls)
    assert pre_calls == [2] * 10  # ε(∅) and ε(c) batched into one call per step


@pytest.mark.parametrize("content_weight", [None, 0.5])
def test_a_style_weight_of_0_leaves_the_style_model_out_with_the_same_pixels(base, source_image, content_weight):
    """β₂ = 0: the guides without the style model sample the same bytes as with it at weight 0, and the
    style model is never called (so the daemon and `sine edit` need not fine-tune it)."""
    from sine.noise_prediction import FinetunedGuide, content_and_style_guides, style_model_used

    content = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(steps=1))
    style = finetune(base, source_image.transpose(0), "picture of a sks cat", FinetuneSettings(steps=1))
    settings = SamplingSettings(steps=6, k=0, strength=1.0, seed=3)
    assert not style_model_used(settings.v, content_weight, 0.0) and style_model_used(settings.v, content_weight, 0.1)
    without = content_and_style_guides(content, None, settings, content_weight=content_weight, style_weight=0.0)
    assert [g.model for g in without] == [content]
    k = base.model_timestep(settings.k)
    weight = without[0].guide.weight
    with_zero = [FinetunedGuide(content, Guide(weight, k, 10_000)), FinetunedGuide(style, Guide(0.0, k, 10_000))]
    style_calls = []
    hook = style.unet.register_forward_hook(lambda *_: style_calls.append(1))
    try:
        before = sample_edit(base, with_zero, "a cat", 32, 32, settings)
        assert style_calls  # the old guides called it every step, to weigh it by 0
        style_calls.clear()
        after = sample_edit(base, without, "a cat", 32, 32, settings)
    finally:
        hook.remove()
    assert not style_calls and after.tobytes() == before.tobytes()
    with pytest.raises(ValueError):
        content_and_style_guides(content, None, settings, content_weight=content_weight, style_weight=0.1)
