"""Large-canvas speed and memory: one big latent vs PE-aware tiles, per output size.

    python bench/canvas_speed.py --model sd15-random --sizes 2048 4096 --device cuda
    python bench/canvas_speed.py --model tiny --sizes 256 512          # CPU smoke run

For each size and strategy it runs a SINE edit (guided steps: one latent or `tiled-per-tile` score
the fine-tuned and twice the pre-trained model everywhere; `tiled` scores all three on the whole
picture at the model's size and only the fine-tuned model in the tiles) and reports seconds per
sampling step (after warm-up), the total time including the VAE decode, and peak memory (CUDA: max allocated; CPU: process peak RSS).
A strategy that runs out of memory is reported as such, not as a crash. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from sine.finetune import FinetuneSettings, finetune
from sine.large_canvas import plan_strategy
from sine.sampler import SamplingSettings, sample_edit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import (  # noqa: E402
    add_model_arguments,
    build_model,
    flat_source,
    peak_memory_mb,
    per_step,
    reset_peak,
    timed_steps,
    write_report,
)


def run_one(base, model, size: int, strategy: str, steps: int, warmup: int, tile_size: int | None) -> dict:
    per_tile = strategy == "tiled-per-tile"  # SINE's three scores in every tile, no whole view (the old tiles)
    settings = SamplingSettings(steps=steps + warmup, k=0, strategy="tiled" if per_tile else strategy,
                                tile_size=tile_size, whole_view=not per_tile, strength=1.0)  # every step
    plan = plan_strategy(base, size, size, settings)
    row = {"size": size, "strategy": strategy, "tile_size": tile_size, "tiles": len(plan.tiles),
           "latent": [plan.latent_h, plan.latent_w]}
    reset_peak(base.device)
    stamps, on_step = timed_steps(warmup)
    t0 = time.perf_counter()
    try:
        image = sample_edit(base, model, "a cat", size, size, settings, progress=on_step)
    except torch.OutOfMemoryError as exc:
        row.update(error=f"out of memory: {str(exc).splitlines()[0]}")
        return row
    if base.device.type == "cuda":
        torch.cuda.synchronize(base.device)
    total = time.perf_counter() - t0
    assert image.size == (size, size), image.size
    row.update(s_per_step=per_step(stamps, warmup), total_s=total, peak_mb=peak_memory_mb(base.device))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--strategies", nargs="+", default=["single", "tiled"],
                        help="single, tiled (whole view + fine-tuned tiles), tiled-per-tile (SINE in every tile), ...")
    parser.add_argument("--tile-sizes", type=int, nargs="+", default=[0],
                        help="tile sizes in px for 'tiled' (0: the engine's default, the model's own size)")
    parser.add_argument("--steps", type=int, default=3, help="timed sampling steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default="bench/results/canvas_speed.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        base = build_model(args.model, args.device, args.dtype, Path(tmp))
        model = finetune(base, flat_source(base), "picture of a sks dog", FinetuneSettings(method="lora", steps=1))
        rows = []
        for size in args.sizes:
            for strategy in args.strategies:
                for tile in (args.tile_sizes if strategy.startswith("tiled") else [0]):
                    row = run_one(base, model, size, strategy, args.steps, args.warmup, tile or None)
                    rows.append(row)
                    label = f"{strategy}" + (f" tile {tile}px" if tile else "")
                    if "error" in row:
                        print(f"{size:>5}² {label:<16} {row['error']}", flush=True)
                        continue
                    print(f"{size:>5}² {label:<16} tiles {row['tiles']:>4}  {row['s_per_step']:8.3f} s/step  "
                          f"total {row['total_s']:8.2f} s  peak {row['peak_mb']:9.0f} MB", flush=True)
    write_report(base, args.model, {"steps_timed": args.steps, "warmup": args.warmup, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
