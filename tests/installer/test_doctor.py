"""`sine doctor` in a private home: FAIL lines and a non-zero exit when things are missing, all
ok/warn and exit 0 after the installer has run and a real daemon answers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^(ok|warn|FAIL)\s+([^:]+): (.*)$")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "SINE_")) and k not in ("APPDATA", "LOCALAPPDATA")}
    env.update({"HOME": str(home), "SINE_ENDPOINT": f"tcp://127.0.0.1:{port}", "SINE_RUNTIME_DIR": str(home / "run"),
                "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")]),
                "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    return env


def _doctor(env: dict[str, str], *extra: str) -> tuple[int, dict[str, tuple[str, str]]]:
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "doctor", "--timeout", "1", *extra], env=env,
                          capture_output=True, text=True, timeout=180)
    lines: dict[str, tuple[str, str]] = {}
    for raw in proc.stdout.splitlines():
        m = LINE.match(raw)
        if m:
            lines[m.group(2)] = (m.group(1), m.group(3))
    assert lines, proc.stdout + proc.stderr
    return proc.returncode, lines


def test_doctor_fails_on_a_bare_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = home / ".config/sine-edit"
    config.mkdir(parents=True)
    (config / "token").write_text("t\n")
    (config / "token").chmod(0o644)
    (config / "config.json").write_text('{"model": "%s"}' % (tmp_path / "gone"))
    rc, lines = _doctor(_env(home, _free_port()))
    assert rc == 1
    assert lines["Python"][0] == "ok"
    assert lines["torch"][0] in ("ok", "warn")
    if lines["torch"][0] == "warn":
        assert "CPU only" in lines["torch"][1]
    assert lines["model"][0] == "FAIL" and "does not exist" in lines["model"][1]
    assert lines["daemon"][0] == "FAIL" and "sine daemon" in lines["daemon"][1]
    assert lines["token"][0] == "FAIL" and "mode 644" in lines["token"][1]
    assert lines["Krita plugin"][0] == "warn" and lines["GIMP plug-in"][0] == "warn"
    assert lines["autostart"][0] == "FAIL" and "daemon.json" in lines["autostart"][1]


def test_doctor_flags_a_host_without_the_plugin(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config/GIMP/3.0").mkdir(parents=True)
    (home / ".local/share/krita").mkdir(parents=True)
    rc, lines = _doctor(_env(home, _free_port()))
    assert rc == 1
    assert lines["Krita plugin"][0] == "FAIL" and "install.py --only plugins" in lines["Krita plugin"][1]
    assert lines["GIMP 3.0 plug-in"][0] == "FAIL"


@pytest.mark.slow
def test_doctor_all_good_after_install_with_a_real_daemon(tmp_path: Path, fake_source: Path, run_installer) -> None:
    from sine.tiny_models import make_tiny_sd

    model = make_tiny_sd(tmp_path / "tiny-sd")
    home = tmp_path / "home"
    (home / ".config/GIMP/3.0").mkdir(parents=True)
    (home / ".local/share/krita").mkdir(parents=True)
    common = ("--home", home, "--source-root", fake_source)
    run_installer(*common, "--skip-backend", "--no-start", "--model-dir", model)
    port = _free_port()
    env = _env(home, port)
    daemon = subprocess.Popen([sys.executable, "-m", "sine.cli", "daemon", "--model", str(model), "--device", "cpu",
                               "--threads", "1", "--no-ipc"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert daemon.poll() is None, "the daemon exited"
            assert time.monotonic() < deadline, "the daemon did not listen within 120 s"
            time.sleep(0.3)
        rc, lines = _doctor(env)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    assert {name: status for name, (status, _) in lines.items() if status == "FAIL"} == {}
    assert rc == 0
    assert lines["daemon"] == ("ok", f"answers at tcp://127.0.0.1:{port}")
    assert lines["token"][0] == "ok" and lines["model"][0] == "ok"
    assert lines["model"][1].startswith(f"{model} (SD1, "), lines["model"]  # the path, then the model's kind
    assert lines["Krita plugin"][0] == "ok" and lines["GIMP 3.0 plug-in"][0] == "ok"
    assert lines["autostart"][0] == "ok"


def test_doctor_reports_the_model_kind(tmp_path: Path) -> None:
    """A configured single-file checkpoint and an SD2 v folder: the model line says SD1/SD2, ε/v and size."""
    from sine.tiny_models import make_tiny_sd, make_tiny_sd2, write_single_file

    home = tmp_path / "home"
    config = home / ".config/sine-edit"
    config.mkdir(parents=True)
    single = write_single_file(make_tiny_sd(tmp_path / "sd1"), tmp_path / "painter.safetensors")
    for model, expected in ((single, "SD1, ε-prediction, 32 px"),
                            (make_tiny_sd2(tmp_path / "sd2v", v_prediction=True), "SD2, v-prediction, 48 px")):
        (config / "config.json").write_text(json.dumps({"model": str(model)}))
        _, lines = _doctor(_env(home, _free_port()))
        assert lines["model"][0] == "ok" and expected in lines["model"][1], lines["model"]
    inpaint = write_single_file(make_tiny_sd(tmp_path / "inp", in_channels=9), tmp_path / "inp.safetensors",
                                sidecar=False)
    (config / "config.json").write_text(json.dumps({"model": str(inpaint)}))
    _, lines = _doctor(_env(home, _free_port()))
    assert lines["model"][0] == "FAIL" and "inpainting" in lines["model"][1], lines["model"]


def test_doctor_model_option_checks_that_model(tmp_path: Path) -> None:
    """`sine doctor --model X` checks X (a file or folder the painter is about to use) instead of the
    configured model: a LoRA given as the model is a FAIL line that names it."""
    from safetensors.torch import save_file

    from sine.tiny_models import make_tiny_sd2

    home = tmp_path / "home"
    (home / ".config/sine-edit").mkdir(parents=True)
    lora = tmp_path / "my style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32)}, str(lora))
    rc, lines = _doctor(_env(home, _free_port()), "--model", str(lora))
    assert rc == 1 and lines["model"][0] == "FAIL" and "is a LoRA" in lines["model"][1], lines["model"]
    folder = make_tiny_sd2(tmp_path / "sd2v", v_prediction=True)
    _, lines = _doctor(_env(home, _free_port()), "--model", str(folder))
    assert lines["model"][0] == "ok" and "SD2, v-prediction, 48 px" in lines["model"][1], lines["model"]
