"""Scheduler and naming signs of a model distilled for few-step sampling, as such folders circulate:
a TCD scheduler, or a hub snapshot (named by its commit) of a repository whose name says so. Tiny
models loaded with `from_pretrained`; the warning is what `sine doctor` shows."""

from __future__ import annotations

import json
import shutil

from sine.models import model_report


def test_tcd_scheduler_and_a_turbo_snapshot_are_said_to_be_distilled(tiny_folder, tmp_path):
    tcd = shutil.copytree(tiny_folder, tmp_path / "tcd")
    path = tcd / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "_class_name": "TCDScheduler",
                                "timestep_spacing": "trailing"}))
    snapshot = tmp_path / "models--stabilityai--sdxl-turbo" / "snapshots" / ("f" * 40)
    shutil.copytree(tiny_folder, snapshot)
    for model, why in ((tcd, "a TCD scheduler"), (snapshot, "its name 'sdxl-turbo'")):
        notes = model_report(model)[1]
        assert len(notes) == 1 and "distilled" in notes[0] and why in notes[0], notes
    assert model_report(tiny_folder)[1] == []
