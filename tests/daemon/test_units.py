"""Small parts of the daemon: job queue bounds and cancel, the lock file, config checks."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from sine.daemon.config import ConfigError, DaemonConfig
from sine.daemon.jobs import CANCELLED, DONE, RUNNING, Job, JobQueue, QueueClosed, QueueFull
from sine.daemon.lockfile import AlreadyRunning, DaemonLock, lock_path_for


def _job(client: bytes = b"A") -> Job:
    return Job(client=client, request_id="r", request=None)


def test_queue_is_fifo_and_bounded_per_client_and_total():
    queue = JobQueue(max_total=3, max_per_client=2)
    a1, a2, b1 = _job(b"A"), _job(b"A"), _job(b"B")
    assert queue.submit(a1) == 0
    assert queue.submit(a2) == 1
    with pytest.raises(QueueFull):
        queue.submit(_job(b"A"))
    assert queue.submit(b1) == 2
    with pytest.raises(QueueFull):
        queue.submit(_job(b"C"))
    assert queue.next(0) is a1 and a1.state == RUNNING
    assert queue.position(a2.id) == 1 and queue.position(b1.id) == 2
    # the running job still counts toward A's share
    with pytest.raises(QueueFull):
        queue.submit(_job(b"A"))
    queue.finish(a1, DONE)
    assert queue.submit(_job(b"A")) == 2


def test_cancel_queued_and_running_and_by_client():
    queue = JobQueue()
    running, queued, other = _job(b"A"), _job(b"A"), _job(b"B")
    for job in (running, queued, other):
        queue.submit(job)
    assert queue.next(0) is running
    assert queue.cancel(queued.id) is queued and queued.state == CANCELLED
    assert queue.cancel(queued.id) is None
    assert [j.id for j in queue.queued()] == [other.id]
    cancelled = queue.cancel_client(b"A")
    assert cancelled == [running] and running.should_stop() and running.state == RUNNING
    assert not other.should_stop()
    order, jobs = queue.snapshot()
    assert order == [other.id] and jobs[queued.id]["state"] == CANCELLED


def test_next_blocks_until_submit_and_close_refuses():
    queue = JobQueue()
    got: list[Job | None] = []
    thread = threading.Thread(target=lambda: got.append(queue.next(5)))
    thread.start()
    job = _job()
    queue.submit(job)
    thread.join(5)
    assert got == [job]
    queue.submit(_job(b"Z"))
    pending = queue.close()
    assert len(pending) == 2 and all(j.should_stop() for j in pending)
    with pytest.raises(QueueClosed):
        queue.submit(_job())
    assert queue.next(0.01) is None


def test_lock_refuses_second_holder_with_pid(tmp_path):
    path = lock_path_for(tmp_path, "tcp://127.0.0.1:5555")
    assert path.name == "daemon-tcp_127.0.0.1_5555.lock"
    first = DaemonLock(path)
    first.acquire({"endpoint": "tcp://127.0.0.1:5555"})
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from sine.daemon.lockfile import DaemonLock, AlreadyRunning\n"
        "try:\n DaemonLock(sys.argv[2]).acquire()\nexcept AlreadyRunning as e:\n print(e); sys.exit(3)\n"
    )
    backend = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "backend")
    proc = subprocess.run([sys.executable, "-c", code, backend, str(path)], capture_output=True, text=True)
    assert proc.returncode == 3
    assert "already running" in proc.stdout and str(__import__("os").getpid()) in proc.stdout
    first.release()
    again = DaemonLock(path)
    again.acquire()
    again.release()


def test_lock_in_same_process_also_refuses(tmp_path):
    path = tmp_path / "x.lock"
    with DaemonLock(path):
        with pytest.raises(AlreadyRunning):
            DaemonLock(path).acquire()


def _config(endpoint: str, allow_remote: bool = False) -> DaemonConfig:
    from pathlib import Path

    return DaemonConfig(endpoint=endpoint, state_dir=Path("s"), cache_dir=Path("c"), runtime_dir=Path("/run/x"),
                        allow_remote=allow_remote)


def test_config_refuses_remote_binds():
    _config("tcp://127.0.0.1:47633").check()
    _config("tcp://localhost:47633").check()
    _config("tcp://[::1]:47633").check()
    with pytest.raises(ConfigError, match="loopback"):
        _config("tcp://0.0.0.0:47633").check()
    with pytest.raises(ConfigError, match="loopback"):
        _config("tcp://*:47633").check()
    _config("tcp://0.0.0.0:47633", allow_remote=True).check()
    with pytest.raises(ConfigError):
        _config("udp://127.0.0.1:1").check()
    assert _config("tcp://127.0.0.1:47633").ipc_endpoint() == "ipc:///run/x/daemon.sock"


def test_a_remote_endpoint_is_told_to_be_unencrypted_at_start():
    """CURVE is not implemented: with --allow-remote the token and pictures cross the network in clear."""
    for endpoint in ("tcp://0.0.0.0:47633", "tcp://*:47633", "tcp://192.168.1.5:47633"):
        warning = _config(endpoint, allow_remote=True).remote_warning()
        assert warning is not None and "unencrypted" in warning and "tunnel" in warning
    for endpoint in ("tcp://127.0.0.1:47633", "tcp://localhost:1", "tcp://[::1]:47633", "ipc:///tmp/x.sock"):
        assert _config(endpoint).remote_warning() is None


def test_out_of_memory_is_recognised():
    from sine.daemon.worker import is_out_of_memory

    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only allocator errors


def test_progress_is_rate_limited_but_keeps_first_and_last():
    from sine.daemon.progress import ProgressReporter
    from sine_protocol.messages import decode_reply

    now = [0.0]
    sent: list = []
    reporter = ProgressReporter(lambda frames: sent.append(decode_reply(frames)), "job1", "rid1", interval_s=0.25,
                                preview_every=5, clock=lambda: now[0])
    reporter.phase_start("sample", 100)
    from PIL import Image

    previews = []

    def preview():
        previews.append(1)
        return Image.new("RGB", (512, 256), "red")

    for step in range(1, 101):
        now[0] += 0.01  # 100 steps/s: only ~4 events per second may go out
        reporter.step("sample", step, 100, preview)
    steps = [e.header["step"] for e in sent]
    assert steps[0] == 0 and steps[1] == 1 and steps[-1] == 100
    assert len(sent) <= 2 + 1 + 4 + 1  # start, first, ~4 per second over 1 s, last
    assert all(e.header["job"] == "job1" and e.id == "rid1" and e.type == "progress" for e in sent)
    with_preview = [e for e in sent if e.preview is not None]
    assert with_preview and with_preview[-1].header["step"] == 100
    assert len(previews) == len(with_preview)  # previews are only built for events that go out
    assert max(with_preview[-1].preview.width, with_preview[-1].preview.height) <= 128


def test_the_jobs_notes_go_out_once_and_bounded():
    """set_notes: the next progress event carries the notes (at most MAX_NOTES, each cut to MAX_NOTE_CHARS),
    and no later one repeats them (the result carries them again)."""
    from sine.daemon.progress import ProgressReporter
    from sine_protocol.messages import MAX_NOTE_CHARS, MAX_NOTES, decode_reply

    sent: list = []
    reporter = ProgressReporter(lambda frames: sent.append(decode_reply(frames)), "job1", "rid1", interval_s=0)
    reporter.phase_start("finetune", 2)
    reporter.set_notes(["x" * 500] + [f"note {i}" for i in range(9)])
    reporter.step("finetune", 1, 2)
    reporter.step("finetune", 2, 2)
    reporter.phase_start("sample", 1)
    assert [len(e.header.get("notes", [])) for e in sent] == [0, MAX_NOTES, 0, 0]
    assert len(sent[1].header["notes"][0]) == MAX_NOTE_CHARS and sent[1].notes[1] == "note 0"


def test_progress_inside_a_step_is_rate_limited_and_repeats_the_step():
    from sine.daemon.progress import ProgressReporter
    from sine_protocol.messages import decode_reply

    now = [0.0]
    sent: list = []
    reporter = ProgressReporter(lambda frames: sent.append(decode_reply(frames)), "job1", "rid1", interval_s=0.25,
                                clock=lambda: now[0])
    reporter.phase_start("sample", 2)
    for part in range(1, 101):  # 100 tiles over 1 s: about 4 events
        now[0] += 0.01
        reporter.part("tile", part, 100)
    reporter.step("sample", 1, 2)
    reporter.part("tile", 1, 100)  # right after a step: nothing
    inside = [e.header for e in sent if "part" in e.header]
    assert 3 <= len(inside) <= 4 and sent[-1].header["step"] == 1 and "part" not in sent[-1].header
    assert all(h["phase"] == "sample" and h["step"] == 0 and h["total"] == 2 and h["parts"] == 100
               and h["part_of"] == "tile" for h in inside)
    assert [h["part"] for h in inside] == sorted(h["part"] for h in inside)


def test_cache_command_list_and_clear(tmp_path, capsys):
    from sine.cache import WeightCache, cache_key
    from sine.cli import main

    cache = WeightCache(tmp_path)
    key = cache_key(b"\0" * 4, 1, 1, source_prompt="p", subject="s", style="photo", model_id="m", revision=None,
                    settings={"method": "lora"})
    cache.store(key, lambda folder: (folder / "w.safetensors").write_bytes(b"x" * 1500), {"method": "lora"})
    assert main(["cache", "list", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 entries" in out and key[:16] in out and "lora" in out
    assert main(["cache", "clear", "--cache-dir", str(tmp_path)]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert WeightCache(tmp_path).entries() == []


def test_queue_bounds_pixel_bytes_and_drops_pixels_when_done():
    queue = JobQueue(max_total=10, max_per_client=10, max_total_bytes=1000)
    big = Job(client=b"A", request_id="r", request=object(), nbytes=800)
    queue.submit(big)
    with pytest.raises(QueueFull, match="bytes"):
        queue.submit(Job(client=b"B", request_id="r", request=None, nbytes=300))
    queue.submit(Job(client=b"B", request_id="r", request=None, nbytes=200))
    assert queue.next(0) is big
    queue.finish(big, DONE)
    assert big.request is None and big.nbytes == 0  # finished jobs keep no pixels
    queue.submit(Job(client=b"C", request_id="r", request=None, nbytes=700))


def test_socket_side_does_not_import_torch():
    """Only the worker thread may touch torch: importing the server and the command must not load it."""
    code = ("import sys; import sine.daemon.server, sine.commands.daemon; "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    env = {**__import__("os").environ, "PYTHONPATH": f"{repo / 'backend'}:{repo / 'shared'}"}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0
