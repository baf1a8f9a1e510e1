"""`sine edit` with the painter's controls: strength, several results, style from a second picture."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image


def run_sine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sine.cli", *args], capture_output=True, text=True, timeout=600)


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


@pytest.mark.parametrize("args,message", [
    (["--start", "inversion", "--count", "2"], "--count 1"),
    (["--style-weight", "0.3"], "--style-from"),
    (["--strength", "0"], "strength"),
    (["--count", "9"], "count"),
    (["--style-from", "nowhere.png"], "no such file"),
])
def test_bad_controls_fail_with_one_clear_line(pictures, tmp_path, args, message):
    proc = run_sine("edit", str(pictures / "source.png"), "--prompt", "x", *args, "--out", str(tmp_path / "o.png"))
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
