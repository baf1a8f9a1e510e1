"""Pure functions of the installer: kritarc editing and the torch / model decisions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "installer"))
from sine_installer import kritarc  # noqa: E402
from sine_installer.backend import DEFAULT_TORCH_SPEC, WINDOWS_CUDA_INDEX, plan_torch  # noqa: E402
from sine_installer.changes import InstallError  # noqa: E402

sys.path.pop(0)

KRITARC_CASES = {
    "empty": "",
    "no python section": "[General]\nfoo=1\n",
    "no trailing newline": "[General]\nfoo=1",
    "section last, no newline": "[General]\nfoo=1\n\n[python]\nenable_x=true",
    "section in the middle": "[a]\nk=v\n\n[python]\nenable_x=false\n\n\n[b]\nk=v\n",
    "disabled by the user": "[python]\nenable_sine_krita=false\nenable_x=true\n",
    "crlf": "[General]\r\nfoo=1\r\n\r\n[python]\r\nenable_x=true\r\n\r\n[b]\r\nz=1\r\n",
}


@pytest.mark.parametrize("text", list(KRITARC_CASES.values()), ids=list(KRITARC_CASES))
def test_kritarc_enable_disable_round_trip(text: str) -> None:
    new, record = kritarc.enable(text)
    lines = new.splitlines()
    start = lines.index("[python]")
    body = lines[start + 1:]
    body = body[: next((i for i, ln in enumerate(body) if ln.startswith("[")), len(body))]
    assert "enable_sine_krita=true" in body
    if record["added_section"]:
        assert new.startswith(text) and new.rstrip().endswith("[python]" + ("\r\n" if "\r\n" in text else "\n")
                                                              + "enable_sine_krita=true")
    else:  # same lines, only ours added (or the user's `=false` switched)
        assert [ln for ln in lines if ln != "enable_sine_krita=true"] == \
            [ln for ln in text.splitlines() if ln != "enable_sine_krita=false"]
    assert kritarc.enable(new)[1].get("unchanged"), "enabling twice changes nothing"
    restored = kritarc.disable(new, record)
    if text.endswith("\n") or not text:
        assert restored == text
    else:
        assert restored == text + "\n"  # only the missing final newline differs
    if "\r\n" in text:
        assert "\r\n" in new and "\n" not in new.replace("\r\n", "")


def test_kritarc_keeps_other_keys_and_sections() -> None:
    text = "[General]\nfoo=1\n\n[python]\nenable_x=true\n\n[MainWindow]\nState=AA==\n"
    new, _ = kritarc.enable(text)
    assert new == "[General]\nfoo=1\n\n[python]\nenable_x=true\nenable_sine_krita=true\n\n[MainWindow]\nState=AA==\n"


def test_torch_plans() -> None:
    assert plan_torch("auto", None, None, "linux", gpu=False).flavour == "cpu"
    cuda = plan_torch("auto", None, None, "linux", gpu=True)
    assert (cuda.flavour, cuda.spec, cuda.pip_args) == ("cuda", DEFAULT_TORCH_SPEC, ())
    win = plan_torch("cuda", None, None, "windows")
    assert win.pip_args == ("--index-url", WINDOWS_CUDA_INDEX)
    assert plan_torch("cpu", None, None, "linux").spec == "torch==2.13.0"
    assert plan_torch("skip", "torch==1", None, "linux").spec is None
    custom = plan_torch("spec", "torch==2.13.0+cpu", "https://example.invalid/whl", "linux")
    assert (custom.spec, custom.pip_args) == ("torch==2.13.0+cpu", ("--index-url", "https://example.invalid/whl"))
    with pytest.raises(InstallError):
        plan_torch("spec", None, None, "linux")
    with pytest.raises(InstallError):
        plan_torch("cuda", None, None, "macos")


def test_the_installer_ignores_relative_xdg_folders_as_the_daemon_does(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """sine_protocol.paths ignores a relative XDG_CONFIG_HOME (the XDG spec); the installer's copy of the rule
    must too, or it writes daemon.json where neither the daemon nor the plug-ins look."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "installer"))
    try:
        from sine_installer.layout import Layout
    finally:
        sys.path.pop(0)
    from sine_protocol import paths

    env = {"XDG_CONFIG_HOME": "relative/config", "XDG_DATA_HOME": "relative/data"}
    for name in ("SINE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"])
    monkeypatch.setattr(sys, "platform", "linux")
    layout = Layout("linux", tmp_path, env)
    assert layout.config_dir == paths.config_dir() == tmp_path / ".config" / "sine-edit"
    assert layout.xdg_data == tmp_path / ".local" / "share"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX accounts")
def test_the_installer_reads_an_empty_home_as_the_daemon_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME="" made Path.home() answer "/", so the installer wrote /.config/sine-edit while the daemon (which
    counts an empty HOME as unset) looked in the account's home."""
    import importlib.util
    import pwd

    spec = importlib.util.spec_from_file_location("install_py", Path(__file__).resolve().parents[2] / "installer"
                                                  / "install.py")
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)
    monkeypatch.setenv("HOME", "")
    layout, _, _ = install.make_layout(install.build_parser().parse_args(["--dry-run"]))
    assert layout.home == Path(pwd.getpwuid(os.getuid()).pw_dir)


@pytest.mark.parametrize("name", ["SINE_CONFIG_DIR", "SINE_STATE_DIR", "SINE_CACHE_DIR", "SINE_RUNTIME_DIR"])
def test_the_installer_refuses_a_relative_sine_folder_as_the_daemon_does(name: str, tmp_path: Path) -> None:
    """SINE_CONFIG_DIR=rel made the installer write rel/daemon.json under the folder it was run from, where the
    daemon (which now refuses a relative folder setting) and the plug-ins never look: refused before any change."""
    started_in, home = tmp_path / "started-here", tmp_path / "home"
    started_in.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SINE_", "XDG_"))}
    env.update({"HOME": str(home), name: "rel"})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "installer" / "install.py"),
                           "--only", "autostart", "--no-autostart", "--no-start"], capture_output=True, text=True,
                          timeout=120, env=env, cwd=started_in, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert name in proc.stderr and "relative" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert list(started_in.iterdir()) == [] and list(home.iterdir()) == []
