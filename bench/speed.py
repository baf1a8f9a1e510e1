"""Speed benchmark: seconds per fine-tune step and per sampling step, and peak memory.

    python bench/speed.py --model tiny --sizes 64 128 --out bench/results/speed-cpu.json
    python bench/speed.py --model sd15-random --sizes 512 1024 --device cuda   # SD1.5-shaped, random weights

`--model` takes a diffusers folder, `demo` (the bundled model), `tiny` (a tiny random SD) or
`sd15-random` (SD1.5's architecture with random weights, for GPU numbers without real weights).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from sine.devices import describe_device
from sine.finetune import FinetuneSettings, finetune
from sine.models import BaseModel, load_base_model
from sine.sampler import SamplingSettings, sample_edit
from sine.tiny_models import make_sd15_shaped, make_tiny_sd


def build_model(name: str, device: str | None, dtype: str | None, workdir: Path) -> BaseModel:
    if name == "tiny":
        return load_base_model(make_tiny_sd(workdir / "tiny"), device=device, dtype=dtype)
    if name == "sd15-random":
        return load_base_model(make_sd15_shaped(workdir / "sd15"), device=device, dtype=dtype)
    return load_base_model(name, device=device, dtype=dtype)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --device, --dtype: what `build_model` takes (shared by the speed benchmarks)."""
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)


def flat_source(base: BaseModel) -> Image.Image:
    """The picture the speed benchmarks fine-tune on: its content does not change the timings."""
    return Image.new("RGB", (base.sample_size, base.sample_size), (120, 80, 200))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: kB)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def timed_steps(warmup: int) -> tuple[list[float], Callable[..., None]]:
    stamps: list[float] = []

    def on_step(*_args: object) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    return stamps, on_step


def per_step(stamps: list[float], warmup: int) -> float:
    usable = stamps[warmup:]
    if len(usable) < 2:
        return float("nan")
    return (usable[-1] - usable[0]) / (len(usable) - 1)


def bench_finetune(base: BaseModel, method: str, steps: int, warmup: int) -> dict:
    image = flat_source(base)
    reset_peak(base.device)
    stamps, on_step = timed_steps(warmup)
    finetune(base, image, "picture of a sks dog", FinetuneSettings(method=method, steps=steps + warmup), progress=on_step)
    return {"s_per_step": per_step(stamps, warmup), "peak_mb": peak_memory_mb(base.device)}


def bench_sampling(base: BaseModel, size: int, method: str, steps: int, warmup: int, guided: bool) -> dict:
    image = flat_source(base)
    model = finetune(base, image, "picture of a sks dog", FinetuneSettings(method=method, steps=1))
    reset_peak(base.device)
    stamps, on_step = timed_steps(warmup)
    k = 0 if guided else 1001  # all steps with the fine-tuned model (3 UNet calls) or none (2 calls)
    settings = SamplingSettings(steps=steps + warmup, k=k, strategy="single", strength=1.0)  # every step
    t0 = time.perf_counter()
    sample_edit(base, model, "a cat", size, size, settings, progress=on_step)
    total = time.perf_counter() - t0
    return {"s_per_step": per_step(stamps, warmup), "total_s": total, "peak_mb": peak_memory_mb(base.device)}


def write_report(base: BaseModel, model: str, fields: dict, path: str | Path) -> None:
    """The JSON both speed benchmarks write: what ran where, then their own fields."""
    report = {
        "model": model,
        "device": describe_device(base.device),
        "dtype": str(base.dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        **fields,
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--methods", nargs="+", default=["lora", "full"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default="bench/results/speed.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        base = build_model(args.model, args.device, args.dtype, Path(tmp))
        rows = []
        for method in args.methods:
            ft = bench_finetune(base, method, args.steps, args.warmup)
            for size in args.sizes:
                guided = bench_sampling(base, size, method, args.steps, args.warmup, guided=True)
                plain = bench_sampling(base, size, method, args.steps, args.warmup, guided=False)
                rows.append({"size": size, "method": method, "finetune": ft, "sample_guided": guided,
                             "sample_plain": plain})
                print(f"{size:>5}² {method:<5} fine-tune {ft['s_per_step'] * 1e3:8.1f} ms/step "
                      f"(peak {ft['peak_mb']:7.0f} MB) | sample guided {guided['s_per_step'] * 1e3:8.1f} ms/step, "
                      f"after K {plain['s_per_step'] * 1e3:8.1f} ms/step (peak {guided['peak_mb']:7.0f} MB)",
                      flush=True)
    write_report(base, args.model, {
        "finetune_note": "train size is the model's own (crops are resized to it): size only affects sampling",
        "rows": rows,
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
