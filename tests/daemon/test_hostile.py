"""Hostile and clumsy requests found by a fresh probe, each against a real daemon process over a real socket."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from daemon_helpers import Client, DaemonProcess, make_image

from sine_protocol.messages import encode_message, image_blob, make_request

pytestmark = pytest.mark.slow

FAST = ["--progress-interval", "0", "--preview-every", "1000"]


@pytest.fixture(scope="module")
def daemon(tiny_model: Path):
    proc = DaemonProcess(Path(tempfile.mkdtemp(prefix="sd-")), tiny_model, extra=FAST).start()
    yield proc
    assert proc.stop() == 0, proc.output()


def _still_answers(daemon: DaemonProcess) -> None:
    with Client(daemon.endpoint, daemon.token) as client:
        assert client.request("ping", timeout=10).type == "pong"


@pytest.mark.parametrize("token", ["right", "wrong"])
def test_a_lone_surrogate_in_the_id_is_answered_and_the_daemon_lives(daemon: DaemonProcess, token: str):
    """`"id": "\\ud800"` is valid JSON but cannot be sent back as UTF-8: the error reply once killed the daemon."""
    sent = daemon.token if token == "right" else "not-the-token"
    with Client(daemon.endpoint, daemon.token) as client:
        client.send([json.dumps({"v": 1, "type": "ping", "id": "\ud800", "token": sent}).encode()])
        reply = client.recv(10)
        assert reply.type == "error" and reply.id == "", reply.header
        assert reply.header["code"] == ("bad_request" if token == "right" else "unauthorized")
        if token == "right":
            assert "id" in reply.header["message"]
    _still_answers(daemon)


@pytest.mark.parametrize("field", ["v", "seed", "count", "width"])
def test_huge_numbers_are_not_echoed_back_whole(daemon: DaemonProcess, field: str):
    huge = 10**4000  # Python's JSON reads up to 4300 digits
    header = make_request("edit", f"big-{field}", daemon.token, prompt="a cat")
    desc, payload = image_blob(make_image(16, 16))
    if field == "width":
        desc = {**desc, "width": huge}
    else:
        header[field] = huge
    with Client(daemon.endpoint, daemon.token) as client:
        client.send(encode_message(header, [(desc, payload)]))
        reply = client.wait_for(f"big-{field}", 10)
    assert reply.type == "error", reply.header
    assert len(reply.header["message"]) < 200, reply.header["message"][:300]
