"""Test helpers: start `sine daemon` as a real subprocess, talk to it over real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import zmq

from sine_protocol.auth import plain_credentials
from sine_protocol.frames import Mask, RGBAImage
from sine_protocol.messages import Event, decode_reply, encode_message, image_blob, make_request, mask_blob
from sine_protocol.paths import read_token
from sine_protocol.zmtp import ZMTPConnection

REPO = Path(__file__).resolve().parents[2]
SEND_TIMEOUT_MS = 10_000  # a client's send gives up after this (see Client)
# daemon flags for tests that count events: progress after every step, previews practically never
FAST = ["--progress-interval", "0", "--preview-every", "1000"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_image(width: int = 32, height: int = 32, seed: int = 0) -> RGBAImage:
    """A deterministic RGBA picture (a gradient with a square) whose bytes change with ``seed``."""
    data = bytearray()
    for y in range(height):
        for x in range(width):
            inside = width // 4 <= x < 3 * width // 4 and height // 4 <= y < 3 * height // 4
            data += bytes([(x * 8 + seed * 37) % 256, (y * 8) % 256, 200 if inside else 30, 255])
    return RGBAImage(width, height, bytes(data))


class DaemonProcess:
    """`python -m sine.cli daemon ...` with private config/state/cache/runtime dirs."""

    def __init__(self, root: Path, model: Path, port: int | None = None, extra: list[str] | None = None,
                 cache_dir: Path | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.cache_dir = cache_dir or root / "cache"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")]),
            "SINE_CONFIG_DIR": str(root / "config"),
            "SINE_STATE_DIR": str(root / "state"),
            "SINE_CACHE_DIR": str(self.cache_dir),
            "SINE_RUNTIME_DIR": str(root / "run"),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        }
        self.args = [sys.executable, "-m", "sine.cli", "daemon", "--endpoint", self.endpoint, "--model", str(model),
                     "--device", "cpu", "--threads", "1", "--foreground", *(extra or [])]
        self.proc: subprocess.Popen | None = None
        self.log_path = root / f"daemon-{self.port}.out"

    def start(self, wait: bool = True, timeout: float = 300.0,  # the CPU may be shared with much else
              nofile: tuple[int, int] | None = None, from_a_terminal: bool = False) -> DaemonProcess:
        """Start it; ``nofile`` = (soft, hard) RLIMIT_NOFILE to start the daemon with; ``from_a_terminal``:
        SIGHUP at its default, as in a terminal's shell, even when the tests run under `nohup` (which the
        daemon inherits and, as a daemon started with `nohup` should, keeps)."""
        self.root.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")

        def prepare() -> None:
            if nofile is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
            if from_a_terminal:
                import signal

                signal.signal(signal.SIGHUP, signal.SIG_DFL)

        self.proc = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                     preexec_fn=prepare if nofile or from_a_terminal else None)
        out.close()
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:  # never leave a daemon behind when the test cannot use it
                self.proc.kill()
                self.proc.wait(30)
                raise
        return self

    @property
    def token(self) -> str:
        token = read_token(Path(self.env["SINE_CONFIG_DIR"]) / "token")
        assert token, "the daemon wrote no token"
        return token

    def wait_ready(self, timeout: float) -> None:
        """Until `hello` says the model is loaded (fails fast if the process died)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            if read_token(Path(self.env["SINE_CONFIG_DIR"]) / "token"):
                try:
                    with Client(self.endpoint, self.token) as client:
                        welcome = client.request("hello", timeout=2.0)
                        if welcome.header.get("model_ready"):
                            return
                except (TimeoutError, OSError):
                    pass
            time.sleep(0.2)
        raise AssertionError(f"daemon not ready after {timeout} s:\n{self.output()}")

    def wait_in_cache_write(self, timeout: float) -> None:
        """Until a job is held in its cache write (SINE_TEST_CACHE_WRITE_PAUSE_FILE): its fine-tune's
        finetune.json lies in the cache's .tmp folder, where no step polls the cancel flag."""
        deadline = time.monotonic() + timeout
        while not any((self.cache_dir / ".tmp").glob("*/finetune.json")):
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


class Client:
    """One DEALER connection through pyzmq ("pyzmq") or the pure-Python ZMTP client ("pure").

    The connection authenticates with ``token`` (PLAIN) unless ``auth`` is False (an attacker's view);
    ``identity`` picks the ROUTER identity (pyzmq only), as any peer may.
    """

    def __init__(self, endpoint: str, token: str, transport: str = "pyzmq", auth: bool = True,
                 identity: bytes | None = None, password: str | None = None,
                 sockopts: dict[int, int] | None = None) -> None:
        self.token = token
        self.transport = transport
        self.pending: list[Event] = []
        plain = plain_credentials(token if password is None else password) if auth else None
        if transport == "pyzmq":
            self.ctx = zmq.Context.instance()
            self.sock = self.ctx.socket(zmq.DEALER)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.setsockopt(zmq.IPV6, 1)
            # A send with no pipe (e.g. while a refused handshake is retried) blocks for ever without it.
            self.sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
            if identity is not None:
                self.sock.setsockopt(zmq.ROUTING_ID, identity)
            for option, value in (sockopts or {}).items():  # before connect, so the connection gets them
                self.sock.setsockopt(option, value)
            if plain:
                self.sock.setsockopt(zmq.PLAIN_USERNAME, plain[0])
                self.sock.setsockopt(zmq.PLAIN_PASSWORD, plain[1])
            self.sock.connect(endpoint)
        else:
            self.conn = ZMTPConnection(endpoint, timeout=10.0, plain=plain)

    def send(self, frames: list[bytes]) -> None:
        if self.transport == "pyzmq":
            try:
                self.sock.send_multipart(frames)
            except zmq.Again:
                raise TimeoutError(f"could not send within {SEND_TIMEOUT_MS / 1000:g} s (no connection)") from None
        else:
            self.conn.send_multipart(frames, timeout=10.0)

    def recv(self, timeout: float) -> Event:
        if self.transport == "pyzmq":
            if not self.sock.poll(int(timeout * 1000)):
                raise TimeoutError(f"no reply within {timeout} s")
            frames = self.sock.recv_multipart()
        else:
            frames = self.conn.recv_multipart(timeout)
            if frames is None:
                raise TimeoutError(f"no reply within {timeout} s")
        return decode_reply(frames)

    def request(self, rtype: str, timeout: float = 10.0, **fields: Any) -> Event:
        rid = uuid.uuid4().hex
        self.send(encode_message(make_request(rtype, rid, self.token, **fields)))
        return self.wait_for(rid, timeout)

    def wait_for(self, rid: str, timeout: float) -> Event:
        """The next event for ``rid`` (events for other ids are kept for later)."""
        for i, event in enumerate(self.pending):
            if event.id == rid:
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            event = self.recv(max(0.01, deadline - time.monotonic()))
            if event.id == rid:
                return event
            self.pending.append(event)

    def submit_edit(self, image: RGBAImage, prompt: str = "a green square", *, subject: str = "square",
                    seed: int = 0, ft_steps: int = 2, sample_steps: int = 3, output: tuple[int, int] | None = None,
                    mask: Mask | None = None, rid: str | None = None) -> str:
        rid = rid or uuid.uuid4().hex
        header = make_request(
            "edit", rid, self.token, prompt=prompt, subject=subject, style="photo", seed=seed,
            sampling={"steps": sample_steps, "w": 7.5, "v": 0.7, "k": 400},
            finetune={"method": "lora", "steps": ft_steps, "patch": True},
        )
        if output:
            header["output"] = {"width": output[0], "height": output[1]}
        blobs = [image_blob(image)] + ([mask_blob(mask)] if mask else [])
        self.send(encode_message(header, blobs))
        return rid

    def events_until_final(self, rid: str, timeout: float = 120.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        events: list[Event] = []
        while True:
            event = self.wait_for(rid, max(0.01, deadline - time.monotonic()))
            events.append(event)
            if event.is_final:
                return events

    def close(self) -> None:
        if self.transport == "pyzmq":
            self.sock.close(linger=0)
        else:
            self.conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
