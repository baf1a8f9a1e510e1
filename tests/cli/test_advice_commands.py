"""The commands an error tells a newcomer to type exist where sine is installed.

The installed huggingface_hub has only the `hf` command (`huggingface-cli` is gone), and Debian-like
systems have `python3`, not `python`: advice naming either failed as "command not found".
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from sine.checkpoint_contents import not_weights
from sine.errors import ModelMissing
from sine.models import _fetch_advice
from sine.preflight import check_model


def advised_commands(message: str) -> list[str]:
    return [span.split()[0] for span in re.findall(r"`([^`]+)`", message)]


def runnable(command: str) -> bool:
    """On PATH, or beside this Python (the venv's bin folder, where pip puts console scripts)."""
    return shutil.which(command, path=os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])) \
        is not None


def test_every_command_an_error_advises_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelMissing) as missing:
        check_model("someone/not-downloaded")
    lfs, html = tmp_path / "lfs.safetensors", tmp_path / "page.safetensors"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    html.write_text("<!DOCTYPE html><html>sign in</html>")
    messages = [str(missing.value), not_weights(lfs), not_weights(html), _fetch_advice("someone/x", "offline")]
    commands = [c for m in messages for c in advised_commands(m or "")]
    assert "hf" in commands and "python3" in commands
    assert [c for c in commands if c != "git" and not runnable(c)] == []
