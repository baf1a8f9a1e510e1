"""A minimal pure-Python ZMTP 3.1 DEALER client (NULL or PLAIN security) over TCP or a Unix socket.

Krita's and GIMP's bundled Pythons cannot be counted on to have pyzmq, so the plugins talk to
the daemon's pyzmq ROUTER with this instead. It implements only what a DEALER talking to one
ROUTER needs (RFC 37/ZMTP 3.1): the greeting, the NULL and PLAIN (RFC 24) handshakes, short and
long frames with the MORE flag, and PING -> PONG. One connection, one thread; no reconnects.

The client sends the first 11 greeting bytes, reads the server's greeting (libzmq sends the rest
of its own once it has our version byte) and answers with the mechanism the server announces:
PLAIN (with the ``plain`` credentials) for the daemon, NULL for a stand-in that asks for none.
"""

from __future__ import annotations

import socket
import struct
import time

SIGNATURE_HEAD = b"\xff" + b"\x00" * 8 + b"\x7f"
GREETING_SIZE = 64
_FLAG_MORE = 0x01
_FLAG_LONG = 0x02
_FLAG_COMMAND = 0x04
_COMPATIBLE_PEERS = {"DEALER": {b"ROUTER", b"DEALER", b"REP"}}
_SMALL_FRAME = 64 * 1024  # below this, header and body go out in one send
_READ_CHUNK = 1024 * 1024
MAX_COMMAND_BYTES = 64 * 1024  # READY's metadata, PING, ERROR: a few hundred bytes; refused past this as it arrives


class ZMTPError(ConnectionError):
    """The peer broke the protocol or closed the connection."""


class ZMTPAuthError(ZMTPError):
    """The peer refused our credentials (or asked for ones we do not have) during the handshake."""


def _greeting(mechanism: bytes = b"NULL") -> bytes:
    return SIGNATURE_HEAD + bytes([3, 1]) + mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def _frame_header(flags: int, size: int) -> bytes:
    if size > 255:
        return struct.pack(">BQ", flags | _FLAG_LONG, size)
    return struct.pack(">BB", flags, size)


def _command(name: bytes, data: bytes = b"") -> bytes:
    body = bytes([len(name)]) + name + data
    return _frame_header(_FLAG_COMMAND, len(body)) + body


def _properties(props: dict[str, bytes]) -> bytes:
    out = bytearray()
    for name, value in props.items():
        raw = name.encode("ascii")
        out += bytes([len(raw)]) + raw + struct.pack(">I", len(value)) + value
    return bytes(out)


def _parse_properties(data: bytes) -> dict[bytes, bytes]:
    props: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        name_len = data[pos]
        name = data[pos + 1 : pos + 1 + name_len]
        pos += 1 + name_len
        if pos + 4 > len(data):
            raise ZMTPError("truncated READY property")
        (value_len,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if pos + value_len > len(data):
            raise ZMTPError("truncated READY property value")
        props[name.lower()] = data[pos : pos + value_len]
        pos += value_len
    return props


def parse_endpoint(endpoint: str) -> tuple[int, str | tuple[str, int]]:
    """``tcp://host:port`` or ``ipc:///path`` (``ipc://@name`` = Linux abstract) -> (family, address)."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or not rest:
        raise ValueError(f"not a ZeroMQ endpoint: {endpoint!r}")
    if scheme == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not port.isdigit() or not host or int(port) > 65535:
            raise ValueError(f"tcp endpoint needs host:port (port 0..65535), got {endpoint!r}")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return family, (host, int(port))
    if scheme == "ipc":
        if not hasattr(socket, "AF_UNIX"):
            raise ValueError("ipc:// endpoints need Unix domain sockets, which this platform lacks")
        path = "\0" + rest[1:] if rest.startswith("@") else rest
        return socket.AF_UNIX, path
    raise ValueError(f"unsupported transport {scheme!r} in {endpoint!r} (use tcp:// or ipc://)")


class ZMTPConnection:
    """A connected, handshaken DEALER. Not thread-safe: use it from one thread."""

    def __init__(
        self, endpoint: str, timeout: float = 10.0, socket_type: str = "DEALER", max_frame_bytes: int = 1 << 31,
        plain: tuple[bytes, bytes] | None = None, max_parts: int | None = None, max_message_bytes: int | None = None,
    ) -> None:
        """``max_parts`` / ``max_message_bytes`` bound one incoming message (None: unbounded): past either, the
        connection ends with a ZMTPError instead of holding a peer's endless message."""
        if socket_type not in _COMPATIBLE_PEERS:
            raise ValueError(f"unsupported socket type {socket_type!r}")
        if plain is not None and (len(plain[0]) > 255 or len(plain[1]) > 255):
            raise ValueError("PLAIN user name and password are at most 255 bytes each")
        self.plain = plain
        self.mechanism = b"NULL"
        self.endpoint = endpoint
        self.socket_type = socket_type
        self.max_frame_bytes = max_frame_bytes
        self.max_parts = max_parts
        self.max_message_bytes = max_message_bytes
        self._parts_bytes = 0
        self.peer_properties: dict[bytes, bytes] = {}
        self._rbuf = bytearray()
        self._parts: list[bytes] = []
        self._closed = False
        family, address = parse_endpoint(endpoint)
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(address)
            if family != getattr(socket, "AF_UNIX", None):
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._handshake(time.monotonic() + timeout)
        except BaseException:
            self._sock.close()
            self._closed = True
            raise

    # ------------------------------------------------------------ handshake

    def _handshake(self, deadline: float) -> None:
        # Send up to the version byte, then answer with the mechanism the server announces.
        self._sock.sendall(_greeting()[:11])
        greeting = self._read_greeting(deadline)
        mechanism = greeting[12:32].rstrip(b"\x00")
        if mechanism not in (b"NULL", b"PLAIN"):
            raise ZMTPError(f"peer wants security mechanism {mechanism!r}; only NULL and PLAIN are supported")
        if mechanism == b"PLAIN" and self.plain is None:
            raise ZMTPAuthError(f"{self.endpoint} asks for a token (PLAIN) and none was given")
        self._sock.sendall(_greeting(mechanism)[11:])
        self.mechanism = mechanism
        if mechanism == b"PLAIN":
            assert self.plain is not None
            user, password = self.plain
            self._sock.sendall(_command(b"HELLO", bytes([len(user)]) + user + bytes([len(password)]) + password))
            self._expect_command(b"WELCOME", deadline)
            self._sock.sendall(_command(b"INITIATE", self._metadata()))
        else:
            self._sock.sendall(_command(b"READY", self._metadata()))
        data = self._expect_command(b"READY", deadline)
        self.peer_properties = _parse_properties(data)
        peer_type = self.peer_properties.get(b"socket-type", b"")
        if peer_type not in _COMPATIBLE_PEERS[self.socket_type]:
            raise ZMTPError(f"peer socket type {peer_type!r} cannot talk to {self.socket_type}")

    def _metadata(self) -> bytes:
        return _properties({"Socket-Type": self.socket_type.encode(), "Identity": b""})

    def _read_greeting(self, deadline: float) -> bytes:
        head = self._read_exact(11, deadline)
        if head[0] != 0xFF or not head[9] & 0x01:
            raise ZMTPError(f"{self.endpoint} is not a ZeroMQ (ZMTP 3) peer")
        if head[10] < 3:
            raise ZMTPError(f"peer speaks ZMTP {head[10]}, 3.x is needed")
        return head + self._read_exact(GREETING_SIZE - 11, deadline)

    def _expect_command(self, expected: bytes, deadline: float) -> bytes:
        """The data of the next command, which must be ``expected``; ERROR becomes ZMTPAuthError."""
        while True:
            frame = self._next_frame()
            if frame is None:
                if not self._fill(deadline):
                    raise TimeoutError(f"no {expected.decode()} from {self.endpoint}")
                continue
            flags, body = frame
            if not flags & _FLAG_COMMAND:
                raise ZMTPError(f"peer sent a message before {expected.decode()}")
            if body[1:5] == b"RROR" and body[:1] != b"\x05":
                body = b"\x05E" + body[1:]  # libzmq 4.3 garbles the size byte of the ERROR it sends on a ZAP denial
            name, data = self._split_command(body)
            if name == b"ERROR":
                reason = data[1 : 1 + data[0]].decode("utf-8", "replace") if data else ""
                raise ZMTPAuthError(f"peer refused the connection: {reason or 'no reason given'}")
            if name != expected:
                raise ZMTPError(f"expected {expected.decode()}, got {name!r}")
            return data

    def _read_exact(self, size: int, deadline: float) -> bytes:
        while len(self._rbuf) < size:
            if not self._fill(deadline, size - len(self._rbuf)):
                raise TimeoutError(f"handshake with {self.endpoint} timed out")
        data = bytes(self._rbuf[:size])
        del self._rbuf[:size]
        return data

    # ------------------------------------------------------------ reading

    def _fill(self, deadline: float | None, want: int = _READ_CHUNK) -> bool:
        """Read what is available into the buffer; False if nothing came before ``deadline``."""
        if self._closed:
            raise ZMTPError("connection is closed")
        remaining = None if deadline is None else deadline - time.monotonic()
        self._sock.settimeout(None if remaining is None else max(remaining, 0.0))
        try:
            chunk = self._sock.recv(min(want, _READ_CHUNK))
        except (TimeoutError, BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.close()
            raise ZMTPError(f"connection to {self.endpoint} failed: {exc}") from exc
        if not chunk:
            self.close()
            raise ZMTPError(f"{self.endpoint} closed the connection")
        self._rbuf += chunk
        return True

    def _next_frame(self) -> tuple[int, bytes] | None:
        """Take one complete frame off the buffer, or None if it is not all here yet."""
        buf = self._rbuf
        if not buf:
            return None
        flags = buf[0]
        if flags & 0xF8:
            self.close()
            raise ZMTPError(f"bad frame flags 0x{flags:02x}")
        if flags & _FLAG_LONG:
            if len(buf) < 9:
                return None
            (size,) = struct.unpack_from(">Q", buf, 1)
            start = 9
        else:
            if len(buf) < 2:
                return None
            size, start = buf[1], 2
        if size > self.max_frame_bytes:
            self.close()
            raise ZMTPError(f"frame of {size} bytes is over the limit of {self.max_frame_bytes}")
        if flags & _FLAG_COMMAND and size > MAX_COMMAND_BYTES:
            self.close()
            raise ZMTPError(f"a command of {size} bytes is over the limit of {MAX_COMMAND_BYTES} bytes")
        if not flags & _FLAG_COMMAND and self.max_message_bytes is not None \
                and self._parts_bytes + size > self.max_message_bytes:  # refused before the frame is all here
            self.close()
            raise ZMTPError(f"a message of at least {self._parts_bytes + size} bytes is over the limit of"
                            f" {self.max_message_bytes} bytes")
        end = start + size
        if len(buf) < end:
            return None
        with memoryview(buf) as view:
            body = bytes(view[start:end])  # one copy; the view is released before the buffer shrinks
        del buf[:end]
        return flags, body

    @staticmethod
    def _split_command(body: bytes) -> tuple[bytes, bytes]:
        if not body or len(body) < 1 + body[0]:
            raise ZMTPError("malformed command frame")
        return body[1 : 1 + body[0]], body[1 + body[0] :]

    def _handle_command(self, body: bytes) -> None:
        name, data = self._split_command(body)
        if name == b"PING":
            context = data[2:18]
            # Never waited on: a peer that sends PINGs and reads none of the PONGs would fill the send buffer
            # and hold the reader for ever; past what the buffer takes at once, the connection ends.
            self._send_raw([_command(b"PONG", context)], 0.0)
        elif name == b"ERROR":
            self.close()
            raise ZMTPError("peer sent ERROR and closed the connection")
        # PONG and unknown commands are ignored.

    def recv_multipart(self, timeout: float | None = None) -> list[bytes] | None:
        """The next message's frames, or None if none is complete within ``timeout`` seconds.

        A timeout mid-message loses nothing: the partial message stays buffered for the next call.
        ``timeout=None`` blocks; ``0`` only takes what has already arrived. The timeout holds while bytes keep
        coming too (a peer streaming commands without end).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        read = False
        while True:
            while (frame := self._next_frame()) is not None:
                flags, body = frame
                if flags & _FLAG_COMMAND:
                    self._handle_command(body)
                    if deadline is not None and time.monotonic() > deadline:
                        return None
                    continue
                self._parts.append(body)
                self._parts_bytes += len(body)
                if not flags & _FLAG_MORE:
                    message, self._parts, self._parts_bytes = self._parts, [], 0
                    return message
                if self.max_parts is not None and len(self._parts) >= self.max_parts:
                    self.close()
                    raise ZMTPError(f"a message of more than {self.max_parts} parts is over the limit")
            if read and deadline is not None and time.monotonic() > deadline:
                return None  # bytes still coming, the time is up: the rest waits for the next call
            if not self._fill(deadline):
                return None
            read = True

    # ------------------------------------------------------------ writing

    def _send_raw(self, chunks: list[bytes], timeout: float | None) -> None:
        if self._closed:
            raise ZMTPError("connection is closed")
        self._sock.settimeout(timeout)
        try:
            for chunk in chunks:
                self._sock.sendall(chunk)
        except OSError as exc:
            # A partial write leaves the stream unusable.
            self.close()
            if isinstance(exc, TimeoutError):
                raise TimeoutError(f"sending to {self.endpoint} timed out") from exc
            raise ZMTPError(f"sending to {self.endpoint} failed: {exc}") from exc

    def send_multipart(self, frames: list[bytes], timeout: float | None = None) -> None:
        """Send one message; ``timeout`` bounds the whole write (the connection is closed on timeout)."""
        if not frames:
            raise ValueError("a message has at least one frame")
        chunks: list[bytes] = []
        pending = bytearray()
        last = len(frames) - 1
        for index, frame in enumerate(frames):
            body = bytes(frame) if not isinstance(frame, bytes) else frame
            pending += _frame_header(_FLAG_MORE if index < last else 0, len(body))
            if len(body) < _SMALL_FRAME:
                pending += body
            else:
                chunks += [bytes(pending), body]
                pending = bytearray()
        if pending:
            chunks.append(bytes(pending))
        self._send_raw(chunks, timeout)

    # ------------------------------------------------------------ lifetime

    @property
    def closed(self) -> bool:
        return self._closed

    def peer_closed(self) -> bool:
        """True when the peer has closed or reset the connection and sent nothing more (e.g. the daemon was
        restarted since the last message): a request sent now would go nowhere. Does not block."""
        if self._closed:
            return True
        try:
            self._sock.setblocking(False)  # every read and write sets its own timeout again
            data = self._sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False  # open, nothing to read
        except OSError:
            return True  # reset
        return data == b""

    def close(self) -> None:
        """Close the TCP/Unix socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self) -> ZMTPConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
