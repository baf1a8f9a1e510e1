"""Daemon logging: a rotating file in state_dir() (for bug reports) plus stderr (for `--foreground`).

The state folder is owner-only (0700) and every log file is created 0600: the log names jobs and
connections, which are nobody else's business. SINE_STATE_DIR may name a folder of the user's: there a
file called daemon.log or daemon.log.N that the daemon did not write is never appended to, chmod-ed,
renamed or replaced.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import re
import sys
from pathlib import Path

from sine_protocol.paths import DAEMON_LOG_NAME, is_own_file

LOG_NAME = DAEMON_LOG_NAME
BACKUPS = 3  # daemon.log.1 .. daemon.log.3
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"
_FIRST_LINE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ sine[. ]")  # how _FORMAT's lines start


def is_own_log(path: Path) -> bool:
    """Whether the daemon may write, rename or replace ``path`` (sine_protocol.paths.is_own_file)."""
    return is_own_file(path, _FIRST_LINE)


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files (the first and every one after a rollover) are mode 0600, and that
    rolls over only through backups of its own: when a daemon.log.N is a file of the user's, the log starts
    again in daemon.log instead (still bounded), saying so, and every daemon.log.N is left as it is."""

    def _open(self):  # noqa: ANN202 - same signature as the base class
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,  # noqa: SIM115
                    opener=private_opener)

    def doRollover(self) -> None:  # noqa: N802 - the base class's name
        backups = [Path(self.rotation_filename(f"{self.baseFilename}.{n}")) for n in range(1, self.backupCount + 1)]
        foreign = [path for path in backups if not is_own_log(path)]
        if not foreign:
            super().doRollover()
            return
        if self.stream:
            self.stream.close()
            self.stream = None  # type: ignore[assignment]
        self.mode, mode = "w", self.mode
        try:
            self.stream = self._open()
        finally:
            self.mode = mode
        note = logging.makeLogRecord({"name": "sine.daemon", "levelname": "WARNING", "levelno": logging.WARNING,
                                      "msg": f"log started again instead of rotated: {foreign[0]} is not a sine-edit"
                                             " log (left as it is)"})
        self.stream.write(self.format(note) + self.terminator)


def private_opener(path: str, flags: int) -> int:
    """os.open for a log: created 0600, never through a symbolic link (the folder may be one the user named,
    and a planted link would have the log appended to the file it points at)."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)


def setup_logging(state_dir: str | os.PathLike, level: int = logging.INFO, stderr: bool = True) -> Path:
    """Route the ``sine`` loggers to ``<state_dir>/daemon.log`` (1 MB × 3) and stderr; return the log path."""
    from sine_protocol.paths import ensure_private_dir

    folder = ensure_private_dir(Path(state_dir))
    path = folder / LOG_NAME
    if not path.is_symlink() and not is_own_log(path):  # a link is refused when opened (O_NOFOLLOW)
        raise OSError(errno.EEXIST, f"{path} is not a sine-edit log, so it is left as it is: name another folder"
                                    " or move that file")
    if os.name == "posix":  # files made by an older version (its names only: the folder may be the user's)
        for old in [path, *(folder / f"{LOG_NAME}.{n}" for n in range(1, BACKUPS + 1))]:
            if old.is_file() and not old.is_symlink() and is_own_log(old):
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
