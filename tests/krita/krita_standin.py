"""A protocol-v1 stand-in daemon on a real pyzmq ROUTER socket, for fast panel tests.

It validates requests with the project's own ``sine_protocol.messages`` and answers like the
real daemon (welcome, accepted, progress with previews, result, cancelled, error), but its "edit"
is a cheap deterministic function of the request (inverted RGB, composited under the mask), so
tests can compute the expected pixels. The real daemon with a tiny model is used by the host test.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import zmq

from sine_protocol import messages as m
from sine_protocol.frames import Mask, RGBAImage, make_preview, resize_nearest

TOKEN = "standin-token"


def fake_edit(image: RGBAImage, mask: Mask | None, output: tuple[int, int]) -> RGBAImage:
    """Invert RGB (alpha kept); with a mask only selected pixels change; then resize to ``output``."""
    src = image.data
    out = bytearray(src)
    for i in range(image.width * image.height):
        if mask is None or mask.data[i]:
            for c in range(3):
                out[4 * i + c] = 255 - src[4 * i + c]
    return resize_nearest(RGBAImage(image.width, image.height, bytes(out)), *output)


def fake_results(image: RGBAImage, mask: Mask | None, output: tuple[int, int], count: int = 1) -> list[RGBAImage]:
    """``count`` distinct results: the first is :func:`fake_edit`, result i has its red shifted by 40*i."""
    first = fake_edit(image, mask, output)
    out = [first]
    for i in range(1, count):
        data = bytearray(first.data)
        data[0::4] = bytes((r + 40 * i) % 256 for r in first.data[0::4])
        out.append(RGBAImage(first.width, first.height, bytes(data)))
    return out


class StandinDaemon:
    """Serve on ``tcp://127.0.0.1:<free port>`` from a thread until :meth:`close`."""

    def __init__(self, finetune_steps: int = 3, sample_steps: int = 4, step_s: float = 0.0, fail_with: str = "",
                 heartbeat_s: float = 0.0, tiles: int = 0) -> None:
        """``heartbeat_s``: while a step runs, a `heartbeat` this often, as the daemon sends in a long step;
        ``tiles``: inside each sampling step, a progress event per tile (`part`/`parts`), as a big layer's."""
        self.finetune_steps, self.sample_steps, self.step_s = finetune_steps, sample_steps, step_s
        self.tiles = tiles
        self.heartbeat_s = heartbeat_s
        self.fail_with = fail_with
        self.notes: list[str] = []  # sent on the job's first progress and on its result, as the daemon does
        self.requests: list[m.Request] = []
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        port = self._sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self._stop = threading.Event()
        self._cancelled: set[str] = set()
        self._jobs = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close(0)
        self._ctx.term()

    def _send(self, ident: bytes, frames: list[bytes]) -> None:
        self._sock.send_multipart([ident, *frames])

    def _poll_cancel(self, timeout_ms: int) -> None:
        """Handle requests that arrive while a job runs (cancel, ping, hello)."""
        if self._sock.poll(timeout_ms):
            ident, *frames = self._sock.recv_multipart()
            self._handle(ident, frames, nested=True)

    def _step(self, ident: bytes, rid: str, job: str, phase: str, step: int, total: int) -> None:
        """Work ``step_s`` on one step, answering requests; with ``heartbeat_s``, heartbeats meanwhile."""
        if not self.heartbeat_s:
            self._poll_cancel(int(self.step_s * 1000))
            return
        end = time.monotonic() + self.step_s
        while (left := end - time.monotonic()) > 0 and job not in self._cancelled:
            self._poll_cancel(int(min(left, self.heartbeat_s) * 1000))
            self._send(ident, m.make_reply(m.HEARTBEAT, rid, job=job, phase=phase, step=step, total=total))

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self._sock.poll(50):
                ident, *frames = self._sock.recv_multipart()
                self._handle(ident, frames, nested=False)

    def _handle(self, ident: bytes, frames: list[bytes], nested: bool) -> None:
        try:
            req = m.parse_request(frames, TOKEN)
        except m.ProtocolError as exc:
            self._send(ident, m.error_frames(exc))
            return
        self.requests.append(req)
        if req.type == m.HELLO:
            self._send(ident, m.make_reply(m.WELCOME, req.id, daemon_version="standin", protocol_version=1,
                                           device="stand-in cpu", models=["standin"],
                                           model_kind="SDXL, ε-prediction, 1024 px", cache={"entries": 0, "bytes": 0}))
        elif req.type == m.PING:
            self._send(ident, m.make_reply(m.PONG, req.id))
        elif req.type == m.CANCEL:
            self._cancelled.add(req.job or "")
            self._send(ident, m.make_reply(m.CANCELLED, req.id, job=req.job))
        elif req.type == m.EDIT and not nested:
            self._run_edit(ident, req)
        else:
            self._send(ident, m.make_error(m.BUSY, "stand-in runs one job at a time", req.id))

    def _run_edit(self, ident: bytes, req: m.Request) -> None:
        self._jobs += 1
        job = f"job-{self._jobs}"
        edit = req.edit
        assert edit is not None
        self._send(ident, m.make_reply(m.ACCEPTED, req.id, job=job, queue_position=0))
        if self.fail_with:
            self._send(ident, m.make_error(self.fail_with, "stand-in failure", req.id, job=job))
            return
        count = getattr(edit, "count", 1)
        results = fake_results(edit.image, edit.mask, edit.output, count)
        result = results[0]
        phases = [("finetune", self.finetune_steps), ("sample", self.sample_steps)]
        for phase, total in phases:
            for step in range(1, total + 1):
                self._step(ident, req.id, job, phase, step - 1, total)
                for part in range(1, self.tiles + 1 if phase == "sample" else 1):
                    self._send(ident, m.make_reply(m.PROGRESS, req.id, job=job, phase=phase, step=step - 1,
                                                   total=total, eta_s=0.0, part=part, parts=self.tiles,
                                                   part_of="tile"))
                if job in self._cancelled:
                    self._send(ident, m.make_reply(m.CANCELLED, req.id, job=job))
                    return
                blobs: list[Any] = []
                if phase == "sample":
                    blobs = [m.image_blob(make_preview(result), role="preview")]
                noted = {"notes": self.notes} if self.notes and (phase, step) == ("finetune", 1) else {}
                self._send(ident, m.make_reply(m.PROGRESS, req.id, blobs, job=job, phase=phase, step=step,
                                               total=total, eta_s=0.0, **noted))
        seeds = [(edit.seed + i) % 2**32 for i in range(count)]
        self._send(ident, m.make_reply(m.RESULT, req.id, [m.image_blob(r) for r in results], job=job, seed=edit.seed,
                                       results=[{"index": i, "seed": s} for i, s in enumerate(seeds)],
                                       cache_hit=False, timings={"load_s": 0.0, "finetune_s": 0.0,
                                                                 "sample_s": 0.0, "total_s": 0.01},
                                       **({"notes": self.notes} if self.notes else {})))


def wait_for(predicate: Any, timeout: float = 10.0, tick: Any = None) -> bool:
    """Spin ``tick`` (e.g. Qt event processing) until ``predicate()`` or timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if tick is not None:
            tick()
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
