"""SDXL speed and memory: s/step of the LoRA fine-tune (patches + PE) and of SINE's guided sampling,
and peak VRAM, for an SDXL-shaped model with random weights (built from the shipped SDXL configs).

    python bench/sdxl_speed.py --out bench/results/gpu/sdxl.json            # on a GPU: 1024², fp16 files
    python bench/sdxl_speed.py --tiny --device cpu --out /tmp/sdxl.json     # CPU rehearsal (tiny model)

Prints and writes JSON. The per-step times are differences between a 2-step run and an N-step one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def sdxl_shaped_folder(folder: Path) -> Path:
    """The shipped SDXL configs with random fp16 weights, as a diffusers folder (~5 GB)."""
    import shutil

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from sine.checkpoints import CONFIGS_DIR, TOKENIZER_DIR

    src = CONFIGS_DIR / "sdxl"
    shutil.copytree(src, folder, dirs_exist_ok=True)
    for sub in ("tokenizer", "tokenizer_2"):
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(TOKENIZER_DIR / name, folder / sub / name)
    torch.manual_seed(0)
    for sub, build in (("unet", lambda: UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(src / "unet"))),
                       ("vae", lambda: AutoencoderKL.from_config(AutoencoderKL.load_config(src / "vae"))),
                       ("text_encoder", lambda: CLIPTextModel(CLIPTextConfig.from_pretrained(src / "text_encoder"))),
                       ("text_encoder_2", lambda: CLIPTextModelWithProjection(
                           CLIPTextConfig.from_pretrained(src / "text_encoder_2")))):
        build().half().save_pretrained(folder / sub)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny SDXL-shaped model (CPU rehearsal)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--ft-steps", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=None, help="output side in px (default: the model's own)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from PIL import Image

    from sine.finetune import FinetuneSettings, finetune
    from sine.models import load_base_model
    from sine.sampler import SamplingSettings, sample_edit
    from sine.tiny_models import make_tiny_sdxl

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_tiny_sdxl(Path(tmp) / "xl") if args.tiny else sdxl_shaped_folder(Path(tmp) / "xl")
        base = load_base_model(folder, device=args.device)
        cuda = base.device.type == "cuda"
        size = args.size or base.sample_size
        source = Image.new("RGB", (size, size), (200, 60, 60))

        def timed(run):
            """(seconds, what `run` returned), the device's queue drained on both sides."""
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = run()
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - t0, out

        def adapt(steps: int):
            return finetune(base, source, "picture of a sks dog", FinetuneSettings(method="lora", steps=steps))

        def edit(steps: int) -> None:
            sample_edit(base, ft, "a dog in a red hat", size, size, SamplingSettings(steps=steps, k=0, strength=1.0))

        # s/step from two runs (2 steps, then N) after an untimed 1-step one: the process's one-time costs
        # (kernels, libraries' start) land in the first, each run's own set-up cancels in the difference
        recipe = FinetuneSettings(method="lora").resolved(base.recipes)
        timed(lambda: adapt(1))
        short, _ = timed(lambda: adapt(2))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        long, ft = timed(lambda: adapt(args.ft_steps))
        ft_s = (long - short) / max(1, args.ft_steps - 2)
        ft_peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        timed(lambda: edit(1))
        sample_short, _ = timed(lambda: edit(2))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        sample_long, _ = timed(lambda: edit(args.steps))
        sample_s = (sample_long - sample_short) / max(1, args.steps - 2)
        result = {"model": "tiny SDXL-shaped" if args.tiny else "SDXL-shaped, random fp16 weights",
                  "device": torch.cuda.get_device_name() if cuda else str(base.device), "dtype": str(base.dtype),
                  "torch": torch.__version__, "size": size,
                  "finetune_s_per_step": round(ft_s, 4), "finetune_peak_gib": ft_peak and round(ft_peak, 2),
                  "finetune_wall_s": {"2": round(short, 2), str(args.ft_steps): round(long, 2)},
                  "recipe": {"steps": recipe.steps, "lr": recipe.lr, "batch": recipe.batch,
                             "gradient_checkpointing": recipe.gradient_checkpointing},
                  "recipe_adaptation_estimate_s": round(short + (recipe.steps - 2) * ft_s, 1),
                  "sample_s_per_step": round(sample_s, 4),
                  "sample_wall_s": {"2": round(sample_short, 2), str(args.steps): round(sample_long, 2)},
                  "sample_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
                  "ft_steps": args.ft_steps, "steps": args.steps}
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
