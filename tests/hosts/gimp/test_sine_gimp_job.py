"""The plug-in's daemon logic (sine_gimp_job) against the real `sine daemon`, from a plain Python.

GIMP cannot be asked to press Cancel in batch mode, so cancelling, progress texts and the mapping
of daemon errors are checked here, with the same pure-ZMTP transport the plug-in uses in GIMP.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sine_protocol import RGBAImage, defaults

# The plug-in's helpers live beside sine-gimp.py, which GIMP runs as a script (its folder on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "plugin_gimp" / "sine-gimp"))
import sine_gimp_job as job  # noqa: E402

pytestmark = pytest.mark.slow


def picture(w: int, h: int, salt: int) -> RGBAImage:
    """An opaque test picture; ``salt`` makes a new cache key (a fresh fine-tune)."""
    return RGBAImage(
        w, h, bytes(v for y in range(h) for x in range(w) for v in (x * 5 + salt, y * 7, salt, 255))
    )


@pytest.mark.parametrize("exc,words", [(KeyError("layer"), "layer"), (ValueError("bad value 'x'"), "bad value 'x'"),
                                       (RuntimeError(), "no description"), (OSError(28, "No space"), "No space")])
def test_an_internal_error_is_told_in_words_not_as_python_repr(exc: Exception, words: str) -> None:
    """The plug-in's last-resort handler told the painter "Internal error in the SINE plug-in: KeyError('layer')";
    the message now says what happened in words, where the details are, and what to do."""
    text = job.internal_error_message(exc)
    assert repr(exc) not in text and "Error(" not in text and "Errno" not in text, text
    assert "terminal" in text and "report" in text and words in text and len(text) < 400, text


def test_progress_texts_name_phase_and_step() -> None:
    assert job.progress_text("finetune", 12, 40) == "fine-tuning 12/40"
    assert job.progress_text("sample", 30, 100) == "sampling 30/100"
    assert job.progress_text("loading", 0, 0) == "loading the model"


def test_a_stopped_daemon_and_too_many_results_get_their_own_advice() -> None:
    stopped = job.error_message("daemon_stopping", "the daemon was stopped before this edit finished")
    assert stopped.startswith("The SINE daemon was stopped") and "run the filter again" in stopped
    large = job.error_message("too_large", "8 results of 16384x4096 would be a reply of 2147483648 bytes")
    assert "fewer results" in large


def test_edit_reports_progress_and_returns_requested_size(sine_daemon, monkeypatch) -> None:
    monkeypatch.setenv("SINE_CONFIG_DIR", str(sine_daemon.config_dir))
    client = job.connect(sine_daemon.endpoint)
    seen: list[job.Progress] = []
    request = job.EditRequest(prompt="a blue square", subject="shape", seed=3, steps=4, finetune_steps=3,
                              output_width=40, output_height=24)  # fmt: skip
    try:
        result = job.run_edit(client, request, picture(32, 24, salt=11), on_progress=seen.append)
    finally:
        client.close()
    assert result.size == (40, 24)
    texts = [p.text for p in seen]
    assert "fine-tuning 3/3" in texts, texts
    run = round(4 * defaults.STRENGTH)  # the plug-in's default strength runs that share of the 4 steps
    assert f"sampling {run}/{run}" in texts, texts
    assert all(0.0 <= p.fraction <= 1.0 for p in seen)


def test_cancel_stops_the_daemon_job(sine_daemon, monkeypatch) -> None:
    monkeypatch.setenv("SINE_CONFIG_DIR", str(sine_daemon.config_dir))
    client = job.connect(sine_daemon.endpoint)
    seen: list[job.Progress] = []
    request = job.EditRequest(
        prompt="a green star", subject="shape", seed=1, steps=1000, finetune_steps=20000
    )
    t0 = time.monotonic()
    try:
        with pytest.raises(job.EditCancelled):
            job.run_edit(client, request, picture(32, 24, salt=12), on_progress=seen.append,
                         should_cancel=lambda: any(p.phase in ("finetune", "sample") and p.step >= 1 for p in seen))  # fmt: skip
    finally:
        client.close()
    assert time.monotonic() - t0 < 60
    sine_daemon.assert_idle(timeout_s=10)


def test_a_cut_prompt_reaches_the_plugin_as_a_note(sine_daemon, monkeypatch) -> None:
    """The job's notes (a prompt longer than the tiny model's 30 tokens) come to ``on_notes`` from the
    real daemon: once early (the first progress) and with the result, naming the ignored words."""
    monkeypatch.setenv("SINE_CONFIG_DIR", str(sine_daemon.config_dir))
    client = job.connect(sine_daemon.endpoint)
    noted: list[tuple[bool, list[str]]] = []
    seen: list[job.Progress] = []
    prompt = " ".join(f"word{i}" for i in range(50))
    request = job.EditRequest(prompt=prompt, subject="shape", seed=1, steps=1, finetune_steps=1)
    try:
        job.run_edit_results(client, request, picture(16, 16, salt=14), on_progress=seen.append,
                             on_notes=lambda notes: noted.append((any(p.phase == "sample" for p in seen), notes)))
    finally:
        client.close()
    assert [sampled for sampled, _ in noted] == [False, True], noted  # before sampling, then with the result
    note = noted[-1][1][0]
    assert noted[0][1] == [note]
    assert note.startswith("the prompt's last") and "word49" in note and "reads 30 tokens" in note


def test_daemon_error_becomes_a_user_message(sine_daemon, monkeypatch) -> None:
    monkeypatch.setenv("SINE_CONFIG_DIR", str(sine_daemon.config_dir))
    client = job.connect(sine_daemon.endpoint)
    try:
        with pytest.raises(job.EditFailed) as info:
            job.run_edit(
                client, job.EditRequest(prompt="x", style="cartoon", steps=2), picture(16, 16, salt=13)
            )
    finally:
        client.close()
    assert info.value.code == "bad_request"
    assert str(info.value).startswith("The daemon rejected the request. [bad_request]")


def test_connect_to_closed_port_says_daemon_not_running(closed_endpoint: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(job.DaemonNotRunning) as info:
        job.connect(closed_endpoint)
    assert time.monotonic() - t0 < job.PING_TIMEOUT_S + 3
    assert closed_endpoint in str(info.value)


def test_a_transport_setting_typed_wrong_is_named_not_called_an_endpoint(closed_endpoint: str, monkeypatch) -> None:
    """SINE_TRANSPORT=garbage was told as "Bad SINE daemon endpoint 'tcp://…'", sending the painter to check an
    endpoint that was right."""
    monkeypatch.setenv("SINE_TRANSPORT", "garbage")
    with pytest.raises(job.EditFailed) as info:
        job.connect(closed_endpoint)
    text = str(info.value)
    assert text.startswith("SINE_TRANSPORT=") and "garbage" in text and "endpoint" not in text, text
    assert all(name in text for name in ("auto", "pyzmq", "pure")), text


def test_start_daemon_and_connect_starts_the_installed_daemon(
    sine_daemon, closed_endpoint, tmp_path, monkeypatch
) -> None:
    """The interactive "start it now?" path: launch.start_daemon reads daemon.json, the plug-in waits for it."""
    config = tmp_path / "config"
    config.mkdir()
    pid_file = tmp_path / "daemon.pid"
    daemon_argv = [sys.executable, "-m", "sine.cli", "daemon", "--endpoint", closed_endpoint,
                   "--model", str(sine_daemon.model), "--device", "cpu", "--threads", "1", "--no-ipc"]  # fmt: skip
    # exec keeps the pid, so the test can stop exactly the daemon it caused to start.
    script = f'echo $$ > "{pid_file}"; exec "$@"'
    (config / "daemon.json").write_text(json.dumps({"argv": ["sh", "-c", script, "sh", *daemon_argv]}))
    for name in ("STATE", "CACHE", "RUNTIME"):
        monkeypatch.setenv(f"SINE_{name}_DIR", str(tmp_path / name.lower()))
    monkeypatch.setenv("SINE_CONFIG_DIR", str(config))
    monkeypatch.setenv("PYTHONPATH", sine_daemon.env["PYTHONPATH"])
    with pytest.raises(job.DaemonNotRunning):
        job.connect(closed_endpoint)
    try:
        client = job.start_daemon_and_connect(closed_endpoint, wait_s=120)
        try:
            assert client.hello()["protocol_version"] == 1
        finally:
            client.close()
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_start_daemon_without_install_explains_what_to_do(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SINE_CONFIG_DIR", str(tmp_path))
    with pytest.raises(job.EditFailed) as info:
        job.start_daemon_and_connect(wait_s=5)
    assert info.value.code == "daemon_not_installed"
    assert "installer" in str(info.value)


KILLED_CLIENT = """
import sys
sys.path[:0] = sys.argv[1:3]
import sine_gimp_job as job
client = job.connect(sys.argv[3])
request = job.EditRequest(prompt="a red star", subject="shape", seed=2, steps=1000, finetune_steps=20000)
image = job.RGBAImage(32, 24, bytes(range(256)) * 12)
def on_progress(p):
    if p.phase in ("finetune", "sample") and p.step >= 1:
        print("RUNNING", flush=True)
job.run_edit(client, request, image, on_progress=on_progress)
"""


def test_a_killed_plugin_costs_the_daemon_nothing(sine_daemon) -> None:
    """GIMP's own status-bar Cancel SIGKILLs the plug-in: the daemon must drop that job by itself."""
    env = {**os.environ, "SINE_CONFIG_DIR": str(sine_daemon.config_dir)}
    plugin_dir = str(Path(job.__file__).parent)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_CLIENT,
            plugin_dir,
            str(Path(job.__file__).parents[2] / "shared"),
            sine_daemon.endpoint,
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "RUNNING"
    finally:
        proc.kill()
        proc.wait()
    sine_daemon.assert_idle(timeout_s=20)


def test_content_weight_goes_with_the_style_picture_and_the_two_stay_within_one() -> None:
    from sine_protocol import defaults

    request = job.EditRequest(prompt="x", style_weight=0.25, content_weight=0.6)
    assert job.EditRequest(prompt="x").content_weight == pytest.approx(1 - defaults.V)  # the engine's 1 - v
    assert request.sampling(with_style=True)["content_weight"] == 0.6
    assert "content_weight" not in request.sampling()
    too_much = job.EditRequest(prompt="x", style_weight=0.7, content_weight=0.5)
    with pytest.raises(job.EditFailed, match="style weight 0.70 and content weight 0.50 add up to more than 1"):
        job.run_edit_results(None, too_much, picture(8, 8, 1), style_image=picture(8, 8, 2))  # refused before sending


@contextlib.contextmanager
def _standin_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **standin: Any) -> Iterator[Any]:
    """A client of the plug-in's own connect() to the protocol stand-in (tests/hosts/krita/krita_standin.py)
    on a real ZeroMQ socket, with its token; both closed after."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "krita"))
    from krita_standin import TOKEN, StandinDaemon

    daemon = StandinDaemon(**standin)
    config = tmp_path / "config"
    config.mkdir()
    (config / "token").write_text(TOKEN)
    monkeypatch.setenv("SINE_CONFIG_DIR", str(config))
    client = job.connect(daemon.endpoint)
    try:
        yield client
    finally:
        client.close()
        daemon.close()


def test_a_long_step_says_how_long_it_has_worked(monkeypatch, tmp_path) -> None:
    """One step without news (a 3000x2000 layer's sampling step: 113 s on the demo model, bench/progress_gaps.py):
    after SLOW_STEP_S the progress text says how long the step has run, so the window's line keeps moving.
    A protocol stand-in on a real ZeroMQ socket gives a 1.5 s step (the real daemon's steps are quick at test sizes)."""
    monkeypatch.setattr(job, "SLOW_STEP_S", 0.5)
    seen: list[job.Progress] = []
    with _standin_client(monkeypatch, tmp_path, finetune_steps=1, sample_steps=1, step_s=1.5) as client:
        job.run_edit(client, job.EditRequest(prompt="slow", subject="shape"), picture(16, 12, 1), on_progress=seen.append)
    working = [p for p in seen if "· working" in p.text]
    assert working, [p.text for p in seen]
    assert any(p.text.startswith("fine-tuning 1/1 · working") for p in working), [p.text for p in seen]
    assert all(p.preview is None for p in working)


def test_the_tiles_of_a_long_step_show_in_the_text_and_move_the_bar(monkeypatch, tmp_path) -> None:
    """A big layer's step reports its tiles (`part`/`parts`, a protocol stand-in on a real ZeroMQ socket):
    the progress text names the tile and the bar's fraction moves inside the step."""
    seen: list[job.Progress] = []
    with _standin_client(monkeypatch, tmp_path, finetune_steps=1, sample_steps=2, tiles=4) as client:
        job.run_edit(client, job.EditRequest(prompt="tiled", subject="shape"), picture(16, 12, 1), on_progress=seen.append)
    texts = [p.text for p in seen]
    assert texts.index("sampling 0/2 · tile 2/4") < texts.index("sampling 1/2") < texts.index("sampling 1/2 · tile 2/4")
    fraction = {p.text: p.fraction for p in seen}
    assert fraction["sampling 0/2 · tile 2/4"] == pytest.approx(0.25)  # half of the first of two steps
    assert fraction["sampling 1/2 · tile 4/4"] == pytest.approx(1.0) and fraction["sampling 1/2"] == 0.5


def test_a_step_longer_than_the_idle_timeout_is_not_given_up_while_the_daemon_beats(monkeypatch, tmp_path) -> None:
    """The plug-in gave up after idle_timeout_s (600 s) without an event, though the daemon's heartbeat said
    it was working: a big layer's step on a slow model takes longer. Scaled down: a 2 s step, 0.3 s beats, 1 s."""
    with _standin_client(monkeypatch, tmp_path, finetune_steps=1, sample_steps=1, step_s=2.0, heartbeat_s=0.3) as client:
        results = job.run_edit_results(client, job.EditRequest(prompt="slow", subject="shape"), picture(16, 12, 2),
                                       on_progress=lambda _p: None, idle_timeout_s=1.0)  # fmt: skip
    assert len(results) == 1 and results[0].image.size == (16, 12)


def test_a_daemon_killed_mid_edit_is_told_at_once_not_waited_on(tmp_path: Path, monkeypatch) -> None:
    """A daemon that dies mid-edit (SIGKILL, the kernel's OOM killer, a crash in a GPU driver): the plug-in
    says so in words within seconds, not after its silence timeout, and not as a traceback."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from host_common import running_daemon
    finally:
        sys.path.pop(0)
    from sine.tiny_models import make_tiny_sd

    with running_daemon(tmp_path, make_tiny_sd(tmp_path / "model")) as daemon:
        monkeypatch.setenv("SINE_CONFIG_DIR", str(daemon.config_dir))
        monkeypatch.setenv("SINE_STATE_DIR", daemon.env["SINE_STATE_DIR"])
        client = job.connect(daemon.endpoint)
        killed_at: list[float] = []

        def kill_at_the_first_step(progress: job.Progress) -> None:
            if progress.phase == "finetune" and not killed_at:
                daemon.proc.send_signal(signal.SIGKILL)
                daemon.proc.wait()
                killed_at.append(time.monotonic())

        request = job.EditRequest(prompt="a green star", subject="shape", seed=1, steps=1000, finetune_steps=20000)
        try:
            with pytest.raises(job.EditFailed) as info:
                job.run_edit(client, request, picture(32, 24, salt=40), on_progress=kill_at_the_first_step)
        finally:
            client.close()
    assert killed_at, "the daemon never reported the fine-tune"
    told_after = time.monotonic() - killed_at[0]
    text = str(info.value)
    assert told_after < 10, f"told {told_after:.1f} s after the daemon died: {text}"
    assert "daemon" in text and "Traceback" not in text and "Errno" not in text, text
    # It said "Lost the connection to the SINE daemon: lost the connection to the daemon at …" and no more: the
    # painter is told where the daemon's log says why, and that running the filter again starts it again.
    assert text.lower().count("lost the connection") <= 1 and "nothing was added" in text, text
    assert str(tmp_path / "state" / "daemon.log") in text and "again" in text, text
