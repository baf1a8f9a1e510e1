"""The daemon's ZAP handler (RFC 27): PLAIN user ``sine`` with the token as password, or no pipe.

It runs on the socket thread (polled with the ROUTER), so the token it checks is always the one
the daemon answers with. Denials are counted and logged at most once per ``LOG_EVERY_S``, so a
flood of bad handshakes cannot rotate the log away.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

import zmq

from sine_protocol.auth import PLAIN_USERNAME, ZAP_DOMAIN

log = logging.getLogger("sine.daemon.zap")
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by RFC 27; libzmq connects to it for every handshake
LOG_EVERY_S = 10.0


class ZapHandler:
    """Answers libzmq's authentication requests for sockets whose ``zap_domain`` is ZAP_DOMAIN."""

    def __init__(self, context: zmq.Context, token: Callable[[], str]) -> None:
        self.token = token
        self.socket = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)
        self.allowed = 0
        self.denied = 0
        self._denied_unlogged = 0
        self._last_log = 0.0

    def handle_pending(self) -> None:
        """Answer every request waiting on the socket (never blocks)."""
        while True:
            try:
                request = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.socket.send_multipart(self._answer(request))
        self._log_denials()

    def _answer(self, frames: list[bytes]) -> list[bytes]:
        if len(frames) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, domain, _address, _identity, mechanism, *credentials = frames
        ok = (
            version == b"1.0" and domain == ZAP_DOMAIN.encode() and mechanism == b"PLAIN" and len(credentials) == 2
            and credentials[0] == PLAIN_USERNAME.encode()
            and hmac.compare_digest(credentials[1], self.token().encode("utf-8"))
        )
        if ok:
            self.allowed += 1
            return [b"1.0", request_id, b"200", b"OK", PLAIN_USERNAME.encode(), b""]
        self.denied += 1
        self._denied_unlogged += 1
        return [b"1.0", request_id, b"400", b"wrong token", b"", b""]

    def _log_denials(self) -> None:
        now = time.monotonic()
        if self._denied_unlogged and now - self._last_log >= LOG_EVERY_S:
            log.warning("refused %d connection(s) without the right token (%d in all)", self._denied_unlogged,
                        self.denied)
            self._denied_unlogged = 0
            self._last_log = now

    def close(self) -> None:
        self.socket.close(0)
