"""Large canvases on the demo model: does tiled, PE-aware sampling avoid duplicated objects?

For each source of the shapes world on a plain background, fine-tune twice (patches with the positional embedding, and
patches without it), then render the object-recolouring edit at `--scales`× the training size with:
one big latent; tiles under a whole view (the sampler's default: layout from SINE on the whole picture
at the model's size, detail from the fine-tuned model in the tiles); SINE's full score in every tile
(no whole view), also with tiles twice the model's size; each with and without PE; "upscale"
(render at the working size, resize) and "refine" (upscale, then re-run the second half of the
steps in tiles at full size). Scores, against the world's own rendering of the scene at that size:
- stray things: blobs that stand out from the plain background and lie mostly away from where the
  scene's objects belong; any is a duplication. (Counting blobs alone misleads at 4×: the big object
  breaks into pieces that are not duplicates, and the copies tiles make are small.) Also counted
  for the edited object's colours (old or new) alone, though the model often draws an off-palette hue;
- missing: under 20 % of the edited object's true region holds its colours;
- edit: the asked colour is the majority inside the object's true region;
- preservation: PSNR of the background region.

    python bench/large_canvas.py --out bench/results/large_canvas.json            # 8 sources
    python bench/large_canvas.py --quick                                          # 3 sources, fewer steps
    python bench/large_canvas.py --finetuned /tmp/ft --images /tmp/sheets         # keep fine-tunes, save sheets
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sine.finetune import FineTuned, FinetuneSettings, finetune
from sine.models import load_base_model
from sine.prompts import source_prompt
from sine.sampler import SamplingSettings, sample_edit
from sine.shapes.metrics import color_index, color_labels, majority_color, placement, psnr
from sine.shapes.sources import Edit, Source, benchmark_sources
from sine_protocol.defaults import PAPER_STRENGTH


@dataclass(frozen=True)
class Config:
    pe: bool  # the fine-tune used the positional embedding
    strategy: str  # the sampler's strategy
    tile_factor: int = 1  # tile side = factor × the model's size
    finetuned_only: bool = False  # the fine-tuned model alone instead of SINE's guidance (no edit made)
    whole_view: bool = True  # tiles: layout from the whole picture at the model's size (False: SINE in every tile)


CONFIGS = {
    "single latent, PE": Config(True, "single"),
    "tiled, PE (ours)": Config(True, "tiled"),  # whole view for the layout, fine-tuned PE tiles for the detail
    "tiled, no PE": Config(False, "tiled"),
    "single latent, no PE": Config(False, "single"),
    "SINE per tile, PE": Config(True, "tiled", whole_view=False),  # MultiDiffusion of SINE's scores, no whole view
    "SINE per tile, no PE": Config(False, "tiled", whole_view=False),
    "SINE per 2x tile, PE": Config(True, "tiled", tile_factor=2, whole_view=False),
    "upscale, PE": Config(True, "upscale"),
    "refine, PE": Config(True, "refine"),  # upscale, then a half-strength tiled PE pass at full size
    # what PE does in tiles when no pre-trained score asks every tile for the object
    "fine-tuned only per tile, PE": Config(True, "tiled", finetuned_only=True),
}


def score(out: np.ndarray, src: Source, edit: Edit, scale: int) -> dict:
    """Strays, coverage, edit and background of one picture, against the world's rendering at its size."""
    size = out.shape[0]
    truth_scene = src.scene.recolored(edit.index, edit.color)
    truth, masks = truth_scene.render(size, size)
    colors = [edit.color, src.scene.objects[edit.index].color]
    where = np.zeros_like(masks.background)
    for o, m in zip(truth_scene.objects, masks.objects, strict=True):
        if o.color in colors:
            where |= m
    speck, margin = 8 * scale**2, 2 * scale  # a speck counts from 8 px at the model's own size (3x3)
    labels = color_labels(out)
    in_colour = placement(np.isin(labels, [color_index(c) for c in colors]), where, speck, margin)
    anything = placement(labels != color_index(src.scene.background.colors[0]), masks.union(), speck, margin)
    return {
        "stray": anything.stray, "stray_object_colours": in_colour.stray, "coverage": in_colour.coverage,
        "duplicated": anything.stray > 0, "missing": in_colour.coverage < 0.2,
        "edit_ok": majority_color(out, masks.objects[edit.index]) == edit.color,
        "background_psnr": psnr(out, np.asarray(truth), masks.background),
    }


def fine_tuned(base, image: Image.Image, prompt: str, settings: FinetuneSettings, folder: Path | None) -> FineTuned:
    """Fine-tune, or load what an earlier run with the same settings kept in `folder`."""
    if folder is not None and (folder / "finetune.json").exists():
        return FineTuned.load(folder, base)
    model = finetune(base, image, prompt, settings)
    if folder is not None:
        model.save(folder)
    return model


def sheet(images: list[Image.Image], gap: int = 4) -> Image.Image:
    out = Image.new("RGB", (sum(i.width + gap for i in images) - gap, images[0].height), "white")
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


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
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS), metavar="NAME",
                        help=f"default: all of {list(CONFIGS)}")
    parser.add_argument("--finetuned", default=None, help="keep the fine-tuned weights here and reuse them")
    parser.add_argument("--images", default=None, help="write a sheet per source, scale and seed here")
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
    # a stray thing is told from the background by its colour: only plain backgrounds allow that
    sources = [s for s in sources if s.scene.background.kind == "plain"]
    for src in sources:
        image, _ = src.scene.render(base.sample_size, base.sample_size)
        edit = next(e for e in src.edits if e.index is not None)
        models = {}
        for pe in (True, False):
            settings = FinetuneSettings(method=args.method, steps=args.finetune_steps, patch=True, positional=pe)
            folder = None
            if args.finetuned:
                steps = args.finetune_steps or "recipe"
                folder = Path(args.finetuned) / f"{src.name}-{args.method}-{steps}-pe{int(pe)}"
            models[pe] = fine_tuned(base, image, source_prompt(src.subject), settings, folder)
        for scale in args.scales:
            size = scale * base.sample_size
            for seed in args.seeds:
                outputs = [image.resize((size, size), Image.Resampling.NEAREST)]
                for name in args.configs:
                    c = CONFIGS[name]
                    sampling = SamplingSettings(steps=args.steps, seed=seed, strategy=c.strategy,
                                                working_size=base.sample_size, tile_size=c.tile_factor * base.sample_size,
                                                finetuned_only=c.finetuned_only, whole_view=c.whole_view,
                                                strength=PAPER_STRENGTH)  # as measured: from pure noise
                    out = np.asarray(sample_edit(base, models[c.pe], edit.prompt, size, size, sampling))
                    outputs.append(Image.fromarray(out))
                    rows.append({"source": src.name, "scale": scale, "seed": seed, "config": name,
                                 **score(out, src, edit, scale)})
                if args.images:
                    Path(args.images).mkdir(parents=True, exist_ok=True)
                    sheet(outputs).save(Path(args.images) / f"{src.name}_{scale}x_seed{seed}.png")
        print(f"  {src.name}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    summary = {}
    for scale in args.scales:
        for name in args.configs:
            sel = [r for r in rows if r["config"] == name and r["scale"] == scale]
            summary[f"{scale}x {name}"] = {
                "duplication_rate": float(np.mean([r["duplicated"] for r in sel])),
                "missing_rate": float(np.mean([r["missing"] for r in sel])),
                "mean_stray": float(np.mean([r["stray"] for r in sel])),
                "mean_stray_object_colours": float(np.mean([r["stray_object_colours"] for r in sel])),
                "edit_success": float(np.mean([r["edit_ok"] for r in sel])),
                "background_psnr": float(np.mean([r["background_psnr"] for r in sel])),
            }
    print(f"\n{base.sample_size}-px model, {len(sources)} sources x {len(args.seeds)} seeds per row")
    print(f"{'configuration':<33} {'duplication':>11} {'strays':>7} {'(colour)':>8} {'missing':>8} {'edit ok':>8} "
          f"{'bg PSNR':>8}")
    for name, s in summary.items():
        print(f"{name:<33} {s['duplication_rate']:>11.2f} {s['mean_stray']:>7.2f} {s['mean_stray_object_colours']:>8.2f} "
              f"{s['missing_rate']:>8.2f} {s['edit_success']:>8.2f} {s['background_psnr']:>8.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "summary": summary, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
