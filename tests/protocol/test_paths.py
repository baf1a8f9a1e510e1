"""Per-platform locations, env overrides and the shared token file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sine_protocol import paths

ENV_VARS = ["SINE_CONFIG_DIR", "SINE_STATE_DIR", "SINE_CACHE_DIR", "SINE_RUNTIME_DIR", "SINE_ENDPOINT",
            "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR", "APPDATA", "LOCALAPPDATA"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    return tmp_path


def test_linux_defaults(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    assert paths.config_dir() == home / ".config" / "sine-edit"
    assert paths.state_dir() == home / ".local" / "state" / "sine-edit"
    assert paths.cache_dir() == home / ".cache" / "sine-edit"
    assert paths.runtime_dir() == home / ".local" / "state" / "sine-edit" / "run"
    assert paths.token_file() == home / ".config" / "sine-edit" / "token"
    assert paths.daemon_command_file() == home / ".config" / "sine-edit" / "daemon.json"
    assert paths.default_endpoint() == "tcp://127.0.0.1:47633" == f"tcp://127.0.0.1:{paths.DEFAULT_PORT}"
    assert paths.ipc_endpoint() == f"ipc://{home}/.local/state/sine-edit/run/daemon.sock"


def test_relative_xdg_variables_and_an_empty_home_are_ignored(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """XDG_CONFIG_HOME=rel was used relative to each process's own folder: the daemon (started from the home
    folder) wrote its token where a plug-in (started elsewhere) never looked, and every edit was refused.
    The XDG spec says a relative path there is invalid and to be ignored; HOME="" is as good as unset."""
    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(name, "relative/" + name.lower())
    assert paths.config_dir() == home / ".config" / "sine-edit"
    assert paths.state_dir() == home / ".local" / "state" / "sine-edit"
    assert paths.cache_dir() == home / ".cache" / "sine-edit"
    assert paths.runtime_dir() == home / ".local" / "state" / "sine-edit" / "run"
    monkeypatch.setenv("HOME", "")
    assert paths.config_dir().is_absolute() and paths.config_dir() != Path("/.config/sine-edit")
    import pwd

    assert paths.config_dir() == Path(pwd.getpwuid(os.getuid()).pw_dir) / ".config" / "sine-edit"


def test_xdg_variables(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("CONFIG", "STATE", "CACHE", "RUNTIME"):
        monkeypatch.setenv(f"XDG_{name}_HOME" if name != "RUNTIME" else "XDG_RUNTIME_DIR", str(home / name.lower()))
    assert paths.config_dir() == home / "config" / "sine-edit"
    assert paths.state_dir() == home / "state" / "sine-edit"
    assert paths.cache_dir() == home / "cache" / "sine-edit"
    assert paths.runtime_dir() == home / "runtime" / "sine-edit"


def test_sine_overrides_win(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    for name in ("CONFIG", "STATE", "CACHE", "RUNTIME"):
        monkeypatch.setenv(f"SINE_{name}_DIR", str(home / f"o-{name.lower()}"))
    monkeypatch.setenv("SINE_ENDPOINT", "ipc:///tmp/x.sock")
    assert paths.config_dir() == home / "o-config"
    assert paths.token_file() == home / "o-config" / "token"
    assert paths.state_dir() == home / "o-state"
    assert paths.cache_dir() == home / "o-cache"
    assert paths.runtime_dir() == home / "o-runtime"
    assert paths.default_endpoint() == "ipc:///tmp/x.sock"


def test_windows_and_macos(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(home / "Roaming"))
    monkeypatch.setenv("LOCALAPPDATA", str(home / "Local"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "ignored"))
    assert paths.config_dir() == home / "Roaming" / "sine-edit"
    assert paths.state_dir() == home / "Local" / "sine-edit" / "state"
    assert paths.cache_dir() == home / "Local" / "sine-edit" / "cache"
    assert paths.runtime_dir() == paths.state_dir() / "run"
    assert paths.ipc_endpoint() is None
    monkeypatch.setattr(sys, "platform", "darwin")
    support = home / "Library" / "Application Support" / "sine-edit"
    assert paths.config_dir() == support
    assert paths.cache_dir() == home / "Library" / "Caches" / "sine-edit"
    assert paths.runtime_dir() == support / "state" / "run"


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_ensure_token_creates_private_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINE_CONFIG_DIR", str(tmp_path / "cfg"))
    assert paths.read_token() is None
    token = paths.ensure_token()
    assert len(token) == 64 and int(token, 16) >= 0
    assert stat.S_IMODE(paths.token_file().stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.config_dir().stat().st_mode) == 0o700
    assert paths.ensure_token() == token == paths.read_token()
    assert [p.name for p in paths.config_dir().iterdir()] == ["token"]  # no temp files left
    paths.token_file().write_text("  \n")
    fresh = paths.ensure_token()
    assert fresh != token and paths.read_token() == fresh


def test_concurrent_daemons_agree_on_one_token(tmp_path: Path) -> None:
    env = dict(os.environ, SINE_CONFIG_DIR=str(tmp_path / "cfg"))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from sine_protocol import paths; "
            "print(paths.ensure_token())")
    shared = str(Path(paths.__file__).resolve().parents[1])
    procs = [subprocess.Popen([sys.executable, "-c", code, shared], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    tokens = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(tokens) == 1 and tokens == {(tmp_path / "cfg" / "token").read_text().strip()}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_a_token_path_that_is_not_a_regular_file_reads_as_no_token_at_once(tmp_path):
    """A named pipe (or a device) where the token file belongs would block open() for ever, freezing the
    plug-in's UI thread and the daemon's start; it reads as "no token yet" instead."""
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    code = ("import sys; from pathlib import Path; from sine_protocol.paths import read_token; "
            f"print(repr(read_token(Path({str(fifo)!r}))))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "shared")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, env=env)
    assert done.stdout.strip() == "None", done.stderr
    big = tmp_path / "big"
    big.write_text("x" * 10_000_000)  # not a token: never read whole into memory
    assert paths.read_token(big) is None
