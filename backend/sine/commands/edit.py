"""`sine edit`: fine-tune on one image (or reuse saved weights) and write the edited PNG."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sine_protocol import defaults
from sine_protocol.messages import INVISIBLE_PROMPT, says_something

from ..argparsing import user_path
from ..errors import BadInput, SineError, printable
from ..images import load_image, picture_notes
from ..output_files import check_weights_folder, plan_outputs, save_finetune_whole, write_image
from ..preflight import check_edit_inputs, check_text, check_visible, float_in, int_in
from ..quality import (
    CPU_STEPS,
    CPU_STRATEGY,
    QUALITIES,
    STEPS,
    STRATEGY,
    QualityChoice,
    choose,
    describe_fast,
)
from ..shapes_check import DEMO_MODEL_NOTE, looks_like_shapes_world

STARTED = time.perf_counter()  # this module loads as `sine` starts: the estimate's total counts from here


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("edit", help="edit one image with a text prompt (SINE)",
                       description="Fine-tune on SOURCE, then sample the edit with SINE's model-based guidance.")
    p.add_argument("source", type=user_path, help="the image to edit (PNG, JPEG, ...)")
    p.add_argument("--prompt", required=True, help='what the result should show, e.g. "a dog wearing a red hat"')
    p.add_argument("--subject", default="", help='what the picture shows, e.g. "dog"')
    p.add_argument("--style", choices=defaults.STYLES, default=defaults.STYLE)
    p.add_argument("--model", type=user_path, default=None, help="diffusers folder, .safetensors/.ckpt file or hub id (SD1/SD2/SDXL; default: the bundled demo model)")
    p.add_argument("--method", choices=defaults.FINETUNE_METHODS, default=defaults.METHOD, help="fine-tuning recipe")
    p.add_argument("--finetune-steps", type=int_in(1, 100_000), default=None, help="default: the recipe's")
    p.add_argument("--lr", type=float_in(0.0, 1.0, low_open=True), default=None, help="fine-tuning learning rate (default: the recipe's)")
    p.add_argument("--patch", action=argparse.BooleanOptionalAction, default=None,
                   help="patch-based fine-tuning with positional embedding (any output size; default: on, "
                        "off in the fast CPU settings, which draw one latent)")
    p.add_argument("--steps", type=int_in(*defaults.STEPS_RANGE), default=None,
                   help=f"DDIM sampling steps (default: {STEPS}; {CPU_STEPS} in the fast CPU settings)")
    p.add_argument("--guidance", type=float_in(*defaults.GUIDANCE_RANGE), default=defaults.GUIDANCE,
                   help="classifier-free guidance scale w")
    p.add_argument("--v", type=float_in(*defaults.V_RANGE), default=defaults.V,
                   help="weight of the pre-trained model while t ≥ K")
    p.add_argument("--k", type=int_in(*defaults.K_RANGE), default=defaults.K,
                   help="timestep below which only the pre-trained model guides (of 1000: the same share of a model trained with other than 1000 timesteps)")
    p.add_argument("--seed", type=int_in(0, defaults.SEED_COUNT - 1), default=defaults.SEED,
                   help="start noise of the first result (0..4294967295, as the daemon takes)")
    p.add_argument("--width", type=int, default=None,
                   help="output width (default: the source's; with --height alone, the source's aspect ratio)")
    p.add_argument("--height", type=int, default=None,
                   help="output height (default: the source's; with --width alone, the source's aspect ratio)")
    p.add_argument("--strategy", choices=("auto", "single", "tiled", "upscale", "refine"), default=None,
                   help=f"how to render canvases larger than the working size (default: {STRATEGY}; "
                        f"{CPU_STRATEGY} in the fast CPU settings)")
    p.add_argument("--quality", choices=QUALITIES, default="auto",
                   help="full: the full recipe; fast: settings sized for a CPU (a couple of minutes for a "
                        "512-px picture with the demo model); auto (default): fast on a CPU, full on a GPU")
    p.add_argument("--refine-strength", type=float_in(0.0, 1.0, low_open=True), default=0.5,
                   help="refine: share of the steps re-run at full size (0..1]")
    p.add_argument("--strength", type=float_in(0.0, 1.0, low_open=True), default=None,
                   help="how much to change: the share of the steps run from the source noised to that level "
                        f"(1 = from pure noise, SINE as published; default: {defaults.STRENGTH:g})")
    p.add_argument("--start", choices=defaults.START_MODES, default=None,
                   help="strength < 1 starts from random noise over the source, or from the source's own noise "
                        "(DDIM inversion with the fine-tuned model; one result)")
    p.add_argument("--count", type=int_in(1, defaults.MAX_COUNT), default=1,
                   help="several results (seeds SEED, SEED+1, ...): OUT becomes OUT-1.png ... OUT-N.png")
    p.add_argument("--style-from", type=user_path, default=None, metavar="IMAGE",
                   help="a second picture whose look the edit takes (multi-model guidance; fine-tuned too)")
    p.add_argument("--style-subject", default="", help="what the style picture shows")
    p.add_argument("--style-weight", type=float_in(0.0, 1.0), default=None,
                   help="β of the style model (default: the engine's)")
    p.add_argument("--content-weight", type=float_in(0.0, 1.0), default=None,
                   help="β of the source's model with --style-from (default: 1 - v)")
    p.add_argument("--mask", type=user_path, default=None, help="selection mask image (white = edit); outside stays untouched")
    p.add_argument("--weights", type=user_path, default=None, help="folder for the fine-tuned weights: reused when present")
    p.add_argument("--style-weights", type=user_path, default=None, metavar="DIR",
                   help="folder for the style picture's fine-tuned weights (with --style-from): reused when present")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--dtype", default=None, choices=("fp32", "bf16", "fp16"), help="default: auto")
    p.add_argument("--out", type=user_path, required=True,
                   help="output picture (.png; also .webp, .tif, .jpg); never one of the inputs")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (default: refuse)")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except SineError as exc:
        print(f"sine edit: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sine edit: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if not args.prompt.strip():  # as the daemon: an empty prompt asks for nothing
        raise BadInput("--prompt must not be empty: say what the result should show")
    if not says_something(args.prompt):
        raise BadInput(f"--prompt {INVISIBLE_PROMPT}")
    for flag in ("prompt", "subject", "style_subject"):
        check_text(getattr(args, flag), f"--{flag.replace('_', '-')}")
    inputs = check_edit_inputs(args)  # before torch: a wrong input answers in about a second
    source, mask, width, height = inputs.source, inputs.mask, inputs.width, inputs.height
    for note in inputs.notes:
        print(printable(note), file=sys.stderr)
    if inputs.is_demo_model and not looks_like_shapes_world(source):
        print(DEMO_MODEL_NOTE, file=sys.stderr)
    if args.start == "inversion" and args.count > 1:
        raise BadInput("--start inversion is deterministic (every seed gives the same picture): use --count 1")
    if (args.style_weight is not None or args.content_weight is not None) and not args.style_from:
        raise BadInput("--style-weight and --content-weight need --style-from IMAGE")
    if args.style_from:  # checked here, not after both fine-tunes
        try:
            defaults.multi_model_weights(args.v, args.content_weight, args.style_weight)
        except ValueError as exc:
            raise BadInput(f"--content-weight/--style-weight/--v: {exc}") from None
    if args.style_weights and not args.style_from:
        raise BadInput("--style-weights needs --style-from IMAGE")
    if args.style_weights and args.weights and Path(args.style_weights).resolve() == Path(args.weights).resolve():
        raise BadInput("--style-weights must be another folder than --weights (one fine-tune per folder)")
    style_image = load_image(args.style_from) if args.style_from else None
    if style_image is not None:
        check_visible(style_image, args.style_from)
        for note in picture_notes(style_image, args.style_from):
            print(printable(note), file=sys.stderr)
    inputs = [Path(name).expanduser() for name in (args.source, args.mask, args.style_from) if name]
    plan = plan_outputs(args.out, args.count, args.overwrite, inputs)  # before the work, not after an hour
    check_weights_folder(args.weights, "--weights")
    check_weights_folder(args.style_weights, "--style-weights")

    from PIL import Image

    from ..compositing import finish_result
    from ..devices import describe_device
    from ..estimate import (
        describe,
        estimate,
        format_duration,
        observed_rates,
        rates_for,
        remember_rates,
        sampling_work,
    )
    from ..finetune import FineTuned, FinetuneSettings, finetune
    from ..job_notes import job_prompts
    from ..large_canvas import default_working_size
    from ..models import load_base_model
    from ..noise_prediction import content_and_style_guides, style_model_used
    from ..prompts import source_prompt
    from ..sampler import SamplingSettings, sample_edits, sample_steps
    from .progress_bars import progress_bar

    base = load_base_model(args.model, device=args.device, dtype=args.dtype)
    prompt_src = source_prompt(args.subject, args.style)
    style_subject = args.style_subject if style_image is not None else None
    base.warn_cut(job_prompts(args.prompt, args.subject, args.style, style_subject))  # before the fine-tune, not after
    controls = {name: getattr(args, name) for name in ("strength", "start") if getattr(args, name) is not None}

    def settings_for(quality: str) -> tuple[QualityChoice, FinetuneSettings, SamplingSettings]:
        choice = choose(quality, base.device.type, args.steps, args.strategy, args.patch)
        finetune_settings = FinetuneSettings(method=args.method, steps=args.finetune_steps, patch=choice.patch,
                                             style=args.style, lr=args.lr).resolved(base.recipes)
        sampling_settings = SamplingSettings(steps=choice.steps, guidance=args.guidance, v=args.v, k=args.k,
                                             seed=args.seed, strategy=choice.strategy,
                                             refine_strength=args.refine_strength, **controls)
        return choice, finetune_settings, sampling_settings

    choice, settings, sampling = settings_for(args.quality)
    weighted = style_image is not None  # multi-model guidance's weights, even with the style model left out
    if weighted and not style_model_used(sampling.v, args.content_weight, args.style_weight):
        style_image = None  # style weight 0: the same pixels without the style picture's fine-tune
    weights = Path(args.weights) if args.weights else None
    style_weights = Path(args.style_weights) if args.style_weights else None
    reuse, style_reuse = saved_finetune(weights), saved_finetune(style_weights)
    rates = rates_for(base, settings, log=lambda msg: print(msg, file=sys.stderr))

    def finetune_steps(steps: int) -> int:
        """Fine-tune steps still to run: the source's and the style picture's, unless saved."""
        return (0 if reuse else steps) + (steps if style_image is not None and not style_reuse else 0)

    ft_steps = finetune_steps(int(settings.steps))
    work = sampling_work(base, width, height, sampling, ft_steps, count=args.count)
    expected = estimate(rates, work)
    so_far = time.perf_counter() - STARTED
    print(f"{describe(expected, work, so_far)} on {describe_device(base.device)}", file=sys.stderr)
    if choice.quality == "fast":
        _, full_settings, full_sampling = settings_for("full")
        full_steps = finetune_steps(int(full_settings.steps))
        full = estimate(rates, sampling_work(base, width, height, full_sampling, full_steps, count=args.count))
        print(describe_fast(choice, int(settings.steps), default_working_size(base),
                            format_duration(so_far + full.total_s)), file=sys.stderr)
    ft_marks: list[float] = []
    sample_marks: list[float] = []
    t_work = time.perf_counter()

    def fine_tuned(picture: Image.Image, prompt: str, folder: Path | None, what: str,
                   marks: list[float] | None = None) -> FineTuned:
        """The picture's fine-tune: loaded from `folder` when saved there, else trained (and saved there)."""
        if saved_finetune(folder):
            print(f"reusing fine-tuned {what}weights from {printable(str(folder))}", file=sys.stderr)
            return FineTuned.load(folder, base)
        with progress_bar(settings.steps, f"fine-tuning{' (style)' if what else ''}") as bar:
            def on_train(step: int, total: int, loss: float) -> None:
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if marks is not None:
                    marks.append(time.perf_counter())
            model = finetune(base, picture, prompt, settings, progress=on_train)
        if folder is not None:
            try:
                save_finetune_whole(folder, model.save)
            except Exception as exc:  # noqa: BLE001 - a full disk costs the saved weights, never the edit
                # (safetensors raises its own SafetensorError, not OSError)
                print(f"sine edit: warning: could not save the fine-tuned weights to {printable(str(folder))} "
                      f"({type(exc).__name__}: {printable(str(exc)[:120])}); the edit goes on", file=sys.stderr)
        return model

    model = fine_tuned(source, prompt_src, weights, "", ft_marks)
    guides = model
    if weighted:
        style_model = None if style_image is None else fine_tuned(
            style_image, source_prompt(args.style_subject, args.style), style_weights, "style ")
        guides = content_and_style_guides(model, style_model, sampling, content_weight=args.content_weight,
                                          style_weight=args.style_weight)
    t_sample = time.perf_counter()
    with progress_bar(sample_steps(base, width, height, sampling, args.count), "sampling") as bar:

        def advance(step: int, total: int, preview: object) -> None:
            bar.total = total  # the same total (sample_steps is what the sampler counts by)
            bar.update(step - bar.n)
            sample_marks.append(time.perf_counter())

        images = sample_edits(base, guides, args.prompt, width, height, sampling, count=args.count, source=source,
                              progress=advance)
    if style_image is None:  # the rates of a plain edit (a style model adds calls the count does not know)
        remember_rates(base, settings.method, observed_rates(rates, work, ft_marks, t_work, sample_marks, t_sample,
                                                             time.perf_counter()))
    for out, image, seed in zip(plan.paths, images, defaults.result_seeds(args.seed, args.count), strict=True):
        result = finish_result(image, source, mask, (width, height))  # as the daemon finishes it
        written = write_image(result, out, plan)
        note = f"; {printable(str(out))} appeared meanwhile and was kept" if written != out else ""
        # the seed: `--seed N --count 1` draws this result again (up to the batch's float rounding)
        print(f"wrote {printable(str(written))} ({width}×{height}, seed {seed}){note}", file=sys.stderr)
    now = time.perf_counter()
    print(f"done in {now - STARTED:.1f} s (estimate {so_far + expected.total_s:.1f} s: {so_far:.1f} s before it "
          f"+ {expected.total_s:.1f} s to go, which took {now - t_work:.1f} s)", file=sys.stderr)
    return 0


def saved_finetune(folder: Path | None) -> bool:
    """A `--weights`/`--style-weights` folder that already holds a fine-tune (reused, not trained again)."""
    return folder is not None and (folder / "finetune.json").exists()
