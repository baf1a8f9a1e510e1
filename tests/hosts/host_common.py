"""What the GIMP and the Krita tests share: paths, lib.sh calls, the real `sine daemon` on the host,
and a fresh HOME inside a Debian root with the plug-ins installed by the real installer.

The host matrix: every root in $SINE_HOST_ROOTS (default /opt/trixie: GIMP 3.0, Krita 5.2, and
/opt/sid: GIMP 3.2, Krita 5.3; both built by tests/hosts/setup_root.sh) is a parameter of the
``host_root`` fixture, so each real-host test runs once per pair; a missing root skips its tests.
$ROOT alone (the old way) picks one root.

Both conftests put this folder on sys.path (pytest runs with --import-mode=importlib, so test
modules cannot import a conftest).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import numpy as np

REPO = Path(__file__).resolve().parents[2]
HOST_ROOTS = [Path(p) for p in (os.environ.get("ROOT") or os.environ.get("SINE_HOST_ROOTS")
                                or "/opt/trixie:/opt/sid").split(":") if p]  # fmt: skip
ROOT_USER = "tester"
LIB_SH = REPO / "tests" / "hosts" / "lib.sh"

for _p in (REPO / "shared", REPO / "backend"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lib_sh(root: Path, snippet: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:  # fmt: skip
    """Run ``snippet`` in bash with the project's lib.sh sourced (mount_root, in_root, fresh_home)."""
    return subprocess.run(
        ["bash", "-c", f". {LIB_SH}; {snippet}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "ROOT": str(root), **(env or {})},
    )


def root_versions(root: Path) -> dict[str, str]:
    """Package versions in a root (dpkg's status file), e.g. {"gimp": "3.2.6-1", "krita": ...}."""
    wanted, versions, package = {"gimp", "krita", "python3"}, {}, ""
    status = root / "var" / "lib" / "dpkg" / "status"
    for line in status.read_text(errors="replace").splitlines() if status.exists() else []:
        if line.startswith("Package: "):
            package = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and package in wanted:
            versions[package] = line.split(": ", 1)[1]
    return versions


def use_root(root: Path, binary: str) -> Path:
    """Mount ``root`` for the tests; skips (with the reason) when it cannot be used."""
    if os.geteuid() != 0:
        pytest.skip("real-host tests need root (chroot, mount)")
    if not (root / "usr" / "bin" / binary).exists():
        pytest.skip(f"no {binary} in {root}: build it with tests/hosts/setup_root.sh (SUITE=trixie|sid ROOT=...)")
    done = lib_sh(root, "mount_root")
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="session", params=HOST_ROOTS, ids=lambda p: p.name)
def host_root(request: pytest.FixtureRequest) -> Path:
    """One root of the host matrix (imported into both conftests; each mounts it on first use)."""
    return request.param


def daemon_available() -> bool:
    done = subprocess.run([sys.executable, "-m", "sine.cli", "daemon", "--help"], capture_output=True)
    return done.returncode == 0


@dataclass
class Daemon:
    """A running `sine daemon` subprocess and where it keeps its things."""

    endpoint: str
    config_dir: Path
    model: Path
    proc: subprocess.Popen
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def token_file(self) -> Path:
        return self.config_dir / "token"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def client(self, transport: str = "auto", timeout: float = 10.0):
        from sine_protocol.client import SineClient

        return SineClient(endpoint=self.endpoint, token=self.token, transport=transport, timeout=timeout)

    def assert_idle(self, timeout_s: float = 10) -> None:
        """Fails unless, within ``timeout_s``, the daemon has no queued or running job (a cancelled or
        abandoned edit must not keep the GPU busy)."""
        probe = self.client()
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                states = [j.get("state") for j in probe.status().get("jobs", {}).values()]
                busy = [s for s in states if s in ("queued", "running")]
                if not busy or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert not busy, states
        finally:
            probe.close()

    def _wait_ready(self, timeout_s: float, need_model: bool) -> None:
        """Until the daemon answers (and, with ``need_model``, has its model loaded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sine daemon exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if self.token_file.exists() and self.token_file.read_text().strip():
                client = self.client()
                try:
                    if client.ping(timeout=1.0) and (not need_model or client.hello().get("model_ready", True)):
                        return
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                finally:
                    client.close()
            time.sleep(0.3)
        raise RuntimeError(f"sine daemon did not answer within {timeout_s} s:\n{self.log.read_text()[-3000:]}")


@contextlib.contextmanager
def running_daemon(base: Path, model: Path, need_model: bool = True) -> Iterator[Daemon]:
    """`sine daemon` from our venv on a free loopback port, CPU, one thread, every SINE_* dir in ``base``."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "SINE_CONFIG_DIR": str(base / "config"),
        "SINE_STATE_DIR": str(base / "state"),
        "SINE_CACHE_DIR": str(base / "cache"),
        "SINE_RUNTIME_DIR": str(base / "run"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")]),
    }
    argv = [sys.executable, "-m", "sine.cli", "daemon", "--endpoint", endpoint, "--model", str(model),
            "--device", "cpu", "--threads", "1", "--no-ipc"]  # fmt: skip
    log = base / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=base)
    daemon = Daemon(endpoint=endpoint, config_dir=base / "config", model=model, proc=proc, log=log, env=env)
    try:
        daemon._wait_ready(timeout_s=120, need_model=need_model)
        yield daemon
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_once_working(daemon: Daemon, after_s: float = 1.0, timeout_s: float = 300) -> list[float]:
    """SIGKILL ``daemon`` ``after_s`` seconds into its first running job, as the kernel's out-of-memory killer
    would mid-edit, from a background thread; the list it returns gets the kill's time.monotonic()."""
    killed: list[float] = []

    def watch() -> None:
        probe = daemon.client()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and daemon.proc.poll() is None:
                status = probe.status()  # another client's jobs are only counted there
                if status.get("others", {}).get("running"):
                    time.sleep(after_s)
                    daemon.proc.send_signal(signal.SIGKILL)
                    daemon.proc.wait()
                    killed.append(time.monotonic())
                    return
                time.sleep(0.2)
        finally:
            probe.close()

    threading.Thread(target=watch, name="kill-daemon", daemon=True).start()
    return killed


@dataclass
class RootHome:
    """A fresh HOME inside a root; ``path`` as the host app sees it, ``host`` as we see it."""

    path: str
    root: Path

    @classmethod
    def fresh(cls, root: Path) -> RootHome:
        done = lib_sh(root, "fresh_home")
        if done.returncode != 0:
            raise RuntimeError(f"lib.sh fresh_home failed: {done.stderr}")
        return cls(done.stdout.strip().splitlines()[-1], root)

    @property
    def host(self) -> Path:
        return self.root / self.path.lstrip("/")

    def inside(self, host_path: Path) -> str:
        """The path of a host file under the root, as the host app sees it."""
        return "/" + str(Path(host_path).relative_to(self.root))

    def chown(self) -> None:
        subprocess.run(["chroot", str(self.root), "chown", "-R", f"{ROOT_USER}:{ROOT_USER}", self.path], check=True)

    def install_plugins(self) -> None:
        """The real installer, plug-ins only, into this HOME."""
        done = subprocess.run(
            [sys.executable, str(REPO / "installer" / "install.py"), "--home", str(self.host), "--only", "plugins",
             "--force-plugins"],  # fmt: skip
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, f"installer failed:\n{done.stdout}\n{done.stderr}"


# ---- the layer the painter's-layer tests edit (GIMP and Krita alike) -------------------------------------
CANVAS = (1001, 777)  # odd sizes on purpose: strides and channel counts must not line up by luck
# x, y, w, h of the source layer on that canvas: small enough for the tiny model to edit in seconds on a CPU
LAYER_BOX = (37, 59, 203, 141)
SELECT_BOX = (100, 100, 500, 400)  # a marquee reaching past the layer's right and bottom edges
HOLES = ((10, 10, 40, 30), (120, 70, 40, 40))  # transparent blocks (layer coordinates): outside / inside


def layer_picture16() -> np.ndarray:
    """The source layer, RGBA 16 bits: distinct values that 8 bits cannot hold (v % 257 != 0 mostly),
    opaque but for two transparent holes (one outside, one inside the selection) and a band of
    partial alpha across it."""
    import numpy as np

    x0, y0, w, h = LAYER_BOX
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    rgba = np.empty((h, w, 4), np.uint16)
    rgba[..., 0] = (x * 108 + y * 7 + 1) % 65536
    rgba[..., 1] = (y * 159 + x * 3 + 2) % 65536
    rgba[..., 2] = ((x + y) * 61 + 3) % 65536
    rgba[..., 3] = 65535
    rgba[100:104, :, 3] = 20000
    for hx, hy, hw, hh in HOLES:
        rgba[hy : hy + hh, hx : hx + hw, 3] = 0
    return rgba


def layer_picture8() -> np.ndarray:
    """The 8-bit source: the 16-bit one's high bytes."""
    return (layer_picture16() >> 8).astype("uint8")


def selection_in_layer() -> np.ndarray:
    """The marquee clipped to the layer, as a boolean array in layer coordinates."""
    import numpy as np

    x0, y0, w, h = LAYER_BOX
    sx, sy, sw, sh = SELECT_BOX
    inside = np.zeros((h, w), bool)
    inside[max(0, sy - y0) : max(0, min(h, sy + sh - y0)), max(0, sx - x0) : max(0, min(w, sx + sw - x0))] = True
    return inside


def write_png(path: Path, rgba: np.ndarray) -> None:
    """An RGBA PNG of 8 or 16 bits a channel (Pillow writes no 16-bit RGBA), from zlib by hand."""
    import struct
    import zlib

    h, w, _ = rgba.shape
    depth = 16 if rgba.dtype.itemsize == 2 else 8
    rows = rgba.astype(">u2" if depth == 16 else "u1").reshape(h, -1).tobytes()
    stride = len(rows) // h
    raw = b"".join(b"\0" + rows[i * stride : (i + 1) * stride] for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, depth, 6, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
                           + chunk(b"IEND", b""))  # fmt: skip
