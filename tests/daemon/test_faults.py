"""Faults against a real `sine daemon` subprocess: cancel mid-phase, vanished clients, signals,
SIGKILL in the middle of a cache write, corrupted cache files, a second daemon on the same endpoint."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
from daemon_helpers import FAST, Client, DaemonProcess, make_image

from sine.cache import WeightCache

pytestmark = pytest.mark.slow

# Every step is reported (no rate limit) so the tests can see exactly where a job stopped.


@pytest.fixture(scope="module")
def daemon(tiny_model: Path):
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    proc = DaemonProcess(root, tiny_model, extra=FAST)
    proc.env["SINE_LOADED_BUDGET"] = "0"  # no fine-tunes kept in memory: these tests are about the disk cache
    proc.start()
    yield proc
    assert proc.stop() == 0, proc.output()


def _until_step(client: Client, rid: str, phase: str, step: int, timeout: float = 60.0) -> list:
    """Events for ``rid`` up to the first ``progress`` of ``phase`` at ``step`` or later."""
    events = []
    deadline = time.monotonic() + timeout
    while True:
        event = client.wait_for(rid, max(0.01, deadline - time.monotonic()))
        events.append(event)
        assert not event.is_final, event.header
        if event.type == "progress" and event.header["phase"] == phase and event.header["step"] >= step:
            return events


def _entries(cache_dir: Path) -> set[str]:
    return {e.key for e in WeightCache(cache_dir).entries()}


@pytest.mark.parametrize("phase", ["finetune", "sample"])
def test_cancel_stops_within_a_step(daemon: DaemonProcess, phase: str):
    image = make_image(32, 32, seed=10 if phase == "finetune" else 11)
    with Client(daemon.endpoint, daemon.token) as client:
        if phase == "sample":  # fine-tune (and cache) first, so the long job goes straight to sampling
            assert client.events_until_final(client.submit_edit(image))[-1].header["cache_hit"] is False
        before = _entries(daemon.cache_dir)
        long_job = {"ft_steps": 2000} if phase == "finetune" else {"sample_steps": 500}
        rid = client.submit_edit(image, **long_job)
        seen = _until_step(client, rid, phase, 2)
        job = seen[0].job
        at_cancel = seen[-1].header["step"]
        reply = client.request("cancel", job=job)
        assert reply.type == "cancelled" and reply.header["job"] == job
        rest = client.events_until_final(rid, timeout=30)
        assert rest[-1].type == "cancelled" and rest[-1].header["job"] == job
        # The daemon says where the job was when the cancel flag went up, and where it stopped:
        # the step in flight may finish, no further step runs.
        assert reply.header["at"]["phase"] == phase == rest[-1].header["stopped_at"]["phase"]
        assert at_cancel <= reply.header["at"]["step"] <= rest[-1].header["stopped_at"]["step"]
        assert rest[-1].header["stopped_at"]["step"] <= reply.header["at"]["step"] + 1
        last_step = max([e.header["step"] for e in rest if e.type == "progress" and e.header["phase"] == phase],
                        default=at_cancel)
        assert last_step == rest[-1].header["stopped_at"]["step"] or last_step == at_cancel
        assert last_step < 100  # of 2000 fine-tune / 500 sampling steps
        assert not [e for e in rest if e.type == "progress" and e.header["phase"] not in (phase,)]
        assert _entries(daemon.cache_dir) == before  # a cancelled fine-tune caches nothing
        assert not any((daemon.cache_dir / ".tmp").glob("*/*"))
        status = client.request("status")
        assert status.header["jobs"][job]["state"] == "cancelled"
        assert client.request("cancel", job=job).header["code"] == "bad_request"  # already over


def test_vanished_client_loses_its_job_and_next_job_runs(daemon: DaemonProcess):
    doomed = Client(daemon.endpoint, daemon.token, "pure")
    rid = doomed.submit_edit(make_image(32, 32, seed=12), ft_steps=2000)
    job = _until_step(doomed, rid, "finetune", 1)[0].job
    doomed.close()  # the process "crashes": its TCP connection closes
    with Client(daemon.endpoint, daemon.token) as other:
        t0 = time.monotonic()
        events = other.events_until_final(other.submit_edit(make_image(32, 32, seed=13)), timeout=60)
        assert events[-1].type == "result", events[-1].header
        elapsed = time.monotonic() - t0
        status = other.request("status").header  # another client's job: counted, never listed
        assert job not in status["jobs"] and status["others"] == {"queued": 0, "running": 0}
    assert "went away" in daemon.output()
    assert elapsed < 60


def test_cancel_of_queued_job(daemon: DaemonProcess):
    with Client(daemon.endpoint, daemon.token) as client:
        first = client.submit_edit(make_image(32, 32, seed=14), ft_steps=2000)
        _until_step(client, first, "finetune", 1)
        queued = client.submit_edit(make_image(32, 32, seed=15))
        accepted = client.wait_for(queued, 10)
        assert accepted.type == "accepted" and accepted.header["queue_position"] == 1
        assert client.request("cancel", job=accepted.job).type == "cancelled"
        events = client.events_until_final(queued, timeout=10)
        assert events[-1].type == "cancelled"
        assert all(e.header.get("phase") == "queued" for e in events[:-1])
        running = client.request("status").header["jobs"]
        job = next(j for j, info in running.items() if info["state"] == "running")
        client.request("cancel", job=job)
        assert client.events_until_final(first, timeout=30)[-1].type == "cancelled"


def test_corrupted_cache_file_is_discarded(daemon: DaemonProcess):
    image = make_image(32, 32, seed=16)
    with Client(daemon.endpoint, daemon.token) as client:
        before = _entries(daemon.cache_dir)
        assert client.events_until_final(client.submit_edit(image))[-1].header["cache_hit"] is False
        (key,) = _entries(daemon.cache_dir) - before
        folder = daemon.cache_dir / key[:2] / key
        victim = next(p for p in folder.iterdir() if p.suffix == ".safetensors")
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
        result = client.events_until_final(client.submit_edit(image))[-1]
        assert result.type == "result" and result.header["cache_hit"] is False
        assert "discarding corrupt entry" in daemon.output()
        assert client.events_until_final(client.submit_edit(image))[-1].header["cache_hit"] is True


def test_second_daemon_on_same_endpoint_refuses(daemon: DaemonProcess, tiny_model: Path, short_tmp: Path):
    twin = DaemonProcess(daemon.root, tiny_model, port=daemon.port).start(wait=False)
    assert twin.proc.wait(60) == 1
    assert "already running" in twin.output() and str(daemon.proc.pid) in twin.output()
    stranger = DaemonProcess(short_tmp, tiny_model, port=daemon.port).start(wait=False)
    assert stranger.proc.wait(60) == 1
    assert "already in use" in stranger.output()
    with Client(daemon.endpoint, daemon.token) as client:  # the first one is unharmed
        assert client.request("ping").type == "pong"


def test_refuses_remote_bind_without_flag(tiny_model: Path, short_tmp: Path):
    proc = DaemonProcess(short_tmp, tiny_model)
    proc.args[proc.args.index("--endpoint") + 1] = f"tcp://0.0.0.0:{proc.port}"
    proc.start(wait=False)
    assert proc.proc.wait(60) == 1
    assert "loopback" in proc.output()


def test_sigkill_during_cache_write_then_restart_then_sigterm(tiny_model: Path, short_tmp: Path):
    clean, victim = make_image(32, 32, seed=30), make_image(32, 32, seed=31)
    pause = short_tmp / "pause-cache-writes"
    first = DaemonProcess(short_tmp, tiny_model, extra=FAST)
    first.env["SINE_TEST_CACHE_WRITE_PAUSE_FILE"] = str(pause)
    first.start()
    with Client(first.endpoint, first.token) as client:
        assert client.events_until_final(client.submit_edit(clean))[-1].header["cache_hit"] is False
        (clean_key,) = _entries(first.cache_dir)
        pause.touch()  # from now on a cache write stops after the weights, before the entry is published
        client.submit_edit(victim)
        first.wait_in_cache_write(60)
        os.kill(first.proc.pid, signal.SIGKILL)
        assert first.proc.wait(30) == -signal.SIGKILL
    assert any((first.cache_dir / ".tmp").iterdir())  # the half-written entry is still on disk
    assert _entries(first.cache_dir) == {clean_key}

    pause.unlink()
    again = DaemonProcess(short_tmp, tiny_model, port=first.port, extra=FAST).start()  # the lock died with it
    with Client(again.endpoint, again.token) as client:
        assert client.events_until_final(client.submit_edit(clean))[-1].header["cache_hit"] is True
        redo = client.events_until_final(client.submit_edit(victim))[-1]
        assert redo.type == "result" and redo.header["cache_hit"] is False
        assert not any((again.cache_dir / ".tmp").glob("*/*"))
        assert len(_entries(again.cache_dir)) == 2

        # SIGTERM mid fine-tune: the job ends with a retriable daemon_stopping error (the painter did not
        # cancel), nothing half-done is cached, exit status 0.
        rid = client.submit_edit(make_image(32, 32, seed=32), ft_steps=2000)
        _until_step(client, rid, "finetune", 1)
        again.proc.send_signal(signal.SIGTERM)
        final = client.events_until_final(rid, timeout=30)[-1]
        assert final.type == "error" and final.header["code"] == "daemon_stopping" and final.header["retriable"]
        assert "finetune step" in final.header["message"]
    assert again.stop(timeout=30) == 0
    assert len(_entries(again.cache_dir)) == 2
    assert not (short_tmp / "run" / "daemon.sock").exists()
    assert "sine daemon stopped" in again.output()


def test_missing_model_and_oversized_messages(short_tmp: Path):
    proc = DaemonProcess(short_tmp, short_tmp / "no-such-model", extra=["--max-message-bytes", "1MB"]).start(wait=False)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.proc.poll() is None, proc.output()
            if (short_tmp / "config" / "token").exists():
                with Client(proc.endpoint, proc.token) as client:
                    try:
                        welcome = client.request("hello", timeout=2)
                    except TimeoutError:
                        welcome = None
                    if welcome is not None and welcome.header["model_error"]:
                        break
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.2)
        assert welcome.header["model_ready"] is False and "no-such-model" in welcome.header["model_error"]
        with Client(proc.endpoint, proc.token) as client:
            final = client.events_until_final(client.submit_edit(make_image(16, 16)), timeout=30)[-1]
            assert final.type == "error" and final.header["code"] == "model_missing"
            assert "no-such-model" in final.header["message"]
            assert client.request("ping").type == "pong"
            # Two frames each under ZMQ_MAXMSGSIZE but together over the limit: a clear too_large.
            header = b'{"v": 1, "type": "ping", "id": "big", "token": "' + proc.token.encode() + b'"}'
            client.send([header, b"x" * 600_000, b"y" * 600_000])
            reply = client.recv(10)
            assert reply.type == "error" and reply.header["code"] == "too_large"
        with Client(proc.endpoint, proc.token) as flooder:  # one frame over ZMQ_MAXMSGSIZE: dropped by libzmq
            flooder.send([b"z" * 2_000_000])
            with pytest.raises(TimeoutError):
                flooder.recv(1.0)
        with Client(proc.endpoint, proc.token, "pure") as client:
            assert client.request("ping").type == "pong"
    finally:
        assert proc.stop() == 0


def test_second_ctrl_c_while_a_step_cannot_stop_exits_at_once_and_ends_every_job(tiny_model: Path, short_tmp: Path):
    """The running job is stuck where it cannot stop (a cache write); the first Ctrl+C waits for it, the
    second gives up at once: exit 130 within a second or two, no traceback, every client gets its final."""
    pause = short_tmp / "pause-cache-writes"
    daemon = DaemonProcess(short_tmp, tiny_model, extra=FAST)
    daemon.env["SINE_TEST_CACHE_WRITE_PAUSE_FILE"] = str(pause)
    daemon.start()
    pause.touch()
    try:
        with Client(daemon.endpoint, daemon.token) as running, Client(daemon.endpoint, daemon.token, "pure") as queued:
            # One job after the other: sent together, the two connections raced, and on a busy machine the
            # second client's job ran first (the test then waited on the wrong one's final).
            rid = running.submit_edit(make_image(32, 32, seed=40))
            daemon.wait_in_cache_write(30)
            qid = queued.submit_edit(make_image(32, 32, seed=41))
            accepted = queued.wait_for(qid, 10)
            assert accepted.type == "accepted" and accepted.header["queue_position"] == 1, accepted.header
            daemon.proc.send_signal(signal.SIGINT)
            waiting = queued.events_until_final(qid, timeout=20)[-1]
            assert waiting.type == "error" and waiting.header["code"] == "daemon_stopping", waiting.header
            time.sleep(0.3)
            assert daemon.proc.poll() is None  # still waiting for the stuck step (the grace is longer)
            second = time.monotonic()
            daemon.proc.send_signal(signal.SIGINT)
            final = running.events_until_final(rid, timeout=3)[-1]
            assert final.type == "error" and final.header["code"] == "daemon_stopping", final.header
            assert "finetune" in final.header["message"]
            assert daemon.proc.wait(5) == 130
            assert time.monotonic() - second < 2.5
    finally:
        pause.unlink(missing_ok=True)
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(30)
    assert "Traceback" not in daemon.output()
    assert not (short_tmp / "run" / "daemon.sock").exists()


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_closing_the_terminal_sighup_stops_like_sigterm(tiny_model: Path, short_tmp: Path):
    """Closing the terminal that runs `sine daemon` sends SIGHUP: it killed the daemon on the spot and its
    clients heard nothing until their silence timeout. Now it is a stop like SIGTERM."""
    daemon = DaemonProcess(short_tmp, tiny_model, extra=FAST).start(from_a_terminal=True)
    try:
        with Client(daemon.endpoint, daemon.token) as client:
            rid = client.submit_edit(make_image(32, 32, seed=50), ft_steps=2000)
            _until_step(client, rid, "finetune", 1)
            daemon.proc.send_signal(signal.SIGHUP)
            final = client.events_until_final(rid, timeout=5)[-1]
            assert final.type == "error" and final.header["code"] == "daemon_stopping", final.header
        assert daemon.proc.wait(10) == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(30)
    assert "Traceback" not in daemon.output() and "sine daemon stopped" in daemon.output()
    assert not (short_tmp / "run" / "daemon.sock").exists()
