"""Real pyzmq ROUTER peers for the interop tests (threads on loopback, no mocks)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import zmq


class RouterPeer:
    """A pyzmq ROUTER in a thread. ``handler(frames) -> list of replies`` (each a frame list).

    Every message it gets is recorded in ``received`` (without the identity), so tests can check
    what went over the wire in the client -> router direction too.
    """

    def __init__(self, handler: Callable[[list[bytes]], list[list[bytes]]], endpoint: str = "tcp://127.0.0.1:*",
                 plain_password: str | None = None, **sockopts: int) -> None:
        self.ctx = zmq.Context()
        self.auth = None
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        if plain_password is not None:  # PLAIN like the daemon: user "sine", the token as password
            from zmq.auth.thread import ThreadAuthenticator

            from sine_protocol.auth import PLAIN_USERNAME

            self.auth = ThreadAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_plain(domain="*", passwords={PLAIN_USERNAME: plain_password})
            self.sock.plain_server = True
        for name, value in sockopts.items():
            self.sock.setsockopt(getattr(zmq, name.upper()), value)
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.handler = handler
        self.received: list[list[bytes]] = []
        self.identities: list[bytes] = []
        self._outbox: list[tuple[bytes, list[bytes]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def push(self, identity: bytes, frames: list[bytes]) -> None:
        """Send an unsolicited message to a connected client (from the router's own thread)."""
        with self._lock:
            self._outbox.append((identity, frames))

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop.is_set():
            with self._lock:
                outbox, self._outbox = self._outbox, []
            for identity, frames in outbox:
                self.sock.send_multipart([identity, *frames])
            if not poller.poll(20):
                continue
            identity, *frames = self.sock.recv_multipart()
            if identity not in self.identities:
                self.identities.append(identity)
            self.received.append(frames)
            for reply in self.handler(frames):
                self.sock.send_multipart([identity, *reply])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close(0)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


def echo(frames: list[bytes]) -> list[list[bytes]]:
    return [frames]
