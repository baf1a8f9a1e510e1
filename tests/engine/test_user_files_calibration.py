"""The step-time calibration is remembered as calibration.json in the state folder, which SINE_STATE_DIR may
name (the user's home, a project folder): a file of theirs by that name (a camera's calibration, a big or
non-JSON file) was replaced, or merged into and cut to the last 16 entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sine import estimate
from sine.estimate import Rates, load_rates, save_rates

RATES = Rates(finetune_setup_s=1.0, finetune_step_s=0.5, sample_setup_s=0.2, unet_eval_s=0.1, decode_s=0.3)


@pytest.mark.parametrize("content", [
    json.dumps({"fx": 1200.5, "fy": 1199.0, "cx": 640, "cy": 360}).encode(),  # a camera's calibration
    json.dumps({f"lens-{n}": {"k1": n} for n in range(20)}).encode(),  # a dict of dicts, not ours
    b"not json at all\n",
    b"x" * (2 << 20),  # over the size the daemon reads
])
def test_a_users_calibration_json_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    content: bytes) -> None:
    monkeypatch.setenv("SINE_STATE_DIR", str(tmp_path))
    (tmp_path / "calibration.json").write_bytes(content)
    with pytest.raises(OSError, match="left as it is"):  # remember_rates: the memory goes, never the edit
        save_rates("key", RATES)
    assert (tmp_path / "calibration.json").read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibration.json"]


def test_the_daemons_own_calibration_is_still_updated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINE_STATE_DIR", str(tmp_path))
    save_rates("a", RATES)
    save_rates("b", RATES)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "calibration.json").write_bytes(b"")
    save_rates("c", RATES, tmp_path / "empty" / "calibration.json")
    assert load_rates("a") == RATES and load_rates("b") == RATES
    assert load_rates("c", tmp_path / "empty" / "calibration.json") == RATES
    assert estimate.calibration_path() == tmp_path / "calibration.json"
