"""Fixtures for the GIMP plug-in tests: a real `sine daemon` on the host with a tiny model, and a
real GIMP 3 (gimp-console-3.0 in the trixie root) with the plug-in installed by the real installer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
PLUGIN_SRC = REPO / "plugin_gimp" / "sine-gimp"
ROOT = Path(os.environ.get("ROOT", "/opt/trixie"))
GIMP_CONSOLE = "gimp-console-3.0"
GIMP_GUI = "gimp-3.0"
ROOT_USER = "tester"

for _p in (REPO / "shared", REPO / "backend"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def client(self, transport: str = "auto"):
        from sine_protocol.client import SineClient

        return SineClient(
            endpoint=self.endpoint, token=self.token_file.read_text().strip(), transport=transport
        )


def _wait_for_daemon(daemon: Daemon, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise RuntimeError(
                f"sine daemon exited with {daemon.proc.returncode}:\n{daemon.log.read_text()[-3000:]}"
            )
        if daemon.token_file.exists() and daemon.token_file.read_text().strip():
            client = daemon.client()
            try:
                if client.ping(timeout=1.0):
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            finally:
                client.close()
        time.sleep(0.3)
    raise RuntimeError(f"sine daemon did not answer within {timeout_s} s:\n{daemon.log.read_text()[-3000:]}")


def _daemon_available() -> bool:
    done = subprocess.run([sys.executable, "-m", "sine.cli", "daemon", "--help"], capture_output=True)
    return done.returncode == 0


@contextlib.contextmanager
def running_daemon(base: Path, model: Path) -> Iterator[Daemon]:
    """`sine daemon` from our venv on a free loopback port, CPU, one thread, every SINE_* dir in ``base``."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = dict(os.environ)
    env.update(
        SINE_CONFIG_DIR=str(base / "config"),
        SINE_STATE_DIR=str(base / "state"),
        SINE_CACHE_DIR=str(base / "cache"),
        SINE_RUNTIME_DIR=str(base / "run"),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")]),
    )
    argv = [sys.executable, "-m", "sine.cli", "daemon", "--endpoint", endpoint, "--model", str(model),
            "--device", "cpu", "--threads", "1", "--no-ipc"]  # fmt: skip
    log = base / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=base)
    daemon = Daemon(endpoint=endpoint, config_dir=base / "config", model=model, proc=proc, log=log, env=env)
    try:
        _wait_for_daemon(daemon, timeout_s=120)
        yield daemon
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def sine_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The real daemon with a tiny random SD model (sine.tiny_models), built in a temp folder."""
    if not _daemon_available():
        pytest.skip("`sine daemon` is not available in this checkout")
    from sine.tiny_models import make_tiny_sd

    base = tmp_path_factory.mktemp("sine-daemon")
    with running_daemon(base, make_tiny_sd(base / "model")) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def modelless_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A real daemon whose model folder holds no model: every edit fails with model_missing."""
    if not _daemon_available():
        pytest.skip("`sine daemon` is not available in this checkout")
    base = tmp_path_factory.mktemp("sine-daemon-nomodel")
    (base / "empty-model").mkdir()
    with running_daemon(base, base / "empty-model") as daemon:
        yield daemon


def _lib_sh(snippet: str) -> str:
    """Run a bash snippet with tests/hosts/lib.sh sourced (the project's root helpers)."""
    cmd = f". {REPO / 'tests' / 'hosts' / 'lib.sh'}; {snippet}"
    done = subprocess.run(
        ["bash", "-c", cmd], capture_output=True, text=True, env={**os.environ, "ROOT": str(ROOT)}
    )
    if done.returncode != 0:
        raise RuntimeError(f"lib.sh `{snippet}` failed: {done.stderr}")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def trixie_root() -> Path:
    """The mounted trixie root with GIMP 3; skips (with the reason) when it cannot be used."""
    if os.geteuid() != 0:
        pytest.skip("real-host GIMP tests need root (chroot, mount)")
    if not (ROOT / "usr" / "bin" / GIMP_CONSOLE).exists():
        pytest.skip(f"no GIMP 3 root at {ROOT}: build it with tests/hosts/setup_root.sh")
    _lib_sh("mount_root")
    return ROOT


@dataclass
class GimpHome:
    """A fresh HOME inside the root with the plug-in installed; ``path`` as seen inside the root."""

    path: str
    root: Path = ROOT

    @property
    def host(self) -> Path:
        return ROOT / self.path.lstrip("/")

    def inside(self, host_path: Path) -> str:
        """The path of a host file under the root, as GIMP sees it."""
        return "/" + str(Path(host_path).relative_to(ROOT))

    def chown(self) -> None:
        subprocess.run(
            ["chroot", str(ROOT), "chown", "-R", f"{ROOT_USER}:{ROOT_USER}", self.path], check=True
        )


def install_plugin(home: Path) -> Path:
    """Install the plug-ins into ``home`` with the real installer; returns the GIMP plug-in folder."""
    installer = REPO / "installer" / "install.py"
    done = subprocess.run(
        [sys.executable, str(installer), "--home", str(home), "--only", "plugins", "--force-plugins"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"installer failed:\n{done.stdout}\n{done.stderr}"
    folder = home / ".config" / "GIMP" / "3.0" / "plug-ins" / "sine-gimp"
    assert os.access(folder / "sine-gimp.py", os.X_OK), f"installer left no executable {folder}/sine-gimp.py"
    assert (folder / "_vendor" / "sine_protocol" / "__init__.py").exists(), (
        "installer did not vendor sine_protocol"
    )
    return folder


@pytest.fixture(scope="session")
def gimp_home(trixie_root: Path) -> Iterator[GimpHome]:
    """A fresh HOME in the root, plug-in installed there by the installer, removed afterwards.

    Shared by the test modules (each writes under its own case names), so only the first GIMP
    start is a cold one.
    """
    home = GimpHome(_lib_sh("fresh_home"))
    install_plugin(home.host)
    home.chown()
    yield home
    if not os.environ.get("SINE_KEEP_GIMP_HOME"):
        shutil.rmtree(home.host, ignore_errors=True)


@dataclass
class GimpRun:
    """What one gimp-console session did: exit code, log, wall time."""

    returncode: int
    log: str
    wall_s: float


def run_gimp_cases(
    home: GimpHome, cases: list[dict], env: dict[str, str], timeout_s: float = 600, gui: bool = False
) -> GimpRun:
    """One GIMP session running batch_sine_edit.py over ``cases`` (paths inside the root).

    ``gui``: the GUI binary under Xvfb, so that INTERACTIVE runs can open the plug-in's dialogs;
    otherwise gimp-console-3.0 with no display at all.
    """
    cases_file = home.host / "work" / f"cases-{time.monotonic_ns()}.json"
    cases_file.write_text(json.dumps(cases))
    for case in cases:
        (ROOT / case["out"].lstrip("/")).mkdir(parents=True, exist_ok=True)
    home.chown()
    env_args = [f"{k}={v}" for k, v in {**env, "SINE_GIMP_CASES": home.inside(cases_file)}.items()]
    argv = [
        "chroot", f"--userspec={ROOT_USER}:{ROOT_USER}", str(ROOT), "/usr/bin/env", "-i",
        f"HOME={home.path}", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", f"XDG_RUNTIME_DIR={home.path}/.xdg-runtime",
        *env_args,
        "timeout", "-k", "10", str(int(timeout_s)),
        *(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", GIMP_GUI] if gui else [GIMP_CONSOLE]),
        "-i", "--batch-interpreter", "python-fu-eval", "-b", "-", "--quit",
    ]  # fmt: skip
    t0 = time.monotonic()
    with (HERE / "batch_sine_edit.py").open("rb") as batch:
        done = subprocess.run(argv, stdin=batch, capture_output=True, timeout=timeout_s + 30)
    wall = time.monotonic() - t0
    log = (done.stdout + done.stderr).decode("utf-8", "replace")
    return GimpRun(done.returncode, log, wall)


@pytest.fixture(scope="session")
def run_gimp():
    """run_gimp_cases as a fixture (test modules cannot import conftest under importlib mode)."""
    return run_gimp_cases


@pytest.fixture
def closed_endpoint() -> str:
    """A loopback endpoint where nothing listens (the port was free a moment ago)."""
    return f"tcp://127.0.0.1:{free_port()}"


def gimp_env_for(daemon: Daemon, home: GimpHome, config_name: str) -> dict[str, str]:
    """GIMP-side environment reaching ``daemon``: its endpoint and a copy of its token (mode 0600,
    in a config dir inside the root, as the plug-in would find it at home)."""
    config = home.host / "work" / config_name
    config.mkdir(mode=0o700, exist_ok=True)
    token = config / "token"
    token.write_bytes(daemon.token_file.read_bytes())
    token.chmod(0o600)
    home.chown()
    return {"SINE_ENDPOINT": daemon.endpoint, "SINE_CONFIG_DIR": home.inside(config)}


@pytest.fixture(scope="session")
def daemon_env(sine_daemon: Daemon, gimp_home: GimpHome) -> dict[str, str]:
    """The GIMP-side environment for the tiny-model daemon."""
    return gimp_env_for(sine_daemon, gimp_home, "sine-config")


@pytest.fixture(scope="session")
def gimp_env():
    """gimp_env_for as a fixture (test modules cannot import conftest under importlib mode)."""
    return gimp_env_for
