"""Fixtures for the real-Krita test: the real `sine daemon` on the host with a tiny model, and a
fresh HOME inside the trixie root with the plugin installed by the real installer.

Krita 5.2 runs in the chroot under Xvfb (see tests/hosts/lib.sh and /work/shared/hosts/README.md);
the chroot shares the host's network, so the plugin reaches the host daemon on loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from krita_host import REPO, ROOT, Daemon, KritaHome, free_port, lib_sh  # noqa: E402


@pytest.fixture(scope="module")
def trixie_root() -> Path:
    """The mounted root with Krita; skipped with the reason when it cannot be used."""
    if os.geteuid() != 0:
        pytest.skip("real-Krita tests need root (chroot, mount)")
    if not (ROOT / "usr" / "bin" / "krita").exists():
        pytest.skip(f"no Krita root at {ROOT}: build it with tests/hosts/setup_root.sh")
    done = lib_sh("mount_root")
    assert done.returncode == 0, done.stderr
    return ROOT


@pytest.fixture(scope="module")
def sine_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """`sine daemon` from our venv on a free loopback port, a tiny model and temp SINE_* folders."""
    from sine.tiny_models import make_tiny_sd

    base = tmp_path_factory.mktemp("krita-daemon")
    model = make_tiny_sd(base / "model")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "SINE_CONFIG_DIR": str(base / "config"),
        "SINE_STATE_DIR": str(base / "state"),
        "SINE_CACHE_DIR": str(base / "cache"),
        "SINE_RUNTIME_DIR": str(base / "run"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")]),
    }
    log = base / "daemon.log"
    argv = [sys.executable, "-m", "sine.cli", "daemon", "--endpoint", endpoint, "--model", str(model),
            "--device", "cpu", "--threads", "1", "--no-ipc"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=base)
    daemon = Daemon(endpoint, base / "config", proc, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sine daemon exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if (daemon.config_dir / "token").exists():
                client = daemon.client()
                try:
                    if client.hello().get("model_ready", True):
                        break
                except Exception:  # not up yet
                    pass
                finally:
                    client.close()
            if time.monotonic() > deadline:
                pytest.fail(f"sine daemon did not answer in 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield daemon
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def krita_home(trixie_root: Path, sine_daemon: Daemon) -> Iterator[KritaHome]:
    """Fresh HOME, plugin installed by `installer/install.py --only plugins`, daemon token in place."""
    done = lib_sh("fresh_home")
    assert done.returncode == 0, done.stderr
    home = KritaHome(done.stdout.strip().splitlines()[-1])
    inst = subprocess.run(
        [sys.executable, str(REPO / "installer" / "install.py"), "--home", str(home.host), "--only", "plugins",
         "--force-plugins"],  # fmt: skip
        capture_output=True, text=True, timeout=120,
    )
    assert inst.returncode == 0, f"installer failed:\n{inst.stdout}\n{inst.stderr}"
    pykrita = home.host / ".local" / "share" / "krita" / "pykrita"
    assert (pykrita / "sine_krita.desktop").exists() and (pykrita / "sine_krita" / "__init__.py").exists()
    assert (pykrita / "sine_krita" / "_vendor" / "sine_protocol" / "client.py").exists(), "not vendored"
    assert "enable_sine_krita=true" in (home.host / ".config" / "kritarc").read_text()
    # The token where the plugin looks by default: $HOME/.config/sine-edit/token (mode 0600).
    token = home.host / ".config" / "sine-edit" / "token"
    token.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sine_daemon.config_dir / "token", token)
    token.chmod(0o600)
    home.chown()
    yield home
    if not os.environ.get("SINE_KEEP_KRITA_HOME"):
        shutil.rmtree(home.host, ignore_errors=True)
