"""Fixtures for the GIMP plug-in tests: a real `sine daemon` on the host with a tiny model, and a
real GIMP 3 (gimp-console in each root of the host matrix: 3.0 in trixie, 3.2 in sid) with the
plug-in installed by the real installer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from host_common import (  # noqa: E402
    ROOT_USER,
    Daemon,
    RootHome,
    daemon_available,
    free_port,
    host_root,  # noqa: F401 - the matrix fixture, registered here
    root_versions,
    running_daemon,
    use_root,
)

GIMP_CONSOLE = "gimp-console"  # the unversioned names exist in every GIMP 3 package
GIMP_GUI = "gimp"


@pytest.fixture(scope="session")
def sine_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The real daemon with a tiny random SD model (sine.tiny_models), built in a temp folder."""
    if not daemon_available():
        pytest.skip("`sine daemon` is not available in this checkout")
    from sine.tiny_models import make_tiny_sd

    base = tmp_path_factory.mktemp("sine-daemon")
    with running_daemon(base, make_tiny_sd(base / "model")) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def modelless_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A real daemon whose model folder holds no model: every edit fails with model_missing."""
    if not daemon_available():
        pytest.skip("`sine daemon` is not available in this checkout")
    base = tmp_path_factory.mktemp("sine-daemon-nomodel")
    (base / "empty-model").mkdir()
    with running_daemon(base, base / "empty-model", need_model=False) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def gimp_root(host_root: Path) -> Path:  # noqa: F811
    """The mounted root with GIMP 3; skips (with the reason) when it cannot be used."""
    return use_root(host_root, GIMP_CONSOLE)


def gimp_series(root: Path) -> str:
    """"3.0" or "3.2": GIMP's per-version config folder name for the root's GIMP."""
    return ".".join(root_versions(root)["gimp"].split(".")[:2])


@pytest.fixture(scope="session")
def gimp_home(gimp_root: Path) -> Iterator[RootHome]:
    """A fresh HOME in the root, plug-in installed there by the installer, removed afterwards.

    Shared by the test modules (each writes under its own case names), so only the first GIMP
    start is a cold one. The installer puts the plug-in into every GIMP 3.x config folder it finds
    (3.0 when there is none yet); whatever the root's GIMP, it must find it there.
    """
    home = RootHome.fresh(gimp_root)
    home.install_plugins()
    folder = home.host / ".config" / "GIMP" / "3.0" / "plug-ins" / "sine-gimp"
    assert os.access(folder / "sine-gimp.py", os.X_OK), f"installer left no executable {folder}/sine-gimp.py"
    assert (folder / "_vendor" / "sine_protocol" / "__init__.py").exists(), "installer did not vendor sine_protocol"
    home.chown()
    warm = run_gimp_cases(home, [], {}, timeout_s=900)  # the first start queries every plug-in (minutes under load)
    assert warm.returncode == 0, warm.log[-3000:]
    print(f"GIMP {gimp_series(gimp_root)} first start in {gimp_root}: {warm.wall_s:.1f} s")
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
    home: RootHome, cases: list[dict], env: dict[str, str], timeout_s: float = 600, gui: bool = False,
    windows: bool = False, screen: str = "1280x1024x24",
) -> GimpRun:
    """One GIMP session running batch_sine_edit.py over ``cases`` (paths inside the root).

    ``gui``: the GUI binary under Xvfb, so that INTERACTIVE runs can open the plug-in's dialogs;
    otherwise gimp-console with no display at all. ``windows``: the full GUI (no ``-i``) on a
    session D-Bus, so cases can open image windows and press GIMP's own Edit > Undo (its actions
    are exported on the bus as org.gtk.Actions). ``screen``: Xvfb's screen for either.
    """
    cases_file = home.host / "work" / f"cases-{time.monotonic_ns()}.json"
    cases_file.write_text(json.dumps(cases))
    for case in cases:
        (home.root / case["out"].lstrip("/")).mkdir(parents=True, exist_ok=True)
    home.chown()
    env_args = [f"{k}={v}" for k, v in {**env, "SINE_GIMP_CASES": home.inside(cases_file)}.items()]
    argv = [
        "chroot", f"--userspec={ROOT_USER}:{ROOT_USER}", str(home.root), "/usr/bin/env", "-i",
        f"HOME={home.path}", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", f"XDG_RUNTIME_DIR={home.path}/.xdg-runtime",
        *env_args,
        "timeout", "-k", "10", str(int(timeout_s)),
        *(["dbus-run-session", "--"] if windows else []),
        *(["xvfb-run", "-a", "-s", f"-screen 0 {screen}", GIMP_GUI] if gui or windows else [GIMP_CONSOLE]),
        *([] if windows else ["-i"]), "--batch-interpreter", "python-fu-eval", "-b", "-", "--quit",
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


def gimp_env_for(daemon: Daemon, home: RootHome, config_name: str) -> dict[str, str]:
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
def daemon_env(sine_daemon: Daemon, gimp_home: RootHome) -> dict[str, str]:
    """The GIMP-side environment for the tiny-model daemon."""
    return gimp_env_for(sine_daemon, gimp_home, "sine-config")


@pytest.fixture(scope="session")
def gimp_env():
    """gimp_env_for as a fixture (test modules cannot import conftest under importlib mode)."""
    return gimp_env_for
