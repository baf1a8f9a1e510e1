"""The paper's claim in miniature, on the committed demo model: a subset of bench/quality.py.

Full benchmark (8 sources x 3 edits x 2 seeds, 50 steps; table in docs/benchmarks.md):
                   edit success   PSNR of what must not change
  pre-trained only     0.35          14.3 dB
  fine-tuned only      0.02          18.9 dB   (full recipe, 4500 patch steps)
  SINE (full, PE)      0.60          15.7 dB
  SINE (LoRA)          0.58          17.3 dB
The full recipe's rows stay measured by that benchmark. This subset judges the LoRA recipe with
patches + PE, shortened (FINETUNE below): one fine-tune per source serves both the fine-tuned-only row
and the SINE row (3 sources x 3 edits, sampling seed 0). Measured on the 2-core CPU, 2026-11-30, one
thread, with the fine-tune's LoRA initialisation seeded (before that, two identical runs differed:
13.8 and 14.0 dB for SINE): 0.44 / 13.2 dB (pre-trained), 0.22 / 16.2 dB (the LoRA fine-tune alone),
0.56 / 14.7 dB (SINE with it); about 190 s, down from ~11 min for three 4500-step `full` fine-tunes.
The thresholds leave a margin of two successes (of 9) and about 1 dB: both claims rest on a few edits,
weaker than the full recipe's (docs/benchmarks.md), and SINE's SSIM here (0.42) is below the
pre-trained model's (0.50).
"""

from __future__ import annotations

from types import ModuleType

import pytest

SUBSET = ("checkered_circle", "noisy_triangle", "dotted_square")
METHODS = ("pretrained", "finetuned_lora", "sine_lora_pe")
# The demo model's LoRA recipe, shortened to 400 patch steps at a 3x learning rate: cheap, and it
# overfits as the paper's fine-tune does (at 1,200 steps and 1e-3 the LoRA model alone still edits).
FINETUNE = {"lora_pe": {"steps": 400, "lr": 3e-3}}


@pytest.fixture(scope="module")
def results(quality_bench: ModuleType) -> dict:
    q = quality_bench
    from sine.devices import THREADS_ENV
    from sine.models import load_base_model

    cfg = q.BenchConfig(source_names=SUBSET, edits=3, reshape=False, seeds=(0,), steps=50, methods=METHODS,
                        wide_methods=(), finetune_overrides=FINETUNE)
    # One thread, whatever the load: the model picks its threads from the free cores, and another count
    # changes the fine-tune's last bits, then (chaotically) its result: at 2 threads this subset's SINE
    # row kept 13.9 dB instead of 15.3 (the same run-to-run noise as a second fine-tune seed).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(THREADS_ENV, "1")
        base = load_base_model("demo", device="cpu")
        return q.run_benchmark(cfg, base, log=lambda _: None)["summary"]


@pytest.mark.slow
def test_benchmark_measures_every_method(results: dict) -> None:
    for method in METHODS:
        entry = results[method]
        assert entry["n"] == 9 and 0.0 <= entry["edit_success"] <= 1.0
        assert 0.0 < entry["psnr"] <= 100.0 and -1.0 <= entry["ssim"] <= 1.0


@pytest.mark.slow
def test_sine_edits_where_the_finetuned_model_alone_does_not(results: dict) -> None:
    # the same LoRA fine-tune (patches + PE) alone vs inside SINE
    assert results["sine_lora_pe"]["edit_success"] > results["finetuned_lora"]["edit_success"], results


@pytest.mark.slow
def test_sine_preserves_what_the_pretrained_model_alone_loses(results: dict) -> None:
    assert results["sine_lora_pe"]["psnr"] >= results["pretrained"]["psnr"] + 0.5, results
