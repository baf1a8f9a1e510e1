"""Per-image weight cache: fine-tune once per image, reuse the weights for every later edit.

Entries are content-addressed folders ``<root>/<key[:2]>/<key>/`` holding the files the engine
saved plus ``manifest.json`` (sha256 of every file). An entry is built in ``<root>/.tmp`` and
renamed into place only after every byte is fsynced, so a crash leaves a stray temp folder (swept
at the next open), never a half-written entry. Hashes are checked on every load: a corrupt entry is
deleted and reported as a miss. Least-recently-used entries are evicted to stay under a byte budget.

A cache root is marked as ours (``.sine-cache``) when it is created, and a non-empty folder without
that mark is refused, so a mistyped ``--cache-dir`` never costs a user file. The sweep removes only
names the cache itself writes, and read-only opens (``sine cache list``) never sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sine_protocol.paths import ensure_private_dir, replace_privately

MANIFEST = "manifest.json"
MARKER = ".sine-cache"
HASH_MEMO = "model_hashes.json"  # sine.checkpoints remembers the hashes of big model files here
_HASH_MEMO_TMP_RE = re.compile(r"^\.model_hashes\.json\.\d+(\.\d+)?\.tmp$")
KEY_FORMAT = "sine-cache-v1"
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_SHARD_RE = re.compile(r"^[0-9a-f]{2}$")
_TEMP_RE = re.compile(r"^[0-9a-f]{12}-(\d+)-[A-Za-z0-9_]+$")  # tempfile.mkdtemp(prefix=f"{key[:12]}-{pid}-")
_DELETING_RE = re.compile(r"^\.del-[0-9a-f]{64}-\d+-\d+$")
_MANIFEST_TMP_RE = re.compile(r"^\.manifest\.json\.(\d+)\.\d+\.tmp$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}

MAX_TIME_S = 2.0**33  # seconds since 1970: year 2242
MANIFEST_MAX_BYTES = 1 << 20  # a manifest names a few files; a bigger one is not ours
STALE_TEMP_S = 24 * 3600  # a temp folder this old is garbage whoever wrote it
STALE_MANIFEST_TMP_S = 3600  # a manifest rewrite takes milliseconds


class NotACacheFolder(OSError):
    """The folder holds files the cache did not write and carries no cache mark: refuse to touch it."""

log = logging.getLogger("sine.cache")


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (POSIX; elsewhere assume yes and rely on the age rule)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parse_size(text: str | int) -> int:
    """Parse a byte size such as ``2GB``, ``500MiB`` or ``1048576`` (decimal units, ``i`` = binary)."""
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 2GB, 500MB, 1GiB)")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    base = _UNITS[unit[:1]] if unit[:1] in _UNITS else 1
    if "i" in unit:
        base = 1024 ** {"k": 1, "m": 2, "g": 3, "t": 4}[unit[0]]
    if not math.isfinite(number * base):  # 400 digits: int() of an infinite float raised OverflowError
        raise ValueError(f"not a size: {text[:20]!r}... is too large (examples: 2GB, 500MB, 1GiB)")
    return int(number * base)


def cache_key(
    rgba: bytes,
    width: int,
    height: int,
    *,
    source_prompt: str,
    subject: str,
    style: str,
    model_id: str,
    revision: str | None,
    settings: dict,
) -> str:
    """Key of one fine-tune: everything that changes the weights, and nothing else (not the edit prompt or seed)."""
    meta = {
        "format": KEY_FORMAT,
        "width": int(width),
        "height": int(height),
        "source_prompt": source_prompt,
        "subject": subject,
        "style": style,
        "model_id": model_id,
        "revision": revision,
        "settings": settings,
    }
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True, separators=(",", ":"), default=str).encode())
    digest.update(b"\0")
    digest.update(rgba)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One entry as its manifest describes it."""

    key: str
    path: Path
    bytes: int
    created: float
    last_used: float
    settings: dict


def _open_regular(path: Path) -> int:
    """A descriptor of the regular file at ``path``; OSError for a link (never followed out of the cache),
    a named pipe (opening or reading one waits for ever) or a device (/dev/zero never ends)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path.name} is not a regular file")
    return fd


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with os.fdopen(_open_regular(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_manifest(folder: Path) -> dict:
    """The manifest of ``folder`` checked for the types the cache writes; ValueError/OSError otherwise.

    Hand-edited or damaged manifests once raised OverflowError (``"bytes": 1e400``) or AttributeError
    (``"files": [...]``), and a negative size hid other entries from the budget."""
    with os.fdopen(_open_regular(folder / MANIFEST), "rb") as handle:
        raw = handle.read(MANIFEST_MAX_BYTES + 1)
    if len(raw) > MANIFEST_MAX_BYTES:
        raise ValueError(f"{MANIFEST} is over {MANIFEST_MAX_BYTES} bytes")
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{MANIFEST} is not an object")
    files, size = data.get("files"), data.get("bytes")
    if data.get("key") != folder.name or not isinstance(files, dict) or not files:
        raise ValueError(f"{MANIFEST} does not describe this entry")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ValueError(f"{MANIFEST}: files must map names to hashes")
    if type(size) is not int or size < 0:
        raise ValueError(f"{MANIFEST}: bytes must be a whole number of bytes")
    for name in ("created", "last_used"):  # a time the platform can show (1e300 made `cache list` raise)
        if type(data.get(name)) not in (int, float) or not 0 <= data[name] < MAX_TIME_S:
            raise ValueError(f"{MANIFEST}: {name} must be a time in seconds")
    if not isinstance(data.get("settings", {}), dict):
        raise ValueError(f"{MANIFEST}: settings must be an object")
    for name in files:
        if Path(name).is_absolute() or ".." in Path(name).parts or not stat.S_ISREG((folder / name).lstat().st_mode):
            raise ValueError(f"{MANIFEST} names {name!r}, which is not a regular file in the entry")
    return data


def _is_real_dir(path: Path) -> bool:
    """A folder that is not a symbolic link (an entry linked out of the cache is never served nor written)."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder (folders only where the OS allows opening them)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: dict) -> None:
    replace_privately(path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))


def _looks_like_cache(root: Path) -> bool:
    """True if every name under ``root`` is one the cache writes (a cache made before the mark existed)."""
    for child in root.iterdir():
        if child.name == ".tmp" and child.is_dir() and not child.is_symlink():
            continue
        if (child.name == HASH_MEMO or _HASH_MEMO_TMP_RE.match(child.name)) and child.is_file() \
                and not child.is_symlink():  # written there by an older version before the cache's mark
            continue
        if not (_SHARD_RE.match(child.name) and child.is_dir() and not child.is_symlink()):
            return False
        for entry in child.iterdir():
            if not (_KEY_RE.match(entry.name) or _DELETING_RE.match(entry.name)):
                return False
    return True


def _stale(path: Path, pid: int, max_age_s: float) -> bool:
    """A leftover of a writer that is gone (dead pid) or took far too long."""
    try:
        old = time.time() - path.lstat().st_mtime > max_age_s
    except OSError:
        return False
    return old or (pid != os.getpid() and not _pid_alive(pid))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


class WeightCache:
    """Thread-safe cache of fine-tuned weights under one folder, bounded by ``budget_bytes``.

    ``read_only=True`` (listing) creates, marks and sweeps nothing; a missing folder is an empty cache.
    Raises :class:`NotACacheFolder` for a non-empty folder that is not a cache.
    """

    def __init__(self, root: str | os.PathLike, budget_bytes: int | None = None, read_only: bool = False) -> None:
        self.root = Path(root)
        self.budget_bytes = budget_bytes
        self.read_only = read_only
        self._lock = threading.RLock()
        self._key_locks: dict[str, tuple[threading.Lock, int]] = {}
        self._index: dict[str, CacheEntry] = {}
        if read_only:
            if self.root.is_dir():
                self._check_ours(adopt=False)
                self._index_entries(sweep=False)
            return
        ensure_private_dir(self.root)  # fine-tunes of the painter's pictures: owner-only, whatever the umask
        self._check_ours(adopt=True)
        self._index_entries(sweep=True)

    # --- opening -------------------------------------------------------------------------------
    def _check_ours(self, adopt: bool) -> None:
        """Refuse a folder that is not a cache; mark an empty (or pre-mark cache) folder as ours."""
        marker = self.root / MARKER
        if marker.is_file():
            return
        if not self.root.is_dir():
            raise NotACacheFolder(f"{self.root} is not a folder")
        if any(True for _ in self.root.iterdir()) and not _looks_like_cache(self.root):
            raise NotACacheFolder(
                f"{self.root} is not empty and is not a sine-edit cache (no {MARKER} file); refusing to use it,"
                " so none of its files is touched. Pick an empty or new folder for the cache (--cache-dir or"
                " SINE_CACHE_DIR)"
            )
        if adopt:
            _write_json_atomic(marker, {"format": KEY_FORMAT, "created": time.time(),
                                        "note": "sine-edit weight cache; safe to delete with `sine cache clear`"})

    def _index_entries(self, sweep: bool) -> None:
        """Index entries with a readable manifest; with ``sweep``, drop what dead writers left behind.

        Only names the cache writes are ever removed: ``.tmp/<key12>-<pid>-*`` of dead writers,
        ``<xx>/.del-*``, ``<xx>/<key>`` without a manifest, and stray ``.manifest.json.<pid>.*.tmp``.
        """
        if sweep:
            self._sweep_temp()
        for shard in self.root.iterdir():
            if not _SHARD_RE.match(shard.name) or not shard.is_dir() or shard.is_symlink():
                continue
            for folder in shard.iterdir():
                if _DELETING_RE.match(folder.name):
                    if sweep:
                        _remove(folder)
                    continue
                if not _KEY_RE.match(folder.name) or not folder.is_dir() or folder.is_symlink():
                    continue
                entry = self._read_manifest(folder)
                if entry is not None:
                    self._index[entry.key] = entry
                if not sweep:
                    continue
                if entry is None:
                    log.warning("cache: removing incomplete entry %s", folder)
                    _remove(folder)
                    continue
                for stray in folder.iterdir():
                    match = _MANIFEST_TMP_RE.match(stray.name)
                    if match and _stale(stray, int(match.group(1)), STALE_MANIFEST_TMP_S):
                        _remove(stray)

    def _sweep_temp(self) -> None:
        """Remove temp folders whose writer process is gone (another live daemon's writes are left alone)."""
        tmp_root = self.root / ".tmp"
        if not tmp_root.is_dir() or tmp_root.is_symlink():
            return
        for folder in tmp_root.iterdir():
            match = _TEMP_RE.match(folder.name)
            if match and _stale(folder, int(match.group(1)), STALE_TEMP_S):
                _remove(folder)

    @staticmethod
    def _read_manifest(folder: Path) -> CacheEntry | None:
        if not (_KEY_RE.match(folder.name) and _is_real_dir(folder) and _is_real_dir(folder.parent)):
            return None
        try:
            data = _load_manifest(folder)
        except (OSError, ValueError):
            return None
        return CacheEntry(key=data["key"], path=folder, bytes=data["bytes"], created=float(data["created"]),
                          last_used=float(data["last_used"]), settings=dict(data.get("settings") or {}))

    def entry_path(self, key: str) -> Path:
        """Where the entry for ``key`` lives (whether or not it exists)."""
        if not _KEY_RE.match(key):
            raise ValueError(f"bad cache key {key!r}")
        return self.root / key[:2] / key

    # --- reading -------------------------------------------------------------------------------
    def lookup(self, key: str) -> Path | None:
        """Return the verified entry folder for ``key`` (and mark it used), or None on a miss.

        A corrupt entry (missing file, hash mismatch, unreadable manifest) is deleted and logged.
        """
        with self._lock:
            folder = self.entry_path(key)
            if not (_is_real_dir(folder.parent) and _is_real_dir(folder)):  # missing, or linked out of the cache
                self._index.pop(key, None)
                return None
            if not os.path.lexists(folder / MANIFEST):
                self._index.pop(key, None)
                return None
            try:
                manifest = _load_manifest(folder)
                for name, expected in manifest["files"].items():
                    if _sha256_file(folder / name) != expected:
                        raise ValueError(f"hash mismatch for {name}")
            except (OSError, ValueError) as exc:
                log.warning("cache: discarding corrupt entry %s: %s", key[:12], exc)
                if not self.read_only:
                    self._remove_folder(key)
                return None
            if self.read_only:
                return folder
            manifest["last_used"] = time.time()
            try:
                _write_json_atomic(folder / MANIFEST, manifest)
            except OSError as exc:  # a read-only cache still serves hits
                log.warning("cache: could not update last_used for %s: %s", key[:12], exc)
            entry = self._read_manifest(folder)
            if entry is not None:
                self._index[key] = entry
            return folder

    def entries(self) -> list[CacheEntry]:
        """All entries, most recently used first."""
        with self._lock:
            return sorted(self._index.values(), key=lambda e: e.last_used, reverse=True)

    def stats(self) -> dict:
        """``{entries, bytes, budget}`` for `hello` / `status` replies."""
        with self._lock:
            return {
                "entries": len(self._index),
                "bytes": sum(e.bytes for e in self._index.values()),
                "budget": self.budget_bytes,
            }

    # --- writing -------------------------------------------------------------------------------
    def store(self, key: str, write: Callable[[Path], None], settings: dict | None = None) -> Path:
        """Build an entry with ``write(folder)`` in a temp folder, then publish it atomically.

        If ``write`` raises, nothing is published. Evicts old entries afterwards to meet the budget.
        """
        if self.read_only:
            raise PermissionError(f"the cache at {self.root} was opened read-only")
        final = self.entry_path(key)
        tmp_root = self.root / ".tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{key[:12]}-{os.getpid()}-", dir=tmp_root))
        try:
            write(work)
            files: dict[str, str] = {}
            total = 0
            for path in sorted(p for p in work.rglob("*") if p.is_file()):
                name = path.relative_to(work).as_posix()
                if name == MANIFEST:
                    raise ValueError(f"the writer may not create {MANIFEST}")
                _fsync_path(path)
                files[name] = _sha256_file(path)
                total += path.stat().st_size
            if not files:
                raise ValueError("the writer saved no files")
            now = time.time()
            manifest = {
                "key": key,
                "files": files,
                "created": now,
                "last_used": now,
                "bytes": total,
                "settings": settings or {},
            }
            with open(work / MANIFEST, "w", encoding="utf-8") as handle:
                json.dump(manifest, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            for sub in sorted((p for p in work.rglob("*") if p.is_dir()), reverse=True):
                _fsync_path(sub)
            _fsync_path(work)
            with self._lock:
                for link in (final.parent, final):  # a link in the cache's place: drop the link, never its target
                    if link.is_symlink():
                        log.warning("cache: removing the symbolic link %s (a cache folder is never a link)", link)
                        link.unlink()
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists() and self._read_manifest(final) is None:  # published but broken: replace it
                    log.warning("cache: replacing entry %s that has no readable manifest", key[:12])
                    self._remove_folder(key)
                if final.exists():  # a concurrent writer won; keep theirs (same content by construction)
                    shutil.rmtree(work, ignore_errors=True)
                else:
                    os.rename(work, final)
                    _fsync_path(final.parent)
                entry = self._read_manifest(final)
                if entry is not None:
                    self._index[key] = entry
                self.evict(keep=key)
            return final
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least-recently-used entries until the total fits the budget; return removed keys."""
        removed: list[str] = []
        if self.budget_bytes is None:
            return removed
        with self._lock:
            total = sum(e.bytes for e in self._index.values())
            for entry in sorted(self._index.values(), key=lambda e: e.last_used):
                if total <= self.budget_bytes:
                    break
                if entry.key == keep:
                    continue
                self._remove_folder(entry.key)
                total -= entry.bytes
                removed.append(entry.key)
        for key in removed:
            log.info("cache: evicted %s (budget %d bytes)", key[:12], self.budget_bytes)
        return removed

    def remove(self, key: str) -> bool:
        """Delete one entry; True if it existed."""
        with self._lock:
            existed = self.entry_path(key).exists()
            self._remove_folder(key)
            return existed

    def clear(self) -> int:
        """Delete every entry; return how many there were."""
        if self.read_only:
            raise PermissionError(f"the cache at {self.root} was opened read-only")
        with self._lock:
            keys = list(self._index)
            for key in keys:
                self._remove_folder(key)
            self._sweep_temp()
            return len(keys)

    def _remove_folder(self, key: str) -> None:
        folder = self.entry_path(key)
        self._index.pop(key, None)
        if folder.parent.is_symlink() or folder.is_symlink():
            with contextlib.suppress(OSError):  # the link only; what it points to is not the cache's
                (folder.parent if folder.parent.is_symlink() else folder).unlink()
            return
        if folder.exists():
            # Rename first so a crash mid-delete leaves a dot-folder the next sweep removes, not a bad entry.
            doomed = folder.with_name(f".del-{key}-{os.getpid()}-{time.monotonic_ns()}")
            try:
                os.rename(folder, doomed)
            except OSError:
                doomed = folder
            shutil.rmtree(doomed, ignore_errors=True)

    # --- one fine-tune per key at a time ---------------------------------------------------------
    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """Hold the per-key lock: a second job for the same image waits here, then finds the entry."""
        with self._lock:
            lock, users = self._key_locks.get(key, (threading.Lock(), 0))
            self._key_locks[key] = (lock, users + 1)
        lock.acquire()
        try:
            yield
        finally:
            lock.release()
            with self._lock:
                lock, users = self._key_locks[key]
                if users <= 1:
                    del self._key_locks[key]
                else:
                    self._key_locks[key] = (lock, users - 1)
