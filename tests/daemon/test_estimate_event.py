"""The daemon tells the plugins how long a job will take, on the job's first progress event."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from daemon_helpers import Client, DaemonProcess, make_image

pytestmark = pytest.mark.slow


def test_the_first_progress_event_carries_the_estimate(tiny_model: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    daemon = DaemonProcess(root, tiny_model).start()
    try:
        image = make_image(32, 32, seed=7)
        with Client(daemon.endpoint, daemon.token) as client:
            first = [e for e in client.events_until_final(client.submit_edit(image, output=(48, 32)))
                     if e.type == "progress"]
            again = [e for e in client.events_until_final(client.submit_edit(image, output=(48, 32)))
                     if e.type == "progress"]
    finally:
        assert daemon.stop() == 0, daemon.output()
    def work(events: list) -> list:  # from the first phase of the work on (a `queued` event may come first)
        start = next(i for i, e in enumerate(events) if e.header["phase"] in ("finetune", "sample"))
        return events[start:]

    fresh, cached = work(first)[0].header, work(again)[0].header
    assert fresh["phase"] == "finetune" and cached["phase"] == "sample"
    assert fresh["estimate_s"] > 0 and fresh["eta_s"] == pytest.approx(fresh["estimate_s"], abs=0.1)
    assert 0 < cached["estimate_s"] < fresh["estimate_s"]  # the cached fine-tune costs nothing
    assert sum("estimate_s" in e.header for e in first) == 1  # said once per job
    assert (root / "state" / "calibration.json").is_file()  # measured once, remembered
