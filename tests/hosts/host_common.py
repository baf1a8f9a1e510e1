"""What the GIMP and the Krita tests share: paths, lib.sh calls, the real `sine daemon` on the host,
and a fresh HOME inside the trixie root with the plug-ins installed by the real installer.

Both conftests put this folder on sys.path (pytest runs with --import-mode=importlib, so test
modules cannot import a conftest).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("ROOT", "/opt/trixie"))
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


def lib_sh(snippet: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``snippet`` in bash with the project's lib.sh sourced (mount_root, in_root, fresh_home)."""
    return subprocess.run(
        ["bash", "-c", f". {LIB_SH}; {snippet}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "ROOT": str(ROOT), **(env or {})},
    )


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


@dataclass
class RootHome:
    """A fresh HOME inside the root; ``path`` as the host app sees it, ``host`` as we see it."""

    path: str

    @classmethod
    def fresh(cls) -> RootHome:
        done = lib_sh("fresh_home")
        if done.returncode != 0:
            raise RuntimeError(f"lib.sh fresh_home failed: {done.stderr}")
        return cls(done.stdout.strip().splitlines()[-1])

    @property
    def root(self) -> Path:
        return ROOT

    @property
    def host(self) -> Path:
        return ROOT / self.path.lstrip("/")

    def inside(self, host_path: Path) -> str:
        """The path of a host file under the root, as the host app sees it."""
        return "/" + str(Path(host_path).relative_to(ROOT))

    def chown(self) -> None:
        subprocess.run(["chroot", str(ROOT), "chown", "-R", f"{ROOT_USER}:{ROOT_USER}", self.path], check=True)

    def install_plugins(self) -> None:
        """The real installer, plug-ins only, into this HOME."""
        done = subprocess.run(
            [sys.executable, str(REPO / "installer" / "install.py"), "--home", str(self.host), "--only", "plugins",
             "--force-plugins"],  # fmt: skip
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, f"installer failed:\n{done.stdout}\n{done.stderr}"
