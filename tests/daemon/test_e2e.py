"""End to end against a real `sine daemon` subprocess with a tiny real diffusers model.

One daemon serves this module: edits over pyzmq, over the pure-Python ZMTP client and over ipc://,
the cache hit on the second edit, mask compositing, status, and the malformed corpus.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from daemon_helpers import Client, DaemonProcess, make_image

from sine_protocol.frames import Mask

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
from malformed_corpus import CASES  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def daemon(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="sd-"))  # short: the ipc socket lives in here
    proc = DaemonProcess(root, tiny_model).start()
    yield proc
    assert proc.stop() == 0, proc.output()


def _phases(events) -> list[str]:
    return [e.header["phase"] for e in events if e.type == "progress"]


@pytest.mark.parametrize("transport", ["pyzmq", "pure"])
def test_edit_then_cache_hit(daemon: DaemonProcess, transport: str):
    image = make_image(32, 32, seed={"pyzmq": 1, "pure": 2}[transport])
    with Client(daemon.endpoint, daemon.token, transport) as client:
        rid = client.submit_edit(image, output=(36, 28))
        events = client.events_until_final(rid)
        assert events[0].type == "accepted" and events[0].job
        progress = [e for e in events if e.type == "progress"]
        assert len(progress) >= 3
        assert {"finetune", "sample"} <= set(_phases(events))
        assert all(e.job == events[0].job for e in events)
        result = events[-1]
        assert result.type == "result", result.header
        assert result.header["cache_hit"] is False
        assert (result.image.width, result.image.height) == (36, 28)
        assert len(result.image.data) == 36 * 28 * 4
        assert any(e.preview is not None for e in progress)

        rid = client.submit_edit(image, prompt="a blue square", seed=5)
        events = client.events_until_final(rid)
        result = events[-1]
        assert result.type == "result", result.header
        assert result.header["cache_hit"] is True
        assert "finetune" not in _phases(events)
        assert result.header["timings"]["finetune_s"] == 0
        assert result.image.size == image.size and result.header["seed"] == 5


def test_a_cut_prompt_reaches_the_client_as_a_note(daemon: DaemonProcess):
    """A prompt longer than the text encoder reads: the job's first progress from the worker and its
    result carry a note naming the ignored words; a prompt that fits carries none."""
    prompt = " ".join(f"word{i}" for i in range(50))  # ~100 tokens; the tiny model reads 30
    image = make_image(32, 32, seed=41)
    with Client(daemon.endpoint, daemon.token) as client:
        events = client.events_until_final(client.submit_edit(image, prompt, ft_steps=1, sample_steps=1))
        result, progress = events[-1], [e for e in events if e.type == "progress"]
        assert result.type == "result", result.header
        assert len(result.notes) == 1 and result.notes[0].startswith("the prompt's last"), result.notes
        assert "word49" in result.notes[0] and "reads 30 tokens" in result.notes[0]
        noted = [e for e in progress if e.notes]
        assert noted and noted[0].header["phase"] == "finetune" and noted[0].notes == result.notes
        assert daemon.output().count(result.notes[0]) == 1  # the log says it too, in the same words
        events = client.events_until_final(client.submit_edit(image, "a red square", ft_steps=1, sample_steps=1))
        assert events[-1].type == "result" and events[-1].header["cache_hit"] is True
        assert all(e.notes == [] and "notes" not in e.header for e in events)


def test_ipc_endpoint(daemon: DaemonProcess):
    sock = daemon.root / "run" / "daemon.sock"
    assert sock.exists()
    assert (sock.parent.stat().st_mode & 0o777) == 0o700
    for transport in ("pyzmq", "pure"):
        with Client(f"ipc://{sock}", daemon.token, transport) as client:
            assert client.request("ping").type == "pong"


def test_mask_keeps_outside_pixels_bit_identical(daemon: DaemonProcess):
    image = make_image(32, 32, seed=3)
    mask = bytearray(32 * 32)
    for y in range(8, 24):
        mask[y * 32 + 8:y * 32 + 24] = b"\xff" * 16
    with Client(daemon.endpoint, daemon.token) as client:
        rid = client.submit_edit(image, mask=Mask(32, 32, bytes(mask)))
        result = client.events_until_final(rid)[-1]
    assert result.type == "result", result.header
    out, src = result.image.data, image.data
    outside = [i for i in range(32 * 32) if mask[i] == 0]
    assert all(out[4 * i:4 * i + 4] == src[4 * i:4 * i + 4] for i in outside)
    inside_changed = sum(out[4 * i:4 * i + 4] != src[4 * i:4 * i + 4] for i in range(32 * 32) if mask[i])
    assert inside_changed > 100  # the edit did land inside the selection


def test_hello_status_and_token(daemon: DaemonProcess):
    with Client(daemon.endpoint, daemon.token) as client:
        welcome = client.request("hello")
        assert welcome.type == "welcome" and welcome.header["protocol_version"] == 1
        assert welcome.header["device"] == "CPU"
        status = client.request("status")
        assert status.type == "status"
        assert status.header["cache"]["entries"] >= 1 and status.header["cache"]["bytes"] > 0
        assert isinstance(status.header["queue"], list) and isinstance(status.header["jobs"], dict)
    with Client(daemon.endpoint, "0" * 64) as intruder:  # wrong token: the handshake fails, no pipe at all
        with pytest.raises(TimeoutError):
            intruder.request("status", timeout=2)
    # Authenticated connection, wrong token in the message: the per-message check still answers clearly.
    with Client(daemon.endpoint, "0" * 64, password=daemon.token) as confused:
        reply = confused.request("status")
        assert reply.type == "error" and reply.header["code"] == "unauthorized"
        assert "queue" not in reply.header


def test_malformed_corpus_then_normal_edit(daemon: DaemonProcess):
    assert len(CASES) >= 25
    with Client(daemon.endpoint, daemon.token, "pyzmq") as client:
        wrong = []
        for name, build, code in CASES:
            client.send(build(daemon.token))
            reply = client.recv(timeout=10)
            if reply.type != "error" or reply.header.get("code") != code:
                wrong.append((name, code, reply.type, reply.header.get("code"), reply.header.get("message")))
            elif not isinstance(reply.header.get("message"), str) or not reply.header["message"]:
                wrong.append((name, "no message"))
        assert not wrong, wrong
        assert client.request("ping").type == "pong"
        rid = client.submit_edit(make_image(32, 32, seed=4))
        assert client.events_until_final(rid)[-1].type == "result"


@pytest.mark.parametrize("transport", ["pyzmq", "pure"])
def test_sine_client_api(daemon: DaemonProcess, transport: str):
    """The plugins' client (sine_protocol.SineClient) against the real daemon, both transports."""
    from sine_protocol.client import SineClient

    image = make_image(40, 24, seed={"pyzmq": 5, "pure": 6}[transport])
    with SineClient(daemon.endpoint, daemon.token, transport=transport, timeout=10) as client:
        assert client.transport_name == transport
        assert client.ping() is True
        assert client.hello()["protocol_version"] == 1
        rid = client.submit_edit(image, "a red square", subject="square", seed=3, sampling={"steps": 2},
                                 finetune={"method": "lora", "steps": 2, "patch": False}, output_size=(48, 32))
        events = list(client.events(rid, timeout=120))
        assert [e.type for e in events][0] == "accepted"
        assert sum(e.type == "progress" for e in events) >= 2
        final = events[-1]
        assert final.type == "result", final.header
        assert (final.image.width, final.image.height) == (48, 32)
        # cancel through the client: the edit ends with `cancelled`
        rid = client.submit_edit(image, "a blue square", subject="square", sampling={"steps": 400},
                                 finetune={"method": "lora", "steps": 2, "patch": False})
        for event in client.events(rid, timeout=60):
            if event.type == "progress" and event.header["phase"] == "sample":
                client.cancel(rid)
                break
        assert list(client.events(rid, timeout=30))[-1].type == "cancelled"
        assert client.status()["queue"] == []


def _load_bench():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "bench" / "load_test.py"
    spec = importlib.util.spec_from_file_location("sine_bench_load_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_load_8_clients_x_3_jobs(daemon: DaemonProcess, capsys):
    bench = _load_bench()
    # 6 in flight per client against a limit of 4: some submissions are answered busy and retried.
    summary = bench.run_load(daemon.endpoint, daemon.token, clients=8, jobs=3, window=6, images=4, size=32,
                             ft_steps=2, sample_steps=2, timeout=600)
    with capsys.disabled():
        print()
        bench.print_table(summary)
    records = summary["records"]
    assert len(records) == 24
    assert all(r["accepted"] == 1 for r in records), [r for r in records if r["accepted"] != 1]
    assert all(len(r["finals"]) == 1 for r in records), [r for r in records if len(r["finals"]) != 1]
    assert summary["outcomes"] == {"result": 24} and summary["lost"] == summary["duplicated"] == 0
    assert summary["submissions_sent"] == 24 + summary["busy_retries"]
    assert all(r["size_ok"] for r in records)
    assert summary["jobs_per_s"] > 0 and summary["latency_p95_s"] >= summary["latency_p50_s"] > 0


def test_queue_limit_per_client_replies_busy(daemon: DaemonProcess):
    with Client(daemon.endpoint, daemon.token) as client:
        image = make_image(32, 32, seed=7)
        rids = [client.submit_edit(image, sample_steps=300) for _ in range(5)]
        replies = [client.wait_for(rid, 10) for rid in rids]
        assert [r.type for r in replies[:4]] == ["accepted"] * 4
        assert replies[4].type == "error" and replies[4].header["code"] == "busy"
        assert replies[4].header["retriable"] is True
        for reply in replies[:4]:
            assert client.request("cancel", job=reply.job).type == "cancelled"
        for rid in rids[:4]:
            assert client.events_until_final(rid, timeout=30)[-1].type == "cancelled"
