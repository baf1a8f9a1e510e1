"""The cache never touches a file it did not write: user folders are refused, listing never sweeps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess

from sine.cache import MARKER, WeightCache, cache_key
from sine.cli import main


def _key(n: int) -> str:
    return cache_key(bytes([n]) * 16, 2, 2, source_prompt="p", subject="s", style="photo", model_id="tiny",
                     revision=None, settings={"method": "lora"})


def _user_files(root: Path) -> dict[Path, bytes]:
    """A folder of someone's own files, shaped like what the old sweep deleted."""
    files = {
        root / "notes.txt": b"my notes",
        root / "ab" / "cd" / "holiday.jpg": b"\xff\xd8 not really a jpeg",  # 2-char folder, sub-folder, no manifest
        root / "ab" / "cd" / "more" / "deep.txt": b"deep",
        root / ".tmp" / "draft.txt": b"a draft",
        root / ".tmp" / "0123456789ab-1-x" / "keep.txt": b"looks like a temp folder",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _all_there(files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        assert path.read_bytes() == data, path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_opening_a_user_folder_is_refused_and_touches_nothing(tmp_path: Path, capsys):
    files = _user_files(tmp_path / "mine")
    for read_only in (False, True):
        with pytest.raises(OSError, match="not a sine-edit cache"):
            WeightCache(tmp_path / "mine", read_only=read_only)
    assert main(["cache", "list", "--cache-dir", str(tmp_path / "mine")]) == 2
    assert "not a sine-edit cache" in capsys.readouterr().err
    assert main(["cache", "clear", "--cache-dir", str(tmp_path / "mine")]) == 2
    _all_there(files)
    assert not (tmp_path / "mine" / MARKER).exists()


@pytest.mark.slow
def test_daemon_refuses_a_user_folder_as_cache(tmp_path: Path, tiny_model: Path):
    files = _user_files(tmp_path / "mine")
    daemon = DaemonProcess(tmp_path / "d", tiny_model, cache_dir=tmp_path / "mine").start(wait=False)
    assert daemon.proc is not None
    try:
        assert daemon.proc.wait(120) == 1
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
    assert "not a sine-edit cache" in daemon.output()
    _all_there(files)


def test_new_and_empty_folders_are_marked_and_legacy_caches_adopted(tmp_path: Path):
    WeightCache(tmp_path / "new")
    assert (tmp_path / "new" / MARKER).is_file()
    (tmp_path / "empty").mkdir()
    WeightCache(tmp_path / "empty")
    assert (tmp_path / "empty" / MARKER).is_file()
    # A cache written before the mark existed: only cache names in it.
    legacy = tmp_path / "legacy"
    cache = WeightCache(legacy)
    key = _key(1)
    cache.store(key, lambda folder: (folder / "w.safetensors").write_bytes(b"w"))
    (legacy / MARKER).unlink()
    assert WeightCache(legacy).lookup(key) is not None
    assert (legacy / MARKER).is_file()


def test_listing_never_sweeps(tmp_path: Path, capsys):
    cache = WeightCache(tmp_path)
    key = _key(2)
    cache.store(key, lambda folder: (folder / "w.safetensors").write_bytes(b"w"))
    leftover = tmp_path / ".tmp" / f"{'a' * 12}-{_dead_pid()}-xyz"
    leftover.mkdir(parents=True)
    incomplete = cache.entry_path(_key(3))
    incomplete.mkdir(parents=True)
    assert main(["cache", "list", "--cache-dir", str(tmp_path)]) == 0
    assert "1 entries" in capsys.readouterr().out
    assert leftover.exists() and incomplete.exists()
    assert main(["cache", "list", "--cache-dir", str(tmp_path / "missing")]) == 0
    assert not (tmp_path / "missing").exists()  # listing creates nothing either


def test_sweep_removes_only_names_the_cache_writes(tmp_path: Path):
    cache = WeightCache(tmp_path)
    key = _key(4)
    folder = cache.store(key, lambda f: (f / "w.safetensors").write_bytes(b"w"))
    dead = _dead_pid()
    stray = folder / f".manifest.json.{dead}.12345.tmp"
    stray.write_text("{")
    live_stray = folder / f".manifest.json.{os.getpid()}.1.tmp"
    live_stray.write_text("{")
    odd_tmp = tmp_path / ".tmp" / "something-else"
    odd_tmp.mkdir(parents=True)
    odd_shard = tmp_path / "zz"
    odd_shard.mkdir()
    odd_in_shard = tmp_path / key[:2] / "not-a-key"
    odd_in_shard.mkdir()
    WeightCache(tmp_path)
    assert not stray.exists()  # its writer is dead
    assert live_stray.exists()  # a live writer's (this process)
    assert odd_tmp.exists() and odd_shard.exists() and odd_in_shard.exists()


def test_published_entry_without_manifest_is_replaced(tmp_path: Path):
    cache = WeightCache(tmp_path)
    key = _key(5)
    folder = cache.store(key, lambda f: (f / "w.safetensors").write_bytes(b"old"))
    (folder / "manifest.json").unlink()
    assert cache.lookup(key) is None
    cache.store(key, lambda f: (f / "w.safetensors").write_bytes(b"new"))
    assert cache.lookup(key) is not None
    assert (folder / "w.safetensors").read_bytes() == b"new"
