"""Size and load time of a LoRA cache entry for an SD1.5-shaped UNet (random weights, no download).

The UNet is built from SD1.5's config (written below) on the CPU; the adapters get the targets and
ranks of today's `lora` recipe (`FinetuneSettings`), random values, and are saved as the cache
stores them. Load time is split into what the daemon does on a cache hit: read + sha256-verify the
files (`WeightCache.lookup`), parse them (safetensors), put them into the adapters, and merge them
into the fine-tuned copy in fp32 (`FineTuned.load`). Prints a line and writes JSON.

    python bench/lora_entry.py --out docs/results/cpu/lora_entry_sd15.json
    python bench/lora_entry.py --conv-rank 8      # the recipe before the 3x3 convolutions' rank was halved
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from peft.utils import set_peft_model_state_dict
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
for sub in ("backend", "shared"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

from sine.cache import WeightCache  # noqa: E402
from sine.finetune import (  # noqa: E402
    UNET_LORA_TARGETS,
    FinetuneSettings,
    _save_tensors,
    _unet_lora_state,
    add_unet_lora,
)

SD15_UNET = dict(  # runwayml/stable-diffusion-v1-5 unet/config.json, the fields that set the shapes
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rank", type=int, default=None, help="default: the recipe's")
    p.add_argument("--conv-rank", type=int, default=None, help="3x3 convolutions' rank (default: the recipe's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-merge", action="store_true", help="only size, read and parse (no 3.4 GB fp32 merge)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    s = FinetuneSettings(patch=True).resolved()
    s = replace(s, lora_rank=args.rank or s.lora_rank)
    s = replace(s, lora_conv_rank=args.conv_rank or s.lora_conv_rank or s.lora_rank)
    rank, conv_rank = s.lora_rank, s.lora_conv_rank
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET)
    add_unet_lora(unet, s)
    for name, param in unet.named_parameters():
        if "lora_" in name:
            param.data.normal_(0, 0.01)
    state = _unet_lora_state(unet, s)  # with conv_in, trained when the PE is on
    with tempfile.TemporaryDirectory() as tmp:
        cache = WeightCache(Path(tmp) / "cache")
        key = "0" * 64
        cache.store(key, lambda folder: _save_tensors(state, folder / "unet_lora.safetensors"))
        entry_bytes = cache.stats()["bytes"]
        file = cache.entry_path(key) / "unet_lora.safetensors"
        lookup_s = best_of(lambda: cache.lookup(key), args.repeats)
        parse_s = best_of(lambda: load_file(file), args.repeats)
        loaded = {k: v.float() for k, v in load_file(file).items() if not k.startswith("conv_in.")}
        set_s = best_of(lambda: set_peft_model_state_dict(unet, loaded), args.repeats)
        merge_s = None
        if not args.skip_merge:
            def merge() -> None:
                copy.deepcopy(unet).fuse_lora()
            merge_s = best_of(merge, 1)
    report = {
        "machine": f"shared 2-core CPU (other jobs running), torch threads {torch.get_num_threads()}",
        "torch": torch.__version__,
        "rank": rank, "conv_rank": conv_rank, "targets": UNET_LORA_TARGETS,
        "adapted_layers": sum(1 for k in state if k.endswith("lora_A.weight")),
        "entry_bytes": entry_bytes, "entry_mb": round(entry_bytes / 1e6, 2),
        "lookup_verify_s": round(lookup_s, 4), "parse_s": round(parse_s, 4), "set_adapters_s": round(set_s, 4),
        "cpu_copy_and_merge_fp32_s": None if merge_s is None else round(merge_s, 2),
        "read_verify_parse_set_s": round(lookup_s + parse_s + set_s, 4),
    }
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
