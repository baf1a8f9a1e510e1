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


def test_a_link_planted_at_the_temporary_name_is_never_written_through(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """In a shared state folder (SINE_STATE_DIR=/tmp/...), another user could plant a link at the name the
    calibration was first written under (`.calibration.json.<pid>.tmp`: predictable) and have the daemon
    write into any file the painter owns. The file is now made afresh (O_EXCL, owner-only, never through a
    link) under an unpredictable name, whatever the umask."""
    import os

    monkeypatch.setenv("SINE_STATE_DIR", str(tmp_path / "shared"))
    (tmp_path / "shared").mkdir()
    victim = tmp_path / "painting.kra"
    victim.write_bytes(b"the painter's work")
    for name in (f".calibration.json.{os.getpid()}.tmp", ".calibration.json.tmp"):
        (tmp_path / "shared" / name).symlink_to(victim)
    old = os.umask(0)
    try:
        save_rates("a", RATES)
    finally:
        os.umask(old)
    assert victim.read_bytes() == b"the painter's work"
    saved = tmp_path / "shared" / "calibration.json"
    assert not saved.is_symlink() and load_rates("a", saved) is not None
    assert saved.stat().st_mode & 0o777 == 0o600
