"""The paper's claim in miniature, on the committed demo model (a subset of bench/quality.py --quick).

Measured (bench/quality.py --quick --steps 30, 3 sources x 2 edits x 1 seed): edit success is 0 for
every method and SINE's preservation is below the pre-trained model's, because the fine-tuned model
does not reproduce the source (see the report); those two claims are therefore strict xfails, which
turn into failures the day they start to hold, so the thresholds get revisited.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
NOT_YET = "the fine-tuned demo model does not reproduce its source yet (measured, see module docstring)"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results() -> dict:
    torch.set_num_threads(1)
    q = _bench()
    from sine.models import load_base_model

    cfg = q.BenchConfig(sources=3, edits=2, seeds=(0,), wide_seeds=(0,), steps=30,
                        methods=("pretrained", "finetuned", "sine_pe"), wide_methods=("sine_nope", "sine_pe"))
    return q.run_benchmark(cfg, load_base_model("demo", device="cpu"), log=lambda _: None)["summary"]


@pytest.mark.slow
def test_benchmark_measures_every_method(results: dict) -> None:
    for method in ("pretrained", "finetuned", "sine_pe"):
        entry = results[method]
        assert entry["n"] == 6 and 0.0 <= entry["edit_success"] <= 1.0
        assert 0.0 < entry["psnr"] <= 100.0 and -1.0 <= entry["ssim"] <= 1.0
    for method in ("sine_nope", "sine_pe"):
        assert results[method]["n_wide"] == 3


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="3 wide samples: flips with thread settings since fine-tuning encodes the "
                   "posterior mean (full bench: PE 0.50 vs no PE 0.69 before that fix); needs a larger subset")
def test_positional_embedding_reduces_duplication_at_twice_the_width(results: dict) -> None:
    assert results["sine_pe"]["dup_rate"] < results["sine_nope"]["dup_rate"], results


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=NOT_YET)
def test_sine_edits_where_the_finetuned_model_alone_does_not(results: dict) -> None:
    assert results["sine_pe"]["edit_success"] >= results["finetuned"]["edit_success"] + 0.25, results


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=NOT_YET)
def test_sine_preserves_what_the_pretrained_model_alone_loses(results: dict) -> None:
    assert results["sine_pe"]["psnr"] >= results["pretrained"]["psnr"] + 2.0, results
