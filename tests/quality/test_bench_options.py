"""bench/quality.py's command-line options (no sampling: these only build the configuration)."""

from __future__ import annotations

from types import ModuleType

import pytest


def test_finetune_override_parses_key_field_and_json_value(quality_bench: ModuleType) -> None:
    q = quality_bench
    assert q.parse_override("full_pe.steps=4500", {}) == {"full_pe": {"steps": 4500}}
    merged = q.parse_override("full_pe.lr=3e-4", {"full_pe": {"steps": 4500}})
    assert merged == {"full_pe": {"steps": 4500, "lr": 3e-4}}
    assert q.parse_override("lora_nope.style=painting", {}) == {"lora_nope": {"style": "painting"}}


@pytest.mark.parametrize("bad", ["full_pe.steps", "nope.steps=3", "full_pe.speed=3", "steps=3"])
def test_finetune_override_refuses_what_it_cannot_apply(bad: str, quality_bench: ModuleType) -> None:
    with pytest.raises(SystemExit, match="KEY.FIELD=VALUE"):
        quality_bench.parse_override(bad, {})
