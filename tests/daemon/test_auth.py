"""Connection-level authentication and connection hygiene against a real daemon process.

A peer without the token never gets a pipe (so it can neither pick a vanished client's identity
and receive its result, nor hold a connection); raw non-ZMTP bytes are closed; the open files
limit is raised; oversized frames are refused while they arrive; the log is private.
"""

from __future__ import annotations

import json
import os
import random
import socket
import stat
import tempfile
import time
from pathlib import Path

import pytest
import zmq
from daemon_helpers import FAST, Client, DaemonProcess, make_image

pytestmark = pytest.mark.slow

SMALL_PIXELS = 512 * 512  # frame cap ~1 MB, so an oversized frame is cheap to send


@pytest.fixture(scope="module")
def daemon(tiny_model: Path):
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    # Start as the issue found it: 256 open files allowed (soft), the hard limit above the 1,100 probe.
    proc = DaemonProcess(root, tiny_model, extra=[*FAST, "--max-input-pixels", str(SMALL_PIXELS)])
    proc.start(nofile=(256, 4096))
    yield proc
    assert proc.stop() == 0, proc.output()


def _drain(sock: zmq.Socket, seconds: float) -> list[list[bytes]]:
    got = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000)):
            got.append(sock.recv_multipart())
    return got


def test_peer_without_token_never_receives_a_victims_events(daemon: DaemonProcess):
    identity = b"victim-identity"
    victim = Client(daemon.endpoint, daemon.token, identity=identity)
    rid = victim.submit_edit(make_image(32, 32, seed=21), ft_steps=150, sample_steps=3)
    assert victim.wait_for(rid, 30).type == "accepted"
    victim.close()  # the victim vanishes mid-job
    thieves = []
    for password in (None, "0" * 64):  # no credentials (NULL), then a wrong token
        thief = zmq.Context.instance().socket(zmq.DEALER)
        thief.setsockopt(zmq.LINGER, 0)
        thief.setsockopt(zmq.ROUTING_ID, identity)
        if password:
            thief.setsockopt(zmq.PLAIN_USERNAME, b"sine")
            thief.setsockopt(zmq.PLAIN_PASSWORD, password.encode())
        thief.connect(daemon.endpoint)
        if thief.poll(500, zmq.POLLOUT):
            thief.send_multipart([b"{}"], zmq.NOBLOCK)
        thieves.append(thief)
    try:
        for thief in thieves:
            assert _drain(thief, 3.0) == []  # not one of the victim's events
    finally:
        for thief in thieves:
            thief.close(0)
    with Client(daemon.endpoint, daemon.token) as client:  # the daemon goes on serving
        assert client.request("ping").type == "pong"


def _junk(kind: str, rng: random.Random) -> bytes:
    if kind == "http":
        return b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))


def _closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_raw_bytes_are_closed_and_real_clients_still_get_in(daemon: DaemonProcess):
    rng = random.Random(17)
    port = daemon.port
    junk: list[socket.socket] = []
    try:
        for n in range(1100):  # more than the 1024 descriptors that once locked everyone out
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(_junk("http" if n % 2 else "random", rng))
            junk.append(sock)
        with Client(daemon.endpoint, daemon.token, "pure") as client:
            assert client.request("hello", timeout=15).type == "welcome"
        closed = sum(_closed_by_peer(sock, 10.0) for sock in junk)
        assert closed == len(junk)
        silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(50)]
        junk += silent
        start = time.monotonic()
        assert all(_closed_by_peer(sock, 15.0) for sock in silent)  # the handshake timeout closes them
        assert time.monotonic() - start < 12
    finally:
        for sock in junk:
            sock.close()
    with Client(daemon.endpoint, daemon.token) as client:
        assert client.request("ping").type == "pong"


def test_open_files_limit_is_raised_to_the_hard_limit(daemon: DaemonProcess):
    assert daemon.proc is not None
    limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard == "4096", line


def test_oversized_frame_is_refused_while_it_arrives(daemon: DaemonProcess):
    with Client(daemon.endpoint, daemon.token) as client:
        header = {"v": 1, "type": "edit", "id": "big", "token": daemon.token, "prompt": "x",
                  "blobs": [{"role": "image", "format": "rgba8", "width": 1024, "height": 1024,
                             "compression": "none"}]}
        client.send([json.dumps(header).encode(), bytes(1024 * 1024 * 4)])  # 4 MB > the ~1 MB cap
        with pytest.raises(TimeoutError):
            client.recv(3.0)  # dropped by libzmq, never parsed or answered
    with Client(daemon.endpoint, daemon.token) as client:
        assert client.request("ping").type == "pong"


def test_state_dir_and_log_are_private_and_name_no_identity(daemon: DaemonProcess):
    identity = b"SECRET-IDENTITY-42"
    with Client(daemon.endpoint, daemon.token, identity=identity) as client:
        client.request("ping")
        client.request("cancel", job="nope")  # logged as a rejected request
    state = Path(daemon.env["SINE_STATE_DIR"])
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    log = state / "daemon.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert "rejected a request from client-" in text
    assert identity.decode() not in text and identity.hex() not in text
    assert os.stat(Path(daemon.env["SINE_CONFIG_DIR"]) / "token").st_mode & 0o077 == 0
