"""Starting the daemon on demand from a plugin.

The installer writes ``daemon_command_file()`` (``{"argv": [...]}``) because only it knows where
the backend's venv lives; the plugins just read it and start that command detached, so the
daemon outlives the host application and shows no console window.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import DaemonNotInstalled
from .paths import daemon_command_file, ensure_private_dir, is_own_file, read_small_file, state_dir

INSTALL_ADVICE = (
    "the sine-edit backend is not installed for this user (no {path}). Install it with "
    "`python3 installer/install.py` from the sine-edit folder, then try again"
)
LOG_NAME = "daemon-launch.log"
_FIRST_LINE = re.compile(rb"--- \d{4}-\d\d-\d\d \d\d:\d\d:\d\d starting: ")  # start_daemon's line
COMMAND_MAX_BYTES = 1 << 20  # an argv list; a bigger "daemon.json" is not the installer's
_EXIT_GRACE_S = 3.0


def read_daemon_command(path: Path | None = None) -> list[str]:
    """The daemon's argv from the command file; :class:`DaemonNotInstalled` if missing or unusable."""
    path = path or daemon_command_file()
    try:
        spec = json.loads(read_small_file(path, COMMAND_MAX_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise DaemonNotInstalled(INSTALL_ADVICE.format(path=path)) from None
    except (OSError, ValueError) as exc:
        raise DaemonNotInstalled(f"{path} is unreadable ({exc}); run the installer again") from None
    argv = spec.get("argv") if isinstance(spec, dict) else None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
        raise DaemonNotInstalled(f"{path} has no usable \"argv\" list; run the installer again")
    if not all(_runnable(a) for a in argv):  # Popen raised ValueError / UnicodeEncodeError for these
        raise DaemonNotInstalled(f"{path}: an argument holds a NUL or a lone surrogate, which no system can run;"
                                 " run the installer again")
    return argv


def _runnable(arg: str) -> bool:
    """Whether ``arg`` can be one argument of a process: no NUL, and encodable as the OS needs."""
    try:
        os.fsencode(arg)
    except UnicodeError:
        return False
    return "\0" not in arg


def start_daemon(path: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the daemon detached, output appended to a log in ``state_dir()``; returns at once.

    The caller should then wait for it with :func:`wait_until_up`. A second daemon started by
    mistake exits by itself (the daemon holds a lock on its endpoint).
    """
    argv = read_daemon_command(path)
    try:
        logs = ensure_private_dir(state_dir())
        # Handed to the child; closed below. Owner-only, like the daemon's own log.
        log = open(logs / LOG_NAME if is_own_file(logs / LOG_NAME, _FIRST_LINE) else os.devnull,  # noqa: SIM115
                   "ab", opener=lambda path, flags: os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600))
    except OSError as exc:
        raise DaemonNotInstalled(f"cannot keep the daemon's log in {state_dir()} (SINE_STATE_DIR):"
                                 f" {exc.strerror or exc}") from None
    kwargs: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": log,
        "stderr": subprocess.STDOUT,
        "close_fds": True,
        "cwd": str(Path.home()),
        "env": env if env is not None else os.environ.copy(),
    }
    if sys.platform == "win32":
        # No console window, and not killed with the host's console/process group.
        kwargs["creationflags"] = (
            getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
            | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
        )
    else:
        kwargs["start_new_session"] = True  # survives the host closing its terminal/session
    try:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {argv!r}\n".encode())
        log.flush()
        return subprocess.Popen(argv, **kwargs)
    except OSError as exc:
        raise DaemonNotInstalled(f"cannot start the daemon ({argv[0]}): {exc}; run the installer again") from exc
    finally:
        log.close()


def wait_until_up(
    client_factory: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.25,
    process: subprocess.Popen | None = None,
) -> bool:
    """Ping until a daemon answers or ``timeout`` passes; ``client_factory()`` makes a SineClient.

    With ``process`` (the daemon just started), give up a few seconds after it exits instead of
    waiting out the whole timeout: a crashed daemon will not answer, though a second instance
    that exits because another one already runs is fine as long as that one answers.
    """
    deadline = time.monotonic() + timeout
    client = client_factory()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if client.ping(timeout=min(max(interval, 0.05), remaining)):
                return True
            if process is not None and process.poll() is not None:
                deadline = min(deadline, time.monotonic() + _EXIT_GRACE_S)
            time.sleep(min(interval, max(deadline - time.monotonic(), 0)))
    finally:
        client.close()


def ensure_daemon(client_factory: Callable[[], Any], timeout: float = 60.0) -> subprocess.Popen | None:
    """Make sure a daemon answers: start one if none does. Returns the started process, if any.

    Raises :class:`DaemonNotInstalled` when there is nothing to start and TimeoutError when the
    started daemon does not answer within ``timeout`` (its output is in ``state_dir()``).
    """
    if wait_until_up(client_factory, timeout=1.0):
        return None
    process = start_daemon()
    if not wait_until_up(client_factory, timeout, process=process):
        raise TimeoutError(f"the daemon did not answer within {timeout:g} s; see {state_dir() / LOG_NAME}")
    return process
