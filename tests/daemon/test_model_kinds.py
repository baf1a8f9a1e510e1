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
