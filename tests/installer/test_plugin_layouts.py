"""The plugins land where each platform's Krita and GIMP 3 look for them, with the right modes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

LAYOUTS = {
    # platform, flatpak: (pykrita, kritarc, [GIMP plug-ins folders], token, daemon.json)
    ("linux", False): (".local/share/krita/pykrita", ".config/kritarc",
                       [".config/GIMP/3.0/plug-ins", ".config/GIMP/3.2/plug-ins"],
                       ".config/sine-edit/token", ".config/sine-edit/daemon.json"),
    ("linux", True): (".var/app/org.kde.krita/data/krita/pykrita", ".var/app/org.kde.krita/config/kritarc",
                      [".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins"],
                      ".config/sine-edit/token", ".config/sine-edit/daemon.json"),
    ("macos", False): ("Library/Application Support/krita/pykrita", "Library/Preferences/kritarc",
                       ["Library/Application Support/GIMP/3.0/plug-ins"],
                       "Library/Application Support/sine-edit/token", "Library/Application Support/sine-edit/daemon.json"),
    ("windows", False): ("AppData/Roaming/krita/pykrita", "AppData/Local/kritarc",
                         ["AppData/Roaming/GIMP/3.0/plug-ins"],
                         "AppData/Roaming/sine-edit/token", "AppData/Roaming/sine-edit/daemon.json"),
}


@pytest.mark.parametrize("platform,flatpak", list(LAYOUTS), ids=["linux", "flatpak", "macos", "windows"])
def test_install_places_plugins(tmp_path: Path, fake_source: Path, fake_home, run_installer,
                                platform: str, flatpak: bool) -> None:
    home = fake_home(tmp_path, platform, flatpak)
    pykrita, kritarc, gimp_dirs, token, daemon_json = (home / p if isinstance(p, str) else [home / q for q in p]
                                                       for p in LAYOUTS[(platform, flatpak)])
    token_before = (token.read_bytes(), stat.S_IMODE(token.stat().st_mode))
    out = run_installer("--home", home, "--platform", platform, "--source-root", fake_source,
                        "--skip-backend", "--no-start").stdout

    assert (pykrita / "sine_krita.desktop").read_bytes() == (fake_source / "plugin_krita/sine_krita.desktop").read_bytes()
    assert (pykrita / "sine_krita" / "extension.py").read_text() == "EXT = 1\n"
    assert (pykrita / "sine_krita" / "_vendor" / "sine_protocol" / "paths.py").read_text() == "P = 1\n"
    assert not list(pykrita.rglob("__pycache__")), "caches must not be copied"
    for plug_ins in gimp_dirs:
        script = plug_ins / "sine-gimp" / "sine-gimp.py"
        assert stat.S_IMODE(script.stat().st_mode) == 0o755
        assert stat.S_IMODE((plug_ins / "sine-gimp" / "sine_gimp_ui.py").stat().st_mode) == 0o644
        assert (plug_ins / "sine-gimp" / "_vendor" / "sine_protocol" / "__init__.py").read_text() == "VERSION = 1\n"
        assert str(plug_ins.parent) in out
    if platform == "linux" and not flatpak:
        assert not (home / ".config/GIMP/2.10/plug-ins").exists(), "GIMP 2.x is not a target"

    text = kritarc.read_text()
    assert "[python]\nenable_comics_project_management_tools=true\nenable_sine_krita=true\n" in text
    assert text.startswith("[General]\nLanguage=en\n\n") and text.endswith("[MainWindow]\nState=AAAA==\n")

    assert (token.read_bytes(), stat.S_IMODE(token.stat().st_mode)) == token_before
    argv = json.loads(daemon_json.read_text())["argv"]
    assert argv[1:] == ["-m", "sine.cli", "daemon"] and "venv" in argv[0]
    config = json.loads((daemon_json.parent / "config.json").read_text())
    assert config == {"model": str(fake_source / "backend/sine/demo_model")}


def test_only_plugins_touches_nothing_else(tmp_path: Path, fake_source: Path, fake_home, run_installer) -> None:
    """The real-host tests rely on `--home DIR --only plugins`: plugins + kritarc, no daemon files."""
    home = fake_home(tmp_path, "linux")
    run_installer("--home", home, "--only", "plugins", "--source-root", fake_source)
    assert (home / ".local/share/krita/pykrita/sine_krita/__init__.py").is_file()
    assert not (home / ".config/sine-edit/daemon.json").exists()
    assert not (home / ".config/systemd").exists() and not (home / ".config/autostart").exists()


def test_missing_hosts_are_reported_and_force_installs(tmp_path: Path, fake_source: Path, run_installer) -> None:
    home = tmp_path / "empty-home"
    home.mkdir()
    out = run_installer("--home", home, "--only", "plugins", "--source-root", fake_source).stdout
    assert "Krita: not found" in out and "GIMP: not found" in out
    assert list(home.iterdir()) == [home / ".local"]  # only the manifest's data folder
    run_installer("--home", home, "--only", "plugins", "--source-root", fake_source, "--force-plugins")
    assert (home / ".local/share/krita/pykrita/sine_krita.desktop").is_file()
    assert (home / ".config/GIMP/3.0/plug-ins/sine-gimp/sine-gimp.py").is_file()
    assert "enable_sine_krita=true" in (home / ".config/kritarc").read_text()


def test_real_checkout_plugins(tmp_path: Path, run_installer) -> None:
    """With no --source-root the repo's own plugin folders and sine_protocol are installed."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / "plugin_krita/sine_krita.desktop").is_file() or not (repo / "plugin_gimp/sine-gimp/sine-gimp.py").is_file():
        pytest.skip("plugin sources not in this checkout yet")
    home = tmp_path / "home"
    (home / ".local/share/krita").mkdir(parents=True)
    (home / ".config/GIMP/3.0").mkdir(parents=True)
    run_installer("--home", home, "--only", "plugins")
    vendored = home / ".config/GIMP/3.0/plug-ins/sine-gimp/_vendor/sine_protocol"
    assert (vendored / "paths.py").read_bytes() == (repo / "shared/sine_protocol/paths.py").read_bytes()
    assert (home / ".local/share/krita/pykrita/sine_krita/_vendor/sine_protocol/__init__.py").is_file()
    assert stat.S_IMODE((vendored.parents[1] / "sine-gimp.py").stat().st_mode) & 0o111 == 0o111


def test_missing_sources_fail_with_advice(tmp_path: Path, run_installer) -> None:
    proc = run_installer("--home", tmp_path, "--only", "plugins", "--source-root", tmp_path / "nowhere", check=False)
    assert proc.returncode == 1
    assert "FAILED" in proc.stderr and "next:" in proc.stderr


def test_sh_wrapper_passes_arguments(tmp_path: Path, fake_source: Path) -> None:
    home = tmp_path / "home"
    (home / ".config/GIMP/3.0").mkdir(parents=True)
    wrapper = Path(__file__).resolve().parents[2] / "installer" / "install.sh"
    proc = subprocess.run(["sh", str(wrapper), "--home", str(home), "--only", "plugins", "--source-root",
                           str(fake_source)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    assert (home / ".config/GIMP/3.0/plug-ins/sine-gimp/sine-gimp.py").is_file()
    bad = subprocess.run(["sh", str(wrapper), "--no-such-option"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unrecognized arguments" in bad.stderr
