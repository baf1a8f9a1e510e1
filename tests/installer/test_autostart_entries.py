"""The login entries are valid for the program that reads them: systemd, XDG autostart, launchd,
Windows Script Host."""

from __future__ import annotations

import configparser
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _fake_venv(data_dir: Path, platform: str) -> Path:
    """A venv whose python is this interpreter, so ExecStart points at a real executable."""
    python = data_dir / "venv" / ("Scripts/python.exe" if platform == "windows" else "bin/python")
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    return python


def test_systemd_unit_and_xdg_entry(tmp_path: Path, fake_source: Path, run_installer) -> None:
    home = tmp_path / "a home with 100% spaces"  # quoting/escaping must survive this
    python = _fake_venv(home / ".local/share/sine-edit", "linux")
    run_installer("--home", home, "--platform", "linux", "--source-root", fake_source, "--only", "autostart",
                  "--no-start")
    unit = home / ".config/systemd/user/sine-daemon.service"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(unit.read_text())
    assert parser["Install"]["WantedBy"] == "default.target"
    exec_start = parser["Service"]["ExecStart"]
    assert shlex.split(exec_start.replace("%%", "%")) == [str(python), "-m", "sine.cli", "daemon"]
    if shutil.which("systemd-analyze"):
        proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "sine-daemon.service" not in proc.stderr, proc.stderr

    desktop = configparser.ConfigParser(interpolation=None)
    desktop.optionxform = str
    desktop.read_string((home / ".config/autostart/sine-daemon.desktop").read_text())
    entry = desktop["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert shlex.split(entry["Exec"].replace("%%", "%")) == [str(python), "-m", "sine.cli", "daemon"]
    if shutil.which("desktop-file-validate"):
        proc = subprocess.run(["desktop-file-validate", str(home / ".config/autostart/sine-daemon.desktop")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


def test_systemd_unit_runs_the_command(tmp_path: Path) -> None:
    """The ExecStart line, as systemd would split it, really starts the given program."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "installer"))
    try:
        from sine_installer.autostart import systemd_unit
    finally:
        sys.path.pop(0)
    marker = tmp_path / "ran $HOME 50%"
    argv = [sys.executable, "-c", "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text('ok')", str(marker)]
    line = next(ln for ln in systemd_unit(argv).splitlines() if ln.startswith("ExecStart="))
    words = shlex.split(line.removeprefix("ExecStart=").replace("%%", "%").replace("$$", "$"))
    assert words == argv
    subprocess.run(words, check=True, timeout=60)
    assert marker.read_text() == "ok"


def test_launchd_plist(tmp_path: Path, fake_source: Path, run_installer) -> None:
    home = tmp_path / "home"
    python = _fake_venv(home / "Library/Application Support/sine-edit", "macos")
    run_installer("--home", home, "--platform", "macos", "--source-root", fake_source, "--only", "autostart",
                  "--no-start")
    plist_path = home / "Library/LaunchAgents/org.sine-edit.daemon.plist"
    data = plistlib.loads(plist_path.read_bytes())
    assert data["Label"] == "org.sine-edit.daemon"
    assert data["ProgramArguments"] == [str(python), "-m", "sine.cli", "daemon"]
    assert data["RunAtLoad"] is True
    assert plistlib.loads(plistlib.dumps(data)) == data
    if shutil.which("plutil"):
        subprocess.run(["plutil", "-lint", str(plist_path)], check=True)


def test_windows_startup_entry(tmp_path: Path, fake_source: Path, run_installer) -> None:
    home = tmp_path / "home"
    run_installer("--home", home, "--platform", "windows", "--source-root", fake_source, "--only", "autostart",
                  "--no-start")
    vbs = home / "AppData/Roaming/Microsoft/Windows/Start Menu/Programs/Startup/sine-daemon.vbs"
    text = vbs.read_text()
    pythonw = home / "AppData/Local/sine-edit/venv/Scripts/pythonw.exe"
    # VBScript string: quotes doubled; window style 0 = hidden, no waiting
    assert f'Run """{pythonw}"" -m sine.cli daemon", 0, False' in text
    daemon = home / "AppData/Roaming/sine-edit/daemon.json"
    assert daemon.is_file()


def test_no_autostart_still_writes_daemon_command(tmp_path: Path, fake_source: Path, run_installer) -> None:
    home = tmp_path / "home"
    run_installer("--home", home, "--platform", "linux", "--source-root", fake_source, "--only", "autostart",
                  "--no-start", "--no-autostart")
    assert (home / ".config/sine-edit/daemon.json").is_file()
    assert not (home / ".config/systemd").exists() and not (home / ".config/autostart").exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX start")
def test_start_is_skipped_without_backend(tmp_path: Path, fake_source: Path, run_installer) -> None:
    home = tmp_path / "home"
    out = run_installer("--home", home, "--source-root", fake_source, "--only", "autostart", "--no-autostart").stdout
    assert "skipped: the backend is not installed" in out
