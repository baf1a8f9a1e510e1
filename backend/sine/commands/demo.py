"""`sine demo`: the whole method on a bundled picture, offline, on a CPU, in about a minute."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sine_protocol.defaults import SEED_COUNT

from ..argparsing import user_path
from ..errors import SineError, printable
from ..output_files import check_demo_folder, discard_partial_demo
from ..preflight import check_device_name, check_environment, check_model, int_in

ASSETS_INDEX = Path(__file__).resolve().parents[1] / "demo_assets" / "assets.json"


def bundled_sources() -> list[str]:
    """The bundled pictures' names, read without the engine (so a wrong name answers before torch loads)."""
    try:
        return sorted(json.loads(ASSETS_INDEX.read_text()))
    except (OSError, ValueError):
        return []


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="fine-tune on a bundled picture and edit it (offline, CPU)",
                       description="Fine-tune the bundled demo model on a bundled picture and edit it three ways; "
                                   "writes the results and comparison.png.")
    p.add_argument("--out", type=user_path, default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--source", default="checkered_circle", choices=bundled_sources() or None,
                   help="bundled source (default: checkered_circle)")
    p.add_argument("--model", type=user_path, default=None, help="default: the bundled demo model")
    p.add_argument("--method", default="full", choices=("full", "lora"), help="fine-tune recipe (default: full)")
    p.add_argument("--finetune-steps", type=int_in(1, 100_000), default=None,
                   help="default: 375 steps of 4 views for the full recipe (the demo's 2-minute budget), "
                        "else the model's recipe")
    p.add_argument("--steps", type=int_in(1, 1000), default=50, help="DDIM sampling steps (default: %(default)s)")
    p.add_argument("--seed", type=int_in(0, SEED_COUNT - 1), default=0, help="noise seed (0..4294967295; default: 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    return p


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    try:
        check_device_name(args.device)  # before the engine: wrong inputs answer in about a second
        check_environment(device_given=True)
        check_model(args.model)
        check_demo_folder(args.out)
        out = Path(args.out)
        fresh = not out.is_dir() or not any(out.iterdir())
        from ..demo import run_demo
        from ..models import load_base_model

        base = load_base_model(args.model, device=args.device)
        bars = []

        def on_train(step: int, total: int, loss: float) -> None:
            """A bar through the fine-tune: the demo's longest part, silent before."""
            from .progress_bars import progress_bar

            if not bars:
                bars.append(progress_bar(total, "fine-tuning"))
            bars[0].update(step - bars[0].n)
            bars[0].set_postfix(loss=f"{loss:.4f}", refresh=False)
            if step >= total:
                bars[0].close()

        try:
            summary = run_demo(base, out, args.source, args.finetune_steps, args.steps, args.seed,
                               method=args.method, log=lambda msg: print(msg, file=sys.stderr), progress=on_train)
        except BaseException:
            if fresh:
                discard_partial_demo(out)
            raise
        finally:
            for bar in bars:
                bar.close()
    except (SineError, KeyError) as exc:
        print(f"sine demo: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    from ..demo import METHODS

    edits = [name for name in summary["files"] if name != "comparison.png"]
    columns = " | ".join(("source", *METHODS))
    print(f"sine demo: done in {time.perf_counter() - t0:.0f} s. {printable(str(out.resolve()))} holds comparison.png "
          f"(a row per edit: {columns}), {', '.join(edits)}, "
          "source.png and summary.json", file=sys.stderr)
    return 0
