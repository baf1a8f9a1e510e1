"""A hostile ZMTP 3 server on a real TCP socket, for the clients' bounds on what they accept.

It speaks just enough of the protocol (greeting, PLAIN as the server, any credentials) to get past a
client's handshake, waits for the client's first message, then sends the raw bytes it was given (frames a
daemon never sends: endless parts, a part announced bigger than any reply), then `forever` again and again
(a stream that never ends: commands) without reading, and keeps the connection open.
"""

from __future__ import annotations

import socket
import struct
import threading

_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"


def frame(body: bytes, more: bool = False, command: bool = False) -> bytes:
    flags = (0x01 if more else 0) | (0x04 if command else 0)
    if len(body) > 255:
        return struct.pack(">BQ", flags | 0x02, len(body)) + body
    return struct.pack(">BB", flags, len(body)) + body


def announced_part(size: int) -> bytes:
    """The header of one last part of `size` bytes, with none of its body."""
    return struct.pack(">BQ", 0x02, size)


def command(name: bytes, data: bytes = b"") -> bytes:
    return frame(bytes([len(name)]) + name + data, command=True)


def _read_frame(conn: socket.socket) -> tuple[int, bytes]:
    flags = _read_exact(conn, 1)[0]
    size = struct.unpack(">Q", _read_exact(conn, 8))[0] if flags & 0x02 else _read_exact(conn, 1)[0]
    return flags, _read_exact(conn, size)


def _read_exact(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    return bytes(data)


class HostileServer:
    """Listens on 127.0.0.1; each connection gets the handshake, then `payload` after its first message."""

    def __init__(self, payload: bytes, forever: bytes = b"") -> None:
        self.payload = payload
        self.forever = forever
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.sending = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        try:
            conn.sendall(_SIGNATURE + bytes([3, 1]) + b"PLAIN".ljust(20, b"\0") + b"\x01" + b"\0" * 31)
            _read_exact(conn, 64)
            _read_frame(conn)  # HELLO (credentials taken whatever they are)
            conn.sendall(command(b"WELCOME"))
            _read_frame(conn)  # INITIATE
            conn.sendall(command(b"READY", b"\x0bSocket-Type" + struct.pack(">I", 6) + b"ROUTER"))
            while _read_frame(conn)[0] & 0x05:  # commands and all but the last part of the first message
                pass
            self.sending.set()
            conn.sendall(self.payload)
            while self.forever:
                conn.sendall(self.forever)
        except OSError:
            pass

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a close alone does not)
        self._listener.close()
        for conn in self.connections:
            conn.close()
        self._thread.join(5)
