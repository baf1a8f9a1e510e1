"""The panel against the real `sine daemon` (subprocess, tiny model, real sockets): edit and cancel."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from krita import Krita
from krita_helpers import make_document, rgba_pattern, to_bgra
from krita_standin import wait_for
from sine_krita.panel import SinePanel

from sine_protocol import RGBAImage
from sine_protocol.client import SineClient
from sine_protocol.defaults import STRENGTH

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
W, H = 32, 24


@contextlib.contextmanager
def daemon_process(base: Path) -> Iterator[tuple[str, Path, subprocess.Popen]]:
    """A real `sine daemon` (tiny model, CPU, every SINE_* folder in ``base``): endpoint, config folder, process."""
    sys.path.insert(0, str(REPO / "backend"))
    from sine.tiny_models import make_tiny_sd

    model = make_tiny_sd(base / "model")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    env = {**os.environ, "SINE_CONFIG_DIR": str(base / "config"), "SINE_STATE_DIR": str(base / "state"),
           "SINE_CACHE_DIR": str(base / "cache"), "SINE_RUNTIME_DIR": str(base / "run"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")])}  # fmt: skip
    argv = [sys.executable, "-m", "sine.cli", "daemon", "--endpoint", endpoint, "--model", str(model),
            "--device", "cpu", "--threads", "1", "--no-ipc"]  # fmt: skip
    log = (base / "daemon.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base)
    try:
        token = base / "config" / "token"

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {(base / 'daemon.log').read_text()[-2000:]}")
            if not token.exists():
                return False
            client = SineClient(endpoint=endpoint, token=token.read_text().strip(), transport="pure", timeout=2)
            try:
                return client.ping(timeout=1.0)
            finally:
                client.close()

        assert wait_for(answers, 90), "the daemon did not answer"
        yield endpoint, base / "config", proc
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


@pytest.fixture(scope="module")
def real_daemon(tmp_path_factory):
    with daemon_process(tmp_path_factory.mktemp("real-daemon")) as (endpoint, config, _):
        yield endpoint, config


@pytest.fixture
def panel(qapp, real_daemon, monkeypatch):
    endpoint, config = real_daemon
    monkeypatch.setenv("SINE_ENDPOINT", endpoint)
    monkeypatch.setenv("SINE_CONFIG_DIR", str(config))
    doc, _ = make_document(W, H)
    Krita.instance().setActiveDocument(doc)
    p = SinePanel(Krita.instance().activeDocument)
    yield p
    p.shutdown()


def reference(settings: dict) -> RGBAImage:
    client = SineClient(transport="pure", timeout=30)
    try:
        rid = client.submit_edit(
            RGBAImage(W, H, rgba_pattern(W, H)), settings["prompt"], seed=settings["seed"],
            sampling={"steps": settings["steps"], "w": 7.5, "v": 0.7, "k": 400},
            finetune={"method": "lora", "steps": settings["finetune_steps"], "patch": True}, output_size=(W, H),
        )  # fmt: skip
        return client.wait_result(rid, timeout=120).image
    finally:
        client.close()


def test_edit_with_the_real_daemon(panel, real_daemon, process_events):
    settings = {"prompt": "a green circle", "seed": 4, "steps": 3, "finetune_steps": 2}
    reference(settings)  # warm the cache so both edits below sample from the same cached weights
    # The status line names the device and the model's kind, and follows the daemon from "loading the model" to ready.
    from sine.models import describe_model

    model = real_daemon[1].parent / "model"  # the fixture's tiny model, next to its config folder
    line = f"on cpu; model {describe_model(model).describe()}".lower()
    ready = lambda: panel.connected and panel.connection_label.text().lower().endswith(line)  # noqa: E731
    assert wait_for(ready, 30, process_events), panel.connection_label.text()
    panel.apply_settings(settings)
    panel.edit_button.click()
    assert wait_for(lambda: panel.state != "running", 120, process_events)
    assert panel.state == "done", panel.last_error
    run = round(3 * STRENGTH)  # the docker's default strength runs that share of the 3 steps
    assert f"sampling {run}/{run}" in panel.progress_log
    assert panel.last_layer.pixelData(0, 0, W, H) == to_bgra(reference(settings).data)


def test_cancel_with_the_real_daemon(panel, process_events):
    assert wait_for(lambda: panel.connected, 30, process_events)
    panel.apply_settings({"prompt": "slow", "seed": 99, "steps": 3, "finetune_steps": 5000})
    panel.edit_button.click()
    assert wait_for(lambda: panel.progress_text.startswith("fine-tuning"), 60, process_events), panel.progress_log
    t0 = time.monotonic()
    panel.cancel_button.click()
    assert wait_for(lambda: panel.state != "running", 30, process_events)
    assert panel.state == "cancelled", panel.last_error
    assert time.monotonic() - t0 < 10
    assert len(Krita.instance().activeDocument().topLevelNodes()) == 2


@contextlib.contextmanager
def panel_fine_tuning(tmp_path: Path, monkeypatch, process_events, seed: int) -> Iterator[tuple[SinePanel, subprocess.Popen]]:
    """A panel whose edit (20000 fine-tune steps) the real daemon has begun fine-tuning, and that daemon's process."""
    with daemon_process(tmp_path) as (endpoint, config, proc):
        monkeypatch.setenv("SINE_ENDPOINT", endpoint)
        monkeypatch.setenv("SINE_CONFIG_DIR", str(config))
        monkeypatch.setenv("SINE_STATE_DIR", str(tmp_path / "state"))
        doc, _ = make_document(W, H)
        Krita.instance().setActiveDocument(doc)
        panel = SinePanel(Krita.instance().activeDocument)
        try:
            assert wait_for(lambda: panel.connected, 30, process_events)
            panel.apply_settings({"prompt": "slow", "seed": seed, "steps": 3, "finetune_steps": 20000})
            panel.edit_button.click()
            assert wait_for(lambda: panel.progress_text.startswith("fine-tuning"), 60, process_events), panel.progress_log
            yield panel, proc
        finally:
            panel.shutdown()


def test_a_daemon_killed_mid_edit_is_told_in_words(qapp, tmp_path, monkeypatch, process_events):
    """A daemon that dies mid-edit (SIGKILL, the out-of-memory killer): the panel leaves its running state within
    seconds, adds nothing, and says what happened and where the daemon's log is, not "daemon connection failed:
    lost the connection to the daemon at tcp://…"."""
    with panel_fine_tuning(tmp_path, monkeypatch, process_events, seed=98) as (panel, proc):
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        assert wait_for(lambda: panel.state != "running", 40, process_events), panel.progress_log
        told_after = time.monotonic() - t0
        text = panel.last_error or ""
        assert panel.state == "error" and told_after < 10, (panel.state, told_after, text)
        # said once, as it is (it showed "unavailable: The SINE daemon…", and again on the connection line)
        assert text.startswith("The SINE daemon stopped during the edit") and "nothing was added" in text, text
        assert panel.message_label.text() == text, panel.message_label.text()
        line = panel.connection_label.text()
        assert line.startswith("not connected: ") and "nothing was added" not in line, line
        assert str(tmp_path / "state" / "daemon.log") in text and "connection failed" not in text, text
        assert len(Krita.instance().activeDocument().topLevelNodes()) == 2


def test_a_frozen_daemon_is_told_in_words(qapp, tmp_path, monkeypatch, process_events):
    """A daemon that stops answering mid-edit (SIGSTOP here; a hung driver, a machine swapping): the panel's
    silence check ends the edit with the same words as a crash, not "the daemon stopped answering during the
    edit" alone. Scaled down: a 1 s silence, a 1 s ping."""
    import signal

    from sine_krita import daemon_link

    monkeypatch.setattr(daemon_link, "SILENCE_PING_S", 1.0)
    monkeypatch.setattr(daemon_link, "PROBE_TIMEOUT_S", 1.0)
    with panel_fine_tuning(tmp_path, monkeypatch, process_events, seed=97) as (panel, proc):
        proc.send_signal(signal.SIGSTOP)
        try:
            assert wait_for(lambda: panel.state != "running", 30, process_events), panel.progress_log
        finally:
            proc.send_signal(signal.SIGCONT)
        text = panel.last_error or ""
        assert text.startswith("The SINE daemon stopped answering during the edit: "), text
        assert "nothing was added" in text and str(tmp_path / "state" / "daemon.log") in text, text
        assert len(Krita.instance().activeDocument().topLevelNodes()) == 2
