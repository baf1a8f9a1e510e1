"""The backend step: what it would run (dry run) and, once, a real venv + `pip install <repo>`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_backend_dry_run_shows_commands_and_touches_nothing(tmp_path: Path, run_installer) -> None:
    prefix = tmp_path / "prefix"
    out = run_installer("--home", tmp_path, "--prefix", prefix, "--only", "backend", "--torch", "cpu",
                        "--dry-run").stdout
    assert f"would run: {sys.executable} -m venv {prefix / 'venv'}" in out
    assert f"{prefix / 'venv/bin/python'} -m pip install torch==2.13.0" in out
    assert f"-m pip install --upgrade {REPO}" in out
    assert not prefix.exists() and list(tmp_path.iterdir()) == []


def test_model_download_dry_run(tmp_path: Path, run_installer) -> None:
    prefix = tmp_path / "prefix"
    out = run_installer("--home", tmp_path, "--prefix", prefix, "--only", "model", "--model", "org/some-model",
                        "--dry-run").stdout
    assert f"would download org/some-model into {prefix / 'models'}" in out
    assert list(tmp_path.iterdir()) == []


def test_model_download_needs_the_backend(tmp_path: Path, run_installer) -> None:
    proc = run_installer("--home", tmp_path, "--only", "model", "--model", "org/some-model", check=False)
    assert proc.returncode == 1 and "rerun without --skip-backend" in proc.stderr


@pytest.mark.slow
def test_real_venv_install_upgrade_and_uninstall(tmp_path: Path, run_installer, monkeypatch) -> None:
    """A real venv and a real `pip install <repo>` (dependencies skipped via PIP_NO_DEPS to stay offline-fast)."""
    home, prefix, source = tmp_path / "home", tmp_path / "prefix", tmp_path / "checkout"
    home.mkdir()
    # a frozen copy: other work in the live checkout must not look like an upgrade between the runs
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for folder in ("backend", "shared"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, source / name)
    monkeypatch.setenv("PIP_NO_DEPS", "1")
    args = ("--home", home, "--prefix", prefix, "--source-root", source, "--torch", "skip", "--no-model", "--no-start", "--no-autostart")
    run_installer(*args, "--only", "backend")
    python = prefix / "venv/bin/python"
    found = subprocess.run([str(python), "-c", "import sine, sine_protocol; print(sine.__file__)"],
                           capture_output=True, text=True, check=True).stdout
    assert str(prefix / "venv") in found, "the backend is installed into the venv, not used from the checkout"
    again = run_installer(*args, "--only", "backend").stdout
    assert "up to date" in again and "pip install" not in again
    run_installer(*args, "--only", "autostart")
    argv = json.loads((home / ".config/sine-edit/daemon.json").read_text())["argv"]
    assert argv == [str(python), "-m", "sine.cli", "daemon"]
    run_installer(*args, "--uninstall")
    assert not prefix.exists()
    assert not (home / ".config/sine-edit").exists()


def test_model_can_be_a_single_file_checkpoint(tmp_path: Path, run_installer) -> None:
    """`--model painter.safetensors` records the file itself for the daemon (no download, no venv needed)."""
    import json
    import struct

    checkpoint = tmp_path / "painter.safetensors"  # whole, as far as its header tells
    header = json.dumps({"model.diffusion_model.input_blocks.0.0.weight":
                         {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    checkpoint.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    home = tmp_path / "home"
    run_installer("--home", home, "--only", "model", "--model", str(checkpoint))
    config = json.loads((home / ".config/sine-edit/config.json").read_text())
    assert config["model"] == str(checkpoint.resolve())
    proc = run_installer("--home", home, "--only", "model", "--model", str(tmp_path / "gone.ckpt"), check=False)
    assert proc.returncode == 1 and "gone.ckpt does not exist" in proc.stderr


def test_model_file_that_is_not_a_model_is_refused_at_install(tmp_path: Path, run_installer) -> None:
    """`--model my-lora.safetensors` (or a Git LFS pointer) was recorded as the daemon's model and
    refused only at the painter's first edit; the installer says what it is, as `sine edit` does,
    before it writes anything (dry run or not)."""
    import json
    import struct

    lora = tmp_path / "my-lora.safetensors"
    header = json.dumps({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight":
                         {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    lora.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    pointer = tmp_path / "model.ckpt"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 4\n")
    cut = tmp_path / "sd15.safetensors"  # an interrupted download: the header says 40 bytes more
    header = json.dumps({"w": {"dtype": "F32", "shape": [10], "data_offsets": [0, 40]}}).encode()
    cut.write_bytes(struct.pack("<Q", len(header)) + header)
    home = tmp_path / "home"
    for path, what in ((lora, "is a LoRA"), (pointer, "is a Git LFS pointer"), (cut, "is cut short")):
        for dry in ((), ("--dry-run",)):
            proc = run_installer("--home", home, "--only", "model", "--model", str(path), *dry, check=False)
            assert proc.returncode == 1 and f"{path} {what}" in proc.stderr, proc.stderr
    assert not (home / ".config/sine-edit/config.json").exists()


def test_model_can_be_a_local_folder(tmp_path: Path, run_installer) -> None:
    """`--model ~/models/my-sd` (a diffusers folder on disk, as `sine edit --model` takes it) was read as
    a hub id: "would download /home/…/my-sd". It is recorded as the daemon's model, like --model-dir."""
    import json

    folder = tmp_path / "my-sd"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    home = tmp_path / "home"
    out = run_installer("--home", home, "--only", "model", "--model", str(folder), "--dry-run").stdout
    assert "download" not in out and f"local model folder {folder.resolve()}" in out, out
    run_installer("--home", home, "--only", "model", "--model", str(folder))
    assert json.loads((home / ".config/sine-edit/config.json").read_text())["model"] == str(folder.resolve())
    other = tmp_path / "photos"
    other.mkdir()
    proc = run_installer("--home", home, "--only", "model", "--model", str(other), check=False)
    assert proc.returncode == 1 and "not a diffusers Stable Diffusion folder (no unet/ inside)" in proc.stderr, proc.stderr


def test_folder_of_another_pipeline_is_named_at_install(tmp_path: Path, run_installer) -> None:
    """An SD3/Flux-style diffusers folder (transformer/ where SD has unet/) was "not a diffusers Stable
    Diffusion folder (no unet/ inside)" at install while `sine edit` named it; now the installer says
    what it is, with the words of `sine edit`'s check."""
    import json

    folder = tmp_path / "sd3-medium"
    for part in ("transformer", "vae", "text_encoder", "text_encoder_3"):
        (folder / part).mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline",
                                                         "transformer": ["diffusers", "SD3Transformer2DModel"]}))
    proc = run_installer("--home", tmp_path / "home", "--only", "model", "--model", str(folder), "--dry-run",
                         check=False)
    assert proc.returncode == 1 and "a StableDiffusion3Pipeline model, which has no UNet" in proc.stderr, proc.stderr


def test_model_can_be_a_hub_cache_folder(tmp_path: Path, run_installer) -> None:
    """`--model ~/.cache/huggingface/hub/models--owner--name` is recorded as it is (the daemon loads the
    snapshot its refs/main names then), not refused for having no unet/ of its own."""
    import json

    repo = tmp_path / "models--owner--name"
    (repo / "snapshots" / "abc" / "unet").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    home = tmp_path / "home"
    run_installer("--home", home, "--only", "model", "--model", str(repo))
    assert json.loads((home / ".config/sine-edit/config.json").read_text())["model"] == str(repo.resolve())
    (repo / "refs" / "main").unlink()  # copied without refs/, two snapshots holding a model: named
    (repo / "snapshots" / "def" / "unet").mkdir(parents=True)
    proc = run_installer("--home", home, "--only", "model", "--model", str(repo), check=False)
    assert proc.returncode == 1 and "holding 2 snapshots" in proc.stderr, proc.stderr


def test_model_file_of_another_suffix_is_not_a_hub_id(tmp_path: Path, run_installer) -> None:
    """`--model ~/models/flux.gguf` or ComfyUI's `model.sft` (an existing file without a checkpoint's
    suffix) was read as a hub id: "would download /home/…/model.sft". It is refused naming the file."""
    home = tmp_path / "home"
    for name in ("model.sft", "flux.gguf"):
        path = tmp_path / name
        path.write_bytes(b"x")
        for dry in ((), ("--dry-run",)):
            proc = run_installer("--home", home, "--only", "model", "--model", str(path), *dry, check=False)
            assert proc.returncode == 1 and "download" not in proc.stdout, proc.stdout
            assert f"{path.resolve()} is not a checkpoint file" in proc.stderr, proc.stderr
    assert not (home / ".config/sine-edit/config.json").exists()
