"""Wall time of loading a stored LoRA fine-tune of an SD1.5-shaped model (`FineTuned.load`, merged):
what a daemon cache hit costs before sampling. SD1.5's architecture with random weights (built from
its config once into --work, about 4 GB on disk), random adapters with today's recipe. Best of
--repeats after one warm-up; prints a line and writes JSON.

    python bench/lora_load.py --threads 1 --out docs/results/cpu/lora_load_sd15.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for sub in ("backend", "shared"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

from sine.finetune import FineTuned, FinetuneSettings, _trainable_copies  # noqa: E402
from sine.models import load_base_model  # noqa: E402
from sine.tiny_models import make_sd15_shaped, make_tiny_sd  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/sine-bench-lora-load"))
    p.add_argument("--model", default="sd15", help="sd15 (built into --work), tiny (a rehearsal), or a folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    folder = Path(args.model) if args.model not in ("sd15", "tiny") else args.work / args.model
    if not (folder / "model_index.json").exists():
        (make_sd15_shaped if args.model == "sd15" else make_tiny_sd)(folder)
    base = load_base_model(folder, device=args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    entry = args.work / f"entry-{folder.name}-{base.device.type}"
    if not (entry / "finetune.json").exists():
        s = FinetuneSettings(method="lora", patch=True).resolved(base.recipes)
        unet, text_encoder = _trainable_copies(base, s)
        gen = torch.Generator().manual_seed(0)
        for name, param in unet.named_parameters():
            if "lora_" in name:
                param.data = (torch.randn(param.shape, generator=gen) * 0.01).to(param.device)
        FineTuned(base, unet, text_encoder, s, "a photo of sks").save(entry)
    times = []
    for i in range(args.repeats + 1):
        if base.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        ft = FineTuned.load(entry, base)
        if base.device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
        del ft
    report = {"model": str(folder), "machine": f"{platform.machine()} {base.device}, torch threads {torch.get_num_threads()}",
              "torch": torch.__version__, "dtype": str(base.dtype), "load_s": [round(t, 3) for t in times],
              "best_s": round(min(times), 3)}
    print(json.dumps(report))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
