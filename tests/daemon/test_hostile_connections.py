"""Connections without a token, from another local user, against a real daemon process over real sockets."""

from __future__ import annotations

import errno
import os
import resource
import socket
import tempfile
import time
from pathlib import Path

import pytest
from daemon_helpers import FAST, Client, DaemonProcess

pytestmark = pytest.mark.slow


def _still_open(sock: socket.socket) -> bool:
    """Whether the daemon has not closed this connection (its handshake timeout closes silent ones)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def _room_for_connections(count: int) -> None:
    """Let this process hold `count` more sockets: a runner's soft limit (often 1024, some of it taken by
    earlier tests) stopped the flood short of the daemon's limit, so its guard was never tested."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = len(os.listdir("/proc/self/fd")) + count + 64
    if soft != resource.RLIM_INFINITY and soft < need:
        assert hard == resource.RLIM_INFINITY or hard >= need, f"open files limit {hard}, this test needs {need}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _flood_until(port: int, done, count: int = 1100, within_s: float = 120.0) -> list[socket.socket]:
    """Open silent TCP connections (each sends nothing: a handshake never done), keeping `count` open, until
    `done()`. On a busy machine the daemon may accept slower than its handshake timeout closes them, so
    one burst may never reach its limit: connections it closed are replaced until it does."""
    _room_for_connections(count)
    opened: list[socket.socket] = []
    deadline = time.monotonic() + within_s
    while not done():
        assert time.monotonic() < deadline, f"{len(opened)} connections open and the daemon never reacted"
        alive = [s for s in opened if _still_open(s)]
        for sock in set(opened) - set(alive):
            sock.close()
        opened = alive
        for _ in range(min(100, count - len(opened))):
            try:
                opened.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError as exc:  # refused once the daemon stopped listening; never our own limit
                assert exc.errno not in (errno.EMFILE, errno.ENFILE), f"this test process ran out of descriptors: {exc}"
                break
        time.sleep(0.05)
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
        def guard_reacted() -> bool:
            return "not listening on tcp://" in proc.output() or proc.proc.poll() is not None

        junk = _flood_until(proc.port, guard_reacted)
        with Client(f"ipc://{root}/run/daemon.sock", proc.token, "pure") as painter:
            assert painter.request("hello", timeout=15).type == "welcome"
        assert proc.proc is not None and proc.proc.poll() is None, proc.output()
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
