"""What a fine-tune step costs with several training views per step (`FinetuneSettings.batch`), and
with the training UNet compiled (`--compile`, torch.compile of its forward).

For each batch size: the wall time of `--steps` real fine-tune steps (`finetune`, patches + PE, the
model's own recipe otherwise) after `--warmup` steps, per step and per view; the best of `--repeats`
(a busy machine only ever adds time). With `--compile` one more arm at batch 1: the first step
(compiling) and the steps after it. Prints and writes JSON.

    python bench/view_batch_speed.py --model demo --methods full lora --batches 1 2 4 8 --threads 1 \
        --json docs/results/cpu/view_batch/speed.json
    python bench/view_batch_speed.py --model sd15-random --device cuda --methods lora --batches 1 2 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for sub in ("backend", "shared"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

import sine.finetune as ft  # noqa: E402
from sine.finetune import FinetuneSettings, finetune  # noqa: E402
from sine.prompts import source_prompt  # noqa: E402
from sine.shapes.sources import benchmark_sources  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from speed import build_model  # noqa: E402  (tiny | demo | sd15-random | a folder)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_times(base, picture, prompt: str, settings: FinetuneSettings, steps: int) -> list[float]:
    """Wall seconds of each of `steps` fine-tune steps (from the progress callback)."""
    marks: list[float] = []

    def progress(step: int, total: int, loss: float) -> None:
        _sync(base.device)
        marks.append(time.perf_counter())

    _sync(base.device)
    start = time.perf_counter()
    finetune(base, picture, prompt, replace(settings, steps=steps), progress=progress)
    return [b - a for a, b in zip([start, *marks[:-1]], marks, strict=True)]


def batch_arm(base, picture, prompt: str, settings: FinetuneSettings, batch: int, steps: int, warmup: int,
              repeats: int) -> dict:
    best = float("inf")
    if base.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        times = step_times(base, picture, prompt, replace(settings, batch=batch), warmup + steps)[warmup:]
        best = min(best, sum(times) / len(times))
    peak = torch.cuda.max_memory_allocated() / 2**30 if base.device.type == "cuda" else None
    return {"batch": batch, "step_ms": round(best * 1000, 2), "view_ms": round(best * 1000 / batch, 2),
            "peak_gib": round(peak, 3) if peak is not None else None}


def compiled_arm(base, picture, prompt: str, settings: FinetuneSettings, steps: int) -> dict:
    """Batch 1 with the trainable UNet's forward under torch.compile (inductor, static shapes)."""
    make_copies = ft._trainable_copies

    def compiled_copies(base, s):
        unet, text_encoder = make_copies(base, s)
        unet.forward = torch.compile(unet.forward, dynamic=False)
        return unet, text_encoder

    ft._trainable_copies = compiled_copies
    try:
        times = step_times(base, picture, prompt, replace(settings, batch=1), 1 + steps)
    finally:
        ft._trainable_copies = make_copies
    return {"batch": 1, "compiled": True, "first_step_s": round(times[0], 2),
            "step_ms": round(sum(times[1:]) / len(times[1:]) * 1000, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time batch 1 with the training UNet compiled")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", "--out", dest="json", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = build_model(args.model, args.device, None, Path(tempfile.mkdtemp()))
    if args.threads:
        torch.set_num_threads(args.threads)  # loading picks threads by model size
    source = benchmark_sources()[0]
    picture = source.scene.render()[0]
    prompt = source_prompt(source.subject, "photo")
    report: dict = {"model": args.model, "device": args.device, "threads": torch.get_num_threads(),
                    "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "arms": []}
    for method in args.methods:
        settings = FinetuneSettings(method=method, patch=True, seed=0)
        for batch in args.batches:
            arm = {"method": method, **batch_arm(base, picture, prompt, settings, batch, args.steps, args.warmup,
                                                 args.repeats)}
            report["arms"].append(arm)
            print(json.dumps(arm), flush=True)
        if args.compile:
            arm = {"method": method, **compiled_arm(base, picture, prompt, settings, args.steps)}
            report["arms"].append(arm)
            print(json.dumps(arm), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
