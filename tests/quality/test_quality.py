"""The paper's claim in miniature, on the committed demo model (a small subset of bench/quality.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results() -> dict:
    torch.set_num_threads(2)
    q = _bench()
    from sine.models import load_base_model

    cfg = q.BenchConfig(sources=4, edits=2, seeds=(0,), wide_seeds=(0,), steps=30,
                        methods=("pretrained", "finetuned", "sine_pe"), wide_methods=("sine_nope", "sine_pe"))
    return q.run_benchmark(cfg, load_base_model("demo", device="cpu"), log=lambda _: None)["summary"]


@pytest.mark.slow
def test_sine_edits_where_the_finetuned_model_alone_does_not(results: dict) -> None:
    assert results["sine_pe"]["edit_success"] >= results["finetuned"]["edit_success"] + 0.25, results


@pytest.mark.slow
def test_sine_preserves_what_the_pretrained_model_alone_loses(results: dict) -> None:
    assert results["sine_pe"]["psnr"] >= results["pretrained"]["psnr"] + 2.0, results


@pytest.mark.slow
def test_positional_embedding_reduces_duplication_at_twice_the_width(results: dict) -> None:
    assert results["sine_pe"]["dup_rate"] <= results["sine_nope"]["dup_rate"], results
