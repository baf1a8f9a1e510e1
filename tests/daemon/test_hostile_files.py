"""Files the daemon makes, as another user of the machine could reach them, against a real daemon process."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from daemon_helpers import FAST, Client, DaemonProcess, make_image

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_weight_cache_it_makes_is_owner_only_whatever_the_umask(tiny_model: Path, umask: int):
    """The cache holds fine-tunes of the painter's pictures (a model that learnt one picture draws it again).
    The daemon made its folder with the umask's mode: 0755 (any user could copy the weights) or, under umask
    000, 0777 (any user could replace an entry and its manifest, and the painter's next edit used their weights),
    while the config, state and runtime folders were 0700. The cache folder it makes is now 0700 too."""
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    previous = os.umask(umask)
    try:
        proc = DaemonProcess(root, tiny_model, extra=FAST).start()
    finally:
        os.umask(previous)
    try:
        with Client(proc.endpoint, proc.token) as client:
            rid = client.submit_edit(make_image(32, 32, seed=8), ft_steps=1, sample_steps=1)
            assert client.events_until_final(rid)[-1].type == "result"
        entries = [p for p in proc.cache_dir.rglob("manifest.json")]
        assert entries, "the edit stored no cache entry"
        assert stat.S_IMODE(proc.cache_dir.stat().st_mode) == 0o700
    finally:
        assert proc.stop() == 0, proc.output()
