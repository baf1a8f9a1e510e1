"""`sine edit`: fine-tune on one image (or reuse saved weights) and write the edited PNG."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import SineError
from ..preflight import check_edit_inputs, float_in, int_in
from ..shapes_check import DEMO_MODEL_NOTE, looks_like_shapes_world


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("edit", help="edit one image with a text prompt (SINE)",
                       description="Fine-tune on SOURCE, then sample the edit with SINE's model-based guidance.")
    p.add_argument("source", help="the image to edit (PNG, JPEG, ...)")
    p.add_argument("--prompt", required=True, help='what the result should show, e.g. "a dog wearing a red hat"')
    p.add_argument("--subject", default="", help='what the picture shows, e.g. "dog"')
    p.add_argument("--style", choices=("photo", "painting"), default="photo")
    p.add_argument("--model", default=None, help="diffusers folder or hub id (default: the bundled demo model)")
    p.add_argument("--method", choices=("lora", "full"), default="lora", help="fine-tuning recipe")
    p.add_argument("--finetune-steps", type=int_in(1, 100_000), default=None, help="default: the recipe's")
    p.add_argument("--lr", type=float_in(0.0, 1.0, low_open=True), default=None, help="fine-tuning learning rate (default: the recipe's)")
    p.add_argument("--patch", action=argparse.BooleanOptionalAction, default=True,
                   help="patch-based fine-tuning with positional embedding (any output size)")
    p.add_argument("--steps", type=int_in(1, 1000), default=100, help="DDIM sampling steps")
    p.add_argument("--guidance", type=float_in(0.0, 100.0), default=7.5, help="classifier-free guidance scale w")
    p.add_argument("--v", type=float_in(0.0, 1.0), default=0.7, help="weight of the pre-trained model while t ≥ K")
    p.add_argument("--k", type=int_in(0, 1000), default=400, help="timestep below which only the pre-trained model guides")
    p.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0)
    p.add_argument("--width", type=int, default=None, help="output width (default: the source's)")
    p.add_argument("--height", type=int, default=None, help="output height (default: the source's)")
    p.add_argument("--strategy", choices=("auto", "single", "tiled", "upscale", "refine"), default="auto",
                   help="how to render canvases larger than the working size")
    p.add_argument("--refine-strength", type=float_in(0.0, 1.0, low_open=True), default=0.5,
                   help="refine: share of the steps re-run at full size (0..1]")
    p.add_argument("--mask", default=None, help="selection mask image (white = edit); outside stays untouched")
    p.add_argument("--weights", default=None, help="folder for the fine-tuned weights: reused when present")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--dtype", default=None, choices=("fp32", "bf16", "fp16"), help="default: auto")
    p.add_argument("--out", required=True, help="output PNG")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except SineError as exc:
        print(f"sine edit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sine edit: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    inputs = check_edit_inputs(args)  # before torch: a wrong input answers in about a second
    source, mask, width, height = inputs.source, inputs.mask, inputs.width, inputs.height
    if inputs.is_demo_model and not looks_like_shapes_world(source):
        print(DEMO_MODEL_NOTE, file=sys.stderr)

    from PIL import Image
    from tqdm import tqdm

    from ..compositing import composite_under_mask
    from ..finetune import FineTuned, FinetuneSettings, finetune
    from ..images import with_source_alpha
    from ..models import load_base_model
    from ..prompts import source_prompt
    from ..sampler import SamplingSettings, sample_edit

    t0 = time.perf_counter()
    base = load_base_model(args.model, device=args.device, dtype=args.dtype)
    prompt_src = source_prompt(args.subject, args.style)
    settings = FinetuneSettings(method=args.method, steps=args.finetune_steps, patch=args.patch, style=args.style,
                                lr=args.lr, seed=args.seed)
    weights = Path(args.weights) if args.weights else None
    if weights is not None and (weights / "finetune.json").exists():
        model = FineTuned.load(weights, base)
        print(f"reusing fine-tuned weights from {weights}", file=sys.stderr)
    else:
        with tqdm(total=settings.resolved(base.recipes).steps, desc="fine-tuning", unit="step") as bar:
            def on_train(step: int, total: int, loss: float) -> None:
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{loss:.4f}")
            model = finetune(base, source, prompt_src, settings, progress=on_train)
        if weights is not None:
            model.save(weights)
    sampling = SamplingSettings(steps=args.steps, guidance=args.guidance, v=args.v, k=args.k, seed=args.seed,
                                strategy=args.strategy, refine_strength=args.refine_strength)
    with tqdm(total=args.steps, desc="sampling", unit="step") as bar:

        def advance(step: int, total: int, preview: object) -> None:
            bar.total = total  # `refine` adds a second pass
            bar.update(step - bar.n)

        image = sample_edit(base, model, args.prompt, width, height, sampling, progress=advance)
    result = with_source_alpha(image, source)
    if mask is not None:
        resized = source.resize((width, height), Image.Resampling.BICUBIC) \
            if source.size != (width, height) else source
        result = composite_under_mask(resized, result, mask.resize((width, height)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.save(out)
    print(f"wrote {out} ({width}×{height}) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
