"""Disk full, a silent daemon, and the smaller defects, against a real daemon process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from daemon_helpers import FAST, REPO, Client, DaemonProcess, make_image

from sine.cache import WeightCache
from sine_protocol import SineClient

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def daemon(tiny_model: Path):
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    proc = DaemonProcess(root, tiny_model, extra=FAST)
    proc.env["SINE_TEST_CACHE_WRITE_PAUSE_FILE"] = str(root / "pause")  # absent unless a test creates it
    proc.start()
    yield proc
    assert proc.stop() == 0, proc.output()


def _raw_edit(token: str, rid: str, **overrides) -> list[bytes]:
    from sine_protocol.messages import image_blob, make_request

    image = overrides.pop("image", make_image(16, 16))
    header = make_request("edit", rid, token, prompt="a green square", subject="square", style="photo",
                          sampling={"steps": 2}, finetune={"method": "lora", "steps": 2})
    header.update(overrides)
    desc, payload = image_blob(image)
    header["blobs"] = [desc]
    return [json.dumps(header, ensure_ascii=True).encode(), payload]  # \u escapes carry lone surrogates


def test_bad_text_and_tiny_images_are_refused_before_any_work(daemon: DaemonProcess):
    before = {e.key for e in WeightCache(daemon.cache_dir, read_only=True).entries()}
    with Client(daemon.endpoint, daemon.token) as client:
        for field in ("prompt", "subject"):
            client.send(_raw_edit(daemon.token, f"sur-{field}", **{field: "a \ud800 square"}))
            reply = client.wait_for(f"sur-{field}", 10)
            assert reply.type == "error" and reply.header["code"] == "bad_request", reply.header
            assert field in reply.header["message"]
        client.send(_raw_edit(daemon.token, "tiny", image=make_image(4, 4)))
        reply = client.wait_for("tiny", 10)
        assert reply.type == "error" and reply.header["code"] == "bad_request" and "8" in reply.header["message"]
        flood = "t" * 1_000_000
        client.send([json.dumps({"v": 1, "id": "flood", "token": daemon.token, "type": flood}).encode()])
        reply = client.wait_for("flood", 10)
        assert reply.type == "error" and len(reply.header["message"]) < 200
        client.send([json.dumps({"v": 1, "id": "keys", "token": daemon.token, "type": "cancel", "job": "j",
                                 **{f"k{n}" * 1000: 1 for n in range(50)}}).encode()])
        assert len(client.wait_for("keys", 10).header["message"]) < 400
    after = {e.key for e in WeightCache(daemon.cache_dir, read_only=True).entries()}
    assert after == before  # nothing was fine-tuned or cached for the refused requests
    log = (Path(daemon.env["SINE_STATE_DIR"]) / "daemon.log").read_text()
    assert flood[:1000] not in log


def test_internal_error_sends_a_reference_not_the_exception(tmp_path: Path, caplog):
    import zmq

    from sine.daemon.jobs import Job, JobQueue
    from sine.daemon.worker import Worker
    from sine_protocol.messages import decode_reply

    worker = Worker(zmq.Context.instance(), JobQueue(), None, None, "cpu")
    job = Job(client=b"c", request_id="r", request=None)
    with caplog.at_level("ERROR", logger="sine.daemon.worker"):
        state, frames = worker._failure(job, RuntimeError("secret detail at /home/someone/private"))
    reply = decode_reply(frames)
    assert state == "failed" and reply.header["code"] == "internal"
    assert "secret" not in reply.header["message"] and "/home" not in reply.header["message"]
    ref = reply.header["message"].split("reference ")[1].split(")")[0]
    assert ref in caplog.text and "secret detail" in caplog.text


@pytest.mark.parametrize("case", ["token-is-a-folder", "two-endpoints"])
def test_bad_setup_is_a_clear_message_not_a_traceback(tiny_model: Path, tmp_path: Path, case: str):
    proc = DaemonProcess(tmp_path, tiny_model)
    if case == "token-is-a-folder":
        (tmp_path / "config" / "token").mkdir(parents=True)
        expected = "token"
    else:
        index = proc.args.index("--endpoint")
        proc.args[index + 1] = f"tcp://127.0.0.1:{proc.port};0.0.0.0:6666"
        expected = "not one endpoint"
    run = subprocess.run(proc.args, env=proc.env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert expected in run.stderr and "Traceback" not in run.stderr, run.stderr


def _wait_until_idle(daemon: DaemonProcess, timeout: float = 120.0) -> None:
    """Until no job of any client is queued or running: the tests below share one daemon and its pause
    file, and a job left in the paused cache write by the test before (its client gone, its cancel not
    yet seen) sat there for the next test's whole pause (300 s), holding every job behind it."""
    deadline = time.monotonic() + timeout
    with Client(daemon.endpoint, daemon.token) as probe:
        while probe.request("status").header["others"] != {"queued": 0, "running": 0}:
            assert time.monotonic() < deadline, "the daemon still has jobs"
            time.sleep(0.1)


def test_silent_daemon_is_noticed_within_30_s(daemon: DaemonProcess):
    """A job stuck in one long step gets heartbeats; a stopped daemon is noticed by the shared client
    (so by both plugins) and by the GIMP plug-in's job loop within 30 s."""
    sys.path.insert(0, str(REPO / "plugin_gimp" / "sine-gimp"))
    import sine_gimp_job

    pause = Path(daemon.env["SINE_TEST_CACHE_WRITE_PAUSE_FILE"])
    pause.touch()  # the job will sit in its cache write, sending no step progress
    assert daemon.proc is not None
    stopped_at: list[float] = []
    progress: list = []

    def stop_once_stuck() -> None:
        deadline = time.monotonic() + 120
        while not any((daemon.cache_dir / ".tmp").glob("*/finetune.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(12)  # long enough for heartbeats
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        stopped_at.append(time.monotonic())

    os.environ["SINE_CONFIG_DIR"] = daemon.env["SINE_CONFIG_DIR"]
    stopper = threading.Thread(target=stop_once_stuck)
    try:
        with SineClient(daemon.endpoint, daemon.token, transport="pure", timeout=10) as client:
            stopper.start()
            request = sine_gimp_job.EditRequest(prompt="a green square", subject="square", steps=2,
                                                finetune_steps=3)
            with pytest.raises(sine_gimp_job.EditFailed) as info:
                sine_gimp_job.run_edit(client, request, make_image(32, 32, seed=60), on_progress=progress.append)
            noticed = time.monotonic()
        assert stopped_at, "the daemon was never stopped"
        assert noticed - stopped_at[0] < 33, noticed - stopped_at[0]
        assert "sent nothing" in str(info.value)
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
        pause.unlink()
        stopper.join(30)
        _wait_until_idle(daemon)
        os.environ.pop("SINE_CONFIG_DIR", None)
    with Client(daemon.endpoint, daemon.token) as client:  # and the daemon is fine once it runs again
        assert client.request("ping", timeout=30).type == "pong"


def test_heartbeats_keep_a_long_step_from_looking_silent(daemon: DaemonProcess):
    pause = Path(daemon.env["SINE_TEST_CACHE_WRITE_PAUSE_FILE"])
    _wait_until_idle(daemon)
    pause.touch()
    try:
        with Client(daemon.endpoint, daemon.token) as raw, \
                SineClient(daemon.endpoint, daemon.token, transport="pure", timeout=10, silence_timeout=12) as client:
            rid = raw.submit_edit(make_image(32, 32, seed=61), ft_steps=3, sample_steps=2)
            daemon.wait_in_cache_write(60)  # rid runs first (sent together, the two connections race)
            mine = client.submit_edit(make_image(32, 32, seed=62), "a green square", subject="square",
                                      sampling={"steps": 2}, finetune={"method": "lora", "steps": 3})
            heartbeats = []
            deadline = time.monotonic() + 240  # once paused in the cache write, only heartbeats keep it alive
            while time.monotonic() < deadline and len(heartbeats) < 3:
                event = raw.recv(1.0) if raw.sock.poll(0) else None
                client.poll_event(0.5)  # must not raise: heartbeats restart its silence timer
                if event is not None and event.type == "heartbeat" and event.id == rid:
                    heartbeats.append(event)
            assert len(heartbeats) >= 3
            assert heartbeats[-1].header["phase"] == "finetune"
            pause.unlink()
            assert raw.events_until_final(rid, timeout=240)[-1].type == "result"
            assert client.wait_result(mine, timeout=240).type == "result"  # heartbeats never reach the caller
    finally:
        pause.unlink(missing_ok=True)


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_disk_full_and_read_only_cache_cost_the_cache_never_the_edit(tiny_model: Path):
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    disk = root / "small-disk"
    if not _mount_tmpfs(disk, "4m"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        proc = DaemonProcess(root, tiny_model, extra=FAST, cache_dir=disk / "cache").start()
        try:
            filler = disk / "filler"
            with open(filler, "wb", buffering=0) as handle:  # fill the disk up to the last few KB
                try:
                    while True:
                        handle.write(b"\0" * 4096)
                except OSError:
                    pass
            image = make_image(32, 32, seed=70)
            with Client(proc.endpoint, proc.token) as client:
                final = client.events_until_final(client.submit_edit(image))[-1]
                assert final.type == "result", final.header
                assert "could not cache the fine-tune" in proc.output()
                assert not list((disk / "cache").glob("*/*/manifest.json"))
                assert not any((disk / "cache" / ".tmp").glob("*/*"))  # nothing half-written left behind
                filler.unlink()  # space again: a new picture's fine-tune is stored on disk, then hit
                image = make_image(32, 32, seed=72)
                assert client.events_until_final(client.submit_edit(image))[-1].header["cache_hit"] is False
                assert len(list((disk / "cache").glob("*/*/manifest.json"))) == 1
                assert client.events_until_final(client.submit_edit(image))[-1].header["cache_hit"] is True
                # A read-only cache: hits still served, new fine-tunes not stored, every edit still done.
                assert subprocess.run(["mount", "-o", "remount,ro", str(disk)]).returncode == 0
                fresh = client.events_until_final(client.submit_edit(make_image(32, 32, seed=71)))[-1]
                assert fresh.type == "result" and fresh.header["cache_hit"] is False
                assert client.events_until_final(client.submit_edit(image))[-1].header["cache_hit"] is True
                assert client.request("ping").type == "pong"
        finally:
            assert proc.stop() == 0
    finally:
        subprocess.run(["umount", str(disk)], check=False)
