"""A client never sends its token to a program of another user that holds the daemon's loopback port
(on a shared machine anyone may listen on 127.0.0.1:47633 while the painter's daemon is down).

The impostor is a real process of another user (nobody) that speaks just enough ZMTP to be sent a
PLAIN HELLO, which carries the token in clear; both transports are tried against it."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

import pytest

from sine_protocol import DaemonUnavailable, SineClient
from sine_protocol.listener import loopback_owner

pytestmark = pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0,
                                reason="needs Linux's /proc/net/tcp and root, to listen as another user")
TOKEN = "q" * 43
NOBODY = 65534



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Impostor:
    """A forked child, turned into user nobody, listening on 127.0.0.1:`port`: it accepts one
    connection, greets as a ZMTP 3.0 PLAIN server and reports all that comes in 1.5 s."""

    def __init__(self, port: int) -> None:
        read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never back into pytest
            try:
                os.close(read)
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                self._serve(port, write)
            finally:
                os._exit(0)
        os.close(write)
        self._out = os.fdopen(read, "rb")
        assert self._out.readline() == b"listening\n"

    @staticmethod
    def _serve(port: int, out: int) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port a daemon just left, as any program may
        srv.bind(("127.0.0.1", port))
        srv.listen()
        os.write(out, b"listening\n")
        conn, _ = srv.accept()
        conn.sendall(b"\xff" + bytes(8) + b"\x7f" + bytes([3, 0]) + b"PLAIN".ljust(20, b"\0") + b"\x01" + bytes(31))
        conn.settimeout(0.2)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            os.write(out, chunk)

    def received(self, timeout: float = 2.5) -> bytes:
        """All a connection delivered (it ends 1.5 s after one came; with none, after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            time.sleep(0.05)
        self.stop()
        return self._out.read()

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.mark.parametrize("transport", ["pure", "pyzmq"])
def test_the_token_is_not_sent_to_another_users_listener(transport: str) -> None:
    port = _free_port()
    impostor = Impostor(port)
    try:
        client = SineClient(endpoint=f"tcp://127.0.0.1:{port}", token=TOKEN, transport=transport, timeout=2)
        try:
            with pytest.raises(DaemonUnavailable, match="another user"):
                client.status()
        finally:
            client.close()
    finally:
        received = impostor.received()
    assert TOKEN.encode() not in received


def test_the_pyzmq_client_never_reconnects_by_itself_to_another_users_listener() -> None:
    """The painter's daemon stopped and another user took its port: libzmq reconnected the pyzmq transport in the
    background (every 100 ms) and sent that program the PLAIN HELLO with the token, unchecked. The transport now
    never reconnects by itself: the next request connects anew, after the listener's owner is checked."""
    sys.path.insert(0, os.path.dirname(__file__))
    from fake_daemon import FakeDaemon

    port = _free_port()
    daemon = FakeDaemon(TOKEN, f"tcp://127.0.0.1:{port}")
    client = SineClient(endpoint=f"tcp://127.0.0.1:{port}", token=TOKEN, transport="pyzmq", timeout=2)
    impostor = None
    try:
        assert client.ping()
        daemon.close()
        impostor = Impostor(port)
        time.sleep(1.0)  # ten of libzmq's reconnect intervals
        with pytest.raises(DaemonUnavailable):
            client.status()
    finally:
        client.close()
        received = impostor.received() if impostor else b""
    assert TOKEN.encode() not in received


def test_a_users_client_trusts_roots_daemon() -> None:
    # the real-host tests' setup: the daemon runs as root, GIMP and Krita as a user in a chroot
    from sine_protocol.listener import check_listener

    with socket.socket() as daemon:
        daemon.bind(("127.0.0.1", 0))
        daemon.listen()
        pid = os.fork()
        if pid == 0:
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                check_listener(f"tcp://127.0.0.1:{daemon.getsockname()[1]}")
                os._exit(0)
            except BaseException:
                os._exit(1)
        assert os.waitpid(pid, 0)[1] == 0


def test_the_owner_of_a_loopback_port_is_read() -> None:
    port = _free_port()
    impostor = Impostor(port)
    try:
        assert loopback_owner(f"tcp://127.0.0.1:{port}") == NOBODY
        assert loopback_owner(f"tcp://localhost:{port}") == NOBODY
    finally:
        impostor.stop()
    with socket.socket() as own:
        own.bind(("127.0.0.1", 0))
        own.listen()
        assert loopback_owner(f"tcp://127.0.0.1:{own.getsockname()[1]}") == os.geteuid()
    assert loopback_owner(f"tcp://127.0.0.1:{_free_port()}") is None  # nobody listens
    assert loopback_owner("tcp://192.0.2.1:47633") is None  # not this machine: no answer from /proc


def test_doctor_names_another_users_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    from sine.commands.doctor import check_daemon

    port = _free_port()
    monkeypatch.setenv("SINE_ENDPOINT", f"tcp://127.0.0.1:{port}")
    impostor = Impostor(port)
    try:
        check = check_daemon(timeout=1.0)
    finally:
        received = impostor.received(timeout=0.5)
    assert "another user" in check.detail and str(port) in check.detail, check
    assert TOKEN.encode() not in received
