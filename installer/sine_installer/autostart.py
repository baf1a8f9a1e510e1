"""Login entries that start the daemon: a systemd user unit (or XDG autostart when systemd is not
running), a launchd agent on macOS, a console-less Startup-folder script on Windows.
"""

from __future__ import annotations

import plistlib
import shutil
import subprocess
from pathlib import Path

from .changes import Changes
from .layout import LAUNCHD_LABEL, SYSTEMD_UNIT, Layout

STEP = "autostart"


def _systemd_quote(arg: str) -> str:
    """Quote one ExecStart word: systemd expands % specifiers and $ variables, so escape them."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def systemd_unit(argv: list[str]) -> str:
    return (
        "[Unit]\n"
        "Description=sine-edit daemon (SINE image editing for Krita and GIMP)\n"
        "Documentation=https://github.com/sine-edit/sine-edit\n\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={' '.join(_systemd_quote(a) for a in argv)}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def _desktop_quote(arg: str) -> str:
    """Quote one Exec word per the Desktop Entry spec (and escape % field codes)."""
    if not any(c in arg for c in ' \t"\'\\><~|&;$*?#()`%'):
        return arg
    inner = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    return f'"{inner}"'.replace("%", "%%")


def xdg_desktop(argv: list[str]) -> str:
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=sine-edit daemon\n"
        "Comment=Starts the sine-edit image editing daemon for Krita and GIMP\n"
        f"Exec={' '.join(_desktop_quote(a) for a in argv)}\n"
        "Terminal=false\n"
        "NoDisplay=true\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def launchd_plist(argv: list[str], log_dir: Path) -> bytes:
    return plistlib.dumps({
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": argv,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ProcessType": "Background",
        "StandardOutPath": str(log_dir / "daemon.out.log"),
        "StandardErrorPath": str(log_dir / "daemon.err.log"),
    })


def windows_vbs(pythonw: Path) -> str:
    """A .vbs runs without the console window a .cmd would flash at every login."""
    command = f'""{pythonw}"" -m sine.cli daemon'
    return (
        "' sine-edit: start the image editing daemon at login (no console window)\r\n"
        f'CreateObject("WScript.Shell").Run "{command}", 0, False\r\n'
    )


def systemd_user_running() -> bool:
    """True when a systemd user manager answers (so `systemctl --user enable` means something)."""
    if not shutil.which("systemctl") or not Path("/run/systemd/system").is_dir():
        return False
    try:
        return subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def install_autostart(changes: Changes, layout: Layout, real_session: bool) -> bool:
    """Write the platform's login entry; returns True when it also started the daemon."""
    argv = layout.daemon_argv()
    changes.say("==> Autostart at login")
    started = False
    if layout.platform == "linux":
        unit_changed = changes.write_file(layout.systemd_unit, systemd_unit(argv).encode(), 0o644, STEP)
        if real_session and systemd_user_running():
            changes.say(f"  systemd user unit {layout.systemd_unit}")
            if unit_changed or not changes.state("systemd_enabled"):
                changes.run(["systemctl", "--user", "daemon-reload"], "reload systemd",
                            "check `systemctl --user status`")
                changes.run(["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT], "enable the unit",
                            f"run `systemctl --user status {SYSTEMD_UNIT}` and `journalctl --user -u {SYSTEMD_UNIT}`")
                changes.set_state("systemd_enabled", True)
                started = True
        else:
            changes.write_file(layout.xdg_autostart, xdg_desktop(argv).encode(), 0o644, STEP)
            changes.say(f"  no systemd user session: XDG autostart entry {layout.xdg_autostart}"
                        f" (unit also written to {layout.systemd_unit})")
    elif layout.platform == "macos":
        changed = changes.write_file(layout.launchd_plist, launchd_plist(argv, layout.data_dir / "logs"), 0o644, STEP)
        changes.say(f"  launchd agent {layout.launchd_plist}")
        if real_session and (changed or not changes.state("launchd_loaded")):
            uid = _uid()
            changes.run(["launchctl", "bootout", f"gui/{uid}/{LAUNCHD_LABEL}"], "unload the old agent", "", check=False)
            changes.run(["launchctl", "bootstrap", f"gui/{uid}", str(layout.launchd_plist)], "load the agent",
                        f"run `launchctl print gui/{uid}/{LAUNCHD_LABEL}`")
            changes.set_state("launchd_loaded", True)
            started = True
    else:
        changes.write_file(layout.windows_startup, windows_vbs(layout.venv_pythonw).encode(), 0o644, STEP)
        changes.say(f"  Startup entry {layout.windows_startup}")
    changes.drop_stale(STEP)
    return started


def remove_autostart(changes: Changes, real_session: bool) -> None:
    """Stop/unregister what `install_autostart` registered; the files themselves go with the manifest."""
    if changes.state("systemd_enabled") and real_session and systemd_user_running():
        changes.run(["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT], "disable the unit", "", check=False)
    if changes.state("launchd_loaded") and real_session:
        changes.run(["launchctl", "bootout", f"gui/{_uid()}/{LAUNCHD_LABEL}"], "unload the agent", "", check=False)


def reload_systemd(changes: Changes, real_session: bool) -> None:
    if changes.state("systemd_enabled") and real_session and systemd_user_running():
        changes.run(["systemctl", "--user", "daemon-reload"], "reload systemd", "", check=False)


def _uid() -> int:
    import os

    return os.getuid()
