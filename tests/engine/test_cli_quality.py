"""`sine edit --quality`: settings sized for a CPU unless the full recipe is asked for; the user's values win."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sine.quality import CPU_STEPS, CPU_STRATEGY, STEPS, choose
from sine_protocol.defaults import STRENGTH


def test_auto_is_fast_on_a_cpu_and_full_on_a_gpu() -> None:
    fast = choose("auto", "cpu")
    assert (fast.quality, fast.steps, fast.strategy, fast.patch) == ("fast", CPU_STEPS, CPU_STRATEGY, False)
    full = choose("auto", "cuda")
    assert (full.quality, full.steps, full.patch) == ("full", STEPS, True)
    assert choose("full", "cpu").quality == "full" and choose("fast", "cuda").quality == "fast"


def test_values_the_user_gives_win() -> None:
    mine = choose("fast", "cpu", steps=7, strategy="tiled", patch=None)
    assert (mine.steps, mine.strategy, mine.patch) == (7, "tiled", True)  # tiles need the patch recipe
    assert choose("fast", "cpu", patch=True).patch is True
    assert choose("full", "cuda", patch=False).patch is False


def run_edit(source: Path, model: Path, weights: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SINE_STATE_DIR": str(out.parent / "state")}
    return subprocess.run([sys.executable, "-m", "sine.cli", "edit", str(source), "--prompt", "a blue disc",
                           "--model", str(model), "--finetune-steps", "2", "--device", "cpu",
                           "--weights", str(weights), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600, env=env)


def test_sine_edit_on_a_cpu_uses_the_fast_settings_and_says_how_to_get_the_full_ones(
        tiny_folder: Path, source_image, tmp_path: Path) -> None:
    source = tmp_path / "source.png"
    source_image.resize((96, 72)).save(source)
    proc = run_edit(source, tiny_folder, tmp_path / "fast", tmp_path / "fast.png")
    assert proc.returncode == 0, proc.stderr
    # the fast settings' 50 steps, of which the default strength runs its share (the estimate counts those)
    assert f"{CPU_STEPS} sampling steps" in proc.stderr and "fast CPU settings" in proc.stderr
    assert f"sampling {round(CPU_STEPS * STRENGTH)} steps" in proc.stderr
    assert "--quality full for the full recipe" in proc.stderr
    assert json.loads((tmp_path / "fast" / "finetune.json").read_text())["settings"]["patch"] is False

    proc = run_edit(source, tiny_folder, tmp_path / "full", tmp_path / "full.png", "--quality", "full", "--steps", "3")
    assert proc.returncode == 0, proc.stderr
    assert "fast CPU settings" not in proc.stderr and f"sampling {round(3 * STRENGTH)} steps" in proc.stderr
    assert json.loads((tmp_path / "full" / "finetune.json").read_text())["settings"]["patch"] is True
