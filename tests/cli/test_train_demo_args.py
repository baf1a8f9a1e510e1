"""`sine train-demo` with values no training can use, or an --out folder of the user's: refused in one line
before torch loads, instead of a libgomp abort, a traceback after minutes, or a run that never ends."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BAD = [
    ("--threads", "1000000000"),  # libgomp: Out of memory allocating 216000001344 bytes
    ("--unet-batch", "0"),  # trained for ever on empty batches
    ("--minutes", "nan"),
    ("--minutes", "-1"),
    ("--vae-latent-channels", "0"),  # RuntimeError traceback from the first convolution
    ("--unet-lr", "inf"),
    ("--vae-steps", "-5"),
    ("--seed", "-1"),
]


def _train_demo(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-m", "sine.cli", "train-demo", *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"train-demo {' '.join(args)} started training instead of refusing")


@pytest.mark.parametrize("flag,value", BAD)
def test_a_value_no_training_can_use_is_refused_naming_the_flag(flag: str, value: str, tmp_path: Path) -> None:
    proc = _train_demo("--out", str(tmp_path / "model"), "--config", "cpu", f"{flag}={value}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert flag in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("stage", ["all", "decoder"])
def test_a_folder_of_the_users_is_refused_as_out(stage: str, tmp_path: Path) -> None:
    """Training writes model_index.json, unet/, vae/, ... into --out: a folder of someone's files was used."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    proc = _train_demo("--out", str(mine), "--config", "cpu", "--stage", stage, "--minutes", "0.01")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--out" in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_a_folder_of_the_users_is_refused_as_raw_out(tmp_path: Path) -> None:
    """`--stage resume --raw-out` also receives model_index.json, unet/, vae/, ...: it was never checked, so a
    folder of the user's got the model written among (and over) their files."""
    from sine.commands.doctor import DEMO_MODEL

    model = Path(shutil.copytree(DEMO_MODEL, tmp_path / "model"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    proc = _train_demo("--out", str(model), "--config", "cpu", "--stage", "resume", "--raw-out", str(mine),
                       "--minutes", "0.01", "--unet-steps", "1", "--latent-scenes", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--raw-out" in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
