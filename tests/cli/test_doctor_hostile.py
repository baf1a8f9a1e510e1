"""`sine doctor` given hostile or clumsy values: it answers in bounded time, in words, on its own lines.

A real `sine doctor` process; a real TCP listener that accepts and never answers stands in for a hung daemon.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def silent_daemon() -> Iterator[str]:
    """An endpoint that accepts connections and never says a word (a hung or foreign program)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"


def _doctor(tmp_path: Path, *args: str, endpoint: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")]),
           "SINE_CONFIG_DIR": str(tmp_path / "config"), "SINE_STATE_DIR": str(tmp_path / "state"),
           "SINE_CACHE_DIR": str(tmp_path / "cache"), "SINE_RUNTIME_DIR": str(tmp_path / "run"),
           "SINE_ENDPOINT": endpoint or "tcp://127.0.0.1:9", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sine.cli", "doctor", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "-1", "0"])
def test_a_timeout_no_one_can_wait_is_refused_not_waited(tmp_path: Path, silent_daemon: str, value: str) -> None:
    """`--timeout nan` (or inf) waited forever on a daemon that does not answer; -1 said 'no answer within -1 s'."""
    proc = _doctor(tmp_path, "--timeout", value, endpoint=silent_daemon, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("sine doctor: error: argument --timeout:") and "out of range" in last, proc.stderr


def test_a_model_name_with_a_terminal_escape_or_a_newline_is_printed_escaped(tmp_path: Path) -> None:
    """`sine doctor --model` printed the name raw in its model line: an escape recoloured the terminal and a
    newline started a line of its own ('ok    model: ...' could be forged)."""
    name = "model\x1b[32m\nok    daemon: forged\u202e"
    proc = _doctor(tmp_path, "--model", str(tmp_path / name))
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout, proc.stdout
    assert not any(line.startswith("ok    daemon: forged") for line in proc.stdout.splitlines()), proc.stdout
    model_lines = [line for line in proc.stdout.splitlines() if line.startswith("FAIL  model:")]
    assert len(model_lines) == 1 and "model\\x1b[32m\\nok    daemon: forged\\u202e" in model_lines[0], proc.stdout


@pytest.mark.parametrize("name,value,said", [
    ("SINE_DEVICE", "tpu", "SINE_DEVICE"),
    ("SINE_DTYPE", "int8", "SINE_DTYPE"),
    ("SINE_THREADS", "many", "SINE_THREADS"),
    ("SINE_STATE_DIR", "garbage", "relative"),
    ("SINE_CONFIG_DIR", "rel/config", "relative"),
    ("SINE_TRANSPORT", "garbage", "SINE_TRANSPORT"),
    ("SINE_ENDPOINT", "http://127.0.0.1:80", "SINE_ENDPOINT"),
])
def test_a_setting_the_daemon_or_a_plugin_refuses_is_a_doctor_failure(tmp_path: Path, name: str, value: str,
                                                                        said: str) -> None:
    """`sine doctor` said nothing of SINE_DEVICE=tpu (or a relative SINE_STATE_DIR, SINE_TRANSPORT=garbage) that
    the daemon refuses at start or a plug-in trips on: the one place a painter looks did not show it."""
    env_endpoint = value if name == "SINE_ENDPOINT" else None
    extra = {} if name == "SINE_ENDPOINT" else {name: value}
    proc = _doctor_with(tmp_path, extra, endpoint=env_endpoint)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("FAIL  settings:")]
    assert len(lines) == 1 and name in lines[0] and said in lines[0], proc.stdout
    assert proc.returncode == 1, proc.stdout


def test_usable_settings_are_an_ok_doctor_line(tmp_path: Path) -> None:
    proc = _doctor_with(tmp_path, {"SINE_DEVICE": "cpu", "SINE_THREADS": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ok    settings:")]
    assert len(lines) == 1 and "SINE_DEVICE" in lines[0], proc.stdout


def _doctor_with(tmp_path: Path, extra: dict[str, str], endpoint: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")]),
           "SINE_CONFIG_DIR": str(tmp_path / "config"), "SINE_STATE_DIR": str(tmp_path / "state"),
           "SINE_CACHE_DIR": str(tmp_path / "cache"), "SINE_RUNTIME_DIR": str(tmp_path / "run"),
           "SINE_ENDPOINT": endpoint or "tcp://127.0.0.1:9", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}
    for unset in ("SINE_DEVICE", "SINE_DTYPE", "SINE_THREADS", "SINE_TRANSPORT", "SINE_MODEL"):
        if unset not in extra:
            env.pop(unset, None)
    return subprocess.run([sys.executable, "-m", "sine.cli", "doctor", "--timeout", "1"], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL, cwd=tmp_path)


def test_the_model_checked_is_the_one_the_daemon_loads_and_its_origin_is_named(tmp_path: Path) -> None:
    """The daemon takes SINE_MODEL before the installer's config.json; doctor read config.json first, so it
    checked a model the daemon never loads, and a missing SINE_MODEL was said to come 'from …/config.json'."""
    demo = REPO / "backend" / "sine" / "demo_model"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text(json.dumps({"model": str(tmp_path / "gone.safetensors")}))
    proc = _doctor_with(tmp_path, {"SINE_MODEL": str(demo)})
    lines = [line for line in proc.stdout.splitlines() if " model: " in line]
    assert len(lines) == 1 and lines[0].startswith("ok") and str(demo) in lines[0], proc.stdout
    (tmp_path / "config" / "config.json").unlink()
    proc = _doctor_with(tmp_path, {"SINE_MODEL": str(tmp_path / "missing")})
    lines = [line for line in proc.stdout.splitlines() if " model: " in line]
    assert len(lines) == 1 and lines[0].startswith("FAIL") and "SINE_MODEL" in lines[0], proc.stdout
    assert "config.json" not in lines[0], proc.stdout
