"""`sine daemon` refuses settings that cannot work at start, naming the flag, instead of a traceback
(`--send-hwm -1`) or a daemon that answers every request with an error or not at all (`--max-queued 0`,
`--max-message-bytes 10`: even `hello` is cut off)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BAD = [
    ("--send-hwm", "-1"),
    ("--max-queued", "0"),
    ("--max-queued-per-client", "0"),
    ("--max-input-pixels", "-5"),
    ("--max-output-pixels", "0"),
    ("--max-message-bytes", "10"),
    ("--preview-every", "0"),
    ("--threads", "-2"),
    ("--progress-interval", "-1"),
    ("--threads", "1000000000"),  # started, then died at the first job: libgomp cannot allocate 10^9 threads
    ("--max-queued-bytes", "0"),  # started, then answered every edit `busy`
    ("--max-queued-bytes", "9" * 400),  # OverflowError traceback (the float of 400 digits is infinite)
    ("--cache-budget", "9" * 400),
    ("--send-hwm", "99999999999999"),  # OverflowError traceback from setsockopt (a C int)
    ("--send-buffer", "1TB"),
]


@pytest.mark.parametrize("flag,value", BAD)
def test_a_setting_that_cannot_work_is_refused_at_start(flag: str, value: str, tmp_path: Path) -> None:
    env = {**os.environ, "SINE_CONFIG_DIR": str(tmp_path / "config"), "SINE_STATE_DIR": str(tmp_path / "state"),
           "SINE_CACHE_DIR": str(tmp_path / "cache"), "SINE_RUNTIME_DIR": str(tmp_path / "run"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "sine.cli", "daemon", "--endpoint", f"tcp://127.0.0.1:{port}", "--no-ipc", "--device",
           "cpu", f"{flag}={value}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{flag} {value}: the daemon started and served instead of refusing the setting")
    assert proc.returncode == 2, proc.stderr
    assert flag in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bad_cache_budget_in_the_environment_breaks_no_command(tmp_path: Path) -> None:
    """SINE_CACHE_BUDGET was parsed while the parsers were built: a typo was a traceback from every `sine`
    command; now `sine daemon` alone refuses it, in one line naming the variable."""
    env = {**os.environ, "SINE_CACHE_BUDGET": "lots", "SINE_CACHE_DIR": str(tmp_path / "cache"),
           "SINE_STATE_DIR": str(tmp_path / "state"), "SINE_CONFIG_DIR": str(tmp_path / "config")}
    listing = subprocess.run([sys.executable, "-m", "sine.cli", "cache", "list"], capture_output=True, text=True,
                             timeout=60, env=env)
    assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr
    daemon = subprocess.run([sys.executable, "-m", "sine.cli", "daemon", "--no-ipc"], capture_output=True,
                            text=True, timeout=60, env=env)
    assert daemon.returncode == 2 and "Traceback" not in daemon.stderr, daemon.stderr
    assert "SINE_CACHE_BUDGET" in daemon.stderr.strip().splitlines()[-1], daemon.stderr


@pytest.mark.parametrize("name", ["SINE_CACHE_BUDGET", "SINE_LOADED_BUDGET"])
def test_a_budget_too_big_for_a_float_is_named_not_a_traceback(name: str, tmp_path: Path) -> None:
    """`parse_size("9" * 400)` raised OverflowError, which `except ValueError` let through as a traceback."""
    env = {**os.environ, name: "9" * 400, "SINE_CACHE_DIR": str(tmp_path / "cache"),
           "SINE_STATE_DIR": str(tmp_path / "state"), "SINE_CONFIG_DIR": str(tmp_path / "config"),
           "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    daemon = subprocess.run([sys.executable, "-m", "sine.cli", "daemon", "--no-ipc", "--device", "cpu",
                             "--endpoint", f"tcp://127.0.0.1:{port}"], capture_output=True, text=True, timeout=60,
                            env=env)
    assert daemon.returncode == 2 and "Traceback" not in daemon.stderr, daemon.stderr
    assert name in daemon.stderr.strip().splitlines()[-1], daemon.stderr


def test_a_state_folder_that_cannot_be_one_is_named_not_a_traceback(tmp_path: Path) -> None:
    """SINE_STATE_DIR naming a file (or a folder where no file can be made) was a FileExistsError traceback
    from the log set-up, the first thing `sine daemon` does."""
    (tmp_path / "afile").write_text("the user's")
    env = {**os.environ, "SINE_STATE_DIR": str(tmp_path / "afile"), "SINE_CACHE_DIR": str(tmp_path / "cache"),
           "SINE_CONFIG_DIR": str(tmp_path / "config"), "OMP_NUM_THREADS": "1"}
    daemon = subprocess.run([sys.executable, "-m", "sine.cli", "daemon", "--no-ipc", "--device", "cpu"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert daemon.returncode == 2 and "Traceback" not in daemon.stderr, daemon.stderr
    assert "SINE_STATE_DIR" in daemon.stderr.strip().splitlines()[-1], daemon.stderr
    assert (tmp_path / "afile").read_text() == "the user's"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_config_file_that_is_a_pipe_or_endless_does_not_hold_the_start(kind: str, tmp_path: Path) -> None:
    """`sine daemon` reads the model the installer recorded in config.json: a named pipe there held the start
    for ever, a link to /dev/zero read without end. Now it is passed over like a missing file."""
    config = tmp_path / "config"
    config.mkdir()
    if kind == "fifo":
        os.mkfifo(config / "config.json")
    else:
        (config / "config.json").symlink_to("/dev/zero")
    env = {**os.environ, "SINE_CONFIG_DIR": str(config), "SINE_STATE_DIR": str(tmp_path / "state"),
           "SINE_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("SINE_MODEL", None)
    try:  # an endpoint that cannot work: the daemon stops right after choosing its model
        proc = subprocess.run([sys.executable, "-m", "sine.cli", "daemon", "--no-ipc", "--endpoint", "garbage"],
                              capture_output=True, text=True, timeout=30, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("sine daemon waited on config.json")
    assert proc.returncode == 1 and "endpoint" in proc.stderr.strip().splitlines()[-1], proc.stderr


@pytest.mark.parametrize("content", ['{"model": ["a", "b"]}', "[1, 2]"])
def test_doctor_names_a_config_file_of_wrong_types(content: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """config.json whose model is a list (or that is a list) made the model check crash with a TypeError."""
    from sine.commands.doctor import check_model

    monkeypatch.setenv("SINE_CONFIG_DIR", str(tmp_path))
    (tmp_path / "config.json").write_text(content)
    check = check_model()
    assert check.status == "FAIL" and "config.json" in check.detail, check


@pytest.mark.parametrize("which", ["endpoint lock", "ipc lock"])
def test_a_lock_file_that_is_a_link_never_writes_through_it(which: str, tmp_path: Path) -> None:
    """The daemon's lock files (per endpoint in the state folder, beside the socket in the runtime folder,
    which SINE_RUNTIME_DIR may put in a shared folder) were opened through a symbolic link, then truncated
    and written with the daemon's pid: a link planted there cost the file it pointed at."""
    from sine.daemon.lockfile import lock_path_for

    victim = tmp_path / "precious.txt"
    victim.write_text("the user's")
    state, run = tmp_path / "state", tmp_path / "run"
    state.mkdir()
    run.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    link = lock_path_for(state, endpoint) if which == "endpoint lock" else run / "daemon.sock.lock"
    link.symlink_to(victim)
    env = {**os.environ, "SINE_CONFIG_DIR": str(tmp_path / "config"), "SINE_STATE_DIR": str(state),
           "SINE_CACHE_DIR": str(tmp_path / "cache"), "SINE_RUNTIME_DIR": str(run), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sine.cli", "daemon", "--endpoint", endpoint, "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    import time

    log, deadline = state / "daemon.log", time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:  # the ipc lock refused: it serves over TCP
        if log.exists() and "not binding" in log.read_text():
            proc.terminate()
            break
        time.sleep(0.1)
    out, _ = proc.communicate(timeout=60)
    assert victim.read_text() == "the user's", out
    assert "Traceback" not in out, out
    assert "symbolic link" in out, out


def test_a_log_file_that_is_a_link_is_never_appended_through(tmp_path: Path) -> None:
    """daemon.log was opened through a symbolic link in its place and the log appended to the file it
    pointed at (a shell profile, say); now the daemon refuses to start, naming the folder."""
    victim = tmp_path / "profile.sh"
    victim.write_text("# the user's\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / "daemon.log").symlink_to(victim)
    env = {**os.environ, "SINE_CONFIG_DIR": str(tmp_path / "config"), "SINE_STATE_DIR": str(state),
           "SINE_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    cmd = [sys.executable, "-m", "sine.cli", "daemon", "--no-ipc", "--device", "cpu", "--endpoint", endpoint]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the daemon started, logging into {victim}: {victim.read_text()[:300]}")
    assert victim.read_text() == "# the user's\n", proc.stderr
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "SINE_STATE_DIR" in proc.stderr.strip().splitlines()[-1], proc.stderr


@pytest.mark.parametrize("name,value", [("SINE_DEVICE", "tpu"), ("SINE_DTYPE", "int8"), ("SINE_FT_DTYPE", "fp8")])
def test_a_device_or_dtype_no_job_can_use_is_refused_at_start(name: str, value: str, tmp_path: Path) -> None:
    """The daemon started with SINE_DEVICE=tpu (or SINE_DTYPE=int8) and answered every edit model_missing,
    while `--device tpu` was refused at once."""
    env = {**os.environ, name: value, "SINE_CACHE_DIR": str(tmp_path / "cache"),
           "SINE_STATE_DIR": str(tmp_path / "state"), "SINE_CONFIG_DIR": str(tmp_path / "config"),
           "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        daemon = subprocess.run([sys.executable, "-m", "sine.cli", "daemon", "--no-ipc",
                                 "--endpoint", f"tcp://127.0.0.1:{port}"], capture_output=True, text=True,
                                timeout=15, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}={value}: the daemon started anyway")
    assert daemon.returncode == 2 and "Traceback" not in daemon.stderr, daemon.stderr
    assert name in daemon.stderr.strip().splitlines()[-1], daemon.stderr


@pytest.mark.parametrize("name", ["SINE_STATE_DIR", "SINE_CACHE_DIR", "SINE_CONFIG_DIR", "--cache-dir"])
def test_a_folder_setting_that_names_a_file_is_one_line_naming_it(name: str, tmp_path: Path) -> None:
    """SINE_STATE_DIR naming a file said "File exists", SINE_CACHE_DIR "[Errno 17] File exists: '…'", and
    SINE_CONFIG_DIR that its token was "not a token file" (a path under the file): now each names the setting."""
    mine = tmp_path / "notes.txt"
    mine.write_text("the user's\n")
    env = {**os.environ, "SINE_CONFIG_DIR": str(tmp_path / "config"), "SINE_STATE_DIR": str(tmp_path / "state"),
           "SINE_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    flags = ["--cache-dir", str(mine)] if name == "--cache-dir" else []
    if not flags:
        env[name] = str(mine)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "daemon", "--no-ipc", "--device", "cpu",
                           "--endpoint", endpoint, *flags], capture_output=True, text=True, timeout=60, env=env)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{name} {mine} is a file, not a folder" in last, last
    assert mine.read_text() == "the user's\n"


@pytest.mark.parametrize("name", ["SINE_STATE_DIR", "SINE_CACHE_DIR", "SINE_CONFIG_DIR", "SINE_RUNTIME_DIR"])
@pytest.mark.parametrize("value", ["garbage", "x/y", "./state"])
def test_a_relative_folder_setting_is_refused_naming_it(name: str, value: str, tmp_path: Path) -> None:
    """SINE_STATE_DIR=garbage was used relative to the daemon's working folder (it wrote its log and token into
    ./garbage) while a plug-in, started elsewhere, looked for the token in its own ./garbage: refused at
    start, naming the setting, with nothing written where the daemon was started."""
    started_in = tmp_path / "started-here"
    started_in.mkdir()
    env = {**os.environ, "SINE_CONFIG_DIR": str(tmp_path / "config"), "SINE_STATE_DIR": str(tmp_path / "state"),
           "SINE_CACHE_DIR": str(tmp_path / "cache"), "SINE_RUNTIME_DIR": str(tmp_path / "run"),
           "OMP_NUM_THREADS": "1", name: value}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    try:
        proc = subprocess.run([sys.executable, "-m", "sine.cli", "daemon", "--device", "cpu", "--endpoint", endpoint],
                              capture_output=True, text=True, timeout=30, env=env, cwd=started_in)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}={value}: the daemon started anyway")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert name in last and "relative" in last and "absolute" in last, last
    assert list(started_in.iterdir()) == []


@pytest.mark.parametrize("name", ["SINE_STATE_DIR", "SINE_CACHE_DIR", "SINE_CONFIG_DIR", "SINE_RUNTIME_DIR"])
def test_a_folder_setting_holding_a_line_break_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    """A folder holding a newline split the daemon's log lines (each log line names its folder): refused at
    start, the value shown escaped on one line."""
    env = {**os.environ, "SINE_CONFIG_DIR": str(tmp_path / "config"), "SINE_STATE_DIR": str(tmp_path / "state"),
           "SINE_CACHE_DIR": str(tmp_path / "cache"), "SINE_RUNTIME_DIR": str(tmp_path / "run"),
           "OMP_NUM_THREADS": "1", name: str(tmp_path / "a\nok    daemon: forged")}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    try:
        proc = subprocess.run([sys.executable, "-m", "sine.cli", "daemon", "--device", "cpu", "--endpoint", endpoint],
                              capture_output=True, text=True, timeout=30, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} with a line break: the daemon started anyway")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert name in lines[-1] and "a\\nok    daemon: forged" in lines[-1], proc.stderr
    assert not any(line.startswith("ok    daemon") for line in lines), proc.stderr
    assert not (tmp_path / "a\nok    daemon: forged").exists()
