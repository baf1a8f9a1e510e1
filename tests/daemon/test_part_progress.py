"""A big layer's long steps report progress inside them: the tiles of a sampling step, the VAE's tiles."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from daemon_helpers import Client, DaemonProcess, make_image

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
