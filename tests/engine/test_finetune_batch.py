"""Several training views per fine-tune step (`FinetuneSettings.batch`), and the whole picture's latent
encoded once: on a CPU a step of the demo model is call-bound, so 4 views cost 1.8x one view's step."""

import pytest
import torch

import sine.finetune as finetune_module
from sine.finetune import FinetuneSettings, finetune
from sine.models import load_base_model
from sine.recipes import Recipe
from sine.tiny_models import make_tiny_sdxl

PROMPT = "picture of a sks disc"


def _spy_unet_calls(monkeypatch) -> list[dict]:
    """Every training UNet call's inputs, as the UNet receives them (after the SDXL hook)."""
    calls: list[dict] = []
    make_copies = finetune_module._trainable_copies

    def copies(base, s):
        unet, text_encoder = make_copies(base, s)

        def record(module, args, kwargs):
            z = args[0]
            states = args[2] if len(args) > 2 else kwargs["encoder_hidden_states"]
            added = kwargs.get("added_cond_kwargs") or {}
            calls.append({"z": z.detach().clone(), "t": args[1].detach().clone(), "states": states.shape[0],
                          "time_ids": added.get("time_ids")})

        def record_pe(module, inputs, output):
            calls[-1]["after_conv_in"] = output.detach().clone()

        unet.register_forward_pre_hook(record, with_kwargs=True)
        unet.conv_in.register_forward_hook(record_pe)
        return unet, text_encoder

    monkeypatch.setattr(finetune_module, "_trainable_copies", copies)
    return calls


@pytest.mark.parametrize("method", ["lora", "full"])
def test_each_step_trains_on_a_batch_of_distinct_views(base, source_image, monkeypatch, method):
    calls = _spy_unet_calls(monkeypatch)
    losses = []
    settings = FinetuneSettings(method=method, steps=2, batch=3, patch=True, whole_image_share=0.0)
    finetune(base, source_image, PROMPT, settings, progress=lambda s, n, loss: losses.append(s))
    assert losses == [1, 2]  # progress counts steps, not views
    assert len(calls) == 2
    for call in calls:
        assert call["z"].shape[0] == 3 and call["states"] == 3
        rows = call["z"]
        assert not torch.equal(rows[0], rows[1]) and not torch.equal(rows[1], rows[2])  # other crops, noise
        assert len(set(call["t"].tolist())) > 1  # a timestep per view
        pe_added = call["after_conv_in"]  # each row has its own crop's positional embedding added
        assert not torch.allclose(pe_added[0], pe_added[1])


def test_batch_one_is_the_single_view_step_and_keeps_old_cache_keys(base, source_image):
    one = FinetuneSettings(method="lora", steps=3, patch=True).resolved(base.recipes)
    assert one.batch == 1
    assert "batch" not in one.to_dict(base.recipes)  # entries made before batches existed still match
    four = FinetuneSettings(method="lora", steps=3, patch=True, batch=4)
    assert four.to_dict(base.recipes)["batch"] == 4
    a = finetune(base, source_image, PROMPT, FinetuneSettings(method="lora", steps=3, patch=True))
    b = finetune(base, source_image, PROMPT, FinetuneSettings(method="lora", steps=3, patch=True, batch=1))
    sa, sb = a.unet.state_dict(), b.unet.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_recipe_gives_the_batch(base):
    recipes = {**base.recipes, "lora": Recipe(10, 20, 1e-3, False, patch_batch=4)}
    assert FinetuneSettings(method="lora").resolved(recipes).batch == 4
    assert FinetuneSettings(method="lora", batch=2).resolved(recipes).batch == 2
    assert FinetuneSettings(method="lora", patch=False).resolved(recipes).batch == 1  # one picture: one view


@pytest.mark.parametrize("batch", [0, -1, 1000])
def test_a_batch_out_of_range_is_refused_in_words(base, source_image, batch):
    from sine.errors import BadInput

    with pytest.raises(BadInput, match="batch"):
        finetune(base, source_image, PROMPT, FinetuneSettings(method="lora", steps=1, batch=batch))


def test_the_whole_picture_is_encoded_once(base, source_image, monkeypatch):
    """Steps on the whole picture (the recipe's whole_image_share) see the same pixels every time: their
    latent is encoded once, not once per step."""
    encoded: list[int] = []
    real = base.vae.encode

    def counting(x, *args, **kwargs):
        encoded.append(x.shape[0])
        return real(x, *args, **kwargs)

    monkeypatch.setattr(base.vae, "encode", counting)
    finetune(base, source_image, PROMPT, FinetuneSettings(method="lora", steps=4, patch=True, whole_image_share=1.0))
    assert sum(encoded) == 1
    encoded.clear()
    finetune(base, source_image, PROMPT,
             FinetuneSettings(method="lora", steps=3, batch=2, patch=True, whole_image_share=0.0))
    assert encoded == [2, 2, 2]  # one encoder call per step for its views


def test_sdxl_gets_each_views_own_crop_conditioning(tmp_path, source_image, monkeypatch):
    xl = load_base_model(make_tiny_sdxl(tmp_path / "tiny-sdxl"), device="cpu")
    calls = _spy_unet_calls(monkeypatch)
    finetune(xl, source_image, PROMPT, FinetuneSettings(method="lora", steps=1, batch=2, patch=True,
                                                        whole_image_share=0.0))
    ids = calls[0]["time_ids"]
    assert ids.shape == (2, 6) and not torch.equal(ids[0], ids[1])
