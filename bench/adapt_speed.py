"""Cost of one adaptation step on the CPU: AdamW fused vs multi-tensor, and the SD1.5-shaped step.

1. `optimizer.step()` alone on the LoRA parameters of the demo model and of an SD1.5-shaped UNet
   (today's recipe: targets, rank, 3x3 convolutions' rank, conv_in), random gradients, the two
   AdamW kernels interleaved, best of `--repeats` blocks of `--steps` steps (a busy machine's noise
   only ever adds time).
2. Whole LoRA fine-tune steps of the demo model (`finetune`, patches + PE) with each kernel.
3. Unless `--skip-sd15-step`: one LoRA training step (forward + backward + AdamW) of the SD1.5-shaped
   UNet at a small latent (`--sd15-latent`, default 16: a 128-px crop), random weights.
Prints and writes JSON.

    python bench/adapt_speed.py --threads 1 --json docs/results/cpu/adapt_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

ROOT = Path(__file__).resolve().parents[1]
for sub in ("backend", "shared"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

import sine.finetune as ft  # noqa: E402
from sine.finetune import FinetuneSettings, adamw, add_unet_lora, finetune  # noqa: E402
from sine.models import load_base_model  # noqa: E402
from sine.prompts import source_prompt  # noqa: E402
from sine.shapes.sources import benchmark_sources  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from lora_entry import SD15_UNET  # noqa: E402


def lora_params(unet: UNet2DConditionModel, s: FinetuneSettings) -> list[torch.nn.Parameter]:
    """The recipe's trainable tensors on `unet`, with random gradients."""
    add_unet_lora(unet, s)
    params = [p for n, p in unet.named_parameters() if "lora_" in n or (s.train_conv_in and n.startswith("conv_in."))]
    for p in params:
        p.data = p.data.float()
        p.grad = torch.randn_like(p.data) * 1e-3
    return params


def optimizer_step_ms(params: list[torch.nn.Parameter], steps: int, repeats: int) -> dict[str, float]:
    best = {"fused": float("inf"), "foreach": float("inf")}
    opts = {name: adamw(params, 1e-3, 0.01, torch.device("cpu"), fused=name == "fused") for name in best}
    for opt in opts.values():
        opt.step()  # state allocated outside the timing
    for _ in range(repeats):
        for name, opt in opts.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            best[name] = min(best[name], (time.perf_counter() - t0) / steps * 1e3)
    return {k: round(v, 3) for k, v in best.items()}


def finetune_step_ms(base, steps: int, repeats: int) -> dict[str, float]:
    src = benchmark_sources()[1]
    image, prompt = src.scene.render()[0], source_prompt(src.subject, "photo")
    settings = FinetuneSettings(method="lora", patch=True, steps=steps)
    best = {"fused": float("inf"), "foreach": float("inf")}
    for _ in range(repeats):
        for name in best:
            ft.FUSED_ADAMW_DEVICES = ("cuda", "cpu") if name == "fused" else ("cuda",)  # what `finetune` reads
            t0 = time.perf_counter()
            finetune(base, image, prompt, settings)
            best[name] = min(best[name], (time.perf_counter() - t0) / steps * 1e3)
    return {k: round(v, 2) for k, v in best.items()}


def sd15_step_s(latent: int, steps: int) -> float:
    """One LoRA training step of the SD1.5-shaped UNet (no VAE, no text encoder: their inputs are random)."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET)
    s = FinetuneSettings(method="lora", patch=True).resolved()
    unet.requires_grad_(False)
    params = lora_params(unet, s)
    for p in params:
        p.requires_grad_(True)
        p.grad = None
    opt = adamw(params, s.lr, s.weight_decay, torch.device("cpu"))
    z, states = torch.randn(1, 4, latent, latent), torch.randn(1, 77, 768)
    times = []
    for _ in range(steps + 1):  # the first one warms up
        t0 = time.perf_counter()
        out = unet(z, torch.tensor([500]), states).sample
        torch.nn.functional.mse_loss(out, z).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=50, help="optimizer steps per timed block")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--finetune-steps", type=int, default=40, help="demo fine-tune steps per timed run")
    p.add_argument("--finetune-repeats", type=int, default=2)
    p.add_argument("--sd15-latent", type=int, default=16)
    p.add_argument("--sd15-steps", type=int, default=2)
    p.add_argument("--skip-sd15-step", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = load_base_model("demo", device="cpu")
    s = FinetuneSettings(method="lora", patch=True).resolved(base.recipes)
    import copy

    demo_params = lora_params(copy.deepcopy(base.unet), s)
    sd15_params = lora_params(UNet2DConditionModel(**SD15_UNET), s)
    report: dict = {
        "machine": f"shared 2-core CPU (other jobs running), torch threads {args.threads}",
        "torch": torch.__version__,
        "command": "python bench/adapt_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_1min_at_start": os.getloadavg()[0],
        "optimizer_step_ms": {
            "demo_lora": {"params": sum(p.numel() for p in demo_params),
                          **optimizer_step_ms(demo_params, args.steps, args.repeats)},
            "sd15_lora": {"params": sum(p.numel() for p in sd15_params),
                          **optimizer_step_ms(sd15_params, max(5, args.steps // 10), args.repeats)},
        },
        "demo_finetune_step_ms": finetune_step_ms(base, args.finetune_steps, args.finetune_repeats),
    }
    del sd15_params
    if not args.skip_sd15_step:
        report["sd15_lora_train_step_s"] = {"latent": args.sd15_latent,
                                            "s_per_step": round(sd15_step_s(args.sd15_latent, args.sd15_steps), 2)}
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
