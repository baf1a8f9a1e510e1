"""SINE_CONFIG_DIR may name a folder of the user's (their home) where a file of theirs is called `token`: the
daemon replaced it with a fresh token whenever it did not hold one (notes, a key file, a big or binary file)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess


@pytest.mark.parametrize("content", [b"my api keys:\nexample-key-1\n", bytes(range(256)) * 20])
def test_a_users_file_named_token_is_never_replaced(tiny_model: Path, content: bytes) -> None:
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    proc = DaemonProcess(root, tiny_model)
    home = root / "config"
    home.mkdir()
    (home / "token").write_bytes(content)
    (home / "token").chmod(0o644)
    proc.start(wait=False)
    deadline = time.monotonic() + 60
    while proc.proc.poll() is None and (home / "token").read_bytes() == content and time.monotonic() < deadline:
        time.sleep(0.05)
    rc = proc.proc.poll() if proc.proc.poll() is not None else proc.stop()
    assert (home / "token").read_bytes() == content, proc.output()
    assert (home / "token").stat().st_mode & 0o777 == 0o644
    assert rc != 0 and str(home / "token") in proc.output()


def test_a_users_file_saved_over_the_token_while_running_is_left_alone(tiny_model: Path) -> None:
    """While running, the daemon wrote its token back over any file there that did not hold a usable token."""
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    proc = DaemonProcess(root, tiny_model).start()
    token = root / "config" / "token"
    try:
        token.unlink()
        token.write_text("shopping list:\nmilk\n")  # the user saves a file of theirs under that name
        time.sleep(2.5)  # the daemon looks at the file once a second
        assert token.read_text() == "shopping list:\nmilk\n"
    finally:
        proc.stop()
    assert "left as it is" in proc.output()
