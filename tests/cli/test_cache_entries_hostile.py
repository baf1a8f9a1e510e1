"""Cache entries made hostile on disk (a manifest of wrong types, a named pipe or /dev/zero in place of a file,
an entry or shard folder that is a symbolic link out of the cache): `sine cache list|clear` answers at once,
a lookup is a miss, and no file outside the cache is read as weights or written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sine.cache import MANIFEST, WeightCache

KEY = "ab" * 32


def _cache_with_entry(root: Path) -> Path:
    cache = WeightCache(root, budget_bytes=10**9)
    return cache.store(KEY, lambda folder: (folder / "weights.bin").write_bytes(b"w" * 100))


def _sine_cache(action: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sine.cli", "cache", action, "--cache-dir", str(root)],
                          capture_output=True, text=True, timeout=20, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("field,value", [("bytes", "1e400"), ("bytes", "-1000000000000"), ("bytes", "true"),
                                         ("files", '["weights.bin"]'), ("last_used", '"yesterday"'),
                                         ("created", "1e400"), ("settings", "[1]"), ("last_used", "1e300")])
def test_a_manifest_of_wrong_types_is_a_dropped_entry_not_a_traceback(field: str, value: str, tmp_path: Path):
    """`"bytes": 1e400` made every open raise OverflowError (the daemon, `cache list` and the `cache clear`
    that should mend it); a negative size hid every other entry from the budget; `"files": [...]` made a
    lookup raise AttributeError; `"last_used": 1e300` made `cache list` raise OverflowError (no such time)."""
    entry = _cache_with_entry(tmp_path / "c")
    manifest = json.loads((entry / MANIFEST).read_text())
    text = json.dumps({**manifest, field: "@@"}).replace('"@@"', value)
    (entry / MANIFEST).write_text(text)
    for read_only in (True, False):
        cache = WeightCache(tmp_path / "c", budget_bytes=10**9, read_only=read_only)
        assert cache.stats()["entries"] == 0 and cache.lookup(KEY) is None
    assert not entry.exists()  # the writable open dropped it
    for action in ("list", "clear"):
        proc = _sine_cache(action, tmp_path / "c")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", [MANIFEST, "weights.bin"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_pipe_or_endless_device_in_an_entry_is_refused_not_read_for_ever(kind: str, name: str, tmp_path: Path):
    """A named pipe in place of an entry's file froze the daemon's open (or its lookup, hashing it) for good;
    a link to /dev/zero read without end, filling memory."""
    entry = _cache_with_entry(tmp_path / "c")
    (entry / name).unlink()
    if kind == "fifo":
        os.mkfifo(entry / name)
    else:
        os.symlink("/dev/zero", entry / name)
    proc = _sine_cache("list", tmp_path / "c")  # read-only: within the timeout, not for ever
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("0 entries"), proc.stdout
    cache = WeightCache(tmp_path / "c", budget_bytes=10**9)
    assert cache.lookup(KEY) is None


@pytest.mark.parametrize("link", ["entry", "shard"])
def test_an_entry_linked_out_of_the_cache_is_never_served_nor_written(link: str, tmp_path: Path):
    """An entry folder (or its 2-letter shard) replaced by a link to a user folder holding a valid-looking entry
    was served as verified weights, and the lookup rewrote the manifest there (last_used): a user's folder
    written. Now it is a miss; clearing or storing removes the link only."""
    entry = _cache_with_entry(tmp_path / "c")
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("my notes")
    if link == "entry":
        target = user
    else:
        target = user / KEY
        target.mkdir()
    for path in entry.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    before = {p: p.read_bytes() for p in user.rglob("*") if p.is_file()}
    moved = entry if link == "entry" else entry.parent
    for path in sorted(moved.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    moved.rmdir()
    moved.symlink_to(user, target_is_directory=True)
    for read_only in (True, False):
        cache = WeightCache(tmp_path / "c", budget_bytes=10**9, read_only=read_only)
        assert cache.lookup(KEY) is None
    cache = WeightCache(tmp_path / "c", budget_bytes=10**9)
    cache.store(KEY, lambda folder: (folder / "weights.bin").write_bytes(b"w" * 100))
    assert not cache.entry_path(KEY).is_symlink() and not cache.entry_path(KEY).parent.is_symlink()
    assert cache.lookup(KEY) is not None
    cache.clear()
    assert {p: p.read_bytes() for p in user.rglob("*") if p.is_file()} == before


def test_cache_list_prints_a_manifests_text_escaped(tmp_path: Path):
    """`sine cache list` printed each entry's recipe name from its manifest raw: a terminal escape there
    (ESC [ 2 J clears the screen) reached the terminal."""
    entry = _cache_with_entry(tmp_path / "c")
    manifest = json.loads((entry / MANIFEST).read_text())
    (entry / MANIFEST).write_text(json.dumps({**manifest, "settings": {"method": "\x1b[2Jlora\nx"}}))
    proc = _sine_cache("list", tmp_path / "c")
    assert proc.returncode == 0 and proc.stdout.startswith("1 entries"), proc.stdout + proc.stderr
    assert "\x1b" not in proc.stdout and len(proc.stdout.strip().splitlines()) == 2, repr(proc.stdout)


@pytest.mark.parametrize("action", ["list", "clear"])
def test_a_cache_folder_named_with_a_terminal_escape_is_shown_escaped(action: str, tmp_path: Path):
    """The folder's name was printed raw in `cache list|clear`'s summary line."""
    root = tmp_path / "c\x1b]0;owned\x07\nx"
    _cache_with_entry(root)
    proc = _sine_cache(action, root)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout, repr(proc.stdout)
    assert len(proc.stdout.strip().splitlines()) == (2 if action == "list" else 1), repr(proc.stdout)
