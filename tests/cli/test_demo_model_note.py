"""The demo model only knows the shapes world: `sine edit` says so on other pictures, not on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sine.shapes.world import Background, random_scene
from sine.shapes_check import DEMO_MODEL_NOTE, MAX_COLOURS, colour_count, looks_like_shapes_world
from sine.synthetic import photo_like

ASSETS = Path(__file__).resolve().parents[2] / "backend" / "sine" / "demo_assets"


def test_every_bundled_demo_source_is_from_the_shapes_world() -> None:
    index = json.loads((ASSETS / "assets.json").read_text())
    for info in index.values():
        with Image.open(ASSETS / info["file"]) as img:
            assert looks_like_shapes_world(img), info["file"]


@pytest.mark.parametrize("kind,colours", [("plain", ("blue",)), ("gradient", ("yellow", "blue")),
                                          ("striped", ("red", "white")), ("noisy", ("green",)),
                                          ("checkered", ("black", "white"))])
@pytest.mark.parametrize("size", [(64, 64), (512, 384)])
def test_world_scenes_of_every_background_pass(kind: str, colours: tuple[str, ...], size: tuple[int, int]) -> None:
    image, _ = random_scene(3).with_background(Background(kind, colours)).render(*size)
    assert looks_like_shapes_world(image), colour_count(image)


@pytest.mark.parametrize("seed", range(4))
def test_photo_like_pictures_do_not(seed: int) -> None:
    image = photo_like(512, 384, seed)
    assert colour_count(image) > 2 * MAX_COLOURS
    assert not looks_like_shapes_world(image)


def run_edit(source: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sine.cli", "edit", str(source), "--prompt", "a red circle",
                           "--finetune-steps", "1", "--steps", "1", "--width", "64", "--height", "48",
                           "--device", "cpu", "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)


def test_sine_edit_with_the_demo_model_notes_a_photo_but_not_a_shapes_picture(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo_like(160, 120, seed=5).save(photo)
    proc = run_edit(photo, tmp_path / "a.png")
    assert proc.returncode == 0, proc.stderr
    assert DEMO_MODEL_NOTE in proc.stderr
    proc = run_edit(ASSETS / "dotted_star.png", tmp_path / "b.png")
    assert proc.returncode == 0, proc.stderr
    assert "demo model only knows" not in proc.stderr
