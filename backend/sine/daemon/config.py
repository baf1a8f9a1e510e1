"""Daemon settings: command-line flags over environment over defaults, checked once at start."""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and why."""


@dataclass
class DaemonConfig:
    """Everything `sine daemon` needs; paths default to sine_protocol.paths."""

    endpoint: str
    state_dir: Path
    cache_dir: Path
    runtime_dir: Path | None  # where the ipc:// socket goes; None = no ipc endpoint
    model: str | None = None
    device: str | None = None
    cache_budget: int = 2 * 1000**3
    max_input_pixels: int | None = None
    max_output_pixels: int | None = None
    max_message_bytes: int | None = None
    max_queued_per_client: int = 4
    max_queued_total: int = 32
    max_queued_bytes: int | None = 2 * 1024**3  # pixels held by pending jobs, all clients together
    allow_remote: bool = False
    progress_interval_s: float = 0.25
    preview_every: int = 5
    threads: int | None = None  # torch CPU threads (set by the worker, the only thread that imports torch)
    send_hwm: int = 1000  # replies queued per client before progress is dropped (finals are held, never dropped)
    send_buffer_bytes: int | None = None  # kernel send buffer per connection (None: the OS default)

    def check(self) -> None:
        """Refuse non-loopback TCP binds unless allowed, and endpoints ZeroMQ cannot bind."""
        if any(ch in self.endpoint for ch in ";, \t\r\n") or not self.endpoint.isprintable():
            # libzmq reads "tcp://A;B" as "from source A to B"; a list of endpoints is not one endpoint.
            raise ConfigError(f"endpoint {self.endpoint[:80]!r} is not one endpoint: use tcp://HOST:PORT or ipc://PATH")
        parts = urlsplit(self.endpoint)
        if parts.scheme == "tcp":
            host = parts.hostname or ""
            try:
                port = parts.port
            except ValueError:
                port = None
            if parts.path or parts.query or parts.fragment or parts.username or parts.password:
                port = None
            if not host or port is None:
                raise ConfigError(f"endpoint {self.endpoint!r} needs a host and a port, e.g. tcp://127.0.0.1:47633")
            if port == 0:  # ZeroMQ would pick a random port, which no plug-in could find
                raise ConfigError(f"endpoint {self.endpoint!r}: the port must be 1..65535 (the plug-ins look for"
                                  f" a fixed one, e.g. tcp://127.0.0.1:47633)")
            if not self.allow_remote and not _is_loopback(host):
                raise ConfigError(
                    f"refusing to listen on {host}: only loopback addresses (127.0.0.1, ::1, localhost) are allowed"
                    " without --allow-remote, since anyone who can reach the port could use the GPU (and the token"
                    " and pictures travel unencrypted)"
                )
        elif parts.scheme != "ipc":
            raise ConfigError(f"endpoint {self.endpoint!r}: use tcp://HOST:PORT or ipc://PATH")

    def remote_warning(self) -> str | None:
        """What to say at start when other machines can reach the endpoint: ZMTP PLAIN sends the token and
        the pictures unencrypted (CURVE is not implemented), so a remote client needs a tunnel."""
        parts = urlsplit(self.endpoint)
        if parts.scheme != "tcp" or _is_loopback(parts.hostname or ""):
            return None
        return (f"{self.endpoint} is reachable from other machines: the token and the pictures travel unencrypted"
                " (ZMTP PLAIN; CURVE encryption is not implemented). Reach it through an SSH tunnel or a VPN")

    def ipc_endpoint(self) -> str | None:
        """The extra ipc:// endpoint (POSIX only): ``<runtime_dir>/daemon.sock`` as sine_protocol.paths names it."""
        if self.runtime_dir is None or sys.platform == "win32" or not self.endpoint.startswith("tcp://"):
            return None
        return f"ipc://{self.runtime_dir / 'daemon.sock'}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


