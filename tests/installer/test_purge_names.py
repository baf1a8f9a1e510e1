"""The installer's purge knows the daemon's and the cache's file names as its own constants (it runs without the
backend, so it cannot import them). Here the real backend code makes those files, and the purge must recognise
every one: a file renamed in the backend but not in the installer would be left behind by --purge-data, and the
folder with it (or, worse, the rule loosened to "everything")."""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path

import pytest

from sine_protocol import paths

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "installer"))

from sine_installer import backend as installer_backend  # noqa: E402


def test_the_purge_names_every_file_the_daemon_writes_in_its_state_folder(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from sine import estimate
    from sine.daemon.lockfile import DaemonLock, lock_path_for
    from sine.daemon.logging_setup import setup_logging
    from sine_protocol import launch

    state = tmp_path / "state"
    monkeypatch.setenv("SINE_STATE_DIR", str(state))
    setup_logging(state, stderr=False)
    log = logging.getLogger("sine.test")
    for _ in range(4_000):  # past 1 MB × 3: every rotation exists
        log.info("x" * 1_000)
    for handler in logging.getLogger("sine").handlers:
        handler.close()
    lock = DaemonLock(lock_path_for(state, "tcp://127.0.0.1:57321"))
    lock.acquire({"endpoint": "tcp://127.0.0.1:57321"})
    lock.release()
    run = state / "run"
    run.mkdir()
    ipc_lock = DaemonLock(run / "daemon.sock.lock")
    ipc_lock.acquire()
    ipc_lock.release()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(run / "daemon.sock"))
    estimate.save_rates("key", estimate.Rates(0.1, 0.2, 0.3, 0.4, 0.5), path=state / estimate.CALIBRATION_FILE)
    paths._private_tmp(state / estimate.CALIBRATION_FILE, b"{}")  # what a writer killed before its rename leaves
    command = tmp_path / "daemon.json"
    command.write_text(json.dumps({"argv": [sys.executable, "-c", "pass"]}))
    launch.start_daemon(command).wait(timeout=30)

    made = sorted(p.name for p in state.iterdir())
    assert {"daemon.log", "daemon.log.3", "calibration.json", "daemon-launch.log", "run"} <= set(made), made
    ours = installer_backend._daemon_names(state)
    assert installer_backend._not_the_daemons(state, ours) == [], made


def test_the_purge_names_every_file_the_cache_writes_in_its_folder(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from sine import checkpoints
    from sine.cache import WeightCache

    root = tmp_path / "cache"
    monkeypatch.setenv("SINE_CACHE_DIR", str(root))
    cache = WeightCache(root)
    cache.store("ab" * 32, lambda folder: (folder / "weights.safetensors").write_bytes(b"w"))
    big = tmp_path / "model.safetensors"
    big.write_bytes(b"\0" * (1 << 24))  # big enough for its hash to be remembered
    checkpoints._file_sha256(big)
    paths._private_tmp(root / "model_hashes.json", b"{}")  # what a writer killed before its rename leaves

    made = sorted(p.name for p in root.iterdir())
    assert {".sine-cache", "model_hashes.json", "ab"} <= set(made), made
    ours = installer_backend._cache_names(root)
    assert installer_backend._not_the_daemons(root, ours) == [], made
