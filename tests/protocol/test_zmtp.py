"""The pure-Python ZMTP client against real pyzmq ROUTER sockets."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zmq_helpers import RouterPeer, echo  # noqa: E402

from sine_protocol.zmtp import ZMTPConnection, ZMTPError, parse_endpoint  # noqa: E402

SIZES = [0, 1, 255, 256, 65535, 65536, 70_000, 3 * 1024 * 1024]


def _payload(size: int, salt: int) -> bytes:
    """Non-repeating-looking bytes, so a shifted or truncated frame cannot compare equal."""
    pattern = bytes((i * 31 + salt) % 251 for i in range(251))
    return (pattern * (size // 251 + 1))[:size]


@pytest.fixture
def router():
    peer = RouterPeer(echo)
    yield peer
    peer.close()


def test_parse_endpoint() -> None:
    assert parse_endpoint("tcp://127.0.0.1:47633") == (socket.AF_INET, ("127.0.0.1", 47633))
    assert parse_endpoint("tcp://[::1]:5") == (socket.AF_INET6, ("::1", 5))
    if hasattr(socket, "AF_UNIX"):
        assert parse_endpoint("ipc:///run/x.sock") == (socket.AF_UNIX, "/run/x.sock")
        assert parse_endpoint("ipc://@abstract") == (socket.AF_UNIX, "\0abstract")
    for bad in ["127.0.0.1:5", "tcp://127.0.0.1", "tcp://:5", "udp://x:1", "tcp://h:port"]:
        with pytest.raises(ValueError):
            parse_endpoint(bad)


@pytest.mark.parametrize("size", SIZES)
def test_single_frame_both_directions(router: RouterPeer, size: int) -> None:
    data = _payload(size, size)
    with ZMTPConnection(router.endpoint, timeout=5) as conn:
        conn.send_multipart([data], timeout=5)
        assert conn.recv_multipart(timeout=5) == [data]
    assert router.received == [[data]]


def test_multipart_with_mixed_sizes(router: RouterPeer) -> None:
    frames = [_payload(size, i) for i, size in enumerate(SIZES)]
    with ZMTPConnection(router.endpoint, timeout=5) as conn:
        for _ in range(3):
            conn.send_multipart(frames, timeout=5)
        for _ in range(3):
            assert conn.recv_multipart(timeout=5) == frames
    assert router.received == [frames] * 3
    assert len(router.identities) == 1


def test_router_initiated_messages_and_timeout(router: RouterPeer) -> None:
    with ZMTPConnection(router.endpoint, timeout=5) as conn:
        start = time.monotonic()
        assert conn.recv_multipart(timeout=0.2) is None
        assert time.monotonic() - start >= 0.19
        assert conn.recv_multipart(timeout=0) is None
        conn.send_multipart([b"hi"])
        assert conn.recv_multipart(timeout=5) == [b"hi"]
        identity = router.identities[0]
        big = _payload(300_000, 7)
        for i in range(5):
            router.push(identity, [b"event", str(i).encode(), big])
        got = [conn.recv_multipart(timeout=5) for _ in range(5)]
        assert got == [[b"event", str(i).encode(), big] for i in range(5)]


def test_answers_heartbeat_pings() -> None:
    # The router pings every 50 ms and drops peers silent for 300 ms: a client that does not
    # answer PING with PONG would be disconnected before it sends again.
    peer = RouterPeer(echo, heartbeat_ivl=50, heartbeat_timeout=300, heartbeat_ttl=3000)
    try:
        with ZMTPConnection(peer.endpoint, timeout=5) as conn:
            conn.send_multipart([b"one"])
            assert conn.recv_multipart(timeout=5) == [b"one"]
            assert conn.recv_multipart(timeout=1.0) is None  # PINGs are handled while waiting
            conn.send_multipart([b"two"])
            assert conn.recv_multipart(timeout=5) == [b"two"]
        assert len(peer.identities) == 1  # never reconnected
    finally:
        peer.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ipc:// test runs on Linux")
def test_ipc_transport(tmp_path: Path) -> None:
    peer = RouterPeer(echo, endpoint=f"ipc://{tmp_path}/d.sock")
    try:
        frames = [b"", _payload(256, 1), _payload(100_000, 2)]
        with ZMTPConnection(peer.endpoint, timeout=5) as conn:
            conn.send_multipart(frames)
            assert conn.recv_multipart(timeout=5) == frames
    finally:
        peer.close()


def test_refused_and_closed_peers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        ZMTPConnection(f"tcp://127.0.0.1:{port}", timeout=2)
    peer = RouterPeer(echo)
    conn = ZMTPConnection(peer.endpoint, timeout=5)
    peer.close()
    with pytest.raises(ZMTPError):
        conn.recv_multipart(timeout=5)
    assert conn.closed
    with pytest.raises(ZMTPError):
        conn.send_multipart([b"x"])


def test_non_zeromq_peer_is_rejected() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        client, _ = server.accept()
        with client:
            client.sendall(b"HTTP/1.1 400 Bad Request\r\n" + b"x" * 100)
            time.sleep(0.5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(ZMTPError, match="not a ZeroMQ"):
            ZMTPConnection(f"tcp://127.0.0.1:{port}", timeout=3)
    finally:
        thread.join(3)
        server.close()


def test_silent_peer_times_out_in_handshake() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            ZMTPConnection(f"tcp://127.0.0.1:{server.getsockname()[1]}", timeout=0.3)
        assert time.monotonic() - start < 2
    finally:
        server.close()


def test_timeout_mid_message_loses_nothing() -> None:
    """A hand-driven ZMTP server trickles a multipart message; the client times out between pieces."""
    server = socket.create_server(("127.0.0.1", 0))
    body = _payload(1000, 3)
    # frame 1 (short, MORE) + frame 2 (long, last), split at awkward places (inside headers too).
    wire = bytes([0x01, 3]) + b"abc" + bytes([0x02]) + len(body).to_bytes(8, "big") + body
    pieces = [wire[:1], wire[1:7], wire[7:12], wire[12:500], wire[500:]]
    go = [threading.Event() for _ in pieces]

    def serve() -> None:
        peer, _ = server.accept()
        with peer:
            greeting = b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\0") + bytes(32)
            peer.sendall(greeting)
            ready = b"\x05READY" + b"\x0bSocket-Type" + (6).to_bytes(4, "big") + b"ROUTER"
            peer.sendall(bytes([0x04, len(ready)]) + ready)
            for event, piece in zip(go, pieces, strict=True):
                event.wait(5)
                peer.sendall(piece)
            time.sleep(0.5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with ZMTPConnection(f"tcp://127.0.0.1:{server.getsockname()[1]}", timeout=5) as conn:
            assert conn.peer_properties[b"socket-type"] == b"ROUTER"
            for event in go[:-1]:
                event.set()
                assert conn.recv_multipart(timeout=0.1) is None
            go[-1].set()
            assert conn.recv_multipart(timeout=5) == [b"abc", body]
    finally:
        thread.join(5)
        server.close()


def test_a_message_of_too_many_parts_or_bytes_is_refused_not_held(router: RouterPeer) -> None:
    """The pure client held every part of an incoming message, whatever their number and total: a peer sending
    one message of millions of empty parts (or of many big frames) grew a plug-in's memory without bound.
    Now a message over ``max_parts`` or ``max_message_bytes`` ends the connection in words."""
    with ZMTPConnection(router.endpoint, timeout=5, max_parts=9, max_message_bytes=1_000_000) as conn:
        conn.send_multipart([b"hi"])
        assert conn.recv_multipart(timeout=5) == [b"hi"]
        identity = router.identities[0]
        router.push(identity, [b"header", *[b""] * 8])  # 9 parts: taken
        assert len(conn.recv_multipart(timeout=5)) == 9
        router.push(identity, [b"header", *[b""] * 100_000])
        with pytest.raises(ZMTPError, match="more than 9 parts"):
            conn.recv_multipart(timeout=5)
        assert conn.closed
    with ZMTPConnection(router.endpoint, timeout=5, max_parts=9, max_message_bytes=1_000_000) as conn:
        conn.send_multipart([b"hi"])
        assert conn.recv_multipart(timeout=5) == [b"hi"]
        router.push(router.identities[-1], [b"header", _payload(600_000, 1), _payload(600_000, 2)])
        with pytest.raises(ZMTPError, match="over the limit of 1000000 bytes"):
            conn.recv_multipart(timeout=5)
