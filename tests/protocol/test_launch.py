"""Starting the daemon from its command file, detached, and waiting for it."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from sine_protocol import DaemonNotInstalled, SineClient
from sine_protocol.launch import LOG_NAME, ensure_daemon, read_daemon_command, start_daemon, wait_until_up

HERE = Path(__file__).resolve().parent
TOKEN = "k" * 64


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    result = {}
    for name in ("config", "state"):
        result[name] = tmp_path / name
        monkeypatch.setenv(f"SINE_{name.upper()}_DIR", str(result[name]))
    result["config"].mkdir()
    return result


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _write_command(config: Path, argv: object) -> None:
    (config / "daemon.json").write_text(json.dumps({"argv": argv}))


def test_missing_or_broken_command_file(dirs: dict[str, Path]) -> None:
    with pytest.raises(DaemonNotInstalled, match="install"):
        start_daemon()
    for content in ["{not json", '{"argv": []}', '{"argv": "sine daemon"}', '["sine"]', '{"argv": ["sine", 3]}']:
        (dirs["config"] / "daemon.json").write_text(content)
        with pytest.raises(DaemonNotInstalled, match="installer"):
            read_daemon_command()
    _write_command(dirs["config"], [str(dirs["config"] / "no-such-program")])
    with pytest.raises(DaemonNotInstalled, match="cannot start"):
        start_daemon()


@pytest.mark.parametrize("content", ['{"argv": ["/bin/true\\u0000x"]}', '{"argv": ["/bin/true", "a\\u0000b"]}',
                                     '{"argv": ["/bin/true\\ud800"]}'])
def test_a_command_file_no_system_can_run_is_refused_as_not_installed(dirs: dict[str, Path], content: str) -> None:
    """A NUL or a lone surrogate in an argument is valid JSON, but Popen raised ValueError or
    UnicodeEncodeError, which the plug-ins (catching DaemonNotInstalled) let through as a traceback."""
    (dirs["config"] / "daemon.json").write_text(content)
    with pytest.raises(DaemonNotInstalled, match="installer"):
        start_daemon()


def test_a_state_folder_that_is_a_file_is_refused_as_a_launch_problem(dirs: dict[str, Path]) -> None:
    """The launch log goes in the state folder: SINE_STATE_DIR naming a file raised FileExistsError."""
    _write_command(dirs["config"], [sys.executable, "-c", "pass"])
    dirs["state"].write_text("the user's")
    with pytest.raises(DaemonNotInstalled, match="SINE_STATE_DIR"):
        start_daemon()
    assert dirs["state"].read_text() == "the user's"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_command_file_that_is_a_pipe_or_endless_is_refused_not_read_forever(dirs: dict[str, Path]) -> None:
    """A plug-in reads daemon.json on its UI thread: a named pipe there froze it (waiting for a writer), a link
    to /dev/zero filled its memory. Read in a child process (1 GiB of address space, 20 s) so a regression fails."""
    import resource
    import subprocess

    command = dirs["config"] / "daemon.json"
    shared = str(Path(__file__).resolve().parents[2] / "shared")
    script = ("from sine_protocol.launch import read_daemon_command, DaemonNotInstalled\n"
              "try:\n    read_daemon_command()\nexcept DaemonNotInstalled as exc:\n    print(exc)\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    for make in (lambda: os.mkfifo(command), lambda: command.symlink_to("/dev/zero")):
        make()
        try:
            child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20,
                                   env={**os.environ, "PYTHONPATH": shared}, preexec_fn=limit)
        except subprocess.TimeoutExpired:
            pytest.fail(f"reading {command} as a {'pipe' if command.is_fifo() else 'link to /dev/zero'} blocked")
        assert child.returncode == 0 and "installer" in child.stdout, child.stdout + child.stderr
        command.unlink()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX session check")
def test_start_detached_and_wait(dirs: dict[str, Path]) -> None:
    endpoint = _free_endpoint()
    _write_command(dirs["config"], [sys.executable, str(HERE / "fake_daemon_main.py"), endpoint, TOKEN])

    def factory() -> SineClient:
        return SineClient(endpoint, TOKEN, transport="pure", timeout=2)

    assert not wait_until_up(factory, timeout=0.3)
    process = start_daemon()
    try:
        assert wait_until_up(factory, timeout=20)
        assert os.getsid(process.pid) == process.pid  # own session: outlives the host's terminal
        with factory() as client:
            assert client.hello()["daemon_version"] == "fake"
        assert ensure_daemon(factory) is None  # already up: nothing started
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    log = (dirs["state"] / LOG_NAME).read_text()
    assert "starting" in log and "fake daemon up" in log


def test_wait_gives_up_soon_after_the_daemon_dies(dirs: dict[str, Path]) -> None:
    endpoint = _free_endpoint()
    _write_command(dirs["config"], [sys.executable, "-c", "raise SystemExit(3)"])
    process = start_daemon()
    start = time.monotonic()
    assert not wait_until_up(lambda: SineClient(endpoint, TOKEN, transport="pure", timeout=1), timeout=60,
                             process=process)
    assert time.monotonic() - start < 10
    assert process.wait(5) == 3


def test_a_launch_log_of_the_users_is_never_written_into(dirs: dict[str, Path]) -> None:
    """SINE_STATE_DIR may name a folder of the user's: a daemon-launch.log of theirs there had the start line and
    the daemon's output appended to it. The daemon is still started (its output goes nowhere), their file kept;
    the launcher's own log (starting with its "--- <time> starting:" line) is appended to as before."""
    _write_command(dirs["config"], [sys.executable, "-c", "print('daemon output')"])
    dirs["state"].mkdir()
    theirs = dirs["state"] / LOG_NAME
    theirs.write_text("my launcher's notes\n")
    start_daemon().wait(timeout=30)
    assert theirs.read_text() == "my launcher's notes\n"
    theirs.unlink()
    start_daemon().wait(timeout=30)
    start_daemon().wait(timeout=30)
    ours = theirs.read_text()
    assert ours.startswith("--- ") and ours.count("starting:") == 2 and ours.count("\ndaemon output\n") == 2, ours
