"""Daemon logging: a rotating file in state_dir() (for bug reports) plus stderr (for `--foreground`).

The state folder is owner-only (0700) and every log file is created 0600: the log names jobs and
connections, which are nobody else's business.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

LOG_NAME = "daemon.log"
BACKUPS = 3  # daemon.log.1 .. daemon.log.3
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files (the first and every one after a rollover) are mode 0600."""

    def _open(self):  # noqa: ANN202 - same signature as the base class
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,  # noqa: SIM115
                    opener=private_opener)


def private_opener(path: str, flags: int) -> int:
    """os.open for a log: created 0600, never through a symbolic link (the folder may be one the user named,
    and a planted link would have the log appended to the file it points at)."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)


def setup_logging(state_dir: str | os.PathLike, level: int = logging.INFO, stderr: bool = True) -> Path:
    """Route the ``sine`` loggers to ``<state_dir>/daemon.log`` (1 MB × 3) and stderr; return the log path."""
    from sine_protocol.paths import ensure_private_dir

    folder = ensure_private_dir(Path(state_dir))
    path = folder / LOG_NAME
    if os.name == "posix":  # files made by an older version (its names only: the folder may be the user's)
        for old in [path, *(folder / f"{LOG_NAME}.{n}" for n in range(1, BACKUPS + 1))]:
            if old.is_file() and not old.is_symlink():
                try:
                    os.chmod(old, 0o600)
                except OSError:
                    pass
    root = logging.getLogger("sine")
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    file_handler = PrivateRotatingFileHandler(path, maxBytes=1_000_000, backupCount=BACKUPS, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(file_handler)
    if stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(stream)
    root.propagate = False
    return path
