"""Open connections counted against the open files limit: each one is a file descriptor.

Anyone on the machine can open TCP connections to the daemon without the token; each holds a descriptor
until the handshake timeout. With every descriptor taken, libzmq 4.3 aborts the process when its ipc
listener cannot accept (EMFILE is not among the errors it expects: "Too many open files
(src/ipc_listener.cpp:297)"), and the daemon could open no file (token, cache, log). So while too many
connections are open the daemon stops listening on TCP for a few seconds (which closes the TCP
connections: their descriptors are what is short); the ipc socket, in an owner-only folder, keeps
serving. A painter on TCP is cut off only while someone holds that many connections.
"""

from __future__ import annotations

import logging
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger("sine.daemon")

RESERVE_SHARE = 0.4  # of the descriptors never spent on connections: the daemon's own files, a burst's overshoot
PAUSE_S = 5.0  # not listening on TCP this long after letting its connections go (then again if the port is taken)
LOG_EVERY_S = 60.0  # a flood that goes on is logged this often, not at every pause


class ConnectionGuard:
    """Keeps the ROUTER's open connections (its monitor's ACCEPTED minus DISCONNECTED, by descriptor) and unbinds
    ``tcp`` past the cap, binding it again PAUSE_S later. Unbinding closes the TCP connections with no
    DISCONNECTED event, so they are forgotten then. Runs on the socket thread, which owns the ROUTER."""

    def __init__(self, router: zmq.Socket, tcp: str | None, open_files_limit: int | None) -> None:
        self.router = router
        self.tcp = tcp
        self.cap = None if open_files_limit is None else max(16, int(open_files_limit * (1 - RESERVE_SHARE)))
        self.connections: dict[int, bool] = {}  # descriptor -> accepted on TCP
        self.listening = True
        self._next_bind = 0.0
        self._last_log = -LOG_EVERY_S
        self.pauses = 0
        self.socket = router.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)

    def handle_pending(self) -> None:
        """Count what the monitor reported (never blocks), then stop or start listening on TCP."""
        while self.socket.poll(0):
            event = recv_monitor_message(self.socket)
            on_tcp = event["endpoint"].startswith(b"tcp://")
            if event["event"] == zmq.EVENT_ACCEPTED and (self.listening or not on_tcp):
                self.connections[event["value"]] = on_tcp
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self.connections.pop(event["value"], None)
        self.check()

    @property
    def open(self) -> int:
        return len(self.connections)

    def check(self) -> None:
        if self.cap is None or self.tcp is None:
            return
        if self.listening and self.open >= self.cap:
            try:
                self.router.unbind(self.tcp)
            except zmq.ZMQError as exc:  # not expected; the guard gives up rather than retry every turn
                log.warning("cannot stop listening on %s with %d connections open: %s", self.tcp, self.open, exc)
                self.cap = None
                return
            self.listening = False
            self._next_bind = time.monotonic() + PAUSE_S
            count = self.open
            self.connections = {fd: tcp for fd, tcp in self.connections.items() if not tcp}
            self.pauses += 1
            if time.monotonic() - self._last_log < LOG_EVERY_S:
                return
            self._last_log = time.monotonic()
            log.warning("%d connections open, near the open files limit: not listening on %s for %g s, its "
                        "connections closed (the ipc socket still serves); someone may be flooding the port (pause %d)",
                        count, self.tcp, PAUSE_S, self.pauses)
        elif not self.listening and time.monotonic() >= self._next_bind:
            try:
                self.router.bind(self.tcp)
            except zmq.ZMQError as exc:  # the port was taken meanwhile: try again later
                self._next_bind = time.monotonic() + PAUSE_S
                log.warning("cannot listen on %s again yet: %s", self.tcp, exc)
                return
            self.listening = True
            if time.monotonic() - self._last_log < PAUSE_S + 1:  # after a pause that was logged
                log.info("listening again on %s (%d connections open)", self.tcp, self.open)

    def close(self) -> None:
        self.router.disable_monitor()
        self.socket.close(0)
