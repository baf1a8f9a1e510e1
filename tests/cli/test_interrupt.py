"""Ctrl+C during `sine demo`'s fine-tune: one line, exit 130, and the same command runs again.

Before, the real process printed a KeyboardInterrupt traceback from inside torch's backward pass, and
the `source.png` it had already written made the retry `sine demo --out demo-out` refuse the folder
("holds other files"). Costs about 5 s (torch and the demo model load once).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sine.output_files import check_demo_folder


def test_ctrl_c_in_the_demo_fine_tune_is_one_line_and_the_retry_runs(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sine.cli", "demo", "--out", str(out), "--finetune-steps", "100000"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's foreground job
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("fine-tuning on"), first
        time.sleep(0.3)  # inside the training loop
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert rest.strip().splitlines()[-1] == "sine demo: interrupted"
    assert not out.exists() or not any(out.iterdir())
    check_demo_folder(str(out))  # the retry is not refused
