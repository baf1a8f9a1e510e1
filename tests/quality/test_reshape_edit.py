"""The quality benchmark's shape-change edit ("a square instead of a circle"): its prompt, its judge
and its own summary column, checked on ground-truth renders (no sampling)."""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from sine.shapes.sources import benchmark_sources

SOURCES = benchmark_sources()


@pytest.mark.parametrize("src", SOURCES, ids=[s.name for s in SOURCES])
def test_the_judge_reads_the_asked_shape_and_not_the_source_one(src, quality_bench: ModuleType) -> None:
    edit = src.reshape
    obj = src.scene.objects[edit.index]
    assert edit.target == "shape" and edit.shape != obj.kind and edit.color == obj.color
    assert f"{obj.color} {edit.shape}" in edit.prompt
    asked = src.reshaped().render()[0]
    ok, psnr, _ = quality_bench.judge_edit(asked, src, edit)
    assert ok, f"{src.name}: a drawn {edit.shape} is not read as one"
    assert psnr > 30  # the asked picture keeps everything outside the old and new object
    unchanged, _, _ = quality_bench.judge_edit(src.scene.render()[0], src, edit)
    assert not unchanged, f"{src.name}: the unedited source passes as a {edit.shape}"


@pytest.mark.parametrize("src", SOURCES, ids=[s.name for s in SOURCES])
def test_a_fragment_of_the_asked_shape_is_not_the_shape(src, quality_bench: ModuleType) -> None:
    # what a weak fine-tune draws: a broken blob of the object's colour, read as a triangle by its fill
    # ratio (seen on square_on_checkered); the top third of the asked object stands for it here
    asked, masks = src.reshaped().render()
    bare = replace(src.scene, objects=()).render()[0]  # the same background, no object
    obj = masks.objects[src.reshape.index]
    rows = np.nonzero(obj.any(axis=1))[0]
    cut = obj & (np.arange(obj.shape[0]) >= rows[0] + len(rows) // 3)[:, None]
    fragment = np.where(cut[..., None], np.asarray(bare), np.asarray(asked))
    ok, _, _ = quality_bench.judge_edit(Image.fromarray(fragment), src, src.reshape)
    assert not ok, f"{src.name}: a third of a {src.reshape.shape} passes as one"


def test_shape_edits_have_their_own_columns(quality_bench: ModuleType) -> None:
    q = quality_bench
    rows = [q.EditResult("sine_pe", "s", "p", 0, "object", True, 20.0, 0.5),
            q.EditResult("sine_pe", "s", "p", 0, "background", False, 10.0, 0.3),
            q.EditResult("sine_pe", "s", "p", 0, "shape", False, 30.0, 0.9)]
    entry = q.summarize(rows, [])["sine_pe"]
    assert entry["edit_success"] == 0.5 and entry["psnr"] == 15.0 and entry["n"] == 2  # as before: colours
    assert entry["shape_success"] == 0.0 and entry["shape_psnr"] == 30.0 and entry["n_shape"] == 1
    assert "shape_success" in q.table({"sine_pe": entry})
