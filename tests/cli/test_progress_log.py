"""`sine edit 2> log`: the progress bars leave a few lines in a file, not one per redraw."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from sine.commands.progress_bars import LOG_INTERVAL_S

ASSETS = Path(__file__).resolve().parents[2] / "backend" / "sine" / "demo_assets"


def test_progress_bars_redraw_seldom_when_stderr_is_a_file(tmp_path: Path) -> None:
    """tqdm redraws about ten times a second; on a terminal that is one line, in a log file each redraw
    stays (an 18-second edit left 444 lines). Off a terminal each bar now redraws every LOG_INTERVAL_S,
    and still shows where it started and ended."""
    log = tmp_path / "edit.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    with log.open("w") as err:
        proc = subprocess.run([sys.executable, "-m", "sine.cli", "edit", str(ASSETS / "dotted_star.png"),
                               "--prompt", "a red circle", "--finetune-steps", "40", "--steps", "20",
                               "--device", "cpu", "--out", str(tmp_path / "o.png")],
                              stdout=subprocess.DEVNULL, stderr=err, timeout=600, env=env)
    took = time.monotonic() - t0
    text = log.read_text()
    assert proc.returncode == 0, text
    redraws = [part for part in re.split(r"[\r\n]", text) if re.match(r"(fine-tuning|sampling):", part)]
    for bar, total in (("fine-tuning", 40), ("sampling", None)):
        drawn = [part for part in redraws if part.startswith(bar + ":")]
        assert drawn and re.search(r"\b0/\d+", drawn[0]), drawn
        assert re.search(rf"100%.*\b{total or ''}\d*/{total or ''}\d*\b", drawn[-1]), drawn[-1]
        assert len(drawn) <= 3 + took / LOG_INTERVAL_S, (len(drawn), took, drawn)
