"""A real `sine daemon` whose model is a single-file SDXL checkpoint, or an SD2 v-prediction folder:
edits come back at the exact size asked, the second one from the cache."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from daemon_helpers import Client, DaemonProcess, make_image

from sine.models import describe_model
from sine.tiny_models import make_tiny_sd2, make_tiny_sdxl, write_sdxl_single_file

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["sdxl-file", "sd2-v"])
def test_daemon_edits_with_other_model_kinds(tmp_path: Path, kind: str):
    if kind == "sdxl-file":
        model = write_sdxl_single_file(make_tiny_sdxl(tmp_path / "xl"), tmp_path / "painter-xl.safetensors")
    else:
        model = make_tiny_sd2(tmp_path / "sd2v", v_prediction=True)
    proc = DaemonProcess(Path(tempfile.mkdtemp(prefix="sd-")), model).start()
    try:
        image = make_image(32, 32, seed=4)
        with Client(proc.endpoint, proc.token) as client:
            welcome = client.request("hello").header  # the model's kind, as `sine doctor` reads it off the configs
            assert welcome["model_ready"] and welcome["model_kind"] == describe_model(model).describe()
            assert welcome["model_kind"].startswith("SDXL, ε-prediction" if kind == "sdxl-file" else "SD2, v-prediction")
            for expected_hit in (False, True):
                rid = client.submit_edit(image, output=(37, 29))
                result = client.events_until_final(rid)[-1]
                assert result.type == "result", result.header
                assert result.image.size == (37, 29) and result.header["cache_hit"] is expected_hit
        assert ("SDXL" if kind == "sdxl-file" else "SD2, v-prediction") in proc.output()
    finally:
        assert proc.stop() == 0, proc.output()


def test_daemon_refuses_more_steps_than_the_model_has_timesteps_before_fine_tuning(tmp_path: Path):
    """A model trained with 50 timesteps asked for 60 sampling steps: the daemon fine-tuned, then failed
    inside diffusers. The job is refused in words before any fine-tuning."""
    from sine.tiny_models import SD1_SCHEDULER, make_tiny_sd

    model = make_tiny_sd(tmp_path / "t50", scheduler=dict(SD1_SCHEDULER, num_train_timesteps=50))
    proc = DaemonProcess(Path(tempfile.mkdtemp(prefix="sd-")), model).start()
    try:
        with Client(proc.endpoint, proc.token) as client:
            events = client.events_until_final(client.submit_edit(make_image(32, 32, seed=5), sample_steps=60))
            assert events[-1].type == "error", events[-1].header
            message = str(events[-1].header)
            assert "60 sampling steps" in message and "50 timesteps" in message, message
            assert not any(e.header.get("phase") == "finetune" for e in events[:-1]), [e.header for e in events]
    finally:
        assert proc.stop() == 0, proc.output()
