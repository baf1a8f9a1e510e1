"""Hostile and clumsy requests found by a fresh probe, each against a real daemon process over a real socket."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from daemon_helpers import FAST, Client, DaemonProcess, make_image

from sine_protocol.messages import encode_message, image_blob, make_request

pytestmark = pytest.mark.slow



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


@pytest.mark.parametrize("token", ["right", "wrong"])
def test_a_huge_float_literal_is_not_echoed_back_whole(daemon: DaemonProcess, token: str):
    """`"seed": 1111…1e0` (100,000 digits) is JSON, too big for a float: the error reply quoted the whole
    literal back, to any peer (the header is read before the token): a 100 KB reply for a 100 KB request."""
    sent = daemon.token if token == "right" else "not-the-token"
    head = json.dumps({"v": 1, "type": "ping", "id": "huge-float", "token": sent})
    with Client(daemon.endpoint, daemon.token) as client:
        client.send([(head[:-1] + ', "seed": ' + "1" * 100_000 + "e0}").encode()])
        reply = client.recv(10)
    assert reply.type == "error" and reply.header["code"] == "bad_request", reply.header
    assert len(reply.header["message"]) < 200, reply.header["message"][:300]
    _still_answers(daemon)


def test_the_style_picture_counts_toward_the_queued_pixel_bytes(tiny_model: Path):
    """Each queued job's pixels are bounded in total (--max-queued-bytes); a big style picture beside a
    small source went uncounted, so queued jobs could hold gigabytes the limit was meant to refuse."""
    proc = DaemonProcess(Path(tempfile.mkdtemp(prefix="sd-")), tiny_model,
                         extra=[*FAST, "--max-queued-bytes", "300KB"]).start()
    try:
        with Client(proc.endpoint, proc.token) as client:
            blobs = [image_blob(make_image(16, 16)), image_blob(make_image(256, 256, seed=3), "style")]
            replies = []
            for rid in ("first", "second"):
                header = make_request("edit", rid, proc.token, prompt="a cat", subject="cat",
                                      sampling={"steps": 1}, finetune={"steps": 20000})
                client.send(encode_message(header, blobs))
                replies.append(client.wait_for(rid, 10))
            assert replies[0].type == "accepted", replies[0].header
            assert replies[1].type == "error" and replies[1].header["code"] == "busy", replies[1].header
            assert "bytes" in replies[1].header["message"]
            client.send(encode_message(make_request("cancel", "stop", proc.token, job=replies[0].job)))
            assert client.wait_for("stop", 10).type == "cancelled"
    finally:
        assert proc.stop() == 0, proc.output()


def test_a_client_that_floods_without_reading_still_gets_its_result(tiny_model: Path):
    """Replies a client does not read are held (256 at most); when full, the oldest went, even a job's
    `result`: a client that kept sending pings while not reading lost its edit."""
    import time

    import zmq

    proc = DaemonProcess(Path(tempfile.mkdtemp(prefix="sd-")), tiny_model,
                         extra=[*FAST, "--send-hwm", "1", "--send-buffer", "4096"]).start()
    try:
        with Client(proc.endpoint, proc.token, sockopts={zmq.RCVHWM: 1, zmq.RCVBUF: 4096}) as flooder:
            rid = flooder.submit_edit(make_image(16, 16, seed=9), ft_steps=20, sample_steps=2)
            ping = encode_message(make_request("ping", "p", proc.token))
            for _ in range(400):
                flooder.send(ping)
            deadline = time.monotonic() + 120
            while "done" not in proc.output().split("accepted", 1)[-1] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "done" in proc.output().split("accepted", 1)[-1], proc.output()
            for _ in range(400):
                flooder.send(ping)
            time.sleep(1.0)
            seen = []
            while True:
                try:
                    seen.append(flooder.recv(3.0))
                except TimeoutError:
                    break
        assert "dropping" in proc.output()  # the flood did overflow what is held for it...
        assert [e.type for e in seen if e.id == rid and e.is_final] == ["result"]  # ...but not the result
    finally:
        assert proc.stop() == 0, proc.output()


def test_a_busy_daemon_refuses_big_edits_before_unpacking_them(tiny_model: Path):
    """An 8192² picture of one colour is 1 MB of zlib and 256 MB unpacked; a full queue unpacked every one
    before answering `busy`, on the socket thread: 20 of them held every other client's ping for ~13 s."""
    import time
    import zlib

    proc = DaemonProcess(Path(tempfile.mkdtemp(prefix="sd-")), tiny_model,
                         extra=[*FAST, "--max-queued", "1"]).start()
    try:
        with Client(proc.endpoint, proc.token) as owner, Client(proc.endpoint, proc.token) as flooder:
            first = owner.submit_edit(make_image(16, 16, seed=1), ft_steps=20000, sample_steps=1)
            assert owner.wait_for(first, 10).type == "accepted"
            deadline = time.monotonic() + 60
            while True:  # one running, one queued: the queue is full (until the worker takes the first, busy)
                second = owner.submit_edit(make_image(16, 16, seed=2), ft_steps=20000, sample_steps=1)
                reply = owner.wait_for(second, 10)
                if reply.type == "accepted":
                    break
                assert reply.header.get("code") == "busy" and time.monotonic() < deadline, reply.header
                time.sleep(0.2)
            side = 8192
            blob = ({"role": "image", "format": "rgba8", "width": side, "height": side, "compression": "zlib"},
                    zlib.compress(bytes(side * side * 4), 1))
            t0 = time.monotonic()
            for n in range(20):
                flooder.send(encode_message(make_request("edit", f"big-{n}", proc.token, prompt="x"), [blob]))
            codes = {flooder.wait_for(f"big-{n}", 60).header.get("code") for n in range(20)}
            elapsed = time.monotonic() - t0
            assert codes == {"busy"}
            assert elapsed < 4.0, f"20 refusals took {elapsed:.1f} s"
    finally:
        assert proc.stop() == 0, proc.output()


def test_a_client_that_leaves_with_unread_replies_does_not_kill_the_daemon(tiny_model: Path):
    """A client flooding pings without reading, then closing: retrying its held replies met EHOSTUNREACH,
    `_lost` forgot the client and the retry loop deleted it again (KeyError): the daemon exited. Each
    dropped reply also logged its own warning (hundreds of lines that rotate the useful ones out)."""
    import time

    import zmq

    proc = DaemonProcess(Path(tempfile.mkdtemp(prefix="sd-")), tiny_model,
                         extra=[*FAST, "--send-hwm", "1", "--send-buffer", "4096"]).start()
    try:
        with Client(proc.endpoint, proc.token, sockopts={zmq.RCVHWM: 1, zmq.RCVBUF: 4096}) as flooder:
            ping = encode_message(make_request("ping", "p" * 100, proc.token))
            for _ in range(600):
                flooder.send(ping)
            deadline = time.monotonic() + 30
            while "has not read" not in proc.output() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "has not read" in proc.output(), proc.output()[-2000:]
        time.sleep(1.0)  # the daemon retries the held replies of the closed connection
        assert proc.proc is not None and proc.proc.poll() is None, proc.output()[-3000:]
        _still_answers(proc)
        assert proc.output().count("has not read") <= 3, proc.output()[-2000:]
    finally:
        assert proc.stop() == 0, proc.output()[-3000:]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the daemon's RSS from /proc")
def test_a_message_of_a_million_empty_parts_is_refused_and_its_memory_given_back(daemon: DaemonProcess):
    """ZMQ_MAXMSGSIZE bounds each frame, not a message: 2-byte empty parts cost libzmq ~60 bytes each until the
    message ends. The daemon then also built a list of every part and kept the freed heap (4 M parts: +0.27 GB
    for good); now it keeps a request's 4 frames, counts the rest and hands the freed memory back."""
    from sine_protocol.auth import plain_credentials
    from sine_protocol.zmtp import ZMTPConnection

    assert daemon.proc is not None
    before = _rss_mb(daemon.proc.pid)
    header = json.dumps(make_request("ping", "parts", daemon.token)).encode()
    with ZMTPConnection(daemon.endpoint, plain=plain_credentials(daemon.token)) as conn:
        # raw frames: flags MORE + size 0, then a last empty part
        conn._send_raw([bytes([1, len(header)]) + header, b"\x01\x00" * 1_500_000, b"\x00\x00"], 30)
        reply = conn.recv_multipart(timeout=60)
    assert reply is not None
    answer = json.loads(reply[0])
    assert answer["type"] == "error" and answer["id"] == "parts", answer
    assert "1500002 frames" in answer["message"] and "at most 4" in answer["message"], answer
    _still_answers(daemon)
    assert _rss_mb(daemon.proc.pid) - before < 40, (before, _rss_mb(daemon.proc.pid))


def test_a_running_jobs_events_keep_flowing_while_a_huge_message_is_read(daemon: DaemonProcess):
    """Reading a message of millions of parts held the socket thread until its last part (20 M parts: 32 s on
    the shared 2-core CPU, past a client's 30 s silence limit): now it reads them in slices and forwards the
    worker's events between slices."""
    import itertools
    import threading
    import time

    from sine_protocol.auth import plain_credentials
    from sine_protocol.zmtp import ZMTPConnection

    with Client(daemon.endpoint, daemon.token) as owner:
        rid = owner.submit_edit(make_image(16, 16, seed=77), ft_steps=20000, sample_steps=1)
        accepted = owner.wait_for(rid, 10)
        assert accepted.type == "accepted", accepted.header
        owner.wait_for(rid, 30)  # the job is running and reporting
        header = json.dumps(make_request("ping", "parts", daemon.token)).encode()
        answered: list[float] = []

        def flood() -> None:
            with ZMTPConnection(daemon.endpoint, plain=plain_credentials(daemon.token)) as conn:
                conn._send_raw([bytes([1, len(header)]) + header, b"\x01\x00" * 2_000_000, b"\x00\x00"], 30)
                assert conn.recv_multipart(timeout=120) is not None
                answered.append(time.monotonic())

        flooder = threading.Thread(target=flood)
        started = time.monotonic()
        flooder.start()
        seen = [started]
        while flooder.is_alive():
            try:
                owner.wait_for(rid, 0.2)
                seen.append(time.monotonic())
            except TimeoutError:
                pass
        flooder.join()
        assert owner.request("cancel", job=accepted.job).type == "cancelled"  # free the daemon for the next test
        while not owner.wait_for(rid, 30).is_final:
            pass
    times = [t for t in seen if t < answered[0]] + answered
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 1.5, f"no event from the running job for {max(gaps):.1f} s while {answered[0] - started:.1f} s" \
                            " were spent on the flood"


def test_folders_the_user_named_keep_their_permissions(tiny_model: Path):
    """SINE_STATE_DIR, SINE_CONFIG_DIR and SINE_RUNTIME_DIR pointed at existing folders of the user's (their
    home, a shared sticky folder like /tmp) were chmod-ed to 0700: a daemon run took /tmp's sticky bit and
    everyone else's access. The daemon's own files inside are still owner-only."""
    import os
    import stat

    root = Path(tempfile.mkdtemp(prefix="sd-"))
    proc = DaemonProcess(root, tiny_model)
    folders = {"SINE_STATE_DIR": (root / "home", 0o755), "SINE_CONFIG_DIR": (root / "home", 0o755),
               "SINE_RUNTIME_DIR": (root / "shared-tmp", 0o1777)}
    for name, (folder, mode) in folders.items():
        folder.mkdir(exist_ok=True)
        (folder / "notes.txt").write_text("the user's")
        (folder / "daemon.log.txt").write_text("the user's own log")
        os.chmod(folder / "daemon.log.txt", 0o644)
        os.chmod(folder, mode)
        proc.env[name] = str(folder)
    proc.start()
    try:
        _still_answers(proc)
    finally:
        assert proc.stop() == 0, proc.output()
    for name, (folder, mode) in folders.items():
        assert stat.S_IMODE(folder.stat().st_mode) == mode, name
        assert stat.S_IMODE((folder / "daemon.log.txt").stat().st_mode) == 0o644, name
    assert stat.S_IMODE((root / "home" / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "home" / "daemon.log").stat().st_mode) == 0o600


@pytest.mark.parametrize("case", ["readable-by-all", "link-to-a-users-file"])
def test_the_token_file_is_made_private_and_never_a_link(tiny_model: Path, case: str):
    """A token file readable by everyone (an old install, a copy made with cp) was used as it was, so any local
    user could read the token; a token file that is a symbolic link was followed, making a user's file the
    secret. Now the daemon makes its token file owner-only, and replaces a link (never its target) with a
    fresh private token."""
    import os
    import stat

    from sine_protocol.paths import read_token

    root = Path(tempfile.mkdtemp(prefix="sd-"))
    proc = DaemonProcess(root, tiny_model)
    config = root / "config"
    config.mkdir()
    os.chmod(config, 0o700)
    user_file = root / "mine.txt"
    user_file.write_text("a-users-text-that-looks-like-a-token\n")
    os.chmod(user_file, 0o644)
    if case == "readable-by-all":
        (config / "token").write_text("t" * 43 + "\n")
        os.chmod(config / "token", 0o644)
    else:
        (config / "token").symlink_to(user_file)
    proc.start()
    try:
        token_file = config / "token"
        assert not token_file.is_symlink()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert user_file.read_text() == "a-users-text-that-looks-like-a-token\n"
        assert stat.S_IMODE(user_file.stat().st_mode) == 0o644
        if case == "readable-by-all":
            assert read_token(token_file) == "t" * 43  # kept: connected clients keep working
        else:
            assert read_token(token_file) != "a-users-text-that-looks-like-a-token"
        _still_answers(proc)
    finally:
        assert proc.stop() == 0, proc.output()


def test_a_runtime_folder_too_deep_for_a_socket_costs_the_ipc_endpoint_only(tiny_model: Path):
    """A socket path is limited to ~107 bytes: SINE_RUNTIME_DIR (or XDG_RUNTIME_DIR) deeper than that stopped
    the daemon at start, though ipc is only a convenience beside TCP (a taken or unmakeable runtime folder
    already cost the ipc endpoint only)."""
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    proc = DaemonProcess(root, tiny_model)
    proc.env["SINE_RUNTIME_DIR"] = str(root / ("r" * 150))
    proc.start(timeout=120)
    try:
        _still_answers(proc)
        assert "not binding ipc://" in proc.output()
    finally:
        assert proc.stop() == 0, proc.output()


def test_a_damaged_calibration_file_costs_the_estimate_never_the_edit(tiny_model: Path):
    """The remembered step times (calibration.json in the state folder) are read back with json, which takes
    NaN and Infinity: the estimate became NaN, the progress event carrying it could not be encoded
    (allow_nan=False), and every edit failed until the file was deleted."""
    proc = DaemonProcess(Path(tempfile.mkdtemp(prefix="sd-")), tiny_model, extra=FAST).start()
    try:
        with Client(proc.endpoint, proc.token) as client:
            first = client.events_until_final(client.submit_edit(make_image(16, 16, seed=1), ft_steps=1, sample_steps=1))
            assert first[-1].type == "result", first[-1].header
            state = Path(proc.env["SINE_STATE_DIR"])
            files = [p for p in state.iterdir() if p.suffix == ".json"]
            assert files, list(state.iterdir())
            for path in files:
                entries = json.loads(path.read_text())
                for entry in entries.values():  # NaN, a negative time and Infinity, one field each
                    for index, name in enumerate(n for n in entry if n != "measured"):
                        entry[name] = f"@{index % 3}@"
                text = json.dumps(entries)
                for index, value in enumerate(["NaN", "-1e300", "1e400"]):
                    text = text.replace(f'"@{index}@"', value)
                path.write_text(text)
            events = client.events_until_final(client.submit_edit(make_image(16, 16, seed=2), ft_steps=1,
                                                                  sample_steps=1))
        assert events[-1].type == "result", events[-1].header
        for event in events:
            for name in ("eta_s", "estimate_s"):
                if name in event.header:
                    assert 0 <= event.header[name] < 1e9, event.header
    finally:
        assert proc.stop() == 0, proc.output()


def test_the_ipv6_loopback_is_served_and_port_0_refused(tiny_model: Path):
    """`--endpoint tcp://[::1]:PORT` passed the loopback check but failed to bind ("No such device": ZeroMQ
    sockets speak IPv6 only when asked), and SineClient could not connect there either; `tcp://127.0.0.1:0`
    started a daemon on a random port it logged as ":0", which no plug-in could ever find."""
    from sine_protocol import SineClient

    root = Path(tempfile.mkdtemp(prefix="sd-"))
    zero = DaemonProcess(root / "zero", tiny_model)
    zero.args[zero.args.index("--endpoint") + 1] = "tcp://127.0.0.1:0"
    zero.start(wait=False)
    try:
        assert zero.proc.wait(60) == 1, zero.output()
    finally:
        zero.proc.kill()
    assert "port" in zero.output()
    proc = DaemonProcess(root / "six", tiny_model)
    proc.endpoint = f"tcp://[::1]:{proc.port}"
    proc.args[proc.args.index("--endpoint") + 1] = proc.endpoint
    proc.start(timeout=120)
    try:
        for transport in ("pyzmq", "pure"):
            with SineClient(proc.endpoint, proc.token, transport=transport) as client:
                assert client.ping(timeout=10), transport
    finally:
        assert proc.stop() == 0, proc.output()


def test_an_edit_whose_results_would_not_fit_one_reply_is_refused_before_any_work(daemon: DaemonProcess):
    """Every result comes back in ONE `result`, which clients take up to Limits.max_reply_bytes (512 MiB):
    8 results of 16384x4096 (2 GiB) from a small picture are refused `too_large` in words, with no
    `accepted` and no job, not computed for hours and then dropped."""
    from sine_protocol.messages import Limits

    header = make_request("edit", "too-many-pixels", daemon.token, prompt="a cat", count=8,
                          output={"width": 16384, "height": 4096})
    with Client(daemon.endpoint, daemon.token) as client:
        client.send(encode_message(header, [image_blob(make_image(16, 16))]))
        reply = client.recv(10)  # the first event for it: an `accepted` here would mean the work started
        assert reply.id == "too-many-pixels" and reply.type == "error", reply.header
        assert reply.header["code"] == "too_large"
        message = reply.header["message"]
        assert "8 results of 16384x4096" in message and str(Limits().max_reply_bytes) in message, message
        assert "fewer results or a smaller size" in message
        status = client.request("status", timeout=10).header
        assert not status["jobs"] and not status["queue"], status


@pytest.mark.parametrize("prompt", ["\u200b", "\x00", "\ufeff\u2060 \u200d"])
def test_a_prompt_of_invisible_characters_is_refused_before_any_work(daemon: DaemonProcess, prompt: str):
    """A prompt of only zero-width, format or control characters (a paste of nothing visible) passed the
    empty-prompt check (str.strip keeps them) and started minutes of fine-tuning for a prompt that asks for nothing."""
    header = make_request("edit", "invisible", daemon.token, prompt=prompt)
    with Client(daemon.endpoint, daemon.token) as client:
        client.send(encode_message(header, [image_blob(make_image(16, 16))]))
        reply = client.recv(10)
    assert reply.type == "error" and reply.header["code"] == "bad_request", reply.header
    assert "prompt" in reply.header["message"] and "visible" in reply.header["message"], reply.header


def test_an_image_wider_than_any_result_without_an_output_size_is_refused_before_any_work(daemon: DaemonProcess):
    """The result is the image's size unless `output` says otherwise, and each side of a result is 8..16384 px:
    a 20000x8 image without `output` was accepted, fine-tuned (minutes on a real model), and only then
    refused by the sampler."""
    header = make_request("edit", "too-wide", daemon.token, prompt="a cat")
    with Client(daemon.endpoint, daemon.token) as client:
        client.send(encode_message(header, [image_blob(make_image(20000, 8))]))
        reply = client.recv(10)  # the first event for it: an `accepted` here means the fine-tune went ahead
    assert reply.type == "error" and reply.header["code"] == "bad_request", reply.header
    message = reply.header["message"]
    assert "20000x8" in message and "16384" in message and "output" in message, message
