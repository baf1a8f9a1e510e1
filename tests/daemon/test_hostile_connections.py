"""Connections without a token, from another local user, against a real daemon process over real sockets."""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

import pytest
from daemon_helpers import FAST, Client, DaemonProcess

pytestmark = pytest.mark.slow


def _open_silent_connections(port: int, count: int) -> list[socket.socket]:
    """As many TCP connections as the daemon takes, up to `count` (each sends nothing: a handshake never done)."""
    opened = []
    for _ in range(count):
        try:
            opened.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:  # refused once the daemon stopped listening
            pass
    return opened


def test_connections_past_the_open_files_limit_never_kill_the_daemon(tiny_model: Path):
    """Anyone on the machine can open TCP connections to the daemon without the token; each holds a file
    descriptor until the handshake timeout. With all of them taken, a painter's connection over the owner-only
    ipc socket made libzmq abort the daemon ("Too many open files (src/ipc_listener.cpp:297)"). Now the daemon
    stops listening on TCP while too many are open, keeps serving ipc, and listens again once they closed."""
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    proc = DaemonProcess(root, tiny_model, extra=FAST).start(nofile=(1024, 1024))
    junk: list[socket.socket] = []
    try:
        junk = _open_silent_connections(proc.port, 1100)
        with Client(f"ipc://{root}/run/daemon.sock", proc.token, "pure") as painter:
            assert painter.request("hello", timeout=15).type == "welcome"
        assert proc.proc is not None and proc.proc.poll() is None, proc.output()
        assert "not listening on tcp://" in proc.output()
        for sock in junk:
            sock.close()
        deadline = time.monotonic() + 30
        while "listening again on tcp://" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        with Client(proc.endpoint, proc.token) as client:
            assert client.request("ping", timeout=15).type == "pong"
    finally:
        for sock in junk:
            sock.close()
        assert proc.stop() == 0, proc.output()
