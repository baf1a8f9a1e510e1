"""The weight cache: atomic entries, verification on load, LRU eviction, restart survival."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sine.cache import MANIFEST, WeightCache, cache_key, parse_size

REPO = Path(__file__).resolve().parents[2]


def _key(n: int) -> str:
    return cache_key(bytes([n]) * 16, 2, 2, source_prompt="picture of a sks dog", subject="dog", style="photo",
                     model_id="tiny", revision=None, settings={"method": "lora", "steps": 2})


def _writer(payload: bytes):
    def write(folder: Path) -> None:
        (folder / "weights.safetensors").write_bytes(payload)
        (folder / "sub").mkdir()
        (folder / "sub" / "config.json").write_text('{"a": 1}')
    return write


def test_parse_size():
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("500MiB") == 500 * 1024**2
    assert parse_size("1048576") == 1048576
    assert parse_size("1.5k") == 1500
    with pytest.raises(ValueError):
        parse_size("two gigs")


def test_key_depends_on_what_changes_the_weights():
    base = dict(source_prompt="picture of a sks dog", subject="dog", style="photo", model_id="m", revision="r",
                settings={"method": "lora", "steps": 2})
    k = cache_key(b"\x00" * 16, 2, 2, **base)
    assert len(k) == 64 and k == cache_key(b"\x00" * 16, 2, 2, **base)
    assert k != cache_key(b"\x01" + b"\x00" * 15, 2, 2, **base)
    assert k != cache_key(b"\x00" * 16, 4, 1, **base)
    assert k != cache_key(b"\x00" * 16, 2, 2, **{**base, "subject": "cat"})
    assert k != cache_key(b"\x00" * 16, 2, 2, **{**base, "revision": "r2"})
    assert k != cache_key(b"\x00" * 16, 2, 2, **{**base, "settings": {"method": "full", "steps": 2}})


def test_store_lookup_and_restart(tmp_path):
    cache = WeightCache(tmp_path, budget_bytes=None)
    key = _key(1)
    assert cache.lookup(key) is None
    folder = cache.store(key, _writer(b"w" * 100), settings={"method": "lora"})
    assert folder == tmp_path / key[:2] / key
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["files"]) == {"weights.safetensors", "sub/config.json"}
    assert manifest["bytes"] == 100 + len('{"a": 1}')
    assert cache.stats()["entries"] == 1
    assert not any((tmp_path / ".tmp").iterdir())
    reopened = WeightCache(tmp_path)
    hit = reopened.lookup(key)
    assert hit == folder and (hit / "weights.safetensors").read_bytes() == b"w" * 100
    assert json.loads((folder / MANIFEST).read_text())["last_used"] >= manifest["last_used"]


def test_failed_writer_publishes_nothing(tmp_path):
    cache = WeightCache(tmp_path)
    key = _key(2)

    def broken(folder: Path) -> None:
        (folder / "weights.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # e.g. a cancel arriving mid-save

    with pytest.raises(KeyboardInterrupt):
        cache.store(key, broken)
    assert cache.lookup(key) is None
    assert not cache.entry_path(key).exists()
    assert not any((tmp_path / ".tmp").iterdir())


def test_corrupt_entry_is_discarded(tmp_path):
    cache = WeightCache(tmp_path)
    key = _key(3)
    folder = cache.store(key, _writer(b"x" * 64))
    with open(folder / "weights.safetensors", "r+b") as handle:
        handle.seek(10)
        handle.write(b"Y")
    assert cache.lookup(key) is None
    assert not folder.exists()
    assert cache.stats()["entries"] == 0
    folder = cache.store(key, _writer(b"x" * 64))
    (folder / "sub" / "config.json").unlink()
    assert cache.lookup(key) is None


def test_lru_eviction_under_budget(tmp_path):
    cache = WeightCache(tmp_path, budget_bytes=2 * 1000 + 50)
    keys = [_key(10 + i) for i in range(3)]
    cache.store(keys[0], _writer(b"a" * 992))
    time.sleep(0.01)
    cache.store(keys[1], _writer(b"b" * 992))
    time.sleep(0.01)
    assert cache.lookup(keys[0]) is not None  # now keys[1] is the least recently used
    time.sleep(0.01)
    cache.store(keys[2], _writer(b"c" * 992))
    assert cache.lookup(keys[1]) is None
    assert cache.lookup(keys[0]) is not None and cache.lookup(keys[2]) is not None
    assert cache.stats()["bytes"] <= cache.budget_bytes


def test_newest_entry_survives_even_over_budget(tmp_path):
    cache = WeightCache(tmp_path, budget_bytes=10)
    key = _key(20)
    cache.store(key, _writer(b"z" * 500))
    assert cache.lookup(key) is not None


_KILL_MID_WRITE = r"""
import os, signal, sys
sys.path[:0] = [sys.argv[2]]
from sine.cache import WeightCache
cache = WeightCache(sys.argv[1])
def write(folder):
    (folder / "weights.safetensors").write_bytes(b"partial" * 1000)
    os.kill(os.getpid(), signal.SIGKILL)
cache.store(sys.argv[3], write)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_during_write_leaves_no_entry(tmp_path):
    cache = WeightCache(tmp_path)
    clean = _key(30)
    cache.store(clean, _writer(b"clean"))
    victim = _key(31)
    proc = subprocess.run([sys.executable, "-c", _KILL_MID_WRITE, str(tmp_path), str(REPO / "backend"), victim])
    assert proc.returncode == -9
    assert any((tmp_path / ".tmp").iterdir())  # the crash left its temp folder behind
    reopened = WeightCache(tmp_path)
    assert reopened.lookup(victim) is None
    assert reopened.lookup(clean) is not None
    assert not (tmp_path / ".tmp").exists() or not any((tmp_path / ".tmp").iterdir())


def test_entry_without_manifest_is_swept(tmp_path):
    cache = WeightCache(tmp_path)
    key = _key(40)
    folder = cache.entry_path(key)
    folder.mkdir(parents=True)
    (folder / "weights.safetensors").write_bytes(b"orphan")
    WeightCache(tmp_path)
    assert not folder.exists()


def test_claim_serialises_same_key(tmp_path):
    import threading

    cache = WeightCache(tmp_path)
    key = _key(50)
    order: list[str] = []
    started = threading.Event()

    def first() -> None:
        with cache.claim(key):
            started.set()
            time.sleep(0.2)
            cache.store(key, _writer(b"one"))
            order.append("stored")

    thread = threading.Thread(target=first)
    thread.start()
    started.wait(5)
    with cache.claim(key):
        order.append("second got the lock")
        assert cache.lookup(key) is not None
    thread.join()
    assert order == ["stored", "second got the lock"]
    assert os.listdir(tmp_path / key[:2]) == [key]


def test_sweep_keeps_live_writers_temp_folders(tmp_path):
    WeightCache(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp_root = tmp_path / ".tmp"
    live = tmp_root / f"{'a' * 12}-{os.getpid()}-xyz"
    gone = tmp_root / f"{'b' * 12}-{dead.pid}-xyz"
    odd = tmp_root / "something-else"
    for folder in (live, gone, odd):
        folder.mkdir(parents=True)
        (folder / "weights.safetensors").write_bytes(b"w")
    WeightCache(tmp_path)
    assert live.exists()  # another writer in a live process: not ours to delete
    assert not gone.exists()
    assert odd.exists()  # not a name the cache writes: never swept
