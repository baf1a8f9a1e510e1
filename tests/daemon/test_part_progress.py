"""A big layer's long steps report progress inside them: the tiles of a sampling step, the VAE's tiles."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from daemon_helpers import FAST, Client, DaemonProcess, make_image

from sine_protocol.paths import read_token

pytestmark = pytest.mark.slow


def test_tiles_of_a_step_and_of_the_decode_arrive_between_step_events(tiny_model: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    daemon = DaemonProcess(root, tiny_model).start()
    try:  # 512 px on the tiny model (32-px working size): 441 tiles a step, the VAE in 9 tiles; ~1 s a step
        with Client(daemon.endpoint, daemon.token) as client:
            events = client.events_until_final(client.submit_edit(make_image(32, 32, seed=3), output=(512, 512)),
                                               timeout=300)
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert events[-1].type == "result", (events[-1].header, daemon.output()[-3000:])
    sample = [e.header for e in events if e.type == "progress" and e.header["phase"] == "sample"]
    total = sample[0]["total"]
    last_step = max(i for i, h in enumerate(sample) if h["step"] == total and "part" not in h)
    inside = [h for h in sample[:last_step] if h.get("part_of") == "tile"]
    after = [h for h in sample[last_step + 1:] if "part" in h]
    assert {h.get("part_of") for h in sample[:last_step]} <= {None, "tile", "encode tile"}  # the source, strength 0.6
    assert inside and all(1 <= h["part"] <= h["parts"] == 441 for h in inside)
    assert all(h["step"] < total for h in inside)  # the step being worked on: the last one done
    assert after and {h["part_of"] for h in after} == {"decode tile"} and after[-1]["parts"] == 9
    parts = [h["part"] for h in inside if h["step"] == inside[0]["step"]]
    assert parts == sorted(parts)


def test_the_wait_before_the_first_step_reports_its_parts(tiny_model: Path) -> None:
    """An edit sent while the daemon starts: the model's load (the libraries, then the weights) and the first
    job's speed check (the estimate's calibration) move the `loading` line part by part; none of it is silent."""
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    daemon = DaemonProcess(root, tiny_model, extra=FAST).start(wait=False)
    try:
        deadline = time.monotonic() + 120
        while not read_token(root / "config" / "token"):
            assert daemon.proc.poll() is None and time.monotonic() < deadline, daemon.output()
            time.sleep(0.02)
        with Client(daemon.endpoint, daemon.token) as client:
            assert client.request("ping", timeout=60).type == "pong"
            events = client.events_until_final(client.submit_edit(make_image(32, 32, seed=5)), timeout=300)
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert events[-1].type == "result", (events[-1].header, daemon.output()[-3000:])
    progress = [e.header for e in events if e.type == "progress"]
    first_step = next(i for i, h in enumerate(progress) if h["phase"] in ("finetune", "sample"))
    waiting = progress[:first_step]
    assert {h["phase"] for h in waiting} == {"loading"}
    startup = [(h["part"], h["parts"]) for h in waiting if h.get("part_of") == "start-up"]
    assert startup and len({parts for _, parts in startup}) == 1 and startup[0][1] >= 2  # libraries + weights
    done = [part for part, _ in startup]
    assert done == sorted(done) and done[0] < startup[0][1]  # seen moving, while it loaded
    checks = [(h["part"], h["parts"]) for h in waiting if h.get("part_of") == "speed check"]
    assert [part for part, _ in checks] == list(range(1, 9)) and {parts for _, parts in checks} == {8}
