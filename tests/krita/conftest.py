"""Fixtures for the Krita plugin's unit tests: offscreen PyQt6, the fake ``krita`` module, the plugin
package from plugin_krita/, the protocol package from shared/, and a stand-in daemon."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for path in (HERE / "fakes", HERE, REPO / "plugin_krita", REPO / "shared"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture(scope="session")
def qapp():
    from PyQt6.QtWidgets import QApplication

    return QApplication.instance() or QApplication(["sine-krita-tests"])


@pytest.fixture(autouse=True)
def _no_remembered_form():
    """Each test starts with an empty kritarc: the fake Krita is one instance for the whole session."""
    from krita import Krita

    Krita.instance().settings.clear()
    yield
    Krita.instance().settings.clear()


@pytest.fixture
def process_events(qapp):
    def tick() -> None:
        qapp.processEvents()

    return tick


@pytest.fixture
def standin(monkeypatch, tmp_path):
    """A stand-in daemon plus the env that makes SineClient find it (endpoint, token file)."""
    from krita_standin import TOKEN, StandinDaemon

    daemon = StandinDaemon()
    config = tmp_path / "config"
    config.mkdir()
    (config / "token").write_text(TOKEN)
    monkeypatch.setenv("SINE_ENDPOINT", daemon.endpoint)
    monkeypatch.setenv("SINE_CONFIG_DIR", str(config))
    yield daemon
    daemon.close()
