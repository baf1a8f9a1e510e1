"""SINE quality benchmark on the shapes-world demo model (docs/benchmarks.md).

Fixed, seeded eval set: sources with content the base model never saw × edit prompts × seeds.
Methods: the pre-trained model alone (plain CFG with the edit prompt), the fine-tuned model alone
(plain CFG on it, the edit prompt through its own text encoder), SINE without positional embedding
(fine-tuned on the whole image), SINE with PE (fine-tuned on patches), each with the `full` recipe
and with the `lora` recipe (`finetuned_lora`: the LoRA fine-tune with patches + PE alone).
Metrics, from the scene's ground-truth masks:
  edit     - the edited object (or the background) shows the asked colour
  psnr/ssim - the regions the prompt must not touch, against the source
  shape    - the shape-change edit ("a yellow square" for a yellow star; its own columns, left out of
             edit/psnr/ssim): the judge reads the asked shape where the object is; its psnr/ssim
             over what lies outside the old and the asked object
  dup      - at 2x width, more than one object of the edited colour (a duplication failure), in one
             latent (the paper's setting) and in tiles (what `auto` does above the working size).
             For the fine-tuned model alone (`finetuned`: patches + PE, `finetuned_nope`: whole image)
             the 2x sample is a reconstruction with the source prompt, the paper's own PE experiment:
             there it counts everything that stands out from the (plain) background against the
             scene's object count, whatever its colour
Prints a table and writes JSON.

    python bench/quality.py [--quick] [--json out.json] [--model DIR] [--threads N]
    python bench/quality.py --methods --wide-methods finetuned finetuned_nope   # the PE experiment alone
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "backend") not in sys.path:
    sys.path.insert(0, str(ROOT / "backend"))

from sine.finetune import FineTuned, FinetuneSettings, finetune  # noqa: E402
from sine.models import DEMO_MODEL_DIR, BaseModel, load_base_model  # noqa: E402
from sine.prompts import source_prompt  # noqa: E402
from sine.sampler import SamplingSettings, sample_edit  # noqa: E402
from sine.shapes.evaluate import judged_shape_at  # noqa: E402
from sine.shapes.metrics import count_foreground, count_objects, erode, majority_color, psnr, ssim  # noqa: E402
from sine.shapes.sources import Edit, Source, benchmark_sources  # noqa: E402
from sine_protocol.defaults import PAPER_STRENGTH  # noqa: E402

# How each method adapts (None: no fine-tuning) and samples. Step counts and learning rates are the
# demo model's own recipes (backend/sine/demo_model/sine_recipes.json).
FINETUNES = {
    "full_pe": FinetuneSettings(method="full", patch=True),
    "full_nope": FinetuneSettings(method="full", patch=False),
    "lora_pe": FinetuneSettings(method="lora", patch=True),
    "lora_nope": FinetuneSettings(method="lora", patch=False),
}
METHODS = {  # name → (fine-tune key, how to sample)
    "pretrained": (None, "pretrained"),
    "finetuned": ("full_pe", "finetuned_only"),
    "finetuned_nope": ("full_nope", "finetuned_only"),
    "finetuned_lora": ("lora_pe", "finetuned_only"),  # the LoRA recipe's fine-tune (patches + PE) alone
    "sine_nope": ("full_nope", "sine"),
    "sine_pe": ("full_pe", "sine"),
    "sine_lora_nope": ("lora_nope", "sine"),
    "sine_lora_pe": ("lora_pe", "sine"),
}
WIDE_METHODS = ("pretrained", "sine_nope", "sine_pe", "finetuned", "finetuned_nope")


@dataclass
class BenchConfig:
    sources: int = 8
    source_names: tuple[str, ...] = ()  # a subset by name (then `sources` is ignored)
    edits: int = 3
    reshape: bool = True  # also the shape-change edit (Source.reshape)
    seeds: tuple[int, ...] = (0, 1)
    wide_seeds: tuple[int, ...] = (0, 1)
    steps: int = 50
    guidance: float = 7.5
    v: float = 0.7
    k: int = 400
    methods: tuple[str, ...] = tuple(m for m in METHODS if m != "finetuned_nope")
    wide_methods: tuple[str, ...] = WIDE_METHODS
    wide_strategies: tuple[str, ...] = ("single", "tiled")
    finetune_overrides: dict = field(default_factory=dict)  # key → dict of FinetuneSettings fields


QUICK = BenchConfig(sources=3, edits=2, seeds=(0,), wide_seeds=(0,))


@dataclass
class EditResult:
    method: str
    source: str
    prompt: str
    seed: int
    target: str
    success: bool
    psnr: float
    ssim: float


@dataclass
class WideResult:
    method: str
    source: str
    seed: int
    strategy: str  # single latent or tiles
    objects: int  # edits: objects of the asked colour at 2x width; reconstructions: things on the background
    expected: int  # 1 for edits, the scene's object count for reconstructions
    duplicated: bool


def sampling(cfg: BenchConfig, how: str, seed: int, prompt: str, strategy: str = "auto") -> SamplingSettings:
    if how == "finetuned_only":
        # The fine-tuned model alone (DreamBooth-style): plain CFG on it, the edit prompt through its
        # own text encoder, its own unconditional score.
        return SamplingSettings(steps=cfg.steps, guidance=cfg.guidance, seed=seed, finetuned_prompt=prompt,
                                finetuned_only=True, strategy=strategy, strength=PAPER_STRENGTH)
    # the methods as published: from pure noise (bench/controls_quality.py measures other strengths)
    return SamplingSettings(steps=cfg.steps, guidance=cfg.guidance, v=cfg.v, k=cfg.k, seed=seed, strategy=strategy,
                            strength=PAPER_STRENGTH)


def judge_edit(image, src: Source, edit: Edit) -> tuple[bool, float, float]:
    """(edit success, PSNR, SSIM) of one 64x64 result against its source."""
    source_img, masks = src.scene.render()
    if edit.shape:  # the asked shape, drawn whole (at least half its area) where the object is
        asked = src.reshaped().render()[1].objects[edit.index]
        target = masks.objects[edit.index] | asked
        keep_in = erode(~target)
        drawn = judged_shape_at(image, src.scene, edit.index, target, min_pixels=int(asked.sum()) // 2)
        success = drawn == edit.shape
        return success, psnr(image, source_img, keep_in), ssim(image, source_img, keep_in)
    if edit.index is None:
        target, keep = masks.background, masks.union()
    else:
        target = masks.objects[edit.index]
        keep = ~target  # the background and the other objects
    target_in, keep_in = erode(target), erode(keep)
    success = majority_color(image, target_in) == edit.color
    return success, psnr(image, source_img, keep_in), ssim(image, source_img, keep_in)


def judge_wide(image, src: Source, edit: Edit) -> int:
    """Objects of the edited colour at 2x width (background edits: the first object's colour)."""
    index = edit.index if edit.index is not None else 0
    color = edit.color if edit.index is not None else src.scene.objects[index].color
    expected_area = src.scene.render(image.width, image.height)[1].objects[index].sum()
    return count_objects(image, color, min_pixels=max(8, int(0.25 * expected_area)))


def judge_reconstruction(image, src: Source) -> int:
    """Things standing out from the plain background of a 2x-width reconstruction, any colour."""
    masks = src.scene.render(image.width, image.height)[1]
    smallest = min(int(m.sum()) for m in masks.objects)
    return count_foreground(image, src.scene.background.colors[0], min_pixels=max(8, int(0.25 * smallest)))


def run_benchmark(cfg: BenchConfig, base: BaseModel, log: Callable[[str], None] = print) -> dict:
    sources = benchmark_sources()
    unknown = sorted(set(cfg.source_names) - {s.name for s in sources})
    if unknown:  # a typo would silently measure fewer sources
        raise SystemExit(f"unknown source name(s) {unknown}; the sources are {[s.name for s in sources]}")
    sources = [s for s in sources if s.name in cfg.source_names] if cfg.source_names else sources[: cfg.sources]
    edits: list[EditResult] = []
    wides: list[WideResult] = []
    timings: dict[str, float] = {}
    needed = {METHODS[m][0] for m in (*cfg.methods, *cfg.wide_methods)} - {None}
    for src in sources:
        image = src.scene.render()[0]
        prompt = source_prompt(src.subject, "photo")
        tuned: dict[str, FineTuned] = {}
        for key in sorted(needed):
            settings = FINETUNES[key]
            if key in cfg.finetune_overrides:
                settings = FinetuneSettings(**{**asdict(settings), **cfg.finetune_overrides[key]})
            t0 = time.perf_counter()
            tuned[key] = finetune(base, image, prompt, settings)
            timings[f"finetune_{key}"] = timings.get(f"finetune_{key}", 0.0) + time.perf_counter() - t0
            log(f"{src.name}: fine-tuned {key} in {time.perf_counter() - t0:.1f} s")
        for method in cfg.methods:
            key, how = METHODS[method]
            model = tuned.get(key) if key else None
            t0 = time.perf_counter()
            for edit in (*src.edits[: cfg.edits], *([src.reshape] if cfg.reshape else [])):
                for seed in cfg.seeds:
                    out = sample_edit(base, model, edit.prompt, 64, 64, sampling(cfg, how, seed, edit.prompt))
                    ok, p, s = judge_edit(out, src, edit)
                    edits.append(EditResult(method, src.name, edit.prompt, seed, edit.target, ok, p, s))
            timings[f"sample_{method}"] = timings.get(f"sample_{method}", 0.0) + time.perf_counter() - t0
            log(f"{src.name}: {method} sampled")
        for method in cfg.wide_methods:
            key, how = METHODS[method]
            model = tuned.get(key) if key else None
            reconstruct = how == "finetuned_only"
            if reconstruct and src.scene.background.kind != "plain":
                continue  # "stands out from the background" needs a plain one
            text = prompt if reconstruct else src.edits[0].prompt
            expected = len(src.scene.objects) if reconstruct else 1
            for strategy in cfg.wide_strategies:
                for seed in cfg.wide_seeds:
                    out = sample_edit(base, model, text, 128, 64, sampling(cfg, how, seed, text, strategy))
                    n = judge_reconstruction(out, src) if reconstruct else judge_wide(out, src, src.edits[0])
                    wides.append(WideResult(method, src.name, seed, strategy, n, expected, n > expected))
        log(f"{src.name}: done ({len(edits)} edits, {len(wides)} wide samples so far)")
    return {"config": asdict(cfg), "summary": summarize(edits, wides), "timings_s": timings,
            "edits": [asdict(e) for e in edits], "wide": [asdict(w) for w in wides]}


def summarize(edits: list[EditResult], wides: list[WideResult]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys([e.method for e in edits] + [w.method for w in wides]):
        rows = [e for e in edits if e.method == method]
        wide = [w for w in wides if w.method == method]
        entry = _means([e for e in rows if e.target != "shape"], ("edit_success", "psnr", "ssim", "n"))
        entry.update(_means([e for e in rows if e.target == "shape"],
                            ("shape_success", "shape_psnr", "shape_ssim", "n_shape")))
        for strategy in dict.fromkeys(w.strategy for w in wide):
            sel = [w for w in wide if w.strategy == strategy]
            entry[f"dup_{strategy}"] = float(np.mean([w.duplicated for w in sel]))
            entry[f"missing_{strategy}"] = float(np.mean([w.objects < w.expected for w in sel]))
            entry[f"one_{strategy}"] = float(np.mean([w.objects == w.expected for w in sel]))
            entry["n_wide"] = len(sel)
        out[method] = entry
    return out


def _means(rows: list[EditResult], names: tuple[str, str, str, str]) -> dict[str, float]:
    """Success, PSNR and SSIM means and the count of `rows`, under `names` (nothing for no rows)."""
    if not rows:
        return {}
    success, p, s, n = names
    return {success: float(np.mean([e.success for e in rows])), p: float(np.mean([e.psnr for e in rows])),
            s: float(np.mean([e.ssim for e in rows])), n: len(rows)}


def table(summary: dict[str, dict[str, float]]) -> str:
    cols = ("edit_success", "psnr", "ssim", "shape_success", "dup_single", "missing_single", "dup_tiled", "missing_tiled")
    lines = [f"{'method':<16}" + "".join(f"{c:>16}" for c in cols)]
    for method, entry in summary.items():
        cells = "".join(f"{entry[c]:>16.3f}" if c in entry else f"{'-':>16}" for c in cols)
        lines.append(f"{method:<16}{cells}")
    return "\n".join(lines)


def parse_override(item: str, current: dict) -> dict:
    """'full_pe.steps=4500' -> {'full_pe': {**current['full_pe'], 'steps': 4500}} (JSON values, else text)."""
    target, _, value = item.partition("=")
    key, _, name = target.partition(".")
    if key not in FINETUNES or name not in {f.name for f in fields(FinetuneSettings)} or not value:
        raise SystemExit(f"--finetune wants KEY.FIELD=VALUE with KEY in {sorted(FINETUNES)}, got {item!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return {key: {**current.get(key, {}), name: parsed}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="SINE quality benchmark on the demo model")
    p.add_argument("--model", default=str(DEMO_MODEL_DIR))
    p.add_argument("--quick", action="store_true", help="3 sources x 2 edits x 1 seed")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default 50)")
    p.add_argument("--sources", type=int, default=None, help="only the first N sources")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="sampling seeds (default 0 1)")
    p.add_argument("--names", nargs="+", default=None, help="only these sources (by name)")
    p.add_argument("--methods", nargs="*", default=None, choices=tuple(METHODS), help="methods scored at 64x64")
    p.add_argument("--wide-methods", nargs="*", default=None, choices=tuple(METHODS), help="methods rendered at 2x")
    p.add_argument("--wide-strategies", nargs="+", default=None, choices=("single", "tiled"),
                   help="how the 2x renders are sampled (default: both)")
    p.add_argument("--finetune", action="append", default=[], metavar="KEY.FIELD=VALUE",
                   help=f"override one fine-tune setting, e.g. full_pe.steps=4500 (keys: {', '.join(FINETUNES)})")
    p.add_argument("--edits", type=int, default=None, help="recolour edits per source (default 3; 0: none)")
    p.add_argument("--no-reshape", action="store_true", help="leave out the shape-change edit")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = replace(QUICK) if args.quick else BenchConfig()
    if args.steps:
        cfg.steps = args.steps
    if args.sources:
        cfg.sources = args.sources
    if args.seeds:
        cfg.seeds = cfg.wide_seeds = tuple(args.seeds)
    if args.names:
        cfg.source_names = tuple(args.names)
    if args.methods is not None:
        cfg.methods = tuple(args.methods)
    if args.wide_methods is not None:
        cfg.wide_methods = tuple(args.wide_methods)
    if args.edits is not None:
        cfg.edits = args.edits
    if args.no_reshape:
        cfg.reshape = False
    if args.wide_strategies:
        cfg.wide_strategies = tuple(args.wide_strategies)
    for item in args.finetune:
        cfg.finetune_overrides = {**cfg.finetune_overrides, **parse_override(item, cfg.finetune_overrides)}
    base = load_base_model(args.model, device=args.device)
    t0 = time.perf_counter()
    result = run_benchmark(cfg, base, log=lambda m: print(m, file=sys.stderr, flush=True))
    result["total_s"] = time.perf_counter() - t0
    result["device"] = str(base.device)
    print(table(result["summary"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
