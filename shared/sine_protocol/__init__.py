"""sine-edit wire protocol v1: messages, pixel frames, paths/token and the daemon client.

Stdlib only (pyzmq is used when importable). All internal imports are relative so the package
also works when vendored into a plugin as ``_vendor/sine_protocol``.
"""

from __future__ import annotations

from .client import SineClient
from .errors import DaemonNotInstalled, DaemonUnavailable, ProtocolError
from .frames import Mask, RGBAImage
from .messages import PROTOCOL_VERSION, Event, Limits

__all__ = [
    "PROTOCOL_VERSION",
    "DaemonNotInstalled",
    "DaemonUnavailable",
    "Event",
    "Limits",
    "Mask",
    "ProtocolError",
    "RGBAImage",
    "SineClient",
]
