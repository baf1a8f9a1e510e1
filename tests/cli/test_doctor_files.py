"""`sine doctor` on a daemon command file (daemon.json) the plug-ins cannot use: it said the plug-ins start the
daemon on demand through it whenever a regular file of that name was there, whatever it held."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("content,said", [("{not json", "unreadable"), (None, "unreadable")])  # ~15 s each here
def test_a_daemon_command_file_the_plugins_cannot_use_is_a_failure(tmp_path: Path, content: str | None,
                                                                   said: str) -> None:
    config = tmp_path / "home" / ".config" / "sine-edit"
    config.mkdir(parents=True)
    if content is None:
        os.mkfifo(config / "daemon.json")  # read as a file, it would wait for a writer for ever
    else:
        (config / "daemon.json").write_text(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "SINE_"))}
    env.update({"HOME": str(tmp_path / "home"), "SINE_ENDPOINT": "tcp://127.0.0.1:9", "OMP_NUM_THREADS": "1",
                "HF_HUB_OFFLINE": "1"})
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "doctor", "--timeout", "1"], env=env,
                          capture_output=True, text=True, timeout=120)
    line = next(line for line in proc.stdout.splitlines() if line.split(":")[0].split()[-1] == "autostart")
    assert line.startswith("FAIL") and said in line and str(config / "daemon.json") in line, proc.stdout
    assert "on demand" not in line
