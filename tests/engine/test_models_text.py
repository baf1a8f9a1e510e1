"""The text side of a model as painters meet it: a prompt longer than the text encoder reads (CLIP
takes 77 tokens; the tiny models 32) is cut, and the log says which words were dropped, once per
prompt, for SD 1.x/2.x and for SDXL's two tokenizers. Tiny models loaded with `from_pretrained`."""

from __future__ import annotations

import logging

import pytest

from sine.models import load_base_model
from sine.tiny_models import make_tiny_sdxl


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_a_prompt_longer_than_the_encoder_reads_is_cut_with_a_warning(base, tmp_path, caplog, family):
    model = base if family == "sd1" else load_base_model(make_tiny_sdxl(tmp_path / "xl"), device="cpu")
    limit = model.tokenizer.model_max_length
    words = " ".join(f"w{i}" for i in range(limit))  # each word is several tokens: far past the limit
    with caplog.at_level(logging.WARNING, logger="sine.models"):
        model.encode_prompts(["", "a red hat"])
        assert "cut" not in caplog.text  # a prompt that fits says nothing
        model.encode_prompts(["", words])
        model.encode_prompts([words])
    cut = [r.getMessage() for r in caplog.records if "tokens" in r.getMessage()]
    assert len(cut) == 1, cut  # once per prompt, not per call
    assert f"reads {limit - 2}" in cut[0] and f"w{limit - 1}" in cut[0]  # the last word is among those dropped


def test_doctor_names_a_tokenizer_without_its_vocabulary(tiny_folder, tmp_path):
    """tokenizer/ (or SDXL's tokenizer_2/) with only its configs: `sine doctor` called the model fine and
    the edit failed after loading; both now name the folder."""
    import shutil

    from sine.errors import BadModel
    from sine.models import describe_model

    for name, source in (("tokenizer", tiny_folder), ("tokenizer_2", make_tiny_sdxl(tmp_path / "xl"))):
        folder = shutil.copytree(source, tmp_path / f"no-{name}-vocab")
        (folder / name / "vocab.json").unlink()
        for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
            with pytest.raises(BadModel, match=rf"{name} holds no vocabulary \(vocab.json \+ merges.txt"):
                call(folder)


def test_sdxl_second_encoder_with_another_pooled_width_is_refused(tmp_path):
    """An SDXL text_encoder_2 whose projection (the pooled embedding) is narrower than the UNet's added
    conditioning takes: its pooled token was zero-padded and the model ran with half a conditioning,
    silently. Refused by doctor and loader, as text encoders of another width are."""
    import shutil

    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from sine.errors import BadModel
    from sine.models import describe_model

    folder = make_tiny_sdxl(tmp_path / "xl")
    shutil.rmtree(folder / "text_encoder_2")
    config = CLIPTextConfig.from_pretrained(make_tiny_sdxl(tmp_path / "other") / "text_encoder_2")
    config.projection_dim = 24
    CLIPTextModelWithProjection(config).save_pretrained(folder / "text_encoder_2")
    for call in (describe_model, lambda f: load_base_model(f, device="cpu")):
        with pytest.raises(BadModel, match=r"text_encoder_2 gives a 24-wide pooled embedding but its UNet takes 48"):
            call(folder)


def test_requires_aesthetics_score_alone_does_not_make_a_refiner(tiny_folder, tmp_path):
    """`requires_aesthetics_score: true` in model_index.json (an img2img pipeline's flag, saved with a
    base model too) made an SD 1.x or SDXL base folder "an SDXL refiner". The UNet decides: a refiner's
    added conditioning takes 5 time ids (an aesthetic score), a base's 6; it loads when both text
    encoders are there and its UNet is a base's."""
    import json
    import shutil

    from sine.errors import BadModel
    from sine.models import describe_model

    for name, source in (("sd1", tiny_folder), ("sdxl", make_tiny_sdxl(tmp_path / "xl"))):
        folder = shutil.copytree(source, tmp_path / f"{name}-flag")
        index = json.loads((folder / "model_index.json").read_text())
        index.update(requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
        (folder / "model_index.json").write_text(json.dumps(index))
        assert describe_model(folder).family == name.upper()
        load_base_model(folder, device="cpu")
    refiner = shutil.copytree(tmp_path / "sdxl-flag", tmp_path / "refiner-shaped")
    path = refiner / "unet" / "config.json"
    config = json.loads(path.read_text())
    config["projection_class_embeddings_input_dim"] -= config["addition_time_embed_dim"]  # 5 time ids
    path.write_text(json.dumps(config))
    with pytest.raises(BadModel, match="SDXL refiner"):
        describe_model(refiner)
