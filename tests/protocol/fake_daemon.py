"""A tiny stand-in for the daemon on a real pyzmq ROUTER, for client API tests.

It validates every request with the real ``parse_request`` and answers like the daemon would:
``edit`` -> accepted, progress (with a preview), result (the source resized to the output size).
Prompts steer it: ``"wait"`` stops after progress until cancelled; ``"silent"`` never answers.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zmq_helpers import RouterPeer  # noqa: E402

from sine_protocol import messages as m  # noqa: E402
from sine_protocol.errors import ProtocolError  # noqa: E402
from sine_protocol.frames import make_preview, resize_nearest  # noqa: E402


class FakeDaemon(RouterPeer):
    def __init__(self, token: str, endpoint: str = "tcp://127.0.0.1:*", **sockopts: int) -> None:
        self.token = token
        self.requests: list[m.Request] = []
        self.waiting: dict[str, str] = {}  # job -> edit request id
        self._jobs = (f"job-{n}" for n in itertools.count(1))
        super().__init__(self.handle, endpoint, plain_password=token, **sockopts)

    def handle(self, frames: list[bytes]) -> list[list[bytes]]:
        try:
            req = m.parse_request(frames, self.token)
        except ProtocolError as exc:
            return [m.error_frames(exc)]
        self.requests.append(req)
        if req.type == m.HELLO:
            return [m.make_reply(m.WELCOME, req.id, daemon_version="fake", protocol_version=m.PROTOCOL_VERSION,
                                 device="cpu", models=["demo"], cache={"entries": 0, "bytes": 0})]
        if req.type == m.PING:
            return [m.make_reply(m.PONG, req.id)]
        if req.type == m.STATUS:
            return [m.make_reply(m.STATUS, req.id, queue=list(self.waiting), jobs={}, cache={}, gpu=None)]
        if req.type == m.CANCEL:
            rid = self.waiting.pop(req.job or "", None)
            if rid is None:
                return [m.make_error(m.BAD_REQUEST, f"no job {req.job}", req.id)]
            return [m.make_reply(m.CANCELLED, req.id, job=req.job), m.make_reply(m.CANCELLED, rid, job=req.job)]
        edit = req.edit
        assert edit is not None
        if edit.prompt == "silent":
            return []
        if edit.prompt == "endless":  # a faulty peer: one reply of 100,000 parts
            return [[*m.make_reply(m.PROGRESS, req.id, job="job-x", phase="sample", step=1, total=2), *[b""] * 100_000]]
        job = next(self._jobs)
        replies = [
            m.make_reply(m.ACCEPTED, req.id, job=job, queue_position=0),
            m.make_reply(m.PROGRESS, req.id, [m.image_blob(make_preview(edit.image, 16), "preview")],
                         job=job, phase="sample", step=1, total=2, eta_s=0.1),
        ]
        if edit.prompt == "wait":
            self.waiting[job] = req.id
            return replies
        result = resize_nearest(edit.image, *edit.output)
        replies.append(m.make_reply(m.RESULT, req.id, [m.image_blob(result)], job=job, seed=edit.seed,
                                    cache_hit=False, timings={"total_s": 0.0}))
        return replies
