"""What is fetched of a hub repository (`sine.hub.select_files`), on the file lists real Stable
Diffusion repositories have: one copy of each component's weights, never the whole-model files,
exports, safety checker or training copies beside them."""

from __future__ import annotations

import pytest

from sine.hub import select_files

SD15 = """.gitattributes README.md model_index.json v1-5-pruned-emaonly.ckpt v1-5-pruned-emaonly.safetensors
v1-5-pruned.ckpt v1-5-pruned.safetensors v1-inference.yaml feature_extractor/preprocessor_config.json
safety_checker/config.json safety_checker/model.safetensors safety_checker/model.fp16.safetensors
safety_checker/pytorch_model.bin scheduler/scheduler_config.json text_encoder/config.json
text_encoder/model.safetensors text_encoder/model.fp16.safetensors text_encoder/pytorch_model.bin
text_encoder/pytorch_model.fp16.bin text_encoder/flax_model.msgpack tokenizer/merges.txt
tokenizer/special_tokens_map.json tokenizer/tokenizer_config.json tokenizer/vocab.json unet/config.json
unet/diffusion_pytorch_model.bin unet/diffusion_pytorch_model.fp16.bin unet/diffusion_pytorch_model.fp16.safetensors
unet/diffusion_pytorch_model.non_ema.bin unet/diffusion_pytorch_model.non_ema.safetensors
unet/diffusion_pytorch_model.safetensors unet/diffusion_pytorch_model.msgpack vae/config.json
vae/diffusion_pytorch_model.bin vae/diffusion_pytorch_model.fp16.safetensors vae/diffusion_pytorch_model.safetensors
onnx/unet/model.onnx""".split()


def test_sd15_repository_fetches_one_copy_of_each_component():
    assert sorted(select_files(SD15)) == sorted("""model_index.json scheduler/scheduler_config.json
        text_encoder/config.json text_encoder/model.safetensors tokenizer/merges.txt tokenizer/special_tokens_map.json
        tokenizer/tokenizer_config.json tokenizer/vocab.json unet/config.json unet/diffusion_pytorch_model.safetensors
        vae/config.json vae/diffusion_pytorch_model.safetensors""".split())


def test_fp16_only_sharded_and_bin_only_components():
    """An fp16-only repository's sharded UNet comes with its fp16 index; a component with only
    pickled .bin weights still gets them (the loader reads them without code); SDXL's second encoder."""
    files = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
             "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
             "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors", "vae/config.json",
             "vae/diffusion_pytorch_model.bin", "text_encoder_2/config.json", "text_encoder_2/model.safetensors.index.json",
             "text_encoder_2/model-00001-of-00002.safetensors", "text_encoder_2/model-00002-of-00002.safetensors",
             "text_encoder_2/model.fp16.safetensors", "sd_xl_base_1.0.safetensors",
             "vae_1_0/diffusion_pytorch_model.safetensors.fp16.index.json", "tokenizer/vocab.json",
             "tokenizer/merges.txt"]
    assert sorted(select_files(files)) == sorted(f for f in files if f not in (
        "text_encoder_2/model.fp16.safetensors", "sd_xl_base_1.0.safetensors",
        "vae_1_0/diffusion_pytorch_model.safetensors.fp16.index.json"))
    legacy = ["unet/config.json", "unet/diffusion_pytorch_model.safetensors.fp16.index.json",
              "unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
              "unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors",
              "unet/diffusion_pytorch_model.safetensors.index.json"]  # stale: its plain shards are gone
    assert sorted(select_files(legacy)) == sorted(legacy[:4])


def test_a_hub_cache_repository_folder_is_its_current_snapshot(tiny_folder, tmp_path):
    """`--model ~/.cache/huggingface/hub/models--owner--name` (the folder a painter finds in the cache,
    holding blobs/, refs/ and snapshots/) was "not a diffusers folder (no unet/ inside)"; it is the
    snapshot refs/main names, for `sine edit`'s instant check, `sine doctor` and the loader."""
    import shutil

    from sine.models import describe_model, load_base_model, resolve_model_folder
    from sine.preflight import check_model

    repo = tmp_path / "models--owner--tiny"
    snapshot = repo / "snapshots" / ("c0ffee" * 6 + "abcd")
    shutil.copytree(tiny_folder, snapshot)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)
    check_model(str(repo))
    assert resolve_model_folder(repo)[0] == snapshot.resolve()
    assert describe_model(repo) == describe_model(tiny_folder)
    assert load_base_model(repo, device="cpu").revision == load_base_model(tiny_folder, device="cpu").revision
    (repo / "refs" / "main").unlink()  # fetched at a revision: no refs/main, one snapshot
    assert resolve_model_folder(repo)[0] == snapshot.resolve()


def test_installer_download_offline_takes_the_model_from_the_hub_cache(tiny_folder, tmp_path):
    """`install.py --model owner/name` with HF_HUB_OFFLINE=1 and the model in the painter's hub cache
    (blobs linked from the snapshot, as `hf download` leaves them) failed listing the repository
    online; it is taken from the cache, as `sine edit --model owner/name` takes it. The installer's
    own download code, run as it runs it (a fresh interpreter reading the environment)."""
    import hashlib
    import os
    import subprocess
    import sys

    repo = tmp_path / "hub" / "models--owner--tiny"
    snapshot = repo / "snapshots" / ("ab" * 20)
    for file in (f for f in tiny_folder.rglob("*") if f.is_file()):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(file.read_bytes())
        link = snapshot / file.relative_to(tiny_folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)
    code = "import sys; from sine.hub import download; print(download(sys.argv[1], cache_dir=sys.argv[2]))"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    for repo_id, found in (("owner/tiny", True), ("owner/absent", False)):
        proc = subprocess.run([sys.executable, "-c", code, repo_id, str(tmp_path / "installer-models")],
                              capture_output=True, text=True, env=env, timeout=120)
        if found:
            assert proc.returncode == 0 and proc.stdout.strip() == str(snapshot), proc.stderr[-800:]
        else:
            assert proc.returncode != 0 and "owner/absent is not in the Hugging Face cache" in proc.stderr, proc.stderr[-800:]


def test_a_hub_id_fetched_at_a_branch_only_is_found_offline(tiny_folder, tmp_path):
    """`hf download owner/name --revision fp16` (SD 1.x repositories kept fp16 weights on a branch)
    leaves refs/fp16 and no refs/main: `sine edit --model owner/name` offline said "not in the Hugging
    Face cache". The one ref's snapshot is the model, for the instant check, doctor and the loader
    (a fresh interpreter, as the CLI and daemon read HF_HUB_CACHE/HF_HUB_OFFLINE)."""
    import os
    import shutil
    import subprocess
    import sys

    repo = tmp_path / "hub" / "models--owner--branchy"
    snapshot = repo / "snapshots" / ("cd" * 20)
    shutil.copytree(tiny_folder, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "fp16").write_text(snapshot.name)
    code = ("from sine.preflight import check_model; from sine.models import describe_model, load_base_model; "
            "check_model('owner/branchy'); print(describe_model('owner/branchy').describe()); "
            "print(load_base_model('owner/branchy', device='cpu').folder)")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert proc.stdout.split("\n")[:2] == ["SD1, ε-prediction, 32 px", str(snapshot.resolve())]


def test_a_copied_hub_cache_with_several_snapshots_and_no_refs(tiny_folder, tmp_path, monkeypatch):
    """A hub cache copied without refs/ (rsync of snapshots/ alone, a cache moved between machines) with
    several snapshots was "not a diffusers folder (no unet/ inside)" as a folder and "not in the Hugging
    Face cache" as a hub id. The one snapshot holding a model is taken (an older fetch of configs alone
    beside it); two whole models are named, with the folder to pass, for the folder and the hub id alike."""
    import shutil

    from huggingface_hub import constants

    from sine.errors import ModelMissing
    from sine.models import resolve_model_folder
    from sine.preflight import check_model

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "hub" / "models--owner--copied"
    whole, partial = repo / "snapshots" / ("ab" * 20), repo / "snapshots" / ("cd" * 20)
    shutil.copytree(tiny_folder, whole)
    partial.mkdir(parents=True)
    shutil.copy(tiny_folder / "model_index.json", partial)
    for model in (str(repo), "owner/copied"):
        check_model(model)
        assert resolve_model_folder(model)[0] == whole.resolve()

    shutil.rmtree(partial)
    shutil.copytree(tiny_folder, partial)  # two whole models: which one is not guessed
    for model in (str(repo), "owner/copied"):
        for check in (check_model, resolve_model_folder):
            with pytest.raises(ModelMissing) as caught:
                check(model)
            assert "2 snapshots" in str(caught.value) and f"--model {repo / 'snapshots'}" in str(caught.value), caught.value
