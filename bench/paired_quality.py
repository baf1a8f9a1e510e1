"""Paired differences between quality-benchmark runs: each arm against a reference run, edit by edit
(same source, prompt and sampling seed), with a 95 % bootstrap interval that resamples whole sources
(the edits of one source share its fine-tune, so they are not independent). Prints a line per arm
and metric; writes JSON with --json.

    python bench/paired_quality.py REF.json METHOD ARM.json [ARM.json ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

METRICS = ("success", "psnr", "ssim")


def edits_of(path: Path, method: str) -> dict[tuple, dict]:
    report = json.loads(path.read_text())
    return {(e["source"], e["prompt"], e["seed"]): e for e in report["edits"] if e["method"] == method}


def paired(reference: dict[tuple, dict], arm: dict[tuple, dict], metric: str, draws: int = 2000,
           seed: int = 0) -> dict:
    """Mean of arm − reference over the shared edits, and the 2.5/97.5 % points of its source bootstrap."""
    keys = sorted(set(reference) & set(arm))
    by_source: dict[str, list[float]] = {}
    for key in keys:
        by_source.setdefault(key[0], []).append(float(arm[key][metric]) - float(reference[key][metric]))
    sources = sorted(by_source)
    rng = random.Random(seed)
    means = []
    for _ in range(draws):
        values = [d for s in (rng.choice(sources) for _ in sources) for d in by_source[s]]
        means.append(sum(values) / len(values))
    means.sort()
    all_diffs = [d for s in sources for d in by_source[s]]
    return {"n": len(all_diffs), "mean": sum(all_diffs) / len(all_diffs),
            "low": means[int(0.025 * draws)], "high": means[int(0.975 * draws) - 1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reference", type=Path)
    p.add_argument("method")
    p.add_argument("arms", type=Path, nargs="+")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    reference = edits_of(args.reference, args.method)
    out = {}
    for arm_path in args.arms:
        arm = edits_of(arm_path, args.method)
        out[arm_path.name] = {m: paired(reference, arm, m) for m in METRICS}
        print(arm_path.name, args.method, " | ".join(
            f"{m} {r['mean']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] (n={r['n']})" for m, r in out[arm_path.name].items()))
    if args.json:
        args.json.write_text(json.dumps({"reference": args.reference.name, "method": args.method, "arms": out}, indent=2))


if __name__ == "__main__":
    main()
