"""Who holds a loopback TCP port, read from Linux's /proc/net/tcp{,6}: the check a client makes before
its PLAIN handshake, which carries the token in clear.

The daemon's port is fixed (47633), so on a machine shared with other users anyone can listen there
while the painter's daemon is down and would be handed the token and the pictures. A listener of
another user is not the painter's daemon; root's is trusted (it can read the token file anyway, and a
daemon run by root serving a desktop user, as the real-host tests do, is a setup that works). Elsewhere (macOS, Windows, no /proc) nothing can be read
and the client goes on as before; the ipc socket in the owner-only runtime folder has no such gap.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from .errors import DaemonUnavailable

_LISTEN = "0A"
_LOOPBACK_NAMES = {"localhost": ("127.0.0.1", "::1")}


def _hex_v4(address: str) -> str:
    return f"{struct.unpack('<I', socket.inet_pton(socket.AF_INET, address))[0]:08X}"


def _hex_v6(address: str) -> str:
    return "".join(f"{word:08X}" for word in struct.unpack("<4I", socket.inet_pton(socket.AF_INET6, address)))


def _accepting_addresses(host: str) -> tuple[set[str], set[str]] | None:
    """/proc's hex forms of the local addresses a listener could take a connection to `host` on
    (itself, the wildcard, IPv4 through a dual-stack IPv6 socket), as (tcp, tcp6); None if not loopback."""
    v4, v6 = set(), set()
    for name in _LOOPBACK_NAMES.get(host.lower(), (host,)):
        try:
            if ":" in name:
                if name != "::1" and not name.lower().startswith("::ffff:127."):
                    return None
                v6 |= {_hex_v6(name), _hex_v6("::")}
            else:
                if not name.startswith("127."):
                    return None
                v4 |= {_hex_v4(name), _hex_v4("0.0.0.0")}
                v6 |= {_hex_v6("::ffff:" + name), _hex_v6("::")}
        except OSError:  # not an address (a host name other than localhost): nothing to say
            return None
    return v4, v6


def loopback_owner(endpoint: str) -> int | None:
    """The uid of the process listening where `endpoint` (tcp://loopback:port) connects, or None when
    that cannot be known (not loopback TCP, no /proc, nobody listening)."""
    scheme, _, rest = endpoint.partition("://")
    host, _, port_text = rest.rpartition(":")
    if scheme != "tcp" or not port_text.isdigit():
        return None
    accepting = _accepting_addresses(host.strip("[]"))
    if accepting is None:
        return None
    port = f"{int(port_text):04X}"
    for table, addresses in zip(("tcp", "tcp6"), accepting, strict=True):
        try:
            lines = Path("/proc/net", table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and fields[3] == _LISTEN and fields[1].rpartition(":")[::2] in (
                    (a, port) for a in addresses):
                return int(fields[7])
    return None


def check_listener(endpoint: str) -> None:
    """Raise DaemonUnavailable when another user's program holds the loopback port of `endpoint`."""
    if not hasattr(os, "geteuid"):
        return
    uid = loopback_owner(endpoint)
    if uid is not None and uid not in (os.geteuid(), 0):  # root may read the token file anyway
        port = endpoint.rpartition(":")[2]
        raise DaemonUnavailable(
            f"port {port} on this machine is held by another user's program (uid {uid}), not your SINE "
            "daemon: the token was not sent. Stop that program, or run the daemon and the plugins with "
            "another port (SINE_ENDPOINT)")
