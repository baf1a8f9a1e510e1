import pytest
import torch

from sine.errors import ModelMissing
from sine.models import load_base_model, resolve_model_folder


def test_loads_every_component_frozen(base, tiny_folder):
    assert base.folder == tiny_folder.resolve()
    assert base.device.type == "cpu" and base.dtype == torch.float32
    assert base.vae_scale_factor == 4 and base.sample_size == 32
    assert not any(p.requires_grad for p in base.unet.parameters())
    emb = base.encode_prompts(["picture of a sks dog", ""])
    assert emb.shape[0] == 2 and emb.shape[-1] == base.unet.config.cross_attention_dim


def test_dtype_override(tiny_folder):
    m = load_base_model(tiny_folder, device="cpu", dtype="bf16")
    assert m.dtype == torch.bfloat16 and m.unet.dtype == torch.bfloat16


def test_folder_without_unet_is_refused(tmp_path):
    with pytest.raises(ModelMissing, match="not a diffusers"):
        resolve_model_folder(tmp_path)


def test_hub_id_offline_says_how_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelMissing, match="hf download someone/some-model"):
        resolve_model_folder("someone/some-model")


def test_nonsense_model_name_is_refused():
    with pytest.raises(ModelMissing):
        resolve_model_folder("not a model")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_saved_finetune_of_another_model_is_refused(base, source_image, tmp_path, method):
    """`sine edit --weights DIR --model B` with DIR fine-tuned from model A of the same architecture
    mixed A's fine-tune with B's weights silently (LoRA deltas onto B; a full UNet beside B's text
    encoder): refused, naming both models. The model it was trained from still loads it."""
    from sine.errors import BadInput
    from sine.finetune import FineTuned, FinetuneSettings, finetune
    from sine.tiny_models import make_tiny_sd

    finetune(base, source_image, "a picture", FinetuneSettings(method=method, steps=1)).save(tmp_path / "w")
    other = load_base_model(make_tiny_sd(tmp_path / "other", seed=7), device="cpu")
    with pytest.raises(BadInput, match=rf"fine-tune of another model \({base.model_id}.*not of {other.model_id}"):
        FineTuned.load(tmp_path / "w", other)
    assert FineTuned.load(tmp_path / "w", base).source_prompt == "a picture"


def test_hub_repository_of_one_checkpoint_file_names_the_file(monkeypatch, tmp_path, tiny_folder):
    """A hub id already on disk whose repository holds one `.safetensors` at its root (how many
    fine-tunes are uploaded) was "lacks the unet/ component" / "the download is incomplete"; it says
    which file to pass, and that file loads."""
    import huggingface_hub

    from sine.models import describe_model
    from sine.tiny_models import write_single_file

    repo = tmp_path / "hub" / "models--painter--mix"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    checkpoint = write_single_file(tiny_folder, repo / "snapshots" / "abc123" / "mix_v3.safetensors")
    (checkpoint.parent / "README.md").write_text("# mix\n")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for call in (resolve_model_folder, describe_model, lambda m: load_base_model(m, device="cpu")):
        with pytest.raises(ModelMissing, match=rf"painter/mix.*no unet/.*--model {checkpoint}$"):
            call("painter/mix")
    assert load_base_model(checkpoint, device="cpu").kind.family == "SD1"
