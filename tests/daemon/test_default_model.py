"""The daemon's model: SINE_MODEL, else what the installer recorded, else the bundled demo model."""

import json

from sine.commands.daemon import default_model


def test_installer_recorded_model_is_used(monkeypatch, tmp_path):
    monkeypatch.delenv("SINE_MODEL", raising=False)
    monkeypatch.setenv("SINE_CONFIG_DIR", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model": "/models/sd15", "model_id": "x/y"}))
    assert default_model() == "/models/sd15"
    monkeypatch.setenv("SINE_MODEL", "/elsewhere")
    assert default_model() == "/elsewhere"


def test_unreadable_config_falls_back(monkeypatch, tmp_path):
    monkeypatch.delenv("SINE_MODEL", raising=False)
    monkeypatch.setenv("SINE_CONFIG_DIR", str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    fallback = default_model()
    assert fallback is None or fallback.endswith("demo_model")
