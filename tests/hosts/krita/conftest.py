"""Fixtures for the real-Krita test: the real `sine daemon` on the host with a tiny model, and a
fresh HOME inside a Debian root with the plugin installed by the real installer.

Krita (5.2 in trixie, 5.3 in sid: one run per root of the host matrix) runs in the chroot under Xvfb (see
tests/hosts/lib.sh and docs/design.md §10);
the chroot shares the host's network, so the plugin reaches the host daemon on loopback.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from host_common import Daemon, RootHome, host_root, running_daemon, use_root  # noqa: E402, F401


@pytest.fixture(scope="session")
def krita_root(host_root: Path) -> Path:  # noqa: F811
    """The mounted root with Krita; skipped with the reason when it cannot be used."""
    return use_root(host_root, "krita")


@pytest.fixture(scope="module")
def sine_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """`sine daemon` from our venv on a free loopback port, a tiny model and temp SINE_* folders."""
    from sine.tiny_models import make_tiny_sd

    base = tmp_path_factory.mktemp("krita-daemon")
    with running_daemon(base, make_tiny_sd(base / "model")) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def krita_home(krita_root: Path, sine_daemon: Daemon) -> Iterator[RootHome]:
    """Fresh HOME, plugin installed by `installer/install.py --only plugins`, daemon token in place."""
    home = RootHome.fresh(krita_root)
    home.install_plugins()
    pykrita = home.host / ".local" / "share" / "krita" / "pykrita"
    assert (pykrita / "sine_krita.desktop").exists() and (pykrita / "sine_krita" / "__init__.py").exists()
    assert (pykrita / "sine_krita" / "_vendor" / "sine_protocol" / "client.py").exists(), "not vendored"
    assert "enable_sine_krita=true" in (home.host / ".config" / "kritarc").read_text()
    # The token where the plugin looks by default: $HOME/.config/sine-edit/token (mode 0600).
    token = home.host / ".config" / "sine-edit" / "token"
    token.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sine_daemon.token_file, token)
    token.chmod(0o600)
    home.chown()
    yield home
    if not os.environ.get("SINE_KEEP_KRITA_HOME"):
        shutil.rmtree(home.host, ignore_errors=True)
