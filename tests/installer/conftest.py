"""Fixtures for the installer tests: a fake checkout, fake homes per platform, and a snapshot of a
folder tree (every file's bytes and mode, every folder) to prove "nothing else changed"."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL_PY = REPO / "installer" / "install.py"

Snapshot = dict[str, tuple]


def snapshot(root: Path) -> Snapshot:
    """Every entry under `root`: folders with their mode, files with mode and content."""
    snap: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if p.is_symlink():
                snap[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                snap[rel] = ("dir", st.st_mode & 0o7777)
            else:
                snap[rel] = ("file", st.st_mode & 0o7777, p.read_bytes())
    return snap


@pytest.fixture
def fake_source(tmp_path: Path) -> Path:
    """A minimal sine-edit checkout: both plugins, sine_protocol (with caches to skip), a demo model."""
    src = tmp_path / "src"
    files = {
        "pyproject.toml": "[project]\nname = 'sine-edit'\n",
        "plugin_krita/sine_krita.desktop": "[Desktop Entry]\nType=Service\nX-KDE-Library=sine_krita\n",
        "plugin_krita/sine_krita/__init__.py": "from .extension import *  # noqa\n",
        "plugin_krita/sine_krita/extension.py": "EXT = 1\n",
        "plugin_krita/sine_krita/__pycache__/extension.cpython-311.pyc": "junk",
        "plugin_gimp/sine-gimp/sine-gimp.py": "#!/usr/bin/env python3\nprint('gimp')\n",
        "plugin_gimp/sine-gimp/sine_gimp_ui.py": "UI = 1\n",
        "shared/sine_protocol/__init__.py": "VERSION = 1\n",
        "shared/sine_protocol/paths.py": "P = 1\n",
        "shared/sine_protocol/__pycache__/paths.cpython-311.pyc": "junk",
        "backend/sine/demo_model/model_index.json": "{}\n",
    }
    for rel, text in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)  # the installer, not the checkout, must set sine-gimp.py's exec bit
    return src


@pytest.fixture
def run_installer() -> Callable[..., subprocess.CompletedProcess]:
    """Run installer/install.py the way users do: a separate process, arguments only."""

    def run(*args: str | Path, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "SINE_"))}, **(env or {})}
        proc = subprocess.run([sys.executable, str(INSTALL_PY), *map(str, args)], capture_output=True,
                              text=True, env=env, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"install.py {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def make_home(root: Path, platform: str, flatpak: bool = False) -> Path:
    """A home where Krita and GIMP 3 have been started once (their settings folders exist)."""
    home = root / "home"
    if platform == "linux" and not flatpak:
        dirs = [".local/share/krita", ".config/GIMP/3.0", ".config/GIMP/3.2", ".config/GIMP/2.10"]
        kritarc, token = ".config/kritarc", ".config/sine-edit/token"
    elif platform == "linux":
        dirs = [".var/app/org.kde.krita/data/krita", ".var/app/org.gimp.GIMP/config/GIMP/3.0"]
        kritarc, token = ".var/app/org.kde.krita/config/kritarc", ".config/sine-edit/token"
    elif platform == "macos":
        dirs = ["Library/Application Support/krita", "Library/Application Support/GIMP/3.0", "Library/Preferences"]
        kritarc, token = "Library/Preferences/kritarc", "Library/Application Support/sine-edit/token"
    else:
        dirs = ["AppData/Roaming/krita", "AppData/Roaming/GIMP/3.0", "AppData/Local"]
        kritarc, token = "AppData/Local/kritarc", "AppData/Roaming/sine-edit/token"
    for d in dirs:
        (home / d).mkdir(parents=True)
    (home / kritarc).parent.mkdir(parents=True, exist_ok=True)
    (home / kritarc).write_text("[General]\nLanguage=en\n\n[python]\nenable_comics_project_management_tools=true\n\n"
                                "[MainWindow]\nState=AAAA==\n")
    (home / token).parent.mkdir(parents=True, exist_ok=True)
    (home / token).write_text("secret-token\n")
    (home / token).chmod(0o600)
    (home / "Pictures").mkdir()
    (home / "Pictures" / "cat.png").write_bytes(b"\x89PNG user image")
    return home


@pytest.fixture
def fake_home() -> Callable[..., Path]:
    return make_home
