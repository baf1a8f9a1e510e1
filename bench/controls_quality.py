"""The painter's controls on the shapes-world demo model: strength (noise / inversion start) and style
from a second picture, scored like bench/quality.py.

Strength mode: every source is fine-tuned once (`lora_pe`, the daemon's default recipe); each edit ×
seed is sampled at 64×64 by SINE at each strength from noise and from the inversion, plus the
pre-trained model alone (plain CFG, strength 1 and, for SDEdit without fine-tuning, `--pretrained-strengths`).
  edit       - the edited object (or the background) shows the asked colour (quality.judge_edit)
  psnr/ssim  - the regions the prompt must not touch, against the source
Multi-model mode (`--style-weights`): content from source A (its fine-tune, β₁ = content weight), style
from source B (the next source in the list, β₂ = style weight), the prompt A's subject alone ("a star"),
no colour words, at `--style-strength` (default: the painter's default, from A's noised picture). Metric, from the scenes' ground truth:
  style_share  - share of the result's pixels whose nearest named colour is in B's palette but not A's
                 (a palette = the named colours covering ≥ 3 % of a source)
  layout_iou   - IoU of A's object mask with the result's foreground (pixels whose colour differs from
                 the majority colour of A's background region): A's layout kept
β₂ = 0 is SINE with A alone (the control); B's palette has to come from B's model.

    python bench/controls_quality.py --names dotted_star checkered_circle --seeds 0 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for sub in ("backend", "bench"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

from quality import FINETUNES, judge_edit  # noqa: E402

from sine.finetune import FineTuned, finetune  # noqa: E402
from sine.models import DEMO_MODEL_DIR, load_base_model  # noqa: E402
from sine.noise_prediction import content_and_style_guides  # noqa: E402
from sine.prompts import source_prompt  # noqa: E402
from sine.sampler import SamplingSettings, sample_edit  # noqa: E402
from sine.shapes.metrics import color_labels  # noqa: E402
from sine.shapes.sources import Source, benchmark_sources  # noqa: E402
from sine_protocol.defaults import STRENGTH  # noqa: E402


@dataclass
class Row:
    method: str  # sine | pretrained
    start: str
    strength: float
    source: str
    prompt: str
    seed: int
    target: str
    success: bool
    psnr: float
    ssim: float


@dataclass
class StyleRow:
    content: str
    style: str
    style_weight: float
    seed: int
    style_share: float
    layout_iou: float


def palette(image) -> set[int]:
    labels = color_labels(image)
    counts = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1) / labels.size
    return {i for i, c in enumerate(counts) if c >= 0.03}


def judge_style(image, content: Source, style: Source) -> tuple[float, float]:
    """(style_share, layout_iou) of one result: B's palette in A's layout."""
    a_img, a_masks = content.scene.render()
    b_img = style.scene.render()[0]
    only_b = palette(b_img) - palette(a_img)
    labels = color_labels(image)
    share = float(np.isin(labels, list(only_b)).mean()) if only_b else 0.0
    obj = a_masks.union()
    background = int(np.bincount(labels[~obj]).argmax())  # the result's colour where A has its background
    fg = labels != background
    iou = float((fg & obj).sum() / max(1, (fg | obj).sum()))
    return share, iou


def run(args: argparse.Namespace, log=print) -> dict:
    base = load_base_model(args.model, device=args.device)
    sources = benchmark_sources()
    if args.names:
        sources = [s for s in sources if s.name in args.names]
    rows: list[Row] = []
    style_rows: list[StyleRow] = []
    tuned: dict[str, FineTuned] = {}
    timings: dict[str, float] = {}

    def clock(name: str, t0: float) -> None:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0

    for src in sources:
        image = src.scene.render()[0]
        t0 = time.perf_counter()
        kept = Path(args.keep) / f"{src.name}-{args.finetune}-{args.finetune_steps}" if args.keep else None
        if kept is not None and (kept / "finetune.json").exists():
            tuned[src.name] = FineTuned.load(kept, base)
        else:
            settings = replace(FINETUNES[args.finetune], steps=args.finetune_steps)
            tuned[src.name] = finetune(base, image, source_prompt(src.subject, "photo"), settings)
            clock("finetune", t0)
            if kept is not None:
                tuned[src.name].save(kept)
        log(f"{src.name}: fine-tuned (or loaded) in {time.perf_counter() - t0:.1f} s")
        configs = [("sine", start, s) for start in args.starts for s in args.strengths]
        configs += [("pretrained", "noise", s) for s in args.pretrained_strengths]
        for method, start, strength in configs:
            t0 = time.perf_counter()
            model = tuned[src.name] if method == "sine" else None
            for edit in src.edits[: args.edits]:
                for seed in args.seeds:
                    s = SamplingSettings(steps=args.steps, seed=seed, strength=strength, start=start)
                    out = sample_edit(base, model, edit.prompt, 64, 64, s, source=image)
                    ok, p, q = judge_edit(out, src, edit)
                    rows.append(Row(method, start, strength, src.name, edit.prompt, seed, edit.target, ok, p, q))
            clock(f"{method}_{start}_{strength}", t0)
        log(f"{src.name}: {len(rows)} strength rows so far")
    if args.style_weights:
        for i, content in enumerate(sources):
            style = sources[(i + 1) % len(sources)]
            if style is content:
                continue
            for weight in args.style_weights:
                t0 = time.perf_counter()
                s = SamplingSettings(steps=args.steps)
                guides = content_and_style_guides(tuned[content.name], tuned[style.name], s,
                                                  style_weight=weight) if weight > 0 else tuned[content.name]
                for seed in args.seeds:  # strength < 1 starts from A's own picture, noised; 1: from pure noise
                    out = sample_edit(base, guides, f"a {content.subject}", 64, 64, SamplingSettings(
                        steps=args.steps, seed=seed, strength=args.style_strength), source=content.scene.render()[0])
                    share, iou = judge_style(out, content, style)
                    style_rows.append(StyleRow(content.name, style.name, weight, seed, share, iou))
                clock(f"style_{weight}", t0)
            log(f"{content.name} + style of {style.name}: done")
    return {"args": {k: v for k, v in vars(args).items() if k != "json"}, "summary": summarize(rows),
            "style_summary": summarize_style(style_rows), "timings_s": timings,
            "rows": [asdict(r) for r in rows], "style_rows": [asdict(r) for r in style_rows]}


def summarize(rows: list[Row]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in dict.fromkeys((r.method, r.start, r.strength) for r in rows):
        sel = [r for r in rows if (r.method, r.start, r.strength) == key]
        out[f"{key[0]} {key[1]} {key[2]:.2f}"] = {
            "edit_success": float(np.mean([r.success for r in sel])),
            "psnr": float(np.mean([r.psnr for r in sel])),
            "ssim": float(np.mean([r.ssim for r in sel])),
            "n": len(sel),
        }
    return out


def summarize_style(rows: list[StyleRow]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for weight in dict.fromkeys(r.style_weight for r in rows):
        sel = [r for r in rows if r.style_weight == weight]
        out[f"style_weight {weight:.2f}"] = {"style_share": float(np.mean([r.style_share for r in sel])),
                                             "layout_iou": float(np.mean([r.layout_iou for r in sel])),
                                             "n": len(sel)}
    return out


def table(summary: dict[str, dict[str, float]]) -> str:
    cols = sorted({c for entry in summary.values() for c in entry if c != "n"}) + ["n"]
    lines = [f"{'config':<24}" + "".join(f"{c:>14}" for c in cols)]
    for name, entry in summary.items():
        lines.append(f"{name:<24}" + "".join(f"{entry.get(c, float('nan')):>14.3f}" for c in cols))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="strength / inversion / multi-model on the demo model")
    p.add_argument("--model", default=str(DEMO_MODEL_DIR))
    p.add_argument("--names", nargs="+", default=None, help="sources by name (default: all eight)")
    p.add_argument("--edits", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--finetune", default="lora_pe", choices=tuple(FINETUNES))
    p.add_argument("--finetune-steps", type=int, default=None, help="default: the demo model's recipe")
    p.add_argument("--keep", default=None, help="folder: fine-tunes are saved here and reused by later runs")
    p.add_argument("--strengths", type=float, nargs="*", default=[0.4, 0.6, 0.8, 1.0])
    p.add_argument("--starts", nargs="+", default=["noise", "inversion"], choices=("noise", "inversion"))
    p.add_argument("--pretrained-strengths", type=float, nargs="*", default=[1.0])
    p.add_argument("--style-weights", type=float, nargs="*", default=[])
    p.add_argument("--style-strength", type=float, default=STRENGTH,
                   help="strength of the multi-model samples (default: the painter's default; 1: from pure noise)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    result = run(args, log=lambda m: print(m, file=sys.stderr, flush=True))
    result["total_s"] = time.perf_counter() - t0
    print(table(result["summary"]))
    if result["style_summary"]:
        print(table(result["style_summary"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
