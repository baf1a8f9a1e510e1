"""The plug-in's progress window in the GIMP 3 host's real GTK 3 (root python3 under Xvfb).

GIMP's status-bar Cancel kills a plug-in outright, so the window's own Cancel button is how a user
stops the daemon job cleanly: check that it shows phase, fraction and preview, and that a click on
Cancel reaches the polling loop.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.hosts

SCRIPT = Path(__file__).resolve().parent / "ui_progress_window.py"


def test_progress_window_shows_progress_and_cancel_reaches_the_loop(gimp_home) -> None:
    shutil.copy(SCRIPT, gimp_home.host / "work" / SCRIPT.name)
    gimp_home.chown()
    plugin = f"{gimp_home.path}/.config/GIMP/3.0/plug-ins/sine-gimp"
    done = subprocess.run(
        [
            "chroot",
            "--userspec=tester:tester",
            str(gimp_home.root),
            "/usr/bin/env",
            "-i",
            f"HOME={gimp_home.path}",
            "PATH=/usr/bin:/bin",
            "LANG=C.UTF-8",
            f"PYTHONPATH={plugin}/_vendor:{plugin}",
            "timeout",
            "60",
            "xvfb-run",
            "-a",
            "python3",
            f"{gimp_home.path}/work/{SCRIPT.name}",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=90,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("UI-RESULT ")]
    assert done.returncode == 0 and lines, done.stdout + done.stderr
    shown = json.loads(lines[-1].removeprefix("UI-RESULT "))
    assert shown["label"] == "sampling 30/100"
    assert "daemon 0.1.0 on CPU; model SDXL, ε-prediction, 1024 px" in shown["texts"]  # stays while it runs
    assert shown["fraction"] == 0.3
    assert shown["preview"] == [192, 96]  # 32x16 preview scaled to the 192 px box, aspect kept
    assert shown["cancelled_before"] is False
    assert shown["cancelled_after"] is True
