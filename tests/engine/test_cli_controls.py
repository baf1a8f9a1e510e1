"""`sine edit` with the painter's controls: strength, several results, style from a second picture."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from PIL import Image


def run_sine(*args: str) -> subprocess.CompletedProcess:
    # one CPU thread: another thread count changes the last bits, and some tests compare bytes
    env = {**os.environ, "SINE_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sine.cli", *args], capture_output=True, text=True, timeout=600,
                          env=env)


def sampling_steps_run(stderr: str) -> int:
    """The total of the finished `sampling` progress bar, which it showed from its first line on."""
    done = re.findall(r"sampling: 100%\|[^|]*\| (\d+)/(\d+)", stderr)
    assert done, stderr
    first = re.findall(r"sampling:\s+0%\|[^|]*\| 0/(\d+)", stderr)
    assert first and first[0] == done[-1][1], f"the bar began at 0/{first[:1]} and ran {done[-1][1]} steps"
    return int(done[-1][1])


def estimate_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("estimate:"))


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, source_image):
    folder = tmp_path_factory.mktemp("cli-controls")
    source_image.save(folder / "source.png")
    source_image.transpose(Image.Transpose.ROTATE_90).save(folder / "style.png")
    return folder


def test_count_strength_and_style_write_one_file_per_result(tiny_folder, pictures, tmp_path):
    proc = run_sine("edit", str(pictures / "source.png"), "--prompt", "a blue disc", "--model", str(tiny_folder),
                    "--finetune-steps", "2", "--steps", "4", "--width", "32", "--height", "32", "--device", "cpu",
                    "--count", "2", "--strength", "0.5", "--style-from", str(pictures / "style.png"),
                    "--style-weight", "0.2", "--out", str(tmp_path / "out.png"))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "out.png").exists()
    first, second = (Image.open(tmp_path / f"out-{i}.png") for i in (1, 2))
    assert first.size == second.size == (32, 32)
    assert first.tobytes() != second.tobytes()
    assert "fine-tuning (style)" in proc.stderr
    assert "out-2.png (32×32, seed 1)" in proc.stderr  # the seed that draws it again alone


def test_a_style_weight_of_0_fine_tunes_no_style_model_and_keeps_the_content_weights_pixels(tiny_folder, pictures,
                                                                                           tmp_path):
    """`--style-weight 0`: no style fine-tune (none in the estimate either); the pixels are the edit without the
    style picture's term, so a content weight given with it still counts (0.5 here, not 1 − v)."""
    common = [str(pictures / "source.png"), "--prompt", "a blue disc", "--model", str(tiny_folder),
              "--finetune-steps", "2", "--steps", "4", "--width", "32", "--height", "32", "--device", "cpu",
              "--strength", "1", "--weights", str(tmp_path / "weights")]
    zero = run_sine("edit", *common, "--style-from", str(pictures / "style.png"), "--style-weight", "0",
                    "--content-weight", "0.5", "--out", str(tmp_path / "zero.png"))
    assert zero.returncode == 0, zero.stderr
    assert "fine-tuning (style)" not in zero.stderr
    assert "fine-tune 2 steps" in estimate_line(zero.stderr)  # the source's 2 only
    small = run_sine("edit", *common, "--style-from", str(pictures / "style.png"), "--style-weight", "0.000001",
                     "--content-weight", "0.5", "--out", str(tmp_path / "small.png"))
    plain = run_sine("edit", *common, "--out", str(tmp_path / "plain.png"))
    assert small.returncode == plain.returncode == 0, small.stderr + plain.stderr
    assert "fine-tuning (style)" in small.stderr
    pixels = {name: Image.open(tmp_path / f"{name}.png").tobytes() for name in ("zero", "small", "plain")}
    assert pixels["zero"] != pixels["plain"]  # β₁ 0.5, not the plain edit's 1 − v
    near = sum(abs(a - b) for a, b in zip(pixels["zero"], pixels["small"], strict=True)) / len(pixels["zero"])
    assert near < 0.5  # and a style weight of 1e-6 is all but the same picture


def test_a_default_edit_runs_the_default_share_of_steps_from_the_noised_source(tiny_folder, pictures, tmp_path):
    common = ["--prompt", "a blue disc", "--model", str(tiny_folder), "--finetune-steps", "2", "--steps", "10",
              "--device", "cpu", "--weights", str(tmp_path / "weights")]
    default = run_sine("edit", str(pictures / "source.png"), *common, "--out", str(tmp_path / "default.png"))
    assert default.returncode == 0, default.stderr
    assert sampling_steps_run(default.stderr) == 6  # round(0.6 × 10)
    assert "sampling 6 steps" in estimate_line(default.stderr)  # the printed estimate counts only those
    explicit = run_sine("edit", str(pictures / "source.png"), *common, "--strength", "0.6", "--start", "noise",
                        "--out", str(tmp_path / "explicit.png"))
    paper = run_sine("edit", str(pictures / "source.png"), *common, "--strength", "1", "--out", str(tmp_path / "paper.png"))
    assert explicit.returncode == paper.returncode == 0, explicit.stderr + paper.stderr
    assert sampling_steps_run(paper.stderr) == 10 and "sampling 10 steps" in estimate_line(paper.stderr)
    picture = Image.open(tmp_path / "default.png").tobytes()
    assert picture == Image.open(tmp_path / "explicit.png").tobytes()  # the source noised to 0.6, same draw
    assert picture != Image.open(tmp_path / "paper.png").tobytes()


@pytest.mark.parametrize("args,message", [
    (["--start", "inversion", "--count", "2"], "--count 1"),
    (["--style-weight", "0.3"], "--style-from"),
    (["--strength", "0"], "strength"),
    (["--count", "9"], "count"),
    (["--seed", str(2**32)], "0..4294967295"),  # it drew seed 0's picture: torch keeps a seed's low 32 bits
    (["--style-from", "nowhere.png"], "no such file"),
])
def test_bad_controls_fail_with_one_clear_line(pictures, tmp_path, args, message):
    proc = run_sine("edit", str(pictures / "source.png"), "--prompt", "x", *args, "--out", str(tmp_path / "o.png"))
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_style_weights_are_saved_then_reused_without_a_second_style_finetune(tiny_folder, pictures, tmp_path):
    style_weights = tmp_path / "style-weights"
    common = [str(pictures / "source.png"), "--prompt", "a blue disc", "--model", str(tiny_folder),
              "--finetune-steps", "2", "--steps", "4", "--width", "32", "--height", "32", "--device", "cpu",
              "--weights", str(tmp_path / "weights"), "--style-from", str(pictures / "style.png"),
              "--style-weight", "0.3", "--style-weights", str(style_weights)]
    first = run_sine("edit", *common, "--out", str(tmp_path / "first.png"))
    assert first.returncode == 0, first.stderr
    assert "fine-tuning (style)" in first.stderr
    assert "fine-tune 4 steps" in estimate_line(first.stderr)  # the source's 2 and the style's 2
    assert (style_weights / "finetune.json").exists()
    second = run_sine("edit", *common, "--out", str(tmp_path / "second.png"))
    assert second.returncode == 0, second.stderr
    assert "fine-tuning" not in second.stderr  # no progress bar: nothing trained
    assert "fine-tune" not in estimate_line(second.stderr)  # and none counted in the estimate
    assert f"reusing fine-tuned style weights from {style_weights}" in second.stderr
    assert Image.open(tmp_path / "second.png").tobytes() == Image.open(tmp_path / "first.png").tobytes()


@pytest.mark.parametrize("args,message", [
    (["--style-weights", "{tmp}/sw"], "--style-from"),
    (["--style-from", "{src}", "--weights", "{tmp}/w", "--style-weights", "{tmp}/w"], "--weights"),
])
def test_style_weights_refusals(pictures, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, src=pictures / "style.png") for a in args]
    proc = run_sine("edit", str(pictures / "source.png"), "--prompt", "x", *args, "--out", str(tmp_path / "o.png"))
    assert proc.returncode != 0
    assert message in proc.stderr.splitlines()[-1] and "Traceback" not in proc.stderr
