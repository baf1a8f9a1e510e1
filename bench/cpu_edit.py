"""A newcomer's `sine edit` on a CPU: a 512×384 photo-like picture with the defaults, timed against the
estimate the command printed before the work.

Runs the real command in a subprocess (a fresh state dir by default, so the first run pays the one-off
speed calibration as a new user's would; `--runs 2` adds a run with the remembered calibration),
and prints and writes JSON: the printed estimate, the wall time, their ratio, the load average.

    python bench/cpu_edit.py --json docs/results/cpu/cpu_edit.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ESTIMATE_RE = re.compile(r"done in ([\d.]+) s \(estimate ([\d.]+) s: ([\d.]+) s before it \+ ([\d.]+) s to go, "
                         r"which took ([\d.]+) s\)")


def run_once(picture: Path, out: Path, state: Path, extra: list[str]) -> dict:
    env = {**os.environ, "SINE_STATE_DIR": str(state), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")])}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "edit", str(picture), "--prompt",
                           "a red circle on a blue background", "--out", str(out), *extra],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip()]
    if proc.returncode != 0:
        raise SystemExit(f"sine edit failed ({proc.returncode}):\n" + "\n".join(lines[-20:]))
    printed = next((line for line in lines if line.startswith("estimate:")), "")
    m = ESTIMATE_RE.search(proc.stderr)
    if not m:
        raise SystemExit("no estimate/done line in the output:\n" + "\n".join(lines[-20:]))
    done_s, estimate_s, before_s, to_go_s, work_s = map(float, m.groups())
    return {
        "printed_estimate": printed,
        "notes": [line for line in lines if line.startswith(("note:", "fast CPU settings", "measuring"))],
        "estimate_s": estimate_s,
        "wall_s": round(wall, 1),
        "ratio_wall_to_estimate": round(wall / estimate_s, 2),
        "estimated_work_s": to_go_s,
        "work_s": work_s,
        "ratio_work_to_estimate": round(work_s / to_go_s, 2) if to_go_s else None,
        "startup_and_load_s": before_s,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--runs", type=int, default=1, help="runs in the same state dir (the first calibrates)")
    parser.add_argument("--state-dir", type=Path, default=None, help="default: a fresh temporary one")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("extra", nargs="*", help="more `sine edit` options (after --)")
    args = parser.parse_args()

    sys.path[:0] = [str(REPO / "backend"), str(REPO / "shared")]
    from sine.synthetic import photo_like

    tmp = Path(tempfile.mkdtemp(prefix="cpu-edit-"))
    picture = tmp / "photo.png"
    photo_like(args.width, args.height, seed=1).save(picture)
    state = args.state_dir or tmp / "state"
    runs = [run_once(picture, tmp / f"out{i}.png", state, args.extra) for i in range(args.runs)]
    report = {
        "command": f"sine edit photo.png --prompt ... --out out.png {' '.join(args.extra)}".strip(),
        "picture": f"{args.width}x{args.height} photo-like (sine.synthetic.photo_like, seed 1)",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": runs,
    }
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
