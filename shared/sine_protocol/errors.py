"""Exceptions and error codes shared by the daemon and the clients.

Kept in their own module so that every other module (frames, messages, client) can raise them
without import cycles, and so the codes on the wire are spelled in exactly one place.
"""

from __future__ import annotations

# Error codes carried in ``error`` replies (docs/design.md §3).
BAD_REQUEST = "bad_request"
UNSUPPORTED_VERSION = "unsupported_version"
UNAUTHORIZED = "unauthorized"
TOO_LARGE = "too_large"
MODEL_MISSING = "model_missing"
OUT_OF_MEMORY = "out_of_memory"
BUSY = "busy"
CANCELLED = "cancelled"
INTERNAL = "internal"
DAEMON_STOPPING = "daemon_stopping"  # the daemon was stopped (SIGTERM, Ctrl+C) before the job finished

ERROR_CODES: frozenset[str] = frozenset(
    {BAD_REQUEST, UNSUPPORTED_VERSION, UNAUTHORIZED, TOO_LARGE, MODEL_MISSING, OUT_OF_MEMORY, BUSY, CANCELLED, INTERNAL,
     DAEMON_STOPPING}
)

# Client-side only (never sent on the wire): the daemon's reply itself was malformed.
BAD_REPLY = "bad_reply"

# Codes after which sending the same request again later may succeed.
RETRIABLE_CODES: frozenset[str] = frozenset({BUSY, OUT_OF_MEMORY, DAEMON_STOPPING})


class ProtocolError(Exception):
    """A request or reply broke protocol v1; ``code`` is one of the error codes above.

    ``request_id`` is the offending message's ``id`` when it could be read, so the daemon can
    echo it in the ``error`` reply and the client can route it to the right caller.
    """

    def __init__(self, code: str, message: str, request_id: str | None = None, job: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id
        self.job = job

    @property
    def retriable(self) -> bool:
        """Whether the same request may succeed if sent again later."""
        return self.code in RETRIABLE_CODES


class DaemonUnavailable(ConnectionError):
    """The daemon did not answer in time or the connection to it failed."""


class DaemonNotInstalled(RuntimeError):
    """There is no daemon command file: the backend was never installed for this user."""
