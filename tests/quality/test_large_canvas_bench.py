"""bench/large_canvas.py end to end on the demo model, with step counts cut to seconds."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from PIL import Image


def test_large_canvas_scores_every_config_and_reuses_kept_finetunes(
        large_canvas_bench: ModuleType, tmp_path: Path) -> None:
    bench = large_canvas_bench
    configs = ["tiled, PE (ours)", "SINE per 2x tile, PE", "upscale, PE"]
    args = ["--names", "checkered_circle", "--scales", "2", "--steps", "2", "--finetune-steps", "2",
            "--finetuned", str(tmp_path / "ft"), "--images", str(tmp_path / "sheets"), "--configs", *configs]
    assert bench.main([*args, "--out", str(tmp_path / "a.json")]) == 0
    kept = sorted((tmp_path / "ft").iterdir())
    assert [p.name for p in kept] == ["checkered_circle-full-2-pe0", "checkered_circle-full-2-pe1"]
    stamps = {p: p.stat().st_mtime_ns for d in kept for p in d.iterdir()}

    assert bench.main([*args, "--out", str(tmp_path / "b.json")]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # loaded, not fine-tuned again
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["rows"] == b["rows"]  # the kept weights give the same pictures
    assert [r["config"] for r in a["rows"]] == configs
    for row in a["rows"]:
        assert row["stray"] >= 0 and 0.0 <= row["coverage"] <= 1.0
        assert row["stray_object_colours"] >= 0
        assert row["duplicated"] == (row["stray"] > 0) and row["missing"] == (row["coverage"] < 0.2)
    assert set(a["summary"]) == {f"2x {c}" for c in configs}
    sheet = Image.open(tmp_path / "sheets" / "checkered_circle_2x_seed0.png")
    assert sheet.size == (4 * 128 + 3 * 4, 128)  # the source, then one picture per config
