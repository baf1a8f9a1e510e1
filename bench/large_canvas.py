"""Large canvases on the demo model: does tiled, PE-aware sampling avoid duplicated objects?

For each source of the shapes world, fine-tune twice (patches with the positional embedding, and
patches without it), then render the object-recolouring edit at `--scale`× the training size with:
one big latent, tiles, tiles without PE, one big latent without PE, and "upscale" (render at the
working size, resize). Scores, against the world's own rendering of the scene at that size:
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
from sine.shapes.metrics import color_index, color_labels, components, dilate, majority_color, psnr
from sine.shapes.sources import benchmark_sources

CONFIGS = {
    # name: (model trained with PE?, strategy)
    "single latent, PE": (True, "single"),
    "tiled, PE (ours)": (True, "tiled"),
    "tiled, no PE": (False, "tiled"),
    "single latent, no PE": (False, "single"),
    "upscale, PE": (True, "upscale"),
}


def count_blobs(image: np.ndarray, colors: list[str], min_pixels: int) -> int:
    labels = color_labels(image)
    mask = np.zeros(labels.shape, bool)
    for c in colors:
        mask |= labels == color_index(c)
    return len(components(dilate(mask), min_pixels=min_pixels, diagonal=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the bundled demo model")
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--scale", type=int, default=4, help="output side = scale × the model's size")
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="3 sources, 150 fine-tune steps, 30 sampling steps")
    parser.add_argument("--out", default="bench/results/large_canvas.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sources, args.finetune_steps, args.steps = 3, 150, 30
    torch.manual_seed(0)
    base = load_base_model(args.model, device="cpu")
    size = args.scale * base.sample_size
    rows = []
    t0 = time.perf_counter()
    for src in benchmark_sources()[: args.sources]:
        image, masks = src.scene.render(base.sample_size, base.sample_size)
        edit = next(e for e in src.edits if e.index is not None)
        truth_scene = src.scene.recolored(edit.index, edit.color)
        truth, truth_masks = truth_scene.render(size, size)
        obj = truth_masks.objects[edit.index]
        min_pixels = max(4, int(0.2 * obj.sum()))
        colors = sorted({edit.color, src.scene.objects[edit.index].color})
        expected = sum(1 for o in truth_scene.objects if o.color in colors)
        models = {}
        for pe in (True, False):
            settings = FinetuneSettings(method="lora", steps=args.finetune_steps, patch=True, positional=pe)
            models[pe] = finetune(base, image, source_prompt(src.subject), settings)
        for seed in args.seeds:
            for name, (pe, strategy) in CONFIGS.items():
                sampling = SamplingSettings(steps=args.steps, seed=seed, strategy=strategy,
                                            working_size=base.sample_size, tile_size=base.sample_size)
                out = np.asarray(sample_edit(base, models[pe], edit.prompt, size, size, sampling))
                blobs = count_blobs(out, colors, min_pixels)
                rows.append({
                    "source": src.name, "seed": seed, "config": name, "objects": blobs, "expected": expected,
                    "duplicated": blobs > expected,
                    "edit_ok": majority_color(out, obj) == edit.color,
                    "background_psnr": psnr(out, np.asarray(truth), truth_masks.background),
                })
        print(f"  {src.name}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    summary = {}
    for name in CONFIGS:
        sel = [r for r in rows if r["config"] == name]
        summary[name] = {
            "duplication_rate": float(np.mean([r["duplicated"] for r in sel])),
            "mean_objects": float(np.mean([r["objects"] for r in sel])),
            "edit_success": float(np.mean([r["edit_ok"] for r in sel])),
            "background_psnr": float(np.mean([r["background_psnr"] for r in sel])),
        }
    print(f"\n{size}×{size} outputs from a {base.sample_size}-px model, {len(rows) // len(CONFIGS)} cases each")
    print(f"{'configuration':<22} {'duplication':>11} {'objects':>8} {'edit ok':>8} {'bg PSNR':>8}")
    for name, s in summary.items():
        print(f"{name:<22} {s['duplication_rate']:>11.2f} {s['mean_objects']:>8.2f} {s['edit_success']:>8.2f} "
              f"{s['background_psnr']:>8.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"size": size, "args": vars(args), "summary": summary, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
