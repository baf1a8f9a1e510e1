"""Do the painter's controls do what they say? Pixel measurements on the bundled demo model (CPU).

1. strength: mean |result − source| (0..255) per strength, `noise` and `inversion` starts, beside the VAE
   round trip (what strength → 0 can reach), and the steps the progress reports.
2. count: result k of N against its seed sampled alone (max level difference, pixels differing).
3. alpha: a picture with bands of alpha 1..255 at strength 0.02; mean error of each band laid over black.
4. seams: mean column step at tile edges against ±3/±6 px beside them, tiled and one latent.
Prints and writes JSON.

    OMP_NUM_THREADS=1 python bench/controls_probe.py --json docs/results/cpu/controls_probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for sub in ("backend", "shared"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

from PIL import Image  # noqa: E402

from sine.compositing import finish_result  # noqa: E402
from sine.demo import load_asset  # noqa: E402
from sine.finetune import FinetuneSettings, finetune  # noqa: E402
from sine.large_canvas import decode, encode, plan_strategy  # noqa: E402
from sine.models import load_base_model  # noqa: E402
from sine.sampler import SamplingSettings, sample_edit, sample_edits  # noqa: E402

STRENGTHS = (0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)


def mae(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a.convert("RGB"), np.float32) - np.asarray(b.convert("RGB"), np.float32)).mean())


def strength(base, tuned, source, prompt: str, steps: int) -> dict:
    plan = plan_strategy(base, *source.size, SamplingSettings())
    out: dict = {"vae_round_trip_mae": mae(decode(base, encode(base, source, plan), plan), source)}
    for start in ("noise", "inversion"):
        rows = []
        for s in STRENGTHS:
            totals: list[int] = []
            image = sample_edit(base, tuned, prompt, *source.size, SamplingSettings(steps=steps, strength=s, start=start,
                                seed=1), source=source, progress=lambda i, n, p, totals=totals: totals.append(n))
            rows.append({"strength": s, "mae": round(mae(image, source), 2), "steps_reported": totals[-1]})
        out[start] = rows
    return out


def count(base, tuned, source, prompt: str) -> list[dict]:
    s = SamplingSettings(steps=8, strength=1.0, seed=7)
    together = sample_edits(base, tuned, prompt, *source.size, s, count=5, source=source)
    rows = []
    for k, image in enumerate(together):
        alone = sample_edit(base, tuned, prompt, *source.size, SamplingSettings(steps=8, strength=1.0, seed=7 + k),
                            source=source)
        d = np.abs(np.asarray(image, np.int16) - np.asarray(alone, np.int16))
        rows.append({"k": k, "max_level_diff": int(d.max()), "pixels_differing": int((d.max(-1) > 0).sum())})
    return rows


def alpha(base, source, prompt: str) -> list[dict]:
    alphas = (1, 8, 64, 128, 200, 255)
    pixels = np.asarray(source.convert("RGBA")).copy()
    for i, a in enumerate(alphas):
        pixels[i * 10:(i + 1) * 10, :, 3] = a
    picture = Image.fromarray(pixels, "RGBA")
    edited = sample_edit(base, None, prompt, *picture.size, SamplingSettings(steps=50, strength=0.02, seed=1),
                         source=picture)
    result = np.asarray(finish_result(edited, picture, None, picture.size)).astype(np.float32)
    rows = []
    for i, a in enumerate(alphas):
        band = slice(i * 10, (i + 1) * 10)
        over_black = np.abs(result[band, :, :3] - pixels[band, :, :3].astype(np.float32)) * a / 255
        rows.append({"alpha": a, "error_over_black": round(float(over_black.mean()), 2)})
    return rows


def seams(base, tuned, source, prompt: str) -> list[dict]:
    rows = []
    f = base.vae_scale_factor
    for w, h in ((256, 64), (200, 136)):
        tiles = plan_strategy(base, w, h, SamplingSettings(strategy="tiled")).tiles
        edges = sorted({x * f for (_, x, _, _) in tiles if x > 0} | {(x + tw) * f for (_, x, _, tw) in tiles
                                                                     if (x + tw) * f < w})
        for strategy in ("single", "tiled"):
            image = np.asarray(sample_edit(base, tuned, prompt, w, h, SamplingSettings(steps=20, strength=1.0, seed=2,
                               strategy=strategy), source=source), np.float32)
            step = np.abs(np.diff(image, axis=1)).mean(axis=(0, 2))
            at = float(np.mean([step[x - 1] for x in edges]))
            near = float(np.mean([step[x - 1 + o] for x in edges for o in (-6, -3, 3, 6) if 0 <= x - 1 + o < len(step)]))
            rows.append({"size": [w, h], "strategy": strategy, "size_out": list(image.shape[1::-1]),
                         "step_at_tile_edges": round(at, 2), "step_beside": round(near, 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finetune-steps", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    base = load_base_model(None, device="cpu")
    source, info = load_asset("dotted_star")
    prompt = info["edits"][0]["prompt"]
    tuned = finetune(base, source, f"picture of a sks {info['subject']}", FinetuneSettings(steps=args.finetune_steps,
                                                                                            patch=True))
    report = {"model": "demo", "source": "dotted_star", "prompt": prompt, "finetune_steps": args.finetune_steps,
              "strength": strength(base, tuned, source, prompt, 20), "count": count(base, tuned, source, prompt),
              "alpha": alpha(base, source, prompt), "seams": seams(base, tuned, source, prompt)}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
