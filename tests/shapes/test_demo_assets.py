"""The bundled demo sources: committed files that match the generator and describe themselves."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from sine.shapes.demo_assets import DEFAULT_DIR, N_ASSETS
from sine.shapes.metrics import majority_color
from sine.shapes.sources import benchmark_sources


def test_assets_match_the_generator() -> None:
    index = json.loads((DEFAULT_DIR / "assets.json").read_text())
    assert len(index) == N_ASSETS >= 2
    for src in benchmark_sources()[:N_ASSETS]:
        entry = index[src.name]
        image = Image.open(DEFAULT_DIR / entry["file"])
        assert image.size == (64, 64) and image.mode == "RGB"
        rendered, masks = src.scene.render()
        assert np.array_equal(np.asarray(image), np.asarray(rendered))
        for obj, m in zip(entry["objects"], masks.objects, strict=True):
            saved = np.asarray(Image.open(DEFAULT_DIR / obj["mask"])) > 127
            assert np.array_equal(saved, m)
            assert majority_color(image, saved) == obj["color"]
        assert entry["subject"] and len(entry["edits"]) == 3
        for edit in entry["edits"]:
            assert edit["color"] in edit["prompt"]


def test_sources_hold_unseen_content() -> None:
    for src in benchmark_sources():
        textures = [o.texture for o in src.scene.objects if o.texture]
        assert textures or src.scene.background.kind in ("checkered", "noisy"), src.name
