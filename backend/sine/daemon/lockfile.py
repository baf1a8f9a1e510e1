"""An exclusive per-endpoint lock file holding the daemon's pid, so a second daemon refuses clearly.

The OS releases the lock when the process dies (even on SIGKILL), so a stale file never blocks a restart.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
from pathlib import Path


class AlreadyRunning(RuntimeError):
    """Another live daemon holds the lock for this endpoint."""


def lock_path_for(state_dir: str | os.PathLike, endpoint: str) -> Path:
    """The lock file for ``endpoint`` inside ``state_dir`` (one per endpoint, readable name)."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "_", endpoint).strip("_")
    return Path(state_dir) / f"daemon-{slug}.lock"


class DaemonLock:
    """Hold ``path`` locked for the process lifetime (fcntl on POSIX, msvcrt on Windows)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, info: dict | None = None) -> None:
        """Take the lock or raise AlreadyRunning naming the holder's pid; then write our pid + ``info``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_own_file(self.path)
        try:
            _lock_fd(fd)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            pid = holder.get("pid", "?")
            where = holder.get("endpoint", "")
            raise AlreadyRunning(
                f"another sine daemon (pid {pid}) is already running{' on ' + where if where else ''}"
                f" (lock file {self.path}); stop it first or pick another --endpoint"
            ) from None
        payload = json.dumps({"pid": os.getpid(), **(info or {})}).encode()
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        # Keep byte 0 for the Windows lock region; the JSON starts after a newline.
        os.write(fd, b"\n" + payload + b"\n")
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Unlock and close; the file stays (its content is harmless without the lock)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
        except OSError:
            pass
        _unlock_fd(fd)
        os.close(fd)

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open_own_file(path: Path) -> int:
    """Open (or create, 0600) the lock file itself: never through a symbolic link (it is truncated and
    written, and a runtime folder may be a shared one where anyone can plant a link), never a pipe."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise OSError(exc.errno, f"the lock file {path} is a symbolic link; remove it (the daemon never"
                                     " writes through a link)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"the lock file {path} is not a regular file; remove it")
    return fd


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode().strip() or "{}")
    except (OSError, ValueError):
        return {}


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock_fd(fd: int) -> None:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
