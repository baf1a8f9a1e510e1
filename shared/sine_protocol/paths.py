"""Where the daemon and the plugins keep things on disk, and the shared token.

Both sides call these functions, so the daemon writes the token exactly where the plugins look
for it. Every directory can be overridden by an environment variable (tests use temp folders).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import sys
import unicodedata
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "sine-edit"
DAEMON_LOG_NAME = "daemon.log"
DEFAULT_PORT = 47633
TOKEN_BYTES = 32


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


FOLDER_SETTINGS = ("SINE_CONFIG_DIR", "SINE_STATE_DIR", "SINE_CACHE_DIR", "SINE_RUNTIME_DIR")


def folder_setting_problem(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """What makes the folder in ``name`` (one of FOLDER_SETTINGS) unusable, or None. A relative one would be
    read from each process's own working folder (the daemon writing its token where no plug-in looks); one
    holding a line break or another control character would split the log lines that name it. The daemon,
    ``sine doctor`` and the installer (its own ``env``) refuse such a value; the path functions below return
    it as given."""
    value = (os.environ if env is None else env).get(name)
    if not value:
        return None
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in value):
        shown = value.encode("unicode_escape", "backslashreplace").decode("ascii")
        return f"{name}={shown} holds a line break or another control character: name a folder without one"
    if not Path(value).expanduser().is_absolute():
        return (f"{name}={value} is a relative path: the daemon and each plug-in would read it from their own"
                " working folder; give an absolute path or unset it")
    return None


def _xdg_path(name: str) -> Path | None:
    """An XDG base folder, or None when unset or relative: the XDG spec calls a relative one invalid, and
    each process would read it from its own working folder (daemon and plug-in disagreeing on the token)."""
    path = _env_path(name)
    return path if path is not None and path.is_absolute() else None


def _home() -> Path:
    """The home folder; HOME set empty or relative counts as unset (the account's home from the system)."""
    home = os.environ.get("HOME")
    if os.name == "posix" and not (home and os.path.isabs(home)):
        try:
            import pwd

            return Path(pwd.getpwuid(os.getuid()).pw_dir)
        except (ImportError, KeyError):
            pass
    return Path.home()


def _windows_dir(env: str, fallback: str) -> Path:
    return (_env_path(env) or _home() / fallback) / APP_NAME


def config_dir() -> Path:
    """Token and daemon command file (``SINE_CONFIG_DIR`` overrides)."""
    override = _env_path("SINE_CONFIG_DIR")
    if override:
        return override
    if sys.platform == "win32":
        return _windows_dir("APPDATA", "AppData/Roaming")
    if sys.platform == "darwin":
        return _home() / "Library" / "Application Support" / APP_NAME
    return (_xdg_path("XDG_CONFIG_HOME") or _home() / ".config") / APP_NAME


def state_dir() -> Path:
    """Logs and the pid/lock file (``SINE_STATE_DIR`` overrides)."""
    override = _env_path("SINE_STATE_DIR")
    if override:
        return override
    if sys.platform == "win32":
        return _windows_dir("LOCALAPPDATA", "AppData/Local") / "state"
    if sys.platform == "darwin":
        return _home() / "Library" / "Application Support" / APP_NAME / "state"
    return (_xdg_path("XDG_STATE_HOME") or _home() / ".local" / "state") / APP_NAME


def cache_dir() -> Path:
    """Per-image fine-tuned weights (``SINE_CACHE_DIR`` overrides)."""
    override = _env_path("SINE_CACHE_DIR")
    if override:
        return override
    if sys.platform == "win32":
        return _windows_dir("LOCALAPPDATA", "AppData/Local") / "cache"
    if sys.platform == "darwin":
        return _home() / "Library" / "Caches" / APP_NAME
    return (_xdg_path("XDG_CACHE_HOME") or _home() / ".cache") / APP_NAME


def runtime_dir() -> Path:
    """Folder of the ipc socket, to be created with mode 0700 (``SINE_RUNTIME_DIR`` overrides)."""
    override = _env_path("SINE_RUNTIME_DIR")
    if override:
        return override
    xdg = _xdg_path("XDG_RUNTIME_DIR")
    if xdg and sys.platform not in ("win32", "darwin"):
        return xdg / APP_NAME
    return state_dir() / "run"


def daemon_log() -> Path:
    """The daemon's log (rotated beside it as daemon.log.1 ..): where a plug-in sends a painter to read why."""
    return state_dir() / DAEMON_LOG_NAME


def token_file() -> Path:
    """The daemon's secret; plugins read it to authenticate."""
    return config_dir() / "token"


def daemon_command_file() -> Path:
    """``{"argv": [...]}`` written by the installer: how to start the daemon."""
    return config_dir() / "daemon.json"


def default_endpoint() -> str:
    """Loopback TCP endpoint, the one every platform has (``SINE_ENDPOINT`` overrides)."""
    return os.environ.get("SINE_ENDPOINT") or f"tcp://127.0.0.1:{DEFAULT_PORT}"


def ipc_endpoint() -> str | None:
    """The daemon's extra ``ipc://`` endpoint in :func:`runtime_dir`, or None where ipc is missing (Windows)."""
    if sys.platform == "win32":
        return None
    return f"ipc://{runtime_dir() / 'daemon.sock'}"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) owner-only (0700 on POSIX).

    An existing folder is made owner-only only when it is ours: empty, or on a path named for the app
    (an older version's folder). A folder the user named in SINE_*_DIR (their home, a shared /tmp) keeps
    its permissions: chmod-ing it took /tmp's sticky bit. The files written in it are owner-only anyway.
    """
    existed = path.is_dir()
    path.mkdir(parents=True, exist_ok=True)
    if os.name == "posix" and (not existed or APP_NAME in path.parts or not any(path.iterdir())):
        os.chmod(path, 0o700)
    return path


def is_own_file(path: Path, first_line: re.Pattern[bytes]) -> bool:
    """Whether sine-edit may append to, rename or replace ``path`` in a folder SINE_*_DIR may name (the user's
    home): absent, in a folder named for the app (its own), or a regular file, never a link, that is empty or
    starts as ``first_line`` says (a log line of sine-edit's). A file of the user's of that name is not."""
    if APP_NAME in path.parent.parts:
        return True
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        head = os.read(fd, 64) if stat.S_ISREG(os.fstat(fd).st_mode) else None
        return head is not None and (head == b"" or bool(first_line.match(head)))
    finally:
        os.close(fd)


TOKEN_MAX_BYTES = 4096  # a token is 43 characters; anything this long is not one


def read_small_file(path: Path, max_bytes: int) -> bytes:
    """A regular file's bytes without blocking: OSError for a named pipe or device in its place (opening one
    waits for a writer or never ends; a plug-in reads these on its UI thread) and for more than ``max_bytes``."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        data = b""
        while len(data) <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - len(data))):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise OSError(f"{path} is over {max_bytes} bytes")
    return data


def read_token(path: Path | None = None) -> str | None:
    """The token, or None when the daemon has not written one yet (or it is empty/unreadable)."""
    path = path or token_file()
    try:  # a named pipe in its place must not freeze a plug-in's UI thread; a big file is not a token file
        data = read_small_file(path, TOKEN_MAX_BYTES)
    except OSError:
        return None
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    return token or None


def _private_tmp(path: Path, data: bytes) -> Path:
    """A new owner-only file beside ``path`` holding ``data``, written and synced: the caller links or
    renames it into place, so a reader never sees it half-written. Its name is unpredictable and it is
    made afresh (O_EXCL: never through a link another user planted in a shared folder)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.randbelow(10**16)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write (disk full) leaves no stray
        raise
    return tmp


def _private_tmp_with(path: Path, token: str) -> Path:
    return _private_tmp(path, (token + "\n").encode("utf-8"))


def replace_privately(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, owner-only: a fresh file (see `_private_tmp`) renamed
    over it. A link at ``path`` itself is replaced, never written through."""
    tmp = _private_tmp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_token(token: str, path: Path | None = None) -> None:
    """Write ``token`` (mode 0600) under a temporary name and rename it into place: the daemon
    holding the endpoint lock puts its token back this way when the file was deleted."""
    path = path or token_file()
    ensure_private_dir(path.parent)
    tmp = _private_tmp_with(path, token)
    try:
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def ensure_token(path: Path | None = None) -> str:
    """Return the token, creating it (mode 0600, atomically) if there is none yet.

    The new file is written under a temporary name and hard-linked into place, so a reader never
    sees a half-written token and two daemons starting at once agree on one token.
    """
    path = path or token_file()
    existing = read_token(path)
    if existing:
        return existing
    ensure_private_dir(path.parent)
    token = secrets.token_hex(TOKEN_BYTES)
    tmp = _private_tmp_with(path, token)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # someone else won the race (or an empty/broken file is there; handled below)
        except OSError:
            os.replace(tmp, path)  # filesystems without hard links
    finally:
        if tmp.exists():
            tmp.unlink()
    winner = read_token(path)
    if winner:
        return winner
    # An empty or unreadable file was in the way: replace it.
    os.replace(_private_tmp_with(path, token), path)
    return token
