"""`sine demo`: its fine-tune settings, and a short real run on the bundled model and picture."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from sine.demo import DEMO_FINETUNE, demo_finetune_settings
from sine.models import DEMO_MODEL_DIR
from sine.recipes import model_recipes


def test_demo_cuts_the_full_recipe_to_its_budget_and_keeps_explicit_steps() -> None:
    recipes = model_recipes(DEMO_MODEL_DIR)
    full = demo_finetune_settings("full", None, "photo", 0)
    assert (full.steps, full.batch) == DEMO_FINETUNE["full"] and full.steps < recipes["full"].patch_steps
    # 4 views per step: half the fine-tune's time of 1500 single-view steps, SINE's scores equal or better
    # (docs/benchmarks.md, "Views per step")
    assert full.batch == 4
    assert full.steps * full.batch <= 1500
    assert full.patch and full.resolved(recipes).positional
    assert demo_finetune_settings("full", 7, "photo", 0).steps == 7
    assert demo_finetune_settings("lora", None, "photo", 0).resolved(recipes).steps == recipes["lora"].patch_steps


def test_sine_demo_writes_its_edits_and_the_comparison(tmp_path: Path, capsys, monkeypatch) -> None:
    from sine.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo"
    assert main(["demo", "--out", "demo", "--finetune-steps", "10", "--steps", "4"]) == 0
    err = capsys.readouterr().err
    assert "10/10" in err  # a progress bar through the fine-tune, the demo's long silent minute before
    last = err.strip().splitlines()[-1]  # what a newcomer reads: where, and what is there
    assert str(out) in last and "source | pre-trained only | fine-tuned only | SINE" in last
    assert all(name in last for name in ("comparison.png", "edit1-sine.png", "source.png", "summary.json"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finetune_steps"] == 10 and summary["finetune_method"] == "full"
    assert summary["finetune_views_per_step"] == 4
    assert len(summary["edits"]) == 3 and [2 * 64, 64] in [e["size"] for e in summary["edits"]]
    for name in summary["files"]:
        assert Image.open(out / name).size[0] >= 64
    sheet = Image.open(out / "comparison.png")
    assert sheet.width > 4 * 64 and sheet.height > 3 * 64
