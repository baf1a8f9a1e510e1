"""`sine cache list|clear` pointed at something that is not a cache folder: one line, no traceback, nothing made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("action", ["list", "clear"])
def test_a_file_as_the_cache_folder_is_refused_in_one_line(action: str, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("the user's file")
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "cache", action, "--cache-dir", str(target)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "is a file" in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert target.read_text() == "the user's file"


@pytest.mark.parametrize("action", ["list", "clear"])
def test_a_relative_cache_setting_is_refused_naming_it(action: str, tmp_path: Path) -> None:
    """SINE_CACHE_DIR=cache listed (or cleared) ./cache of wherever `sine cache` was typed, not the daemon's:
    refused as the daemon refuses it, with nothing made or touched where it ran."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "mine.txt").write_text("the user's file")
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "cache", action], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "SINE_CACHE_DIR": "cache"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "SINE_CACHE_DIR" in last and "relative" in last and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cache", "mine.txt"]
