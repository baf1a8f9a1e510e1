"""Install → re-install (no-op) → uninstall (byte-for-byte back), dry runs, upgrades in place."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
_spec = importlib.util.spec_from_file_location("installer_conftest", CONFTEST)
_conf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conf)
snapshot = _conf.snapshot
Snapshot = _conf.Snapshot

CASES = [("linux", False), ("linux", True), ("macos", False), ("windows", False)]
IDS = ["linux", "flatpak", "macos", "windows"]


@pytest.mark.parametrize("platform,flatpak", CASES, ids=IDS)
def test_reinstall_is_noop_and_uninstall_restores(tmp_path: Path, fake_source: Path, fake_home, run_installer,
                                                  platform: str, flatpak: bool) -> None:
    home = fake_home(tmp_path, platform, flatpak)
    args = ("--home", home, "--platform", platform, "--source-root", fake_source, "--skip-backend", "--no-start")
    before = snapshot(home)

    first = run_installer(*args)
    assert "Done:" in first.stdout
    installed = snapshot(home)
    assert installed != before

    second = run_installer(*args)
    assert "Everything is up to date." in second.stdout
    assert snapshot(home) == installed

    removed = run_installer(*args, "--uninstall")
    assert "remove" in removed.stdout
    assert snapshot(home) == before


def test_dry_run_changes_nothing(tmp_path: Path, fake_source: Path, fake_home, run_installer) -> None:
    home = fake_home(tmp_path, "linux")
    args = ("--home", home, "--source-root", fake_source, "--skip-backend", "--no-start")
    before = snapshot(home)
    out = run_installer(*args, "--dry-run").stdout
    assert "[dry-run] would write" in out and "sine-gimp.py" in out and "kritarc" in out
    assert snapshot(home) == before

    run_installer(*args)
    installed = snapshot(home)
    out = run_installer(*args, "--uninstall", "--dry-run").stdout
    assert "[dry-run] would remove" in out
    assert snapshot(home) == installed


def test_upgrade_in_place(tmp_path: Path, fake_source: Path, fake_home, run_installer) -> None:
    home = fake_home(tmp_path, "linux")
    args = ("--home", home, "--source-root", fake_source, "--only", "plugins")
    run_installer(*args)
    dst = home / ".local/share/krita/pykrita/sine_krita"
    assert (dst / "extension.py").is_file()
    (fake_source / "plugin_krita/sine_krita/extension.py").unlink()
    (fake_source / "plugin_krita/sine_krita/docker.py").write_text("DOCKER = 2\n")
    out = run_installer(*args).stdout
    assert "Everything is up to date." not in out
    assert not (dst / "extension.py").exists(), "a file dropped upstream is removed on upgrade"
    assert (dst / "docker.py").read_text() == "DOCKER = 2\n"
    assert "Everything is up to date." in run_installer(*args).stdout


def test_uninstall_after_krita_rewrote_kritarc(tmp_path: Path, fake_source: Path, fake_home, run_installer) -> None:
    """Krita rewrites kritarc on exit; uninstall then removes only our line, keeping the new settings."""
    home = fake_home(tmp_path, "linux")
    kritarc = home / ".config/kritarc"
    run_installer("--home", home, "--source-root", fake_source, "--only", "plugins")
    kritarc.write_text(kritarc.read_text() + "\n[theme]\nTheme=Krita dark\n")
    run_installer("--home", home, "--source-root", fake_source, "--uninstall")
    assert kritarc.read_text() == ("[General]\nLanguage=en\n\n[python]\nenable_comics_project_management_tools=true\n\n"
                                   "[MainWindow]\nState=AAAA==\n\n[theme]\nTheme=Krita dark\n")


def test_existing_config_is_merged_and_restored(tmp_path: Path, fake_source: Path, fake_home, run_installer) -> None:
    home = fake_home(tmp_path, "linux")
    config = home / ".config/sine-edit/config.json"
    config.write_text('{"cache_budget": "5GB"}')
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "model_index.json").write_text("{}")
    run_installer("--home", home, "--source-root", fake_source, "--only", "model", "--model-dir", model)
    assert json.loads(config.read_text()) == {"cache_budget": "5GB", "model": str(model)}
    run_installer("--home", home, "--source-root", fake_source, "--uninstall")
    assert config.read_text() == '{"cache_budget": "5GB"}'


def test_second_prefix_keeps_models_unless_purged(tmp_path: Path, fake_source: Path, run_installer) -> None:
    """--prefix moves the installer's data; uninstall keeps downloaded models unless --purge-models."""
    home, prefix = tmp_path / "home", tmp_path / "prefix"
    home.mkdir()
    args = ("--home", home, "--prefix", prefix, "--source-root", fake_source, "--only", "plugins", "--force-plugins")
    run_installer(*args)
    assert (prefix / "install-manifest.json").is_file()
    manifest = json.loads((prefix / "install-manifest.json").read_text())
    models = prefix / "models"
    models.mkdir()
    (models / "weights.bin").write_bytes(b"w")
    manifest["trees"].append(str(models))
    (prefix / "install-manifest.json").write_text(json.dumps(manifest))
    out = run_installer(*args, "--uninstall").stdout
    assert "kept downloaded models" in out and (models / "weights.bin").is_file()
    assert not (home / ".config/kritarc").exists()
    assert not (home / ".local/share/krita/pykrita/sine_krita").exists()
    run_installer(*args, "--uninstall", "--purge-models")
    assert not prefix.exists(), "purging removes the models and the prefix the installer created"


def test_uninstall_stops_the_daemon_it_started(tmp_path: Path, fake_source: Path, fake_home, run_installer) -> None:
    """The installer starts the daemon from its venv; `--uninstall` deleted that venv under the running
    daemon, which kept the port and its lock until logout. A process of another python is left alone."""
    import signal
    import subprocess
    import sys
    import time

    home = fake_home(tmp_path, "linux")
    args = ("--home", home, "--platform", "linux", "--source-root", fake_source, "--skip-backend", "--no-start")
    run_installer(*args)
    venv_python = home / ".local" / "share" / "sine-edit" / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    sleeper = "import sys, time; time.sleep(60)"
    ours = subprocess.Popen([str(venv_python), "-c", sleeper, "-m", "sine.cli", "daemon"])
    other = subprocess.Popen([sys.executable, "-c", sleeper, "-m", "sine.cli", "daemon"])
    try:
        time.sleep(0.2)
        out = run_installer(*args, "--uninstall").stdout
        assert f"stopped the daemon (pid {ours.pid})" in out
        assert ours.wait(timeout=10) == -signal.SIGTERM
        assert other.poll() is None
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("platform", ["linux", "macos", "windows"])
def test_purge_data_leaves_no_trace_of_the_daemon(tmp_path: Path, fake_source: Path, fake_home, run_installer,
                                                  platform: str) -> None:
    """The plain uninstall keeps the daemon's token, weight cache and logs and now names where they are;
    `--purge-data` removes them too, so the home is as before sine-edit (the user's images untouched)."""
    home = fake_home(tmp_path, platform)
    config = {"linux": ".config/sine-edit", "macos": "Library/Application Support/sine-edit",
              "windows": "AppData/Roaming/sine-edit"}[platform]
    (home / config / "token").unlink()
    (home / config).rmdir()  # a home from before sine-edit
    if platform == "macos":
        (home / "Library" / "Caches").mkdir()  # always there on a Mac
    before = snapshot(home)
    args = ("--home", home, "--platform", platform, "--source-root", fake_source, "--skip-backend", "--no-start")
    run_installer(*args)
    state, cache = {"linux": (".local/state/sine-edit", ".cache/sine-edit"),
                    "macos": ("Library/Application Support/sine-edit/state", "Library/Caches/sine-edit"),
                    "windows": ("AppData/Local/sine-edit/state", "AppData/Local/sine-edit/cache")}[platform]
    (home / config / "token").write_text("t\n")  # what the daemon makes at its first start
    (home / state / "run").mkdir(parents=True)
    (home / state / "daemon.log").write_text("log\n")
    (home / cache / "ab" / ("ab" + "0" * 62)).mkdir(parents=True)  # an entry as sine.cache names it
    (home / cache / ".sine-cache").write_text("")
    (home / cache / "model_hashes.json").write_text("{}")  # sine.checkpoints remembers big files' hashes there
    kept = run_installer(*args, "--uninstall").stdout
    assert str(home / cache) in kept and str(home / state) in kept and "--purge-data" in kept
    assert (home / config / "token").exists()
    out = run_installer(*args, "--uninstall", "--purge-data").stdout
    assert "remove" in out
    assert snapshot(home) == before


def test_purge_data_keeps_what_the_user_keeps_in_a_state_folder_they_named(tmp_path: Path, fake_source: Path,
                                                                           fake_home, run_installer) -> None:
    """SINE_STATE_DIR may name a folder of the user's (their home, a notes folder): the daemon puts its log,
    locks, calibration and run/ there, and `--purge-data` removed the whole folder with them."""
    home = fake_home(tmp_path, "linux")
    notes = home / "notes"
    notes.mkdir()
    (notes / "diary.txt").write_text("mine\n")
    (notes / "sub").mkdir()
    (notes / "sub" / "daemon.log").write_text("mine too\n")  # a daemon name, but not where the daemon writes
    # SINE_* is read in the user's own session only (not with --home): HOME stands in for it, and a PATH
    # without systemctl keeps the installer away from any real systemd user manager
    env = {"HOME": str(home), "SINE_STATE_DIR": str(notes), "PATH": str(Path(sys.executable).parent)}
    args = ("--source-root", fake_source, "--skip-backend", "--no-start")
    run_installer(*args, env=env)
    before = snapshot(notes)
    line = "2026-12-01 03:00:00,123 INFO sine.daemon [MainThread] listening\n"  # how the daemon's log lines look
    for name, text in (("daemon.log", line), ("daemon.log.1", line), ("daemon-launch.log", "--- 2026-12-01 03:00:00 starting: ['sine']\n"),
                       ("daemon-tcp_127.0.0.1_47633.lock", '\n{"pid": 4242}\n'),
                       ("calibration.json", ""), (".calibration.json.123.tmp", "x\n")):  # the daemon's and plug-ins'
        (notes / name).write_text(text)
    (notes / "calibration.json").write_text('{"key": {"unet_eval_s": 0.1, "measured": "2026-12-01T03:00:00"}}')
    (notes / "run").mkdir()
    (notes / "run" / "daemon.sock.lock").write_text("")
    out = run_installer(*args, "--uninstall", "--purge-data", env=env).stdout
    assert snapshot(notes) == before, out
    assert "kept" in out and str(notes) in out


@pytest.mark.parametrize("flag", ["--purge-data", "--purge-models"])
def test_a_purge_flag_alone_installs_nothing(tmp_path: Path, fake_source: Path, fake_home, run_installer,
                                             flag: str) -> None:
    """`install.py --purge-data` (forgetting --uninstall) ran a whole install, daemon start included."""
    home = fake_home(tmp_path, "linux")
    before = snapshot(home)
    proc = run_installer("--home", home, "--source-root", fake_source, "--skip-backend", "--no-start", flag,
                         check=False)
    assert proc.returncode == 2 and f"{flag} only goes with --uninstall" in proc.stderr
    assert snapshot(home) == before


def test_the_install_says_where_the_sine_command_is(tmp_path: Path, fake_source: Path, fake_home,
                                                    run_installer) -> None:
    """The README then writes `sine doctor`, `sine edit ...`: not on PATH after the install, so the
    installer's last words name the command and how to shorten it."""
    home = fake_home(tmp_path, "linux")
    sine = home / ".local" / "share" / "sine-edit" / "venv" / "bin" / "sine"
    sine.parent.mkdir(parents=True)
    sine.write_text("#!/bin/sh\n")
    out = run_installer("--home", home, "--source-root", fake_source, "--skip-backend", "--no-start").stdout
    assert f"the `sine` command: {sine}" in out.splitlines()[-1]
    assert f'PATH="{sine.parent}:$PATH"' in out.splitlines()[-1]


def test_a_mistyped_installer_flag_names_the_likely_one(tmp_path: Path, run_installer) -> None:
    proc = run_installer("--home", tmp_path, "--unistall", check=False)
    assert proc.returncode == 2 and "--unistall: did you mean --uninstall?" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_purge_data_keeps_what_the_user_put_in_a_cache_folder_the_daemon_adopted(
        tmp_path: Path, fake_source: Path, fake_home, run_installer) -> None:
    """SINE_CACHE_DIR may name an empty folder of the user's: the cache adopts it (marks it .sine-cache), the
    user later keeps their own files there too, and `--purge-data` removed the whole marked folder with them."""
    from sine.cache import WeightCache

    home = fake_home(tmp_path, "linux")
    stuff = home / "stuff"
    stuff.mkdir()
    cache = WeightCache(stuff)  # the daemon's real cache adopts the empty folder
    cache.store("a" * 64, lambda folder: (folder / "unet.safetensors").write_bytes(b"w"))
    (stuff / "later.txt").write_text("the user's, written after the cache adopted the folder\n")
    (stuff / "photos").mkdir()
    (stuff / "photos" / "cat.png").write_bytes(b"\x89PNG mine")
    user_files = {k: v for k, v in snapshot(stuff).items() if k in ("later.txt", "photos", "photos/cat.png")}
    env = {"HOME": str(home), "SINE_CACHE_DIR": str(stuff), "PATH": str(Path(sys.executable).parent)}
    args = ("--source-root", fake_source, "--skip-backend", "--no-start")
    run_installer(*args, env=env)
    out = run_installer(*args, "--uninstall", "--purge-data", env=env).stdout
    assert snapshot(stuff) == user_files, out  # the cache's entries and mark are gone, the user's files stay
    assert "kept" in out and str(stuff) in out


def test_uninstall_keeps_a_file_the_user_changed_after_the_install(tmp_path: Path, fake_source: Path, fake_home,
                                                                   run_installer) -> None:
    """config.json is the installer's, but the README sends the user there to change the model: the uninstall
    deleted their edit (and would restore an older original over a newer edit). A file that no longer holds
    what the installer wrote stays, and the uninstall names it."""
    home = fake_home(tmp_path, "linux")
    config = home / ".config" / "sine-edit" / "config.json"
    args = ("--home", home, "--source-root", fake_source, "--skip-backend", "--no-start")
    run_installer(*args)
    assert config.is_file()
    config.write_text('{"model": "/home/me/my-own-model"}\n')
    out = run_installer(*args, "--uninstall").stdout
    assert config.read_text() == '{"model": "/home/me/my-own-model"}\n', out
    assert "changed since the install" in out and str(config) in out


def test_uninstall_never_writes_through_a_link_put_where_the_installer_restores(tmp_path: Path, fake_source: Path,
                                                                                fake_home, run_installer) -> None:
    """config.json existed before (the installer keeps its bytes to restore them); the user later made it a link
    to a file of theirs: the restore wrote the old bytes through the link into that file."""
    home = fake_home(tmp_path, "linux")
    config = home / ".config" / "sine-edit" / "config.json"
    config.write_text('{"model": "old"}\n')
    args = ("--home", home, "--source-root", fake_source, "--skip-backend", "--no-start")
    run_installer(*args)
    mine = home / "my-config.json"
    mine.write_text('{"model": "mine", "note": "kept in my dotfiles"}\n')
    config.unlink()
    config.symlink_to(mine)
    before = mine.read_bytes()
    out = run_installer(*args, "--uninstall").stdout
    assert mine.read_bytes() == before, out
    assert config.is_symlink() and str(config) in out


def test_uninstall_keeps_a_file_the_user_put_in_the_plugin_folder(tmp_path: Path, fake_source: Path, fake_home,
                                                                  run_installer) -> None:
    """The plug-in folders the installer made were removed whole, with a file the user saved there since (a
    tweaked copy of a module, their notes); only what the installer wrote, and the hosts' __pycache__, go."""
    home = fake_home(tmp_path, "linux")
    args = ("--home", home, "--source-root", fake_source, "--skip-backend", "--no-start")
    run_installer(*args)
    plugin = home / ".local" / "share" / "krita" / "pykrita" / "sine_krita"
    (plugin / "my_notes.txt").write_text("settings I like\n")
    (plugin / "__pycache__").mkdir()
    (plugin / "__pycache__" / "extension.cpython-311.pyc").write_bytes(b"krita compiled this")
    out = run_installer(*args, "--uninstall").stdout
    assert (plugin / "my_notes.txt").read_text() == "settings I like\n", out
    assert sorted(p.name for p in plugin.iterdir()) == ["my_notes.txt"]
    assert "kept" in out and str(plugin) in out
    assert not (home / ".config" / "GIMP" / "3.0" / "plug-ins" / "sine-gimp").exists()  # no file of the user's there


def _purge_in_a_state_folder_they_named(tmp_path: Path, fake_source: Path, fake_home, run_installer,
                                        theirs: dict[str, str], daemons: dict[str, str]) -> tuple[Snapshot, Snapshot, str]:
    """Install with SINE_STATE_DIR at a folder holding the user's files `theirs`, let the daemon's files `daemons`
    appear there, then `--uninstall --purge-data`: the folder before the daemon wrote, after the purge, and its output."""
    home = fake_home(tmp_path, "linux")
    notes = home / "project"
    notes.mkdir()
    for name, text in theirs.items():
        (notes / name).write_text(text)
    env = {"HOME": str(home), "SINE_STATE_DIR": str(notes), "PATH": str(Path(sys.executable).parent)}
    args = ("--source-root", fake_source, "--skip-backend", "--no-start")
    run_installer(*args, env=env)
    before = snapshot(notes)
    for name, text in daemons.items():
        (notes / name).write_text(text)
    out = run_installer(*args, "--uninstall", "--purge-data", env=env).stdout
    return before, snapshot(notes), out


_LOG_LINE = "2026-12-01 03:00:00,123 INFO sine.daemon [MainThread] listening\n"  # how the daemon's log lines look


def test_purge_data_keeps_a_users_calibration_json_in_a_state_folder_they_named(
        tmp_path: Path, fake_source: Path, fake_home, run_installer) -> None:
    """`--purge-data` removed calibration.json from SINE_STATE_DIR by name, though the daemon never writes over
    a file of that name that is not its own (a camera's calibration)."""
    before, after, out = _purge_in_a_state_folder_they_named(
        tmp_path, fake_source, fake_home, run_installer,
        theirs={"calibration.json": '{"fx": 1200.5, "fy": 1199.0}\n'}, daemons={"daemon.log": _LOG_LINE})
    assert after == before, out


def test_reinstall_keeps_the_model_the_user_chose_in_config_json(tmp_path: Path, fake_source: Path, fake_home,
                                                                 run_installer) -> None:
    """The README sends the user to config.json to change the model; re-running the installer (an upgrade)
    set it back to the bundled demo model. Without --model the user's choice stays; with --model it changes."""
    home = fake_home(tmp_path, "linux")
    config = home / ".config" / "sine-edit" / "config.json"
    args = ("--home", home, "--source-root", fake_source, "--skip-backend", "--no-start")
    run_installer(*args)
    mine = tmp_path / "my-model"
    (mine / "unet").mkdir(parents=True)
    (mine / "model_index.json").write_text("{}\n")
    config.write_text(json.dumps({"model": str(mine), "my_note": "kept"}) + "\n")
    out = run_installer(*args).stdout
    assert json.loads(config.read_text()) == {"model": str(mine), "my_note": "kept"}, out
    assert str(mine) in out
    out = run_installer(*args, "--model-dir", mine).stdout
    assert json.loads(config.read_text())["model"] == str(mine.resolve()), out


def test_reinstall_keeps_a_daemon_json_the_user_edited(tmp_path: Path, fake_source: Path, fake_home,
                                                       run_installer) -> None:
    """daemon.json (how the plug-ins start the daemon) edited by the user, say to add a flag, was overwritten by
    the next install. The installer's own version is written (an upgrade may need it) and the user's bytes
    stay beside it, named in the output; the uninstall leaves that copy."""
    home = fake_home(tmp_path, "linux")
    daemon_json = home / ".config" / "sine-edit" / "daemon.json"
    args = ("--home", home, "--source-root", fake_source, "--skip-backend", "--no-start")
    run_installer(*args)
    theirs = json.loads(daemon_json.read_text())
    theirs["argv"] = [*theirs["argv"], "--threads", "2"]
    edited = (json.dumps(theirs, indent=2) + "\n").encode()
    daemon_json.write_bytes(edited)
    out = run_installer(*args).stdout
    assert "--threads" not in daemon_json.read_text(), out
    kept = [p for p in daemon_json.parent.iterdir() if p.name.startswith("daemon.json.") and p.read_bytes() == edited]
    assert len(kept) == 1, (sorted(p.name for p in daemon_json.parent.iterdir()), out)
    assert str(kept[0]) in out
    again = run_installer(*args).stdout
    assert "Everything is up to date." in again and kept[0].read_bytes() == edited
    run_installer(*args, "--uninstall")
    assert kept[0].read_bytes() == edited and not daemon_json.exists()


def test_purge_data_keeps_the_users_files_with_names_like_the_daemons(tmp_path: Path, fake_source: Path, fake_home,
                                                                      run_installer) -> None:
    """In a state folder the user named, `--purge-data` removed by pattern: their daemon.log.old, notes kept in a
    daemon.log of their own (the daemon refuses to write into it) and daemon-launch.log.bak went with the logs."""
    before, after, out = _purge_in_a_state_folder_they_named(
        tmp_path, fake_source, fake_home, run_installer,
        theirs={"daemon.log.old": "my old server's log\n", "daemon-launch.log.bak": "mine\n",
                "daemon-build.lock": "make holds this\n"},
        daemons={"daemon.log.2": _LOG_LINE})
    assert after == before, out


def test_purge_data_keeps_a_daemon_log_that_is_not_the_daemons(tmp_path: Path, fake_source: Path, fake_home,
                                                               run_installer) -> None:
    """Files with the daemon's exact names that hold the user's own words stay (the daemon refuses to write them)."""
    before, after, out = _purge_in_a_state_folder_they_named(
        tmp_path, fake_source, fake_home, run_installer,
        theirs={"daemon.log": "notes on the print daemon\n", "daemon.log.1": "more notes\n",
                "daemon-launch.log": "how I launch my print daemon\n"},
        daemons={})
    assert after == before, out
