"""Edit speed as a painter sees it, and the sampler's overhead over its bare UNet calls.

For one model (`--model tiny | demo | sd15-random | PATH`, see bench/speed.py):
  adaptation  wall time of the recipe's default LoRA fine-tune (or --ft-steps), peak memory
  edits       warm wall time of a whole edit (sampling + VAE decode, the fine-tune already loaded) at each
              --edit SIZExSTEPS, default strategy, peak memory; time to the first preview (first step
              done and its preview decoded, from the start of sampling)
  overhead    guided sampling time per step (all steps with the fine-tuned model: k=0) ÷ the time of the
              same UNet calls made bare in a loop (the pre-trained UNet on the batch of 2, the fine-tuned one
              with its PE on the batch of 1), at --overhead-size; --overhead-rounds interleaved rounds, median
Prints lines and writes JSON.

    python bench/edit_speed.py --model demo --overhead-size 64 --edit 64x50 --ft-steps 20 --out x.json
    python bench/edit_speed.py --model sd15-random --device cuda --edit 512x100 512x50 1024x50 2048x50 4096x50
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for sub in ("backend", "shared", "bench"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

from speed import add_model_arguments, build_model, flat_source, peak_memory_mb, reset_peak, write_report  # noqa: E402

from sine.compiled import compile_wanted  # noqa: E402
from sine.finetune import FinetuneSettings, finetune  # noqa: E402
from sine.positional import region_embedding  # noqa: E402
from sine.sampler import SamplingSettings, sample_edit  # noqa: E402

PROMPT = "picture of a sks dog"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def overhead(base, ft, size: int, steps: int, rounds: int = 3) -> dict:
    """Guided per-step time over bare per-step time, in `rounds` interleaved rounds (guided sampling, then
    the same calls bare): the median round's ratio, so a change in a shared machine's load between the
    two halves moves one round, not the figure."""
    dev = base.device
    settings = SamplingSettings(steps=steps, k=0, strategy="single", strength=1.0)  # every step, from noise
    sync(dev)
    t0 = time.perf_counter()
    # warm-up: the process's first sampling, so with $SINE_COMPILE=1 this is where the compile is paid
    sample_edit(base, ft, "a cat", size, size, settings)
    sync(dev)
    first_sampling = time.perf_counter() - t0

    lat = size // base.vae_scale_factor
    z = torch.randn(1, base.unet.config.in_channels, lat, lat, device=dev, dtype=base.dtype)
    states = base.encode_prompts(["", "a cat"])
    ft_states = ft.encode_source()
    pe = None
    if ft.pe_table is not None:
        pe = region_embedding(ft.pe_table, (lat, lat), (0, 0), (lat, lat), ft.pe_mode)[None]
    t2, t1 = torch.full((2,), 500, device=dev), torch.full((1,), 500, device=dev)

    def bare_step() -> None:
        base.unet(torch.cat([z, z]), t2, states).sample.float()
        with ft.hook.using(pe):
            ft.unet(z.to(ft.unet.dtype), t1, ft_states).sample.float()

    def guided_round() -> float:
        stamps: list[float] = []

        def on_step(*_a: object) -> None:
            sync(dev)
            stamps.append(time.perf_counter())

        sample_edit(base, ft, "a cat", size, size, settings, progress=on_step)
        return (stamps[-1] - stamps[0]) / (len(stamps) - 1)

    def bare_round() -> float:
        with torch.inference_mode():
            bare_step()
            sync(dev)
            t0 = time.perf_counter()
            for _ in range(steps - 1):
                bare_step()
            sync(dev)
        return (time.perf_counter() - t0) / (steps - 1)

    pairs = [(guided_round(), bare_round()) for _ in range(max(1, rounds))]
    ratios = sorted(g / b for g, b in pairs)
    guided, bare = pairs[[g / b for g, b in pairs].index(ratios[len(ratios) // 2])]
    return {"size": size, "steps_timed": steps - 1, "rounds": len(pairs), "guided_s_per_step": guided,
            "bare_s_per_step": bare, "ratio": ratios[len(ratios) // 2], "round_ratios": [g / b for g, b in pairs],
            "first_sampling_s": first_sampling}


def warm_edit(base, ft, size: int, steps: int) -> dict:
    dev = base.device
    first: list[float] = []

    def on_step(done: int, total: int, preview) -> None:
        if not first:
            preview()  # what the daemon sends: the first step's clean-image estimate, decoded small
            sync(dev)
            first.append(time.perf_counter())

    settings = SamplingSettings(steps=steps, strength=1.0)  # every step, from noise
    sync(dev)
    t0 = time.perf_counter()
    # warm (kernels, allocator; with $SINE_COMPILE=1 a new size's compile and graph capture): its cost is reported
    sample_edit(base, ft, "a cat", size, size, SamplingSettings(steps=2, strength=1.0))
    sync(dev)
    first_call = time.perf_counter() - t0
    reset_peak(dev)
    sync(dev)
    t0 = time.perf_counter()
    sample_edit(base, ft, "a cat", size, size, settings, progress=on_step)
    sync(dev)
    wall = time.perf_counter() - t0
    return {"size": size, "steps": steps, "wall_s": wall, "first_preview_s": first[0] - t0,
            "peak_mb": peak_memory_mb(dev), "warmup_2_steps_s": first_call}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--ft-steps", type=int, default=None, help="default: the model's LoRA recipe")
    p.add_argument("--edit", nargs="*", default=["512x100", "512x50"], help="SIZExSTEPS warm edits")
    p.add_argument("--overhead-size", type=int, default=None, help="default: the model's own size")
    p.add_argument("--overhead-steps", type=int, default=12)
    p.add_argument("--overhead-rounds", type=int, default=3, help="interleaved guided/bare rounds; the median counts")
    p.add_argument("--out", default="bench/results/edit_speed.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = build_model(args.model, args.device, args.dtype, Path(tmp))
        image = flat_source(base)
        settings = FinetuneSettings(steps=args.ft_steps)
        reset_peak(base.device)
        sync(base.device)
        t0 = time.perf_counter()
        ft = finetune(base, image, PROMPT, settings)
        sync(base.device)
        adaptation = {"steps": settings.resolved(base.recipes).steps, "wall_s": time.perf_counter() - t0,
                      "peak_mb": peak_memory_mb(base.device)}
        print(f"adaptation: {adaptation['steps']} steps in {adaptation['wall_s']:.1f} s "
              f"(peak {adaptation['peak_mb']:.0f} MB)", flush=True)
        ratio = overhead(base, ft, args.overhead_size or base.sample_size, args.overhead_steps, args.overhead_rounds)
        rounds = ", ".join(f"{r:.3f}" for r in ratio["round_ratios"])
        print(f"overhead at {ratio['size']}²: guided {ratio['guided_s_per_step'] * 1e3:.1f} ms/step, bare "
              f"{ratio['bare_s_per_step'] * 1e3:.1f} ms/step, ratio {ratio['ratio']:.3f} (median of {rounds}); the process's first "
              f"sampling ({args.overhead_steps} steps) took {ratio['first_sampling_s']:.1f} s", flush=True)
        edits: list[dict] = []
        fields = {"finetuned_dtype": str(ft.unet.dtype).replace("torch.", ""), "compile": compile_wanted(base.device),
                  "adaptation": adaptation, "overhead": ratio, "edits": edits}
        write_report(base, args.model, fields, args.out)  # rewritten after each edit: a time limit keeps the rows done
        for spec in args.edit:
            size, steps = (int(x) for x in spec.lower().split("x"))
            row = warm_edit(base, ft, size, steps)
            edits.append(row)
            print(f"edit {size}² x {steps} steps: {row['wall_s']:.2f} s, first preview {row['first_preview_s']:.3f} s, "
                  f"peak {row['peak_mb']:.0f} MB, 2-step warm-up {row['warmup_2_steps_s']:.1f} s", flush=True)
            write_report(base, args.model, fields, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
