"""SineClient (pyzmq and pure transports) against a fake daemon on a real ROUTER socket."""

from __future__ import annotations

import socket
import struct
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_daemon import FakeDaemon  # noqa: E402
from hostile_server import HostileServer, announced_part, command, frame  # noqa: E402

from sine_protocol import DaemonUnavailable, Mask, ProtocolError, RGBAImage, SineClient  # noqa: E402
from sine_protocol.frames import make_preview, resize_nearest  # noqa: E402
from sine_protocol.messages import Limits  # noqa: E402

TOKEN = "t" * 64
TRANSPORTS = ["pyzmq", "pure"]


def _image(width: int, height: int) -> RGBAImage:
    return RGBAImage(width, height, bytes((i * 13) % 256 for i in range(width * height * 4)))


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def daemon():
    fake = FakeDaemon(TOKEN)
    yield fake
    fake.close()


@pytest.fixture(params=TRANSPORTS)
def client(request, daemon: FakeDaemon):
    c = SineClient(daemon.endpoint, TOKEN, transport=request.param, timeout=5)
    assert c.transport_name == request.param
    yield c
    c.close()


def test_hello_ping_status(client: SineClient, daemon: FakeDaemon) -> None:
    welcome = client.hello()
    assert welcome["type"] == "welcome" and welcome["protocol_version"] == 1 and welcome["models"] == ["demo"]
    assert client.ping() is True
    assert client.status()["queue"] == []
    assert [r.type for r in daemon.requests] == ["hello", "ping", "status"]
    ids = [r.id for r in daemon.requests]
    assert len(set(ids)) == 3


def test_edit_events_until_result(client: SineClient, daemon: FakeDaemon) -> None:
    image = _image(40, 30)
    mask = Mask(40, 30, bytes([255]) * 600 + bytes(600))
    rid = client.submit_edit(image, "make it green", subject="circle", seed=9, sampling={"steps": 2},
                             finetune={"method": "lora", "steps": 2, "patch": False}, output_size=(20, 15), mask=mask)
    events = list(client.events(rid, timeout=5))
    assert [e.type for e in events] == ["accepted", "progress", "result"]
    assert all(e.id == rid for e in events) and events[0].job == "job-1"
    assert events[1].preview == make_preview(image, 16)
    assert events[2].image == resize_nearest(image, 20, 15) and events[2].header["seed"] == 9
    sent = daemon.requests[-1].edit
    assert sent is not None and sent.mask == mask and sent.image == image
    assert (sent.subject, sent.sampling, sent.output) == ("circle", {"steps": 2}, (20, 15))
    assert list(client.events(rid, timeout=0.1)) == []  # finished requests yield nothing more


@pytest.mark.parametrize("compress", [True, False])
def test_large_image_round_trip(client: SineClient, compress: bool) -> None:
    image = _image(512, 384)  # 768 KiB, long frames
    final = client.wait_result(client.submit_edit(image, "x", compress=compress), timeout=10)
    assert final.image == image


def test_interleaved_requests_are_buffered_by_id(client: SineClient) -> None:
    first = client.submit_edit(_image(8, 8), "a", output_size=(8, 8))
    second = client.submit_edit(_image(8, 8), "b", output_size=(16, 16))
    assert client.wait_result(second, timeout=5).image.size == (16, 16)
    assert client.ping()  # sync calls do not swallow buffered events
    assert [e.type for e in client.events(first, timeout=5)] == ["accepted", "progress", "result"]


def test_poll_event_is_non_blocking(client: SineClient) -> None:
    start = time.monotonic()
    assert client.poll_event(0) is None
    assert client.poll_event(0.2) is None
    assert 0.15 < time.monotonic() - start < 2
    rid = client.submit_edit(_image(8, 8), "a")
    seen = []
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        event = client.poll_event(0.05)
        if event is not None:
            seen.append(event)
    assert [(e.id, e.type) for e in seen] == [(rid, "accepted"), (rid, "progress"), (rid, "result")]


def test_cancel_by_request_id_or_job(client: SineClient, daemon: FakeDaemon) -> None:
    rid = client.submit_edit(_image(8, 8), "wait")
    events = client.events(rid, timeout=5)
    accepted = next(events)
    assert accepted.type == "accepted" and next(events).type == "progress"
    client.cancel(rid)  # the client maps the request id to the job id
    final = next(events)
    assert (final.type, final.job) == ("cancelled", accepted.job)
    assert daemon.requests[-1].type == "cancel" and daemon.requests[-1].job == accepted.job
    rid2 = client.submit_edit(_image(8, 8), "wait")
    job2 = next(client.events(rid2, timeout=5)).job
    client.cancel(job2)
    assert [e.type for e in client.events(rid2, timeout=5)][-1] == "cancelled"


def test_error_replies(client: SineClient) -> None:
    bad = client.submit_edit(_image(8, 8), "x", sampling={"steps": 0})
    events = list(client.events(bad, timeout=5))
    assert [e.type for e in events] == ["error"] and events[0].header["code"] == "bad_request"
    with pytest.raises(ProtocolError) as info:
        client.wait_result(client.submit_edit(_image(8, 8), "x", style="sketch"), timeout=5)
    assert info.value.code == "bad_request" and "style" in info.value.message


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_token(daemon: FakeDaemon, transport: str) -> None:
    with SineClient(daemon.endpoint, "nope", transport=transport, timeout=5) as c:
        with pytest.raises(ProtocolError) as info:
            c.hello()
        assert info.value.code == "unauthorized"
        assert c.ping() is True  # the daemon is up, even if it refuses us


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_token_is_read_from_the_config_dir(daemon: FakeDaemon, transport: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINE_CONFIG_DIR", str(tmp_path))
    with SineClient(daemon.endpoint, transport=transport, timeout=5) as c:
        with pytest.raises(ProtocolError):
            c.hello()  # no token file yet
        (tmp_path / "token").write_text(TOKEN + "\n")
        assert c.hello()["type"] == "welcome"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unreachable_daemon(transport: str) -> None:
    endpoint = _free_endpoint()
    with SineClient(endpoint, TOKEN, transport=transport, timeout=0.5) as c:
        start = time.monotonic()
        assert c.ping(timeout=0.3) is False
        with pytest.raises(DaemonUnavailable) as info:
            c.hello()
        assert endpoint in str(info.value) and "sine daemon" in str(info.value)
        with pytest.raises(DaemonUnavailable):
            c.submit_edit(_image(8, 8), "x")
        assert time.monotonic() - start < 5


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_silent_daemon_times_out(daemon: FakeDaemon, transport: str) -> None:
    with SineClient(daemon.endpoint, TOKEN, transport=transport, timeout=5) as c:
        rid = c.submit_edit(_image(8, 8), "silent")
        start = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="no event"):
            next(c.events(rid, timeout=0.3))
        assert time.monotonic() - start < 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_silence_ends_a_long_wait_for_the_next_event(daemon: FakeDaemon, transport: str) -> None:
    """A daemon killed and restarted mid-job (pyzmq reconnects silently; the new daemon knows nothing of
    the job): waiting for the next event with a long timeout must end at the silence timeout, not the
    wait's own (with timeout=None it never ended)."""
    with SineClient(daemon.endpoint, TOKEN, transport=transport, timeout=5, silence_timeout=0.5) as c:
        rid = c.submit_edit(_image(8, 8), "silent")
        start = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="sent nothing"):
            next(c.events(rid, timeout=10))
        assert time.monotonic() - start < 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_daemon_restart(transport: str) -> None:
    first = FakeDaemon(TOKEN)
    endpoint = first.endpoint
    with SineClient(endpoint, TOKEN, transport=transport, timeout=3) as c:
        assert c.ping()
        first.close()
        assert c.ping(timeout=0.3) is False
        second = FakeDaemon(TOKEN, endpoint)
        try:
            deadline = time.monotonic() + 5
            while not c.ping(timeout=0.5) and time.monotonic() < deadline:
                pass
            assert c.hello()["type"] == "welcome"
        finally:
            second.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_daemon_restarted_between_two_requests_answers_the_next_one(transport: str) -> None:
    """The daemon was stopped and started again while the client sent nothing: the first request after
    that goes to the new daemon (the pure transport used to send it into the dead connection: False)."""
    first = FakeDaemon(TOKEN)
    endpoint = first.endpoint
    with SineClient(endpoint, TOKEN, transport=transport, timeout=3) as c:
        assert c.ping()
        first.close()
        second = FakeDaemon(TOKEN, endpoint)
        try:
            time.sleep(0.2)  # the old connection's close has reached the client
            assert c.ping(timeout=2) is True
            assert c.hello()["type"] == "welcome"
        finally:
            second.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ipc:// test runs on Linux")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ipc_endpoint(transport: str, tmp_path: Path) -> None:
    fake = FakeDaemon(TOKEN, f"ipc://{tmp_path}/daemon.sock")
    try:
        with SineClient(fake.endpoint, TOKEN, transport=transport, timeout=5) as c:
            image = _image(100, 70)
            assert c.hello()["type"] == "welcome"
            assert c.wait_result(c.submit_edit(image, "x", compress=False), timeout=5).image == image
    finally:
        fake.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_oversized_message_is_dropped_by_the_daemon_not_hung_on(transport: str) -> None:
    # ZMQ_MAXMSGSIZE makes libzmq drop the connection of a peer that sends a bigger message.
    fake = FakeDaemon(TOKEN, maxmsgsize=4096)
    try:
        with SineClient(fake.endpoint, TOKEN, transport=transport, timeout=3) as c:
            assert c.ping()
            rid = c.submit_edit(_image(64, 64), "x", compress=False)  # 16 KiB of pixels
            start = time.monotonic()
            with pytest.raises(DaemonUnavailable):
                list(c.events(rid, timeout=1.0))
            assert time.monotonic() - start < 3
            deadline = time.monotonic() + 5
            while not c.ping(timeout=0.5) and time.monotonic() < deadline:
                pass  # the client reconnects by itself
            assert c.hello()["type"] == "welcome"
    finally:
        fake.close()


def test_request_ids_are_unique_across_clients(daemon: FakeDaemon) -> None:
    clients = [SineClient(daemon.endpoint, TOKEN, transport="pure", timeout=5) for _ in range(3)]
    try:
        for c in clients:
            for _ in range(5):
                assert c.ping()
        ids = [r.id for r in daemon.requests]
        assert len(ids) == 15 and len(set(ids)) == 15
    finally:
        for c in clients:
            c.close()


def test_bad_transport_name() -> None:
    with pytest.raises(ValueError):
        SineClient("tcp://127.0.0.1:1", TOKEN, transport="carrier-pigeon")


@pytest.mark.parametrize("transport", ["pyzmq", "pure"])
@pytest.mark.parametrize("endpoint", ["garbage", "ipc://", "tcp://exa mple:1", "tcp://127.0.0.1:70000"])
def test_an_endpoint_no_socket_can_take_is_daemon_unavailable(transport: str, endpoint: str) -> None:
    """SINE_ENDPOINT typed wrong reached the plug-ins as zmq.error.ZMQError (pyzmq: "Invalid argument") or
    OverflowError (pure: port 70000), past their DaemonUnavailable handling; now it is one."""
    with SineClient(endpoint, "t" * 43, transport=transport, timeout=2) as client:
        assert client.ping(timeout=0.5) is False
        with pytest.raises(DaemonUnavailable, match="not reachable"):
            client.hello()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_final_reply_over_the_clients_bound_ends_the_request_in_words(daemon: FakeDaemon, transport: str) -> None:
    """A `result` the client cannot take (over Limits.max_reply_bytes) must not be dropped silently, leaving
    the edit waiting until the silence timeout: it becomes a `bad_reply` error for that request."""
    client = SineClient(daemon.endpoint, TOKEN, transport=transport, timeout=5, limits=Limits(max_reply_bytes=1000))
    try:
        rid = client.submit_edit(_image(40, 30), "make it green", output_size=(20, 15))  # result: 1200 bytes
        start = time.monotonic()
        events = list(client.events(rid, timeout=5))
        assert time.monotonic() - start < 2
        assert [e.type for e in events] == ["accepted", "progress", "error"]
        assert events[-1].header["code"] == "bad_reply" and "1200 bytes" in events[-1].header["message"]
    finally:
        client.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_reply_of_endless_parts_ends_the_request_in_words(daemon: FakeDaemon, transport: str) -> None:
    """Both transports held every part of a reply whatever their number (a faulty peer's 100,000 empty parts,
    or millions) before `decode_reply` could refuse it; the pyzmq one then dropped it as an unroutable progress
    event and the edit waited for the silence timeout. Past the parts a reply can have (Limits.max_reply_message)
    the connection is now dropped and the request ends in words."""
    parts, size = Limits().max_reply_message()
    assert parts == 9 and Limits().max_reply_bytes < size < Limits().max_reply_bytes + 20 * 2**20
    client = SineClient(daemon.endpoint, TOKEN, transport=transport, timeout=5)
    try:
        rid = client.submit_edit(_image(16, 16), "endless")
        with pytest.raises(DaemonUnavailable, match="more than 9 parts"):
            list(client.events(rid, timeout=5))
        assert client.hello()["type"] == "welcome"  # a new connection serves the next request
    finally:
        client.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_part_announced_past_any_reply_ends_the_request_at_once(transport: str) -> None:
    """A peer at the daemon's endpoint announces one part of 1 TiB and sends none of it: the pyzmq transport
    (no ZMQ_MAXMSGSIZE) waited for the terabyte, then for the silence timeout; now libzmq drops the
    connection at the frame's header and the request ends in words at once."""
    server = HostileServer(frame(b'{"v": 1}', more=True) + announced_part(2**40))
    client = SineClient(server.endpoint, TOKEN, transport=transport, timeout=5)
    try:
        rid = client.submit_edit(_image(16, 16), "x")
        start = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="connection|over the limit"):
            list(client.events(rid, timeout=10))
        assert server.sending.is_set() and time.monotonic() - start < 3
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_reply_over_the_bytes_a_reply_can_have_is_refused(transport: str) -> None:
    """Three parts of 8 MiB, each under what one part may be, together over the client's bound: the pyzmq
    transport took the message whole and dropped it unread; now it ends the request naming the bound."""
    limits = Limits(max_reply_bytes=1000)
    bound = limits.max_reply_message()[1]
    big = b"\0" * (8 * 2**20)
    server = HostileServer(frame(b'{"v": 1}', more=True) + frame(big, more=True) * 2 + frame(big))
    client = SineClient(server.endpoint, TOKEN, transport=transport, timeout=5, limits=limits)
    try:
        rid = client.submit_edit(_image(16, 16), "x")
        start = time.monotonic()
        with pytest.raises(DaemonUnavailable, match=f"over the limit of {bound} bytes"):
            list(client.events(rid, timeout=10))
        assert time.monotonic() - start < 3
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("name", [b"PING", b"NOOP"])
def test_a_peer_streaming_commands_never_holds_poll_event_past_its_timeout(name: bytes) -> None:
    """poll_event never blocks longer than asked (a host UI polls it from a timer): a peer streaming ZMTP
    commands without end (PINGs whose PONGs it never reads, or commands nobody knows) held the pure transport's
    receive for ever, answering PINGs until its send buffer filled and then waiting on that."""
    import threading

    server = HostileServer(b"", forever=command(name, b"\0\0") * 4096)
    client = SineClient(server.endpoint, TOKEN, transport="pure", timeout=5)
    outcome: list[object] = []

    def poll() -> None:
        try:
            outcome.append(client.poll_event(timeout=0.2))
        except DaemonUnavailable as exc:
            outcome.append(exc)

    try:
        client.submit_edit(_image(16, 16), "x")
        assert server.sending.wait(5)
        polling = threading.Thread(target=poll, daemon=True)
        start = time.monotonic()
        polling.start()
        polling.join(5)
        assert not polling.is_alive() and time.monotonic() - start < 2, "poll_event(timeout=0.2) did not return"
        assert outcome[0] is None or isinstance(outcome[0], DaemonUnavailable)
    finally:
        server.close()
        client.close()


def test_a_command_bigger_than_any_zmtp_command_is_refused_while_it_arrives() -> None:
    """ZMTP commands (READY, PING, ERROR) are a few hundred bytes; the pure transport took one of up to 2 GiB
    whole into memory (then ignored it), so a peer could make a plug-in hold gigabytes per command. (libzmq, under
    the pyzmq transport, bounds a command as any part: by the largest reply part.)"""
    size = 64 * 2**20
    server = HostileServer(struct.pack(">BQ", 0x06, size) + b"\0" * size)
    client = SineClient(server.endpoint, TOKEN, transport="pure", timeout=5)
    try:
        rid = client.submit_edit(_image(16, 16), "x")
        start = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="command of 67108864 bytes"):
            list(client.events(rid, timeout=10))
        assert time.monotonic() - start < 3
    finally:
        client.close()
        server.close()
