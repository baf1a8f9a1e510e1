"""Hardening against a real daemon process: the token survives a second daemon, finals survive slow
readers, clients see and cancel only their own jobs, SIGTERM stops a stuck job within seconds."""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path

import pytest
import zmq
from daemon_helpers import FAST, Client, DaemonProcess, make_image

from sine_protocol import SineClient
from sine_protocol.paths import read_token

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def daemon(tiny_model: Path):
    proc = DaemonProcess(Path(tempfile.mkdtemp(prefix="sd-")), tiny_model, extra=FAST).start()
    yield proc
    assert proc.stop() == 0, proc.output()


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_second_daemon_never_replaces_the_token(daemon: DaemonProcess, tiny_model: Path, monkeypatch):
    token_path = Path(daemon.env["SINE_CONFIG_DIR"]) / "token"
    original = daemon.token
    token_path.unlink()  # a user (or a cleanup script) deletes it while the daemon runs
    second = DaemonProcess(daemon.root, tiny_model, port=daemon.port, extra=FAST).start(wait=False)
    assert second.proc is not None
    try:
        assert second.proc.wait(120) == 1
    finally:
        if second.proc.poll() is None:
            second.proc.kill()
    assert "already running" in second.output()
    _wait(lambda: read_token(token_path) is not None, 5, "the running daemon did not put its token back")
    assert read_token(token_path) == original  # the loser wrote nothing
    monkeypatch.setenv("SINE_CONFIG_DIR", daemon.env["SINE_CONFIG_DIR"])
    with SineClient(daemon.endpoint, transport="pure", timeout=5) as client:  # reads the token file
        assert client.hello()["type"] == "welcome"
        rotated = "r" * 64
        token_path.write_text(rotated + "\n")  # the user rotates the token
        time.sleep(1.5)
        assert client.hello()["type"] == "welcome"  # new connection, new token: the daemon adopted it
    token_path.write_text(original + "\n")
    _wait(lambda: _answers(daemon, original), 5, "the daemon did not adopt the restored token")


def _answers(daemon: DaemonProcess, token: str) -> bool:
    with Client(daemon.endpoint, token) as client:
        try:
            return client.request("ping", timeout=1).type == "pong"
        except TimeoutError:
            return False


def test_status_and_cancel_see_only_your_own_jobs(daemon: DaemonProcess):
    with Client(daemon.endpoint, daemon.token) as owner, Client(daemon.endpoint, daemon.token) as other:
        rid = owner.submit_edit(make_image(32, 32, seed=40), ft_steps=2000)
        job = owner.wait_for(rid, 30).job
        assert job
        # The same request id again while it is pending: refused, the first job unaffected.
        owner.submit_edit(make_image(32, 32, seed=41), rid=rid)
        duplicate = owner.wait_for(rid, 10)
        while duplicate.type == "progress":
            duplicate = owner.wait_for(rid, 10)
        assert duplicate.type == "error" and duplicate.header["code"] == "bad_request", duplicate.header
        status = other.request("status")
        assert job not in status.header["jobs"] and job not in status.header["queue"]
        assert status.header["others"]["running"] + status.header["others"]["queued"] >= 1
        refused = other.request("cancel", job=job)
        assert refused.type == "error" and refused.header["code"] == "bad_request"
        mine = owner.request("status")
        assert mine.header["jobs"][job]["state"] == "running"
        assert owner.request("cancel", job=job).type == "cancelled"
        finals = [e for e in owner.events_until_final(rid, timeout=60) if e.is_final]
        assert [e.type for e in finals] == ["cancelled"]


def test_slow_reader_loses_progress_never_the_result(tiny_model: Path):
    proc = DaemonProcess(Path(tempfile.mkdtemp(prefix="sd-")), tiny_model,
                         extra=[*FAST, "--send-hwm", "4", "--send-buffer", "4096"]).start()
    try:
        with Client(proc.endpoint, proc.token, sockopts={zmq.RCVHWM: 1, zmq.RCVBUF: 4096}) as slow:
            rid = slow.submit_edit(make_image(32, 32, seed=42), ft_steps=400, sample_steps=20)
            job = slow.wait_for(rid, 30).job
            assert job
            _wait(lambda: f"job {job[:8]}: done" in proc.output(), 300, "the job did not finish")
            events = slow.events_until_final(rid, timeout=30)
            time.sleep(1.0)
            with pytest.raises(TimeoutError):
                slow.recv(1.0)  # and nothing after the final
        finals = [e.type for e in events if e.is_final]
        assert finals == ["result"]
        progress = [e for e in events if e.type == "progress"]
        assert len(progress) < 400  # some progress was dropped for the slow reader...
        assert "reading slowly" in proc.output()  # ...and the daemon said so
    finally:
        assert proc.stop() == 0


def test_sigterm_stops_a_stuck_job_within_seconds(tiny_model: Path):
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    pause = root / "pause"
    proc = DaemonProcess(root, tiny_model, extra=FAST)
    proc.env["SINE_TEST_CACHE_WRITE_PAUSE_FILE"] = str(pause)
    proc.start()
    pause.touch()  # the job stops inside the cache write, where no step polls the cancel flag
    with Client(proc.endpoint, proc.token) as client:
        rid = client.submit_edit(make_image(32, 32, seed=43))
        proc.wait_in_cache_write(120)
        start = time.monotonic()
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        events = client.events_until_final(rid, timeout=30)
        code = proc.proc.wait(30)
        took = time.monotonic() - start
    # The painter did not cancel: the edit failed because the daemon stopped, and may be sent again.
    assert events[-1].type == "error" and events[-1].header["code"] == "daemon_stopping", events[-1].header
    assert events[-1].header["retriable"] is True and "stopped" in events[-1].header["message"]
    assert code == 0 and took < 10, (took, proc.output())
