"""Where everything goes, per platform, under one home folder.

Kept in one place so the installer, its uninstaller and the tests agree. The names mirror
`sine_protocol.paths` (docs/design.md section 2); this copy exists because the installer must
also target a fake home of another platform, which `paths` (bound to the running OS) cannot do.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PLATFORMS = ("linux", "macos", "windows")
APP = "sine-edit"
SYSTEMD_UNIT = "sine-daemon.service"
LAUNCHD_LABEL = "org.sine-edit.daemon"
GIMP_VERSION_RE = re.compile(r"^3\.\d+$")


def running_platform() -> str:
    """The running OS in the installer's vocabulary."""
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux"


@dataclass(frozen=True)
class KritaTarget:
    """One Krita installation flavour: its marker folders, pykrita folder and kritarc file."""

    label: str
    markers: tuple[Path, ...]
    pykrita: Path
    kritarc: Path

    def found(self) -> bool:
        return any(m.exists() for m in self.markers) or self.kritarc.exists()


@dataclass(frozen=True)
class GimpRoot:
    """A folder holding GIMP's per-version config folders (3.0, 3.2, ...)."""

    label: str
    root: Path

    def versions(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and GIMP_VERSION_RE.match(p.name))


def user_home() -> Path:
    """The home folder as sine_protocol.paths reads it: HOME set empty or relative counts as unset (the
    account's home from the system), where Path.home() would answer "/" or a relative path."""
    home = os.environ.get("HOME")
    if os.name == "posix" and not (home and os.path.isabs(home)):
        try:
            import pwd

            return Path(pwd.getpwuid(os.getuid()).pw_dir)
        except (ImportError, KeyError):
            pass
    return Path.home()


@dataclass(frozen=True)
class Layout:
    """All paths for one platform and home. `env` is ignored (empty) when a fake home is targeted."""

    platform: str
    home: Path
    env: Mapping[str, str] = field(default_factory=dict)
    prefix: Path | None = None

    def _env_path(self, name: str, default: Path) -> Path:
        value = self.env.get(name)
        if name.startswith("XDG_") and value and not Path(value).is_absolute():
            return default  # the XDG spec: a relative path there is invalid (as sine_protocol.paths reads it)
        return Path(value) if value else default

    # --- base folders -------------------------------------------------------------------------
    @property
    def appdata(self) -> Path:
        return self._env_path("APPDATA", self.home / "AppData" / "Roaming")

    @property
    def localappdata(self) -> Path:
        return self._env_path("LOCALAPPDATA", self.home / "AppData" / "Local")

    @property
    def xdg_config(self) -> Path:
        return self._env_path("XDG_CONFIG_HOME", self.home / ".config")

    @property
    def xdg_data(self) -> Path:
        return self._env_path("XDG_DATA_HOME", self.home / ".local" / "share")

    @property
    def app_support(self) -> Path:
        return self.home / "Library" / "Application Support"

    # --- sine-edit's own folders ----------------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        """Same rule as sine_protocol.paths.config_dir(): daemon.json, config.json, token."""
        override = self.env.get("SINE_CONFIG_DIR")
        if override:
            return Path(override)
        if self.platform == "windows":
            return self.appdata / APP
        if self.platform == "macos":
            return self.app_support / APP
        return self.xdg_config / APP

    @property
    def state_dir(self) -> Path:
        """Same rule as sine_protocol.paths.state_dir(): the daemon's log, lock files and (no XDG runtime
        dir) its socket."""
        override = self.env.get("SINE_STATE_DIR")
        if override:
            return Path(override)
        if self.platform == "windows":
            return self.localappdata / APP / "state"
        if self.platform == "macos":
            return self.app_support / APP / "state"
        return self._env_path("XDG_STATE_HOME", self.home / ".local" / "state") / APP

    @property
    def cache_dir(self) -> Path:
        """Same rule as sine_protocol.paths.cache_dir(): the daemon's per-image weight cache."""
        override = self.env.get("SINE_CACHE_DIR")
        if override:
            return Path(override)
        if self.platform == "windows":
            return self.localappdata / APP / "cache"
        if self.platform == "macos":
            return self.home / "Library" / "Caches" / APP
        return self._env_path("XDG_CACHE_HOME", self.home / ".cache") / APP

    @property
    def data_dir(self) -> Path:
        """The installer's own folder: venv, model downloads, manifest."""
        if self.prefix is not None:
            return self.prefix
        if self.platform == "windows":
            return self.localappdata / APP
        if self.platform == "macos":
            return self.app_support / APP
        return self.xdg_data / APP

    @property
    def venv_dir(self) -> Path:
        return self.data_dir / "venv"

    @property
    def venv_python(self) -> Path:
        if self.platform == "windows":
            return self.venv_dir / "Scripts" / "python.exe"
        return self.venv_dir / "bin" / "python"

    @property
    def sine_command(self) -> Path:
        """The `sine` command the backend's install puts into the venv (not on PATH)."""
        if self.platform == "windows":
            return self.venv_dir / "Scripts" / "sine.exe"
        return self.venv_dir / "bin" / "sine"

    @property
    def venv_pythonw(self) -> Path:
        """Windows' console-less interpreter, for the login entry."""
        return self.venv_dir / "Scripts" / "pythonw.exe"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def manifest(self) -> Path:
        return self.data_dir / "install-manifest.json"

    @property
    def daemon_command_file(self) -> Path:
        return self.config_dir / "daemon.json"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.json"

    # --- host applications ----------------------------------------------------------------------
    def krita_targets(self) -> list[KritaTarget]:
        if self.platform == "windows":
            data = self.appdata / "krita"
            return [KritaTarget("Krita", (data,), data / "pykrita", self.localappdata / "kritarc")]
        if self.platform == "macos":
            data = self.app_support / "krita"
            return [KritaTarget("Krita", (data,), data / "pykrita", self.home / "Library" / "Preferences" / "kritarc")]
        native = self.xdg_data / "krita"
        flat = self.home / ".var" / "app" / "org.kde.krita"
        return [
            KritaTarget("Krita", (native,), native / "pykrita", self.xdg_config / "kritarc"),
            KritaTarget("Krita (Flatpak)", (flat,), flat / "data" / "krita" / "pykrita", flat / "config" / "kritarc"),
        ]

    def gimp_roots(self) -> list[GimpRoot]:
        if self.platform == "windows":
            return [GimpRoot("GIMP", self.appdata / "GIMP")]
        if self.platform == "macos":
            return [GimpRoot("GIMP", self.app_support / "GIMP")]
        return [
            GimpRoot("GIMP", self.xdg_config / "GIMP"),
            GimpRoot("GIMP (Flatpak)", self.home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP"),
        ]

    # --- autostart ------------------------------------------------------------------------------
    @property
    def systemd_unit(self) -> Path:
        return self.xdg_config / "systemd" / "user" / SYSTEMD_UNIT

    @property
    def xdg_autostart(self) -> Path:
        return self.xdg_config / "autostart" / "sine-daemon.desktop"

    @property
    def launchd_plist(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"

    @property
    def windows_startup(self) -> Path:
        return self.appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup" / "sine-daemon.vbs"

    def daemon_argv(self) -> list[str]:
        """How to start the daemon: what daemon.json, the autostart entries and `--start` use."""
        return [str(self.venv_python), "-m", "sine.cli", "daemon"]
