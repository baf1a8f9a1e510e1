"""Every input error of `sine edit` that needs no model answers before torch (and so any model) loads.

Each case runs the real command in a subprocess under `python -X importtime`, which lists every module
the process imported: no `torch` and no `diffusers` there means no model was loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

HEAVY = ("torch", "diffusers", "transformers")


def run_traced(*args: str, env: dict[str, str] | None = None,
               timeout: float = 300) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `sine ARGS` with -X importtime; return the process and the top-level names of imported modules."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "sine.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env)
    imported = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            imported.add(name.split(".")[0])
    return proc, imported


def messages(proc: subprocess.CompletedProcess) -> str:
    return "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("import time:"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    src = root / "source.png"
    Image.new("RGB", (48, 32), (35, 170, 50)).save(src)
    text = root / "notes.png"
    text.write_text("this is a text file, not a picture\n")
    no_unet = root / "not-a-model"
    no_unet.mkdir()
    empty_model = root / "empty-model"
    (empty_model / "unet").mkdir(parents=True)
    dot = root / "dot.png"
    Image.new("RGB", (1, 1)).save(dot)
    Image.new("RGB", (20000, 8)).save(root / "wide.png")
    small_mask = root / "small-mask.png"
    Image.new("L", (10, 10), 255).save(small_mask)
    Image.new("L", (48, 32), 0).save(root / "black-mask.png")
    Image.new("RGBA", (48, 32), (35, 170, 50, 0)).save(root / "clear.png")  # colours under alpha 0
    return {"src": src, "text": text, "no_unet": no_unet, "empty_model": empty_model, "root": root,
            "hf_home": root / "hf-home", "dot": dot, "small_mask": small_mask}


CASES = {
    # name: (arguments after the source, exit code, text in the last line)
    "missing source": (["{root}/missing.png"], 1, "no such file"),
    "text file named .png": (["{text}"], 1, "cannot read"),
    "output 1x1": (["{src}", "--width", "1", "--height", "1"], 1, "out of range"),
    "absurd width": (["{src}", "--width", "1000000"], 1, "out of range"),
    "zero height": (["{src}", "--height", "0"], 1, "out of range"),
    "steps 0": (["{src}", "--steps", "0"], 2, "--steps"),
    "guidance not a number": (["{src}", "--guidance", "abc"], 2, "--guidance"),
    "v above 1": (["{src}", "--v", "1.5"], 2, "--v"),
    "k above 1000": (["{src}", "--k", "5000"], 2, "--k"),
    "negative fine-tune steps": (["{src}", "--finetune-steps", "-3"], 2, "--finetune-steps"),
    "refine strength 0": (["{src}", "--refine-strength", "0"], 2, "--refine-strength"),
    "missing mask": (["{src}", "--mask", "{root}/nomask.png"], 1, "no such file"),
    "mask of another size": (["{src}", "--mask", "{small_mask}"], 1, "must be the same size"),
    # "output size 20000×8 is out of range" when no size was asked for
    "source wider than any result": (["{root}/wide.png"], 1, "pass --width and --height"),
    "1x1 source drawn at 64x64": (["{dot}", "--width", "64", "--height", "64"], 1, "at least 8 px"),
    "output over the daemon's pixel limit": (["{src}", "--width", "16384", "--height", "16384"], 1, "Mpx"),
    "empty prompt": (["{src}", "--prompt", " "], 1, "--prompt"),
    "prompt of invisible characters": (["{src}", "--prompt", "\u200b\u2060"], 1, "--prompt has no visible character"),
    "mask not an image": (["{src}", "--mask", "{text}"], 1, "cannot read"),
    "model path missing": (["{src}", "--model", "./models/nowhere"], 1, "no such model folder or file"),
    "checkpoint file missing": (["{src}", "--model", "{root}/sd15.safetensors"], 1, "no such model folder or file"),
    "folder without unet": (["{src}", "--model", "{no_unet}"], 1, "not a diffusers"),
    "hub id not cached": (["{src}", "--model", "someone/not-downloaded-model"], 1,
                          "install.py --model someone/not-downloaded-model"),
    "unknown device": (["{src}", "--device", "gpu0"], 1, "unknown device"),
    # were checked only after both fine-tunes (minutes): the style model's default weight is 0.3
    "content weight + default style weight over 1": (["{src}", "--style-from", "{src}", "--content-weight", "0.8"],
                                                      1, "add up to at most 1"),
    "low v + default style weight over 1": (["{src}", "--style-from", "{src}", "--v", "0.1"], 1, "add up to at most 1"),
    # bytes that are not UTF-8 (a Latin-1 terminal) reached the tokenizer: a traceback after the model loaded
    "prompt not UTF-8": (["{src}", "--prompt", "a caf\udce9 table"], 1, "--prompt is not valid UTF-8"),
    "subject not UTF-8": (["{src}", "--subject", "caf\udce9"], 1, "--subject is not valid UTF-8"),
    "mask selects nothing": (["{src}", "--mask", "{root}/black-mask.png"], 1, "selects nothing"),
    # the daemon refuses it too: the edit would come back invisible
    "source fully transparent": (["{root}/clear.png"], 1, "fully transparent"),
    "style picture fully transparent": (["{src}", "--style-from", "{root}/clear.png"], 1, "fully transparent"),
    # a name over the system's 255-byte limit made the existence checks raise OSError (a traceback)
    "model name too long": (["{src}", "--model", "{root}/" + "m" * 300], 1, "File name too long"),
    "weights name too long": (["{src}", "--weights", "{root}/" + "w" * 300], 1, "File name too long"),
    "style name too long": (["{src}", "--style-from", "{root}/" + "s" * 300 + ".png"], 1, "File name too long"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_input_error_answers_before_torch_loads(case: str, files: dict[str, Path], tmp_path: Path) -> None:
    args, code, text = CASES[case]
    args = [a.format(**files) for a in args]
    env = {"HF_HOME": str(files["hf_home"]), "HF_HUB_OFFLINE": "1"}
    proc, imported = run_traced("edit", "--prompt", "a red circle", *args, "--out", str(tmp_path / "o.png"), env=env)
    out = messages(proc)
    assert proc.returncode == code, out
    assert text in out.strip().splitlines()[-1], out
    assert "Traceback" not in out
    assert not imported & set(HEAVY), f"{case}: loaded {imported & set(HEAVY)} before answering"
    assert not (tmp_path / "o.png").exists()


def test_an_out_name_too_long_for_the_system_is_one_line(files: dict[str, Path]) -> None:
    proc, imported = run_traced("edit", str(files["src"]), "--prompt", "x", "--out", str(files["root"] / ("o" * 300)))
    out = messages(proc)
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert "File name too long" in out.strip().splitlines()[-1] and len(out.strip().splitlines()[-1]) < 300, out
    assert not imported & set(HEAVY)


def test_the_trace_does_see_torch_when_the_checks_pass(files: dict[str, Path], tmp_path: Path) -> None:
    """The control: inputs that pass every check go on to import torch and fail in the model loader."""
    proc, imported = run_traced("edit", str(files["src"]), "--prompt", "x", "--model", str(files["empty_model"]),
                                "--device", "cpu", "--out", str(tmp_path / "o.png"))
    out = messages(proc)
    assert proc.returncode == 1, out
    assert "lacks the" in out.strip().splitlines()[-1], out
    assert {"torch", "diffusers"} <= imported


def test_a_hub_id_in_the_local_cache_passes_offline(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    repo = hub / "models--owner--tiny-sd"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit / "unet").mkdir(parents=True)
    (repo / "snapshots" / commit / "model_index.json").write_text("{}")
    (repo / "snapshots" / commit / "unet" / "config.json").write_text("{}")
    code = ("from sine.preflight import check_model, hub_id_cached\n"
            "check_model('owner/tiny-sd')\n"
            "print(hub_id_cached('owner/tiny-sd'), hub_id_cached('owner/other'))\n")
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False"]


def test_the_demo_model_name_matches_the_loader() -> None:
    """preflight repeats models.DEMO_MODEL_NAME to stay torch-free; the two must agree."""
    from sine import models, preflight

    assert preflight.DEMO_MODEL_NAME == models.DEMO_MODEL_NAME


@pytest.mark.parametrize("args,code,text", [
    (["--source", "no_such_picture"], 2, "--source"),
    (["--steps", "0"], 2, "--steps"),
    (["--device", "gpu0"], 1, "unknown device"),
    (["--model", "./models/nowhere"], 1, "no such model folder or file"),
])
def test_sine_demo_input_errors_answer_before_torch_loads(args: list[str], code: int, text: str,
                                                          tmp_path: Path) -> None:
    proc, imported = run_traced("demo", *args, "--out", str(tmp_path / "demo"))
    out = messages(proc)
    assert proc.returncode == code, out
    assert text in out.strip().splitlines()[-1], out
    assert not imported & set(HEAVY)
    assert not (tmp_path / "demo").exists()


def test_a_file_that_is_not_a_model_is_refused_before_torch(files):
    """A LoRA, an embedding or a Git LFS pointer given as the model: refused naming it, from the
    safetensors header / first bytes alone, before torch loads."""
    import json
    import struct

    def safetensors(name: str, keys: list[str]) -> Path:
        header = json.dumps({k: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
                             for i, k in enumerate(keys)}).encode()
        path = files["root"] / name
        path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4 * len(keys)))
        return path

    lora = safetensors("detail tweaker.safetensors", ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"])
    embedding = safetensors("bad-hands.safetensors", ["emb_params"])
    pointer = files["root"] / "v1-5.safetensors"
    pointer.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 4\n")
    for model, what in ((lora, "is a LoRA"), (embedding, "is a textual-inversion embedding"),
                        (pointer, "is a Git LFS pointer")):
        proc, imported = run_traced("edit", str(files["src"]), "--prompt", "x", "--model", str(model), "--device", "cpu",
                                    "--out", str(files["root"] / "never.png"))
        assert proc.returncode == 1 and what in messages(proc), messages(proc)
        assert not imported & set(HEAVY), imported & set(HEAVY)


@pytest.mark.parametrize("where", ["source", "out"])
def test_a_file_name_with_control_characters_is_shown_escaped_on_one_line(where: str, files: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    """A file name may hold a newline or a terminal escape (ESC ] 0 ; … BEL retitles the terminal, ESC [ 2 J
    clears it): the error printed it raw, on two lines, and the terminal obeyed it."""
    name = "evil\x1b]0;owned\x07\x1b[2J\nsecond line.png"
    hostile = tmp_path / name
    hostile.write_bytes(b"not a picture")
    source, out = (hostile, tmp_path / "o.png") if where == "source" else (files["src"], hostile)
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "edit", str(source), "--prompt", "x", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "\x1b" not in proc.stderr and "\x07" not in proc.stderr, repr(proc.stderr)
    assert "second line.png" in lines[0], lines


@pytest.mark.parametrize("flag,name", [("--weights", "finetune.json"), ("demo", "summary.json")])
def test_a_pipe_in_a_folder_of_the_users_is_refused_not_waited_on(flag: str, name: str, files: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    """`--weights DIR` (and `sine demo --out DIR`) read a small file the folder should hold: a named pipe
    of that name held `sine edit` (or `sine demo`) for ever before any work."""
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / name)
    if flag == "demo":
        args = ["demo", "--out", str(folder)]
    else:
        args = ["edit", str(files["src"]), "--prompt", "x", "--weights", str(folder), "--out", str(tmp_path / "o.png")]
    try:
        proc, imported = run_traced(*args, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"waited on the pipe {name}")
    out = messages(proc)
    assert proc.returncode in (1, 2) and "Traceback" not in out, out
    assert str(folder) in out.strip().splitlines()[-1], out
    assert not imported & set(HEAVY)


@pytest.mark.parametrize("name,value", [("SINE_DTYPE", "int8"), ("SINE_FT_DTYPE", "fp8"), ("SINE_THREADS", "1000000000"),
                                        ("SINE_COMPILE", "maybe")])
def test_a_setting_in_the_environment_no_edit_can_use_answers_before_torch(name: str, value: str,
                                                                          files: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    """SINE_DTYPE=int8 was a ValueError traceback once the model loaded; SINE_FT_DTYPE=fp8 one after the whole
    fine-tune (it is read when the trained copies are made ready to sample); SINE_COMPILE=maybe was taken as
    "off" without a word."""
    proc, imported = run_traced("edit", str(files["src"]), "--prompt", "x", "--out", str(tmp_path / "o.png"),
                                env={name: value})
    out = messages(proc)
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert name in out.strip().splitlines()[-1], out
    assert not imported & set(HEAVY)


def _sd_folder(root: Path, name: str) -> Path:
    """A model folder's configs alone (no weights): what the instant check reads."""
    import json

    folder = root / name
    configs = {
        "model_index.json": {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
                             "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "DDIMScheduler"]},
        "unet/config.json": {"_class_name": "UNet2DConditionModel", "in_channels": 4, "out_channels": 4,
                             "sample_size": 64, "cross_attention_dim": 768},
        "vae/config.json": {"_class_name": "AutoencoderKL", "latent_channels": 4, "block_out_channels": [128, 256]},
        "text_encoder/config.json": {"hidden_size": 768},
        "scheduler/scheduler_config.json": {"_class_name": "DDIMScheduler", "num_train_timesteps": 1000},
    }
    for path, config in configs.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(json.dumps(config))
    (folder / "tokenizer").mkdir()
    return folder


def _edit_json(path: Path, **changes: object) -> None:
    import json

    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("case", ["refiner", "edm scheduler", "video unet", "inpainting unet", "no vae"])
def test_a_model_folder_sine_cannot_edit_with_is_named_before_torch(case: str, tmp_path: Path,
                                                                    files: dict[str, Path]) -> None:
    """The loader names these from the folder's configs alone (an SDXL refiner, an EDM-trained model like
    Playground v2.5, another pipeline's UNet, an inpainting model, a folder shipped without its VAE), but
    `sine edit` imported torch and diffusers first: the same words now come from the instant check."""
    import shutil

    folder = _sd_folder(tmp_path, case.replace(" ", "-"))
    if case == "refiner":
        shutil.rmtree(folder / "text_encoder")
        (folder / "text_encoder_2").mkdir()
        (folder / "text_encoder_2" / "config.json").write_text('{"hidden_size": 1280, "projection_dim": 1280}')
        expected = "is an SDXL refiner"
    elif case == "edm scheduler":
        _edit_json(folder / "scheduler" / "scheduler_config.json", _class_name="EDMDPMSolverMultistepScheduler",
                   sigma_data=0.5)
        expected = "is an EDM-trained model"
    elif case == "video unet":
        _edit_json(folder / "model_index.json", unet=["diffusers", "UNetSpatioTemporalConditionModel"])
        expected = "its UNet is a UNetSpatioTemporalConditionModel"
    elif case == "inpainting unet":
        _edit_json(folder / "unet" / "config.json", in_channels=9)
        expected = "is an inpainting model"
    else:
        shutil.rmtree(folder / "vae")
        expected = "has no vae/"
    proc, imported = run_traced("edit", str(files["src"]), "--prompt", "x", "--model", str(folder), "--device", "cpu",
                                "--out", str(tmp_path / "o.png"))
    out = messages(proc)
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert expected in out.strip().splitlines()[-1], out
    assert not imported & set(HEAVY), imported & set(HEAVY)
