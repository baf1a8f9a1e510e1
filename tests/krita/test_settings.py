import pytest
from sine_krita.settings import DEFAULT_STRENGTH, EditSettings, progress_text


def test_submit_kwargs_follow_the_protocol_names():
    s = EditSettings(prompt="  make the circle green ", subject="circle", style="painting", seed=7, steps=20,
                     guidance=5.0, v=0.6, k=300, method="full", finetune_steps=50)
    kw = s.submit_kwargs((64, 48))
    assert kw["prompt"] == "make the circle green"
    assert kw["sampling"] == {"steps": 20, "w": 5.0, "v": 0.6, "k": 300, "strength": DEFAULT_STRENGTH,
                              "start": "noise"}
    assert "count" not in kw  # one result: the request stays what an older daemon understands
    assert kw["finetune"] == {"method": "full", "steps": 50, "patch": True}
    assert kw["output_size"] == (64, 48)
    assert kw["style"] == "painting" and kw["seed"] == 7 and kw["subject"] == "circle"


def test_strength_count_and_style_weight_reach_the_request():
    s = EditSettings(prompt="x", strength=0.45, start="inversion", count=3, style_layer="paper", style_weight=0.25)
    kw = s.submit_kwargs((64, 48))
    assert kw["sampling"]["strength"] == 0.45 and kw["sampling"]["start"] == "inversion"
    assert kw["sampling"]["style_weight"] == 0.25
    assert kw["count"] == 3
    assert "style_weight" not in EditSettings(prompt="x", style_weight=0.25).submit_kwargs((8, 8))["sampling"]


def test_content_weight_is_sent_with_a_style_layer_and_defaults_to_the_engines():
    from sine_protocol import defaults

    assert EditSettings(prompt="x").content_weight == pytest.approx(1 - defaults.V)  # the engine's 1 - v
    kw = EditSettings(prompt="x", style_layer="paper", style_weight=0.25, content_weight=0.6).submit_kwargs((8, 8))
    assert kw["sampling"]["content_weight"] == 0.6 and kw["sampling"]["style_weight"] == 0.25
    assert "content_weight" not in EditSettings(prompt="x", content_weight=0.6).submit_kwargs((8, 8))["sampling"]


def test_style_and_content_weights_above_one_together_are_refused_in_words():
    s = EditSettings(prompt="x", style_layer="paper", style_weight=0.7, content_weight=0.5)
    with pytest.raises(ValueError, match="style weight 0.70 and content weight 0.50 add up to more than 1"):
        s.validate()
    s.style_layer = ""  # without a style picture neither is sent
    s.validate()


def test_custom_output_size_and_auto_finetune_steps():
    kw = EditSettings(prompt="x", output_width=128, output_height=96).submit_kwargs((64, 48))
    assert kw["output_size"] == (128, 96)
    assert kw["finetune"]["steps"] is None


@pytest.mark.parametrize(
    "field, value, words",
    [("prompt", "   ", "prompt"), ("style", "sketch", "style"), ("method", "dreambooth", "method"),
     ("v", 1.5, "v must"), ("steps", 0, "steps"), ("output_width", 32, "both"),
     ("strength", 0.0, "strength"), ("strength", 1.2, "strength"), ("start", "latent", "start"),
     ("count", 0, "results"), ("count", 9, "results"), ("content_weight", 1.5, "content weight")],
)
def test_invalid_settings_say_what_is_wrong(field, value, words):
    s = EditSettings(prompt="x")
    setattr(s, field, value)
    with pytest.raises(ValueError, match=words):
        s.validate()


def test_layer_name_carries_prompt_and_seed():
    assert EditSettings(prompt="wearing a  red hat").layer_name(42) == "SINE: wearing a red hat (seed 42)"
    assert len(EditSettings(prompt="a" * 200).layer_name(1)) < 90


@pytest.mark.parametrize(
    "args, text",
    [(("finetune", 120, 400), "fine-tuning 120/400"), (("sample", 30, 100), "sampling 30/100"),
     (("loading",), "loading model"), (("sample", 3, 10, 75.0), "sampling 3/10, ~1 min 15 s left"),
     (("decode", None, None, 0.2), "decoding")],
)
def test_progress_text(args, text):
    assert progress_text(*args) == text


def test_the_form_is_remembered_as_text_and_restored_with_its_types():
    from sine_krita.settings import remembered_values, restored_values

    s = EditSettings(prompt="a red hat", subject="dog", style="painting", source="visible", strength=0.45, count=3,
                     seed=11, steps=12, guidance=6.5, v=0.6, k=300, method="full", finetune_steps=40,
                     start="inversion", output_width=640, output_height=480, style_weight=0.2, content_weight=0.3,
                     style_layer="paper")  # fmt: skip
    saved = remembered_values(s)
    assert all(isinstance(value, str) for value in saved.values())  # what Krita's writeSetting stores
    assert "style_layer" not in saved  # a layer of one document means nothing in the next
    restored = restored_values(saved)
    assert EditSettings(**{**restored, "style_layer": "paper"}) == s
    assert restored_values(remembered_values(EditSettings(prompt="")))["finetune_steps"] is None  # "auto"


def test_unreadable_or_invalid_remembered_values_are_left_out():
    from sine_krita.settings import restored_values

    restored = restored_values({"prompt": "keep me", "steps": "many", "strength": "2.5", "style": "cubist",
                                "count": "0", "seed": "-3", "v": "nan", "unknown": "x", "k": "250"})  # fmt: skip
    assert restored == {"prompt": "keep me", "k": 250}
    assert restored_values({}) == {}
