"""``SineClient``: what the plugins use to talk to the daemon (docs/design.md §4).

Uses pyzmq when it can be imported and the pure-Python ZMTP client otherwise, behind the same
small transport interface. Designed for host UIs: every call has a timeout, ``poll_event`` never
blocks longer than asked, and events of several requests are buffered and routed by request id.
Not thread-safe: use one client per thread.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .auth import plain_credentials
from .errors import BAD_REPLY, UNAUTHORIZED, DaemonUnavailable, ProtocolError
from .frames import Mask, RGBAImage
from .listener import check_listener
from .messages import (
    ACCEPTED,
    CANCEL,
    EDIT,
    ERROR,
    FINAL_TYPES,
    HEARTBEAT,
    HELLO,
    PING,
    PONG,
    STATUS,
    WELCOME,
    Event,
    Limits,
    decode_reply,
    encode_message,
    image_blob,
    make_error,
    make_request,
    mask_blob,
)
from .paths import default_endpoint, read_token
from .zmtp import ZMTPAuthError, ZMTPConnection, ZMTPError

TRANSPORTS = ("auto", "pyzmq", "pure")
# While a request is pending the daemon sends something at least every few seconds (progress, a
# queue ping every 2 s, a heartbeat every 5 s); this much silence means it stopped answering.
SILENT_DAEMON_S = 30.0


def transport_setting_problem(transport: str) -> str | None:
    """Why SINE_TRANSPORT's value (the GIMP plug-in reads it) is no transport, or None: said by its name, not as
    a bad endpoint (sine doctor and the plug-in alike)."""
    if transport in TRANSPORTS:
        return None
    return f"SINE_TRANSPORT={transport[:20]!r} is not a transport; use one of {', '.join(TRANSPORTS)} or unset it"


def unreachable_message(endpoint: str) -> str:
    return f"daemon not reachable at {endpoint} — start it with `sine daemon` or from the plugin"


def refused_token(endpoint: str, detail: str = "") -> ProtocolError:
    """The daemon refused the connection's token (PLAIN handshake failed)."""
    extra = f" ({detail})" if detail else ""
    return ProtocolError(UNAUTHORIZED, f"the daemon at {endpoint} refused the token{extra}; the token file"
                                       " may have been replaced: restart the daemon or the plugin")


class _Transport(Protocol):
    name: str

    def send(self, frames: list[bytes], timeout: float) -> None: ...
    def recv(self, timeout: float | None) -> list[bytes] | None: ...
    def close(self) -> None: ...


class _PyzmqTransport:
    """pyzmq DEALER. ``immediate`` keeps messages from queueing while no daemon is connected.

    libzmq hands over no part of a message before its last, so what it gathers is bounded per part only
    (ZMQ_MAXMSGSIZE: a bigger part costs the connection at its frame header). The count of parts and their
    total are checked as they are read; a message past either costs the socket (libzmq's copy goes with
    it), as it costs the pure transport its connection. A connection lost while a request waits (a reply
    lost with it) is said at once, not at the silence timeout. libzmq never reconnects by itself
    (``RECONNECT_IVL`` -1): its background reconnects handed the token to whoever held the port by then;
    the transport connects anew instead, after ``check_listener``, whenever a connection or an attempt ended.
    """

    name = "pyzmq"

    def __init__(self, endpoint: str, token: str, max_message: tuple[int, int], max_part: int) -> None:
        import zmq

        self._zmq = zmq
        self._endpoint = endpoint
        self._credentials = plain_credentials(token)
        self._max_parts, self._max_message_bytes = max_message
        self._max_part = max_part
        self._ctx = zmq.Context()
        self._open()

    def _open(self) -> None:
        zmq = self._zmq
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        self._sock.setsockopt(zmq.IPV6, 1)  # a daemon on tcp://[::1]:PORT (IPv4 endpoints still work)
        self._sock.setsockopt(zmq.MAXMSGSIZE, self._max_part)
        self._sock.setsockopt(zmq.RECONNECT_IVL, -1)
        user, password = self._credentials
        self._sock.setsockopt(zmq.PLAIN_USERNAME, user)
        self._sock.setsockopt(zmq.PLAIN_PASSWORD, password)
        # Handshake outcomes and lost connections: neither shows up as an error on the socket.
        self._monitor = self._sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED)
        self._auth_failed = False
        self._dropped = False  # a connection ended since the last send
        self._ended = False  # the connection, or the attempt to make one, is over: libzmq makes no other
        self._connected = False  # connected on the first send, after check_listener

    def _shut(self) -> None:
        self._sock.disable_monitor()
        self._monitor.close(0)
        self._sock.close(0)

    def _read_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event in (self._zmq.EVENT_DISCONNECTED, self._zmq.EVENT_CLOSED):
                self._dropped = self._dropped or event == self._zmq.EVENT_DISCONNECTED
                self._ended = True
            else:
                self._auth_failed = event == self._zmq.EVENT_HANDSHAKE_FAILED_AUTH

    def _check_auth(self) -> None:
        self._read_monitor()
        if self._auth_failed:
            raise refused_token(self._endpoint)

    def _connect(self) -> None:
        """Connect, on a fresh socket if the last connection (or attempt) ended, after checking who listens."""
        self._read_monitor()
        if self._ended:
            self._shut()
            self._open()
        if self._connected:
            return
        check_listener(self._endpoint)
        try:
            self._sock.connect(self._endpoint)
        except self._zmq.ZMQError as exc:  # SINE_ENDPOINT typed wrong ("Invalid argument")
            raise DaemonUnavailable(f"{unreachable_message(self._endpoint)} ({exc.strerror})") from None
        self._connected = True

    def send(self, frames: list[bytes], timeout: float) -> None:
        zmq = self._zmq
        self._connect()
        deadline = time.monotonic() + timeout
        while not self._sock.poll(int(min(0.05, max(deadline - time.monotonic(), 0)) * 1000), zmq.POLLOUT):
            self._check_auth()
            if time.monotonic() >= deadline:
                raise DaemonUnavailable(unreachable_message(self._endpoint))
            if self._ended:  # refused (no daemon yet) or dropped: try again, the listener checked again
                self._connect()
        self._read_monitor()
        self._dropped = False  # a connection that ended before this request took none of its replies
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=len(frames[-1]) < 65536)
        except zmq.Again:
            raise DaemonUnavailable(unreachable_message(self._endpoint)) from None

    def recv(self, timeout: float | None) -> list[bytes] | None:
        zmq = self._zmq
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0) * 1000
            ready = dict(poller.poll(wait))
            if self._sock in ready:
                return self._recv_bounded()
            self._read_monitor()
            if self._dropped:
                self._dropped = False
                raise DaemonUnavailable(f"lost the connection to the daemon at {self._endpoint} (it closed it,"
                                        " or sent a part bigger than a reply can be)")
            if not ready:
                return None

    def _recv_bounded(self) -> list[bytes]:
        """The message that is ready, part by part, refused past the parts and bytes a reply can have."""
        zmq = self._zmq
        parts: list[bytes] = []
        size = 0
        while True:
            part = self._sock.recv(zmq.NOBLOCK)  # the whole message is here already
            parts.append(part)
            size += len(part)
            more = self._sock.getsockopt(zmq.RCVMORE)
            if size > self._max_message_bytes:
                self._drop(f"a message of at least {size} bytes, over the limit of {self._max_message_bytes} bytes")
            if more and len(parts) >= self._max_parts:
                self._drop(f"a message of more than {self._max_parts} parts, over the limit")
            if not more:
                return parts

    def _drop(self, what: str) -> None:
        """Close the socket with the rest of a message past the bounds; the next send connects anew."""
        self._shut()
        self._open()
        raise DaemonUnavailable(f"the daemon at {self._endpoint} sent {what}: the connection was dropped")

    def close(self) -> None:
        self._shut()
        self._ctx.term()


class _PureTransport:
    """Pure-Python ZMTP; connects lazily and reconnects on the next send after a lost connection."""

    name = "pure"

    def __init__(self, endpoint: str, connect_timeout: float, token: str, max_message: tuple[int, int]) -> None:
        self._endpoint = endpoint
        self._max_parts, self._max_message_bytes = max_message
        self._connect_timeout = connect_timeout
        self._plain = plain_credentials(token)
        self._conn: ZMTPConnection | None = None

    def _connection(self, timeout: float) -> ZMTPConnection:
        if self._conn is not None and not self._conn.closed and self._conn.peer_closed():
            self._conn.close()  # the daemon went away (or restarted) since the last message: connect anew
        if self._conn is None or self._conn.closed:
            check_listener(self._endpoint)
            try:
                self._conn = ZMTPConnection(self._endpoint, timeout=min(timeout, self._connect_timeout),
                                            plain=self._plain, max_parts=self._max_parts,
                                            max_message_bytes=self._max_message_bytes)
            except ZMTPAuthError as exc:
                raise refused_token(self._endpoint, str(exc)) from None
            except (OSError, ValueError) as exc:
                raise DaemonUnavailable(f"{unreachable_message(self._endpoint)} ({exc})") from exc
        return self._conn

    def send(self, frames: list[bytes], timeout: float) -> None:
        conn = self._connection(timeout)
        try:
            conn.send_multipart(frames, timeout=timeout)
        except OSError as exc:
            raise DaemonUnavailable(f"{unreachable_message(self._endpoint)} ({exc})") from exc

    def recv(self, timeout: float | None) -> list[bytes] | None:
        if self._conn is None and timeout is not None:
            time.sleep(timeout)  # nothing was sent yet, so nothing can arrive
            return None
        if self._conn is None or self._conn.closed:
            raise DaemonUnavailable(f"not connected to the daemon at {self._endpoint}")
        try:
            return self._conn.recv_multipart(timeout)
        except (ZMTPError, OSError) as exc:
            raise DaemonUnavailable(f"lost the connection to the daemon at {self._endpoint} ({exc})") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _is_final_type(header: bytes) -> bool:
    """Whether a reply's header (one that failed to decode) names a final event type."""
    try:
        return json.loads(header).get("type") in FINAL_TYPES
    except (ValueError, AttributeError):
        return False


def pyzmq_available() -> bool:
    """True when ``import zmq`` works (it may be blocked or missing inside a host application)."""
    try:
        import zmq  # noqa: F401
    except ImportError:
        return False
    return True


class SineClient:
    """A connection to the sine daemon. See docs/design.md §4 for the API contract.

    ``token=None`` reads the token file at every request, so a daemon started after the client
    (which writes the token at first start) is still authenticated against. The token is also the
    connection's PLAIN password: when it changes, the next request opens a new connection.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        transport: str = "auto",
        timeout: float = 10.0,
        limits: Limits | None = None,
        silence_timeout: float = SILENT_DAEMON_S,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        self.endpoint = endpoint or default_endpoint()
        self.timeout = timeout
        self._token = token
        self._limits = limits or Limits()
        if transport == "auto":
            transport = "pyzmq" if pyzmq_available() else "pure"
        self._kind = transport
        self.silence_timeout = silence_timeout
        self._last_heard = time.monotonic()
        self._transport_token = self._token_now()
        self._transport: _Transport = self._make_transport(self._transport_token)
        self._ids = (f"{secrets.token_hex(4)}-{n}" for n in itertools.count(1))
        self._active: set[str] = set()  # request ids whose events are still wanted
        self._buffer: deque[Event] = deque()
        self._jobs: dict[str, str] = {}  # edit request id -> daemon job id

    @property
    def transport_name(self) -> str:
        """``"pyzmq"`` or ``"pure"``: which transport ``auto`` picked."""
        return self._kind

    def _make_transport(self, token: str) -> _Transport:
        if self._kind == "pyzmq":
            return _PyzmqTransport(self.endpoint, token, self._limits.max_reply_message(),
                                   self._limits.max_reply_part())
        return _PureTransport(self.endpoint, self.timeout, token, self._limits.max_reply_message())

    # ------------------------------------------------------------ plumbing

    def _token_now(self) -> str:
        if self._token is not None:
            return self._token
        return read_token() or ""

    def _send(self, rtype: str, fields: dict[str, Any], blobs: list[tuple[dict[str, Any], bytes]] | None = None,
              timeout: float | None = None) -> str:
        rid = next(self._ids)
        token = self._token_now()
        if token != self._transport_token and not self._active:
            # The token file changed: authenticate a new connection with it (not while events are due
            # on the old one, which stays authenticated).
            self._transport.close()
            self._transport_token = token
            self._transport = self._make_transport(token)
        frames = encode_message(make_request(rtype, rid, token, **fields), blobs)
        if not self._active:  # the silence window starts with the first pending request
            self._last_heard = time.monotonic()
        self._active.add(rid)
        try:
            self._transport.send(frames, self.timeout if timeout is None else timeout)
        except BaseException:
            self._active.discard(rid)
            raise
        return rid

    def _pump(self, timeout: float | None) -> bool:
        """Receive at most one message into the buffer; False if nothing arrived in time.

        While requests are pending the wait also ends when the silence window does, so a daemon that went
        away (or restarted and forgot the job) is noticed then, however long the caller would wait."""
        if self._active:
            left = max(self.silence_timeout - (time.monotonic() - self._last_heard), 0.0) + 0.05
            timeout = left if timeout is None else min(timeout, left)
        frames = self._transport.recv(timeout)
        if frames is None:
            self._check_silence()
            return False
        self._last_heard = time.monotonic()
        try:
            event = decode_reply(frames, self._limits)
        except ProtocolError as exc:
            if exc.request_id not in self._active or not _is_final_type(frames[0]):
                return True  # a malformed reply that cannot be routed, or a progress event a later one supersedes
            # The final reply of a pending request that we cannot take (e.g. a result over
            # Limits.max_reply_bytes): end that request in words now, not at the silence timeout.
            event = decode_reply(make_error(BAD_REPLY, f"the daemon's reply could not be read: {exc.message}",
                                            exc.request_id, self._jobs.get(exc.request_id)))
        if event.id not in self._active or event.type == HEARTBEAT:
            return True  # late reply to a request that timed out, a cancel's acknowledgement, or a heartbeat
            # (which has done its work: any byte from the daemon restarts the silence timer)
        if event.type == ACCEPTED and event.job:
            self._jobs[event.id] = event.job
        if event.is_final:
            self._active.discard(event.id)
        self._buffer.append(event)
        return True

    def _check_silence(self) -> None:
        """Raise DaemonUnavailable when requests are pending and the daemon sent nothing for too long."""
        silent = time.monotonic() - self._last_heard
        if self._active and silent > self.silence_timeout:
            self._active.clear()
            raise DaemonUnavailable(
                f"the daemon at {self.endpoint} sent nothing for {silent:.0f} s while a request was pending"
                " (it sends a heartbeat every few seconds while it works): it stopped answering or was stopped"
            )

    def _take(self, match: Callable[[Event], bool]) -> Event | None:
        for index, event in enumerate(self._buffer):
            if match(event):
                del self._buffer[index]
                return event
        return None

    def _wait_for(self, rid: str, timeout: float | None) -> Event | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self._take(lambda e: e.id == rid)
            if event is not None:
                return event
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._pump(remaining)

    def _call(self, rtype: str, expect: str, timeout: float | None = None) -> dict[str, Any]:
        timeout = self.timeout if timeout is None else timeout
        rid = self._send(rtype, {}, timeout=timeout)
        try:
            event = self._wait_for(rid, timeout)
        finally:
            self._active.discard(rid)
        if event is None:
            raise DaemonUnavailable(f"{unreachable_message(self.endpoint)} (no reply to {rtype} in {timeout:g} s)")
        event.raise_for_error()
        if event.type != expect:
            raise ProtocolError(BAD_REPLY, f"expected {expect} in reply to {rtype}, got {event.type}", rid)
        return event.header

    # ------------------------------------------------------------ requests

    @property
    def last_heard(self) -> float:
        """``time.monotonic()`` when the daemon last sent anything (a heartbeat too, which no event shows)."""
        return self._last_heard

    def hello(self) -> dict[str, Any]:
        """Daemon version, protocol version, device, models and cache stats (the ``welcome`` header)."""
        return self._call(HELLO, WELCOME)

    def ping(self, timeout: float = 2.0) -> bool:
        """True if a daemon answers at the endpoint within ``timeout`` (even with an error such as a bad token)."""
        try:
            self._call(PING, PONG, timeout)
        except DaemonUnavailable:
            return False
        except ProtocolError:
            return True
        return True

    def status(self) -> dict[str, Any]:
        """Queue, jobs, cache and GPU figures (the ``status`` header)."""
        return self._call(STATUS, STATUS)

    def submit_edit(
        self,
        image: RGBAImage,
        prompt: str,
        subject: str = "",
        style: str = "photo",
        seed: int = 0,
        sampling: dict[str, Any] | None = None,
        finetune: dict[str, Any] | None = None,
        output_size: tuple[int, int] | None = None,
        mask: Mask | None = None,
        compress: bool = True,
        count: int = 1,
        style_image: RGBAImage | None = None,
        style_subject: str = "",
    ) -> str:
        """Send an edit and return its request id; follow it with :meth:`events` or :meth:`poll_event`.

        ``count`` results (seeds ``seed, seed+1, …``) come back in one ``result`` (:attr:`Event.images`);
        ``style_image`` is the second picture of multi-model guidance (``sampling.style_weight`` is its β).
        """
        fields: dict[str, Any] = {"prompt": prompt, "subject": subject, "style": style, "seed": seed}
        if count != 1:
            fields["count"] = count
        if style_subject:
            fields["style_subject"] = style_subject
        if sampling is not None:
            fields["sampling"] = dict(sampling)
        if finetune is not None:
            fields["finetune"] = dict(finetune)
        if output_size is not None:
            fields["output"] = {"width": output_size[0], "height": output_size[1]}
        blobs = [image_blob(image, "image", compress)]
        if mask is not None:
            blobs.append(mask_blob(mask, compress))
        if style_image is not None:
            blobs.append(image_blob(style_image, "style", compress))
        return self._send(EDIT, fields, blobs)

    def cancel(self, job: str) -> None:
        """Ask the daemon to cancel ``job`` (a job id, or the edit's request id); the edit then ends with ``cancelled``."""
        job = self._jobs.get(job, job)
        rid = self._send(CANCEL, {"job": job})
        self._active.discard(rid)  # its acknowledgement is not needed: the edit's own final event follows

    # ------------------------------------------------------------ events

    def poll_event(self, timeout: float = 0.0) -> Event | None:
        """The next event of any pending request, or None after ``timeout`` seconds (0 = don't wait)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self._buffer:
            received = self._pump(max(deadline - time.monotonic(), 0.0))
            if not received and time.monotonic() >= deadline:
                return None
        return self._buffer.popleft()

    def events(self, rid: str, timeout: float | None = None) -> Iterator[Event]:
        """Events of request ``rid`` until its ``result``, ``error`` or ``cancelled``.

        ``timeout`` bounds the wait for each next event (None: wait as long as it takes); when it
        passes, :class:`DaemonUnavailable` is raised.
        """
        while True:
            if rid not in self._active and not any(e.id == rid for e in self._buffer):
                return
            event = self._wait_for(rid, timeout)
            if event is None:
                raise DaemonUnavailable(
                    f"{unreachable_message(self.endpoint)} (no event for request {rid} in {timeout:g} s)"
                )
            yield event
            if event.is_final:
                return

    def wait_result(self, rid: str, timeout: float | None = None) -> Event:
        """Drain :meth:`events` and return the final one, raising :class:`ProtocolError` on ``error``."""
        final: Event | None = None
        for event in self.events(rid, timeout):
            final = event
        if final is None:
            raise ValueError(f"no events pending for request {rid}")
        if final.type == ERROR:
            final.raise_for_error()
        return final

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close the connection; pending events are dropped."""
        self._transport.close()
        self._active.clear()
        self._buffer.clear()

    def __enter__(self) -> SineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
