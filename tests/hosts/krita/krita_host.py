"""Helpers for the real-Krita test: paths, lib.sh calls, the daemon and the in-root HOME."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ROOT = Path(os.environ.get("ROOT", "/opt/trixie"))
ROOT_USER = "tester"
LIB_SH = REPO / "tests" / "hosts" / "lib.sh"

for _p in (REPO / "shared", REPO / "backend"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lib_sh(snippet: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``snippet`` in bash with the project's lib.sh sourced (mount_root, in_root, fresh_home)."""
    return subprocess.run(
        ["bash", "-c", f". {LIB_SH}; {snippet}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "ROOT": str(ROOT), **(env or {})},
    )


@dataclass
class Daemon:
    """A running `sine daemon` subprocess (host venv) and its private folders."""

    endpoint: str
    config_dir: Path
    proc: subprocess.Popen
    log: Path

    @property
    def token(self) -> str:
        return (self.config_dir / "token").read_text().strip()

    def client(self):
        from sine_protocol.client import SineClient

        return SineClient(endpoint=self.endpoint, token=self.token, transport="pure", timeout=10.0)


@dataclass
class KritaHome:
    """A fresh HOME inside the root; ``path`` as Krita sees it, ``host`` as we see it."""

    path: str

    @property
    def host(self) -> Path:
        return ROOT / self.path.lstrip("/")

    def inside(self, host_path: Path) -> str:
        return "/" + str(Path(host_path).relative_to(ROOT))

    def chown(self) -> None:
        subprocess.run(["chroot", str(ROOT), "chown", "-R", f"{ROOT_USER}:{ROOT_USER}", self.path], check=True)
