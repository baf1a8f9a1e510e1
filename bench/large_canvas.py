"""Large canvases on the demo model: does tiled, PE-aware sampling avoid duplicated objects?

For each source of the shapes world, fine-tune twice (patches with the positional embedding, and
patches without it), then render the object-recolouring edit at `--scales`× the training size with:
one big latent, tiles, tiles without PE, one big latent without PE, "upscale" (render at the
working size, resize) and "refine" (upscale, then re-run the second half of the steps in tiles at
full size). Scores, against the world's own rendering of the scene at that size:
- objects: blobs of the object's colours (old or new); more than the scene has is a duplication;
- edit: the asked colour is the majority inside the object's true region;
- preservation: PSNR of the background region.

    python bench/large_canvas.py --out bench/results/large_canvas.json            # 8 sources
    python bench/large_canvas.py --quick                                          # 3 sources, fewer steps
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sine.finetune import FinetuneSettings, finetune
from sine.models import load_base_model
from sine.prompts import source_prompt
from sine.sampler import SamplingSettings, sample_edit
from sine.shapes.metrics import color_index, color_labels, count_separate, majority_color, psnr
from sine.shapes.sources import benchmark_sources

CONFIGS = {
    # name: (model trained with PE?, strategy)
    "single latent, PE": (True, "single"),
    "tiled, PE (ours)": (True, "tiled"),
    "tiled, no PE": (False, "tiled"),
    "single latent, no PE": (False, "single"),
    "upscale, PE": (True, "upscale"),
    "refine, PE": (True, "refine"),  # upscale, then a half-strength tiled PE pass at full size
}


def count_blobs(image: np.ndarray, colors: list[str], min_pixels: int) -> int:
    labels = color_labels(image)
    return count_separate(np.isin(labels, [color_index(c) for c in colors]), min_pixels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the bundled demo model")
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--names", nargs="+", default=None, help="only these sources (by name)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[4], help="output side = scale × the model's size")
    parser.add_argument("--method", default="full", help="fine-tune recipe (the model's own step count and lr)")
    parser.add_argument("--finetune-steps", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="3 sources, 30 sampling steps")
    parser.add_argument("--out", default="bench/results/large_canvas.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sources, args.steps = 3, 30
    torch.manual_seed(0)
    base = load_base_model(args.model, device="cpu")
    rows = []
    t0 = time.perf_counter()
    sources = benchmark_sources()
    sources = [s for s in sources if s.name in args.names] if args.names else sources[: args.sources]
    for src in sources:
        image, _ = src.scene.render(base.sample_size, base.sample_size)
        edit = next(e for e in src.edits if e.index is not None)
        truth_scene = src.scene.recolored(edit.index, edit.color)
        colors = sorted({edit.color, src.scene.objects[edit.index].color})
        expected = sum(1 for o in truth_scene.objects if o.color in colors)
        models = {}
        for pe in (True, False):
            settings = FinetuneSettings(method=args.method, steps=args.finetune_steps, patch=True, positional=pe)
            models[pe] = finetune(base, image, source_prompt(src.subject), settings)
        for scale in args.scales:
            size = scale * base.sample_size
            truth, truth_masks = truth_scene.render(size, size)
            obj = truth_masks.objects[edit.index]
            min_pixels = max(4, int(0.2 * obj.sum()))
            for seed in args.seeds:
                for name, (pe, strategy) in CONFIGS.items():
                    sampling = SamplingSettings(steps=args.steps, seed=seed, strategy=strategy,
                                                working_size=base.sample_size, tile_size=base.sample_size)
                    out = np.asarray(sample_edit(base, models[pe], edit.prompt, size, size, sampling))
                    blobs = count_blobs(out, colors, min_pixels)
                    rows.append({
                        "source": src.name, "scale": scale, "seed": seed, "config": name, "objects": blobs,
                        "expected": expected, "duplicated": blobs > expected, "missing": blobs < expected,
                        "edit_ok": majority_color(out, obj) == edit.color,
                        "background_psnr": psnr(out, np.asarray(truth), truth_masks.background),
                    })
        print(f"  {src.name}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    summary = {}
    for scale in args.scales:
        for name in CONFIGS:
            sel = [r for r in rows if r["config"] == name and r["scale"] == scale]
            summary[f"{scale}x {name}"] = {
                "duplication_rate": float(np.mean([r["duplicated"] for r in sel])),
                "missing_rate": float(np.mean([r["missing"] for r in sel])),
                "mean_objects": float(np.mean([r["objects"] for r in sel])),
                "edit_success": float(np.mean([r["edit_ok"] for r in sel])),
                "background_psnr": float(np.mean([r["background_psnr"] for r in sel])),
            }
    print(f"\n{base.sample_size}-px model, {len(sources)} sources x {len(args.seeds)} seeds per row")
    print(f"{'configuration':<26} {'duplication':>11} {'missing':>8} {'objects':>8} {'edit ok':>8} {'bg PSNR':>8}")
    for name, s in summary.items():
        print(f"{name:<26} {s['duplication_rate']:>11.2f} {s['missing_rate']:>8.2f} {s['mean_objects']:>8.2f} "
              f"{s['edit_success']:>8.2f} {s['background_psnr']:>8.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "summary": summary, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
