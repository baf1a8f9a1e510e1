"""The daemon's token: written only by the process holding the endpoint lock, and kept on disk.

A second `sine daemon` (a plugin's auto-start) used to write a fresh token before finding the lock
taken, locking every client out of the running daemon. Now the token is read or created only after
the lock is ours; while running, a deleted token file is written back and a token the user put in
its place (rotation) is adopted, so clients that read the file always hold the daemon's token.
"""

from __future__ import annotations

import logging
import os
import stat
import string
import time
from pathlib import Path

from sine_protocol.auth import MAX_PLAIN_FIELD
from sine_protocol.paths import (
    TOKEN_MAX_BYTES,
    ensure_token,
    read_small_file,
    read_token,
    token_file,
    write_token,
)

log = logging.getLogger("sine.daemon.token")
CHECK_EVERY_S = 1.0
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")


def usable(token: str) -> bool:
    """A token PLAIN can carry and a person can paste: 16 to 255 URL-safe characters."""
    return 16 <= len(token) <= MAX_PLAIN_FIELD and set(token) <= _TOKEN_CHARS


class TokenKeeper:
    """Owns the token file once the daemon holds its lock. ``token`` is what the daemon accepts."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or token_file()
        self.token = ""
        self._last_check = 0.0
        self._left_alone = False

    def start(self) -> str:
        """Read the token, or create it; OSError if the file cannot be used (e.g. it is a folder)."""
        if self.path.is_symlink():  # never a user's file as the secret: the link goes, its target stays
            log.warning("the token file %s is a symbolic link; replacing the link with a private token", self.path)
            token = ensure_token_fresh(self.path)
        elif self.path.is_dir():
            raise IsADirectoryError(f"the token path {self.path} is a folder; remove it or set SINE_CONFIG_DIR")
        elif (why := not_a_token_file(self.path)) is not None:
            raise OSError(f"the token path {self.path} {why}: it may be a file of yours, so it is left as it is; "
                          "move it away, or set SINE_CONFIG_DIR to a folder for sine-edit")
        else:
            token = ensure_token(self.path)
            if not usable(token):
                token = ensure_token_fresh(self.path)
        make_owner_only(self.path)
        self.token = token
        return token

    def check(self, now: float | None = None) -> None:
        """At most once per CHECK_EVERY_S: put a deleted token back, adopt a rotated one."""
        now = time.monotonic() if now is None else now
        if now - self._last_check < CHECK_EVERY_S:
            return
        self._last_check = now
        current = None if self.path.is_symlink() else read_token(self.path)
        if current == self.token:
            return
        if current is not None and usable(current):
            log.warning("the token file changed: using the new token (connections made before keep working)")
            self.token = current
            return
        if not self.path.is_symlink() and (why := not_a_token_file(self.path)) is not None:
            if not self._left_alone:  # once, not every second
                log.error("the token file %s %s: left as it is (it may be a file of yours)", self.path, why)
            self._left_alone = True
            return
        self._left_alone = False
        try:
            write_token(self.token, self.path)
            log.warning("the token file was %s: wrote the daemon's token back", "unusable" if current else "missing")
        except OSError as exc:
            log.error("cannot write the token file %s: %s", self.path, exc)


def not_a_token_file(path: Path) -> str | None:
    """Why the file at `path` is not the daemon's to replace, or None (absent, empty, or a token). SINE_CONFIG_DIR
    may name a folder of the user's: a file of theirs called `token` (notes, a key) is never written over."""
    try:
        data = read_small_file(path, TOKEN_MAX_BYTES)
    except FileNotFoundError:
        return None
    except OSError:
        return f"is not a token file (not a regular file, or over {TOKEN_MAX_BYTES} bytes)"
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return "is not a token file (not text)"
    return None if not text or usable(text) else "holds something other than a token (16 to 255 of A-Z a-z 0-9 - _ .)"


def make_owner_only(path: Path) -> None:
    """chmod 600 the token file when others may read it (an old install, a `cp`), never through a link."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode) and stat.S_IMODE(mode) & 0o077:
            log.warning("the token file %s was readable by others (mode %o): made owner-only", path,
                        stat.S_IMODE(mode))
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def ensure_token_fresh(path: Path) -> str:
    """Replace an unusable token file with a new token."""
    import secrets

    token = secrets.token_hex(32)
    write_token(token, path)
    return token
