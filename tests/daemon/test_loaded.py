"""A real daemon keeps the last fine-tunes loaded: a second edit of the same picture reads no cache file."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from daemon_helpers import Client, DaemonProcess, make_image

pytestmark = pytest.mark.slow


def _entries(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.glob("??/*") if p.is_dir()]


@pytest.mark.parametrize("budget", ["default", "0"])
def test_second_edit_of_the_same_picture_skips_the_disk(tiny_model: Path, budget: str):
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    proc = DaemonProcess(root, tiny_model)
    if budget != "default":
        proc.env["SINE_LOADED_BUDGET"] = budget  # memory cache off: the failing reference
    proc.start()
    try:
        image = make_image(32, 32, seed=7)
        with Client(proc.endpoint, proc.token) as client:
            first = client.events_until_final(client.submit_edit(image, seed=3))[-1]
            assert first.type == "result" and first.header["cache_hit"] is False, first.header
            entries = _entries(proc.cache_dir)
            assert len(entries) == 1
            # The cache files go away: only a fine-tune still held in memory can serve the next job
            # without fine-tuning again (a disk lookup would find nothing).
            shutil.rmtree(entries[0])
            second = client.events_until_final(client.submit_edit(image, seed=3))[-1]
        assert second.type == "result", second.header
        if budget == "0":
            assert second.header["cache_hit"] is False and second.header["memory_hit"] is False
            return
        assert second.header["cache_hit"] is True and second.header["memory_hit"] is True
        assert second.header["timings"]["finetune_s"] == 0
        assert not _entries(proc.cache_dir)  # nothing was read back or rewritten
        assert second.image.data == first.image.data
    finally:
        assert proc.stop() == 0, proc.output()
        shutil.rmtree(root, ignore_errors=True)
