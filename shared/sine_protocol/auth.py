"""Connection-level authentication shared by the daemon and both client transports.

The daemon's ROUTER runs the ZMTP PLAIN mechanism (RFC 24) with a ZAP handler: the user name is
fixed and the password is the token from ``paths.token_file()``. A peer without the token never
completes the handshake, so it can neither receive another client's replies nor hold a pipe.
PLAIN sends the token in clear, which is fine on loopback and ipc (the only endpoints the daemon
binds without ``--allow-remote``); the token file is readable by the user alone.
"""

from __future__ import annotations

PLAIN_USERNAME = "sine"
ZAP_DOMAIN = "sine"
MAX_PLAIN_FIELD = 255
NO_TOKEN = b"-"  # tokens are hex, so this never matches one  # PLAIN's user name and password are each at most 255 bytes


def plain_credentials(token: str) -> tuple[bytes, bytes]:
    """(user name, password) for a client holding ``token``. No token yet gives a password no daemon
    accepts (libzmq refuses an empty one), so the handshake fails as "refused" rather than at setup."""
    password = token.encode("utf-8", "surrogatepass")[:MAX_PLAIN_FIELD]
    return PLAIN_USERNAME.encode(), password or NO_TOKEN
