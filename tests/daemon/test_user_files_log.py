"""SINE_STATE_DIR may name a folder of the user's where files of theirs are called daemon.log or daemon.log.N:
the daemon appended its log to their daemon.log (and made it 0600), and its log rotation renamed its own
backups over their daemon.log.3 (lost) and moved their daemon.log.1 along."""

from __future__ import annotations

import stat
import tempfile
import time
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess

LINE = "2026-11-30 10:00:00,000 INFO sine.daemon.server [MainThread] an earlier run's line\n"


def _daemon_log(path: Path, size: int) -> None:
    path.write_text(LINE * (size // len(LINE) + 1))


def _until_it_logs(proc: DaemonProcess, log: Path) -> None:
    """Start the daemon and stop it once it has written a line of its own (the rollover comes before it):
    the model need not load."""
    proc.start(wait=False)
    deadline = time.monotonic() + 60
    while proc.proc.poll() is None and time.monotonic() < deadline:
        if any(line != LINE for line in log.open().readlines()[-3:]):
            break
        time.sleep(0.05)
    proc.stop()


@pytest.mark.parametrize("users", ["daemon.log.3", "daemon.log.1"])
def test_log_rotation_never_renames_over_or_moves_a_users_file(tiny_model: Path, users: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    home = root / "home"  # a folder of the user's: its name says nothing of sine-edit
    home.mkdir()
    _daemon_log(home / "daemon.log", 1_000_000)  # an earlier run's log, full: the first line rolls it over
    for n in (1, 2, 3):
        _daemon_log(home / f"daemon.log.{n}", 1000)
    (home / users).write_text("the user's own notes\n")
    (home / users).chmod(0o644)
    proc = DaemonProcess(root, tiny_model)
    proc.env["SINE_STATE_DIR"] = str(home)
    _until_it_logs(proc, home / "daemon.log")
    assert (home / users).read_text() == "the user's own notes\n"
    assert stat.S_IMODE((home / users).stat().st_mode) == 0o644
    log = (home / "daemon.log").read_text()
    assert len(log) < 1_000_000 and "left as it is" in log and str(home / users) in log, log[-2000:]


def test_a_users_file_named_daemon_log_is_not_appended_to(tiny_model: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    home = root / "home"
    home.mkdir()
    (home / "daemon.log").write_text("what the user's own daemon did\n")
    (home / "daemon.log").chmod(0o644)
    proc = DaemonProcess(root, tiny_model)
    proc.env["SINE_STATE_DIR"] = str(home)
    proc.start(wait=False)
    deadline = time.monotonic() + 60
    while proc.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    rc = proc.proc.poll() if proc.proc.poll() is not None else proc.stop()
    assert (home / "daemon.log").read_text() == "what the user's own daemon did\n", proc.output()
    assert stat.S_IMODE((home / "daemon.log").stat().st_mode) == 0o644
    assert rc == 2 and "Traceback" not in proc.output(), proc.output()
    last = proc.output().strip().splitlines()[-1]
    assert str(home / "daemon.log") in last and "SINE_STATE_DIR" in last, last


def test_the_daemons_own_log_in_a_users_folder_still_rotates(tiny_model: Path) -> None:
    """The other side: backups that are the daemon's own are rotated as before (the log stays bounded)."""
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    home = root / "home"
    home.mkdir()
    _daemon_log(home / "daemon.log", 1_000_000)
    _daemon_log(home / "daemon.log.1", 1000)
    proc = DaemonProcess(root, tiny_model)
    proc.env["SINE_STATE_DIR"] = str(home)
    _until_it_logs(proc, home / "daemon.log")
    assert (home / "daemon.log.1").stat().st_size > 1_000_000 and (home / "daemon.log.2").stat().st_size == 1079
    assert (home / "daemon.log").stat().st_size < 1_000_000
