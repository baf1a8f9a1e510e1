"""The paper's claim in miniature, on the committed demo model: a subset of bench/quality.py.

Full benchmark (8 sources x 3 edits x 2 seeds, 50 steps; table in the README):
                   edit success   PSNR of what must not change
  pre-trained only     0.35          14.3 dB
  fine-tuned only      0.02          18.9 dB   (full recipe, 4500 patch steps)
  SINE (full, PE)      0.60          15.7 dB
  SINE (LoRA)          0.58          17.3 dB
This subset (3 sources x 3 edits, seed 0; 11 min on 2 cores, mostly the three 4500-step fine-tunes)
measured 0.44 / 13.2 dB (pre-trained), 0.00 / 22.1 dB (fine-tuned only), 0.78 / 19.0 dB (SINE, full
recipe with PE) and 0.78 / 19.5 dB (SINE, LoRA); the thresholds below leave a margin of at least two
successes and 2.8 dB.
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

SUBSET = ("checkered_circle", "noisy_triangle", "dotted_square")


@pytest.fixture(scope="module")
def results(quality_bench: ModuleType) -> dict:
    torch.set_num_threads(2)
    q = quality_bench
    from sine.models import load_base_model

    cfg = q.BenchConfig(source_names=SUBSET, edits=3, seeds=(0,), steps=50,
                        methods=("pretrained", "finetuned", "sine_pe", "sine_lora_nope"), wide_methods=())
    return q.run_benchmark(cfg, load_base_model("demo", device="cpu"), log=lambda _: None)["summary"]


@pytest.mark.slow
def test_benchmark_measures_every_method(results: dict) -> None:
    for method in ("pretrained", "finetuned", "sine_pe", "sine_lora_nope"):
        entry = results[method]
        assert entry["n"] == 9 and 0.0 <= entry["edit_success"] <= 1.0
        assert 0.0 < entry["psnr"] <= 100.0 and -1.0 <= entry["ssim"] <= 1.0


@pytest.mark.slow
def test_sine_edits_where_the_finetuned_model_alone_does_not(results: dict) -> None:
    assert results["sine_lora_nope"]["edit_success"] >= results["finetuned"]["edit_success"] + 0.2, results
    # the same fine-tuned model (full recipe, patches + PE) alone vs inside SINE
    assert results["sine_pe"]["edit_success"] > results["finetuned"]["edit_success"], results


@pytest.mark.slow
def test_sine_preserves_what_the_pretrained_model_alone_loses(results: dict) -> None:
    assert results["sine_lora_nope"]["psnr"] >= results["pretrained"]["psnr"] + 3.0, results
    assert results["sine_pe"]["psnr"] >= results["pretrained"]["psnr"] + 3.0, results
