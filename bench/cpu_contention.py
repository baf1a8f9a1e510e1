"""`sine demo` (shortened) alone and beside CPU-bound neighbour processes, torch's default threading
against the graceful one (threads = free cores, OpenMP threads that sleep when they wait).

The workload is `sine demo` itself with fewer steps (--finetune-steps, --steps): the same code path,
the same per-step operations (fine-tune steps, then three 3-call sampling runs and VAE decodes) as the
full demo, only fewer of them, so a run takes tens of seconds instead of minutes. Runs are
interleaved (alone, beside, alone, ...) so a change in the machine's other load hits every arm alike;
the 1-minute load average is recorded before every run. Prints a table and writes JSON.

    python bench/cpu_contention.py --repeats 3 --out docs/results/cpu/cpu_contention.json
    python bench/cpu_contention.py --finetune-steps 0 --steps 0 --arms graceful   # the real `sine demo`
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORES = str(len(os.sched_getaffinity(0)))
ARMS = {  # environment of each arm ("" = set but empty: OpenMP ignores it and `sine` does not override it)
    # torch's thread default (one per usable core), OpenMP threads spinning while they wait
    "active_all_cores": {"SINE_THREADS": CORES, "OMP_WAIT_POLICY": "ACTIVE"},
    # torch's thread default, OpenMP's own wait default (libgomp: spin a while, then sleep)
    "default_all_cores": {"SINE_THREADS": CORES, "OMP_WAIT_POLICY": ""},
    # what `sine` does now (devices.py): threads from the free cores, passive waiting
    "graceful": {},
}


def demo_command(ft_steps: int, steps: int) -> list[str]:
    """`sine demo` as a newcomer types it when both step counts are 0, else shortened with the LoRA recipe."""
    if ft_steps == 0 and steps == 0:
        return ["demo"]
    return ["demo", "--method", "lora", "--finetune-steps", str(ft_steps), "--steps", str(steps)]


def run_once(arm: str, ft_steps: int, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SINE_THREADS", "OMP_WAIT_POLICY",
                                                            "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "backend"), str(ROOT / "shared")])
    env["HF_HUB_OFFLINE"] = "1"
    env.update(ARMS[arm])
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sine.cli", *demo_command(ft_steps, steps), "--out", out], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        return time.perf_counter() - t0


def write(args: argparse.Namespace, runs: list[dict], quiet: bool = False) -> None:
    """Summary (median seconds alone and beside, their ratio, per arm) printed and written with every run."""
    summary = {}
    for arm in args.arms:
        alone = [r["seconds"] for r in runs if r["arm"] == arm and not r["beside_neighbour"]]
        beside = [r["seconds"] for r in runs if r["arm"] == arm and r["beside_neighbour"]]
        if not alone or not beside:
            continue
        summary[arm] = {"alone_median_s": statistics.median(alone), "beside_median_s": statistics.median(beside),
                        "ratio": round(statistics.median(beside) / statistics.median(alone), 2), "n": len(alone)}
        if not quiet:
            print(f"{arm:<14} alone {summary[arm]['alone_median_s']:7.1f} s, beside {args.neighbours} neighbour(s) "
                  f"{summary[arm]['beside_median_s']:7.1f} s, ratio {summary[arm]['ratio']:.2f}")
    report = {
        "machine": f"{os.cpu_count()}-core CPU ({args.machine}; load_1min_before each run)",
        "workload": "sine " + " ".join(demo_command(args.finetune_steps, args.steps)),
        "neighbours": args.neighbours, "runs": runs, "summary": summary,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--finetune-steps", type=int, default=60, help="0 with --steps 0: the unshortened `sine demo`")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--machine", default="shared with other jobs", help="what else ran, for the JSON")
    p.add_argument("--neighbours", type=int, default=1, help="CPU-bound processes beside the run")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--arms", nargs="+", default=["default_all_cores", "graceful"], choices=list(ARMS))
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    runs: list[dict] = []
    for rep in range(args.repeats):
        for arm in args.arms:
            for beside in (False, True):
                spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                            for _ in range(args.neighbours if beside else 0)]
                try:
                    load = os.getloadavg()[0]
                    seconds = run_once(arm, args.finetune_steps, args.steps)
                finally:
                    for proc in spinners:
                        proc.kill()
                        proc.wait()
                runs.append({"arm": arm, "beside_neighbour": beside, "repeat": rep, "seconds": round(seconds, 2),
                             "load_1min_before": round(load, 2)})
                print(f"{arm:<14} {'beside' if beside else 'alone':<7} rep {rep}: {seconds:7.1f} s "
                      f"(load {load:.1f})", flush=True)
                write(args, runs, quiet=True)  # partial results survive an interrupted run
    write(args, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
