"""Longest silence a plug-in sees during one edit: the gaps between the daemon's events, on a big layer.

A painter watching the progress bar on a 3000x2000 layer should never wait long without a word. This
starts `sine daemon` (the bundled demo model unless --model), sends one edit of a picture of that size
with few steps, and records when each event (accepted, progress phases, preview, result) arrives at the
client, as a plug-in would see them; it prints the longest gap and the events around it, and writes JSON.

    python bench/progress_gaps.py --size 3000x2000 --steps 2 --finetune-steps 1 \
        --json docs/results/cpu/progress_gaps.json
    python bench/progress_gaps.py --size 64x64 --steps 50 --finetune-steps 100 --edits 3   # cold, then warm
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "backend"), str(REPO / "shared")]

from sine_protocol import paths  # noqa: E402
from sine_protocol.client import SineClient  # noqa: E402
from sine_protocol.frames import RGBAImage  # noqa: E402
from sine_protocol.messages import part_text  # noqa: E402


def _picture(width: int, height: int) -> RGBAImage:
    """A smooth picture with a disc in it (no noise: the size is what matters here)."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    rgba = np.empty((height, width, 4), np.uint8)
    rgba[..., 0] = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    rgba[..., 1] = (y * 255 // max(height - 1, 1)).astype(np.uint8)
    disc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 4) ** 2
    rgba[..., 2] = np.where(disc, 220, 40)
    rgba[..., 3] = 255
    return RGBAImage(width, height, rgba.tobytes())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _label(event) -> str:
    header = event.header
    if event.type == "progress":
        return f"progress {header.get('phase')} {header.get('step')}/{header.get('total')}{part_text(header)}"
    return event.type


def measure(endpoint: str, token: str, size: tuple[int, int], steps: int, finetune_steps: int) -> dict:
    picture = _picture(*size)
    with SineClient(endpoint, token, timeout=30) as client:
        t0 = time.monotonic()
        rid = client.submit_edit(picture, "a red disc", subject="disc", seed=1,
                                 sampling={"steps": steps}, finetune={"steps": finetune_steps})  # fmt: skip
        arrivals = [(0.0, "sent")]
        for event in client.events(rid, timeout=3600):
            arrivals.append((round(time.monotonic() - t0, 3), _label(event)))
    gaps = [(b[0] - a[0], a[1], b[1]) for a, b in zip(arrivals, arrivals[1:], strict=False)]
    longest = max(gaps)
    first_preview = next((t for t, label in arrivals if label.startswith("progress sample 1/")), None)
    return {"size": list(size), "steps": steps, "finetune_steps": finetune_steps, "total_s": arrivals[-1][0],
            "first_event_s": arrivals[1][0], "first_preview_s": first_preview,
            "events": arrivals, "longest_gap_s": round(longest[0], 3), "longest_gap_between": longest[1:]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "backend" / "sine" / "demo_model"))
    parser.add_argument("--size", default="3000x2000", help="WIDTHxHEIGHT of the layer sent")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--finetune-steps", type=int, default=1)
    parser.add_argument("--edits", type=int, default=1,
                        help="send the same edit this many times, one after the other (the 2nd on is warm)")
    parser.add_argument("--json", type=Path, default=Path("bench/results/progress_gaps.json"))
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="sine-gaps-") as tmp:
        root = Path(tmp)
        endpoint = f"tcp://127.0.0.1:{_free_port()}"
        env = {**os.environ, "SINE_CONFIG_DIR": str(root / "config"), "SINE_STATE_DIR": str(root / "state"),
               "SINE_CACHE_DIR": str(root / "cache"), "SINE_RUNTIME_DIR": str(root / "run"), "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")])}  # fmt: skip
        with (root / "daemon.out").open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "sine.cli", "daemon", "--endpoint", endpoint, "--model",
                                     args.model, "--device", "cpu", "--threads", "1", "--no-ipc"],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            token_path = root / "config" / "token"
            deadline = time.monotonic() + 180
            while not (token := paths.read_token(token_path)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"daemon did not start:\n{(root / 'daemon.out').read_text()[-3000:]}")
                time.sleep(0.2)
            with SineClient(endpoint, token, timeout=5) as probe:
                while not probe.ping(timeout=2.0):
                    if time.monotonic() > deadline:
                        raise SystemExit("daemon did not answer")
            runs = [measure(endpoint, token, (width, height), args.steps, args.finetune_steps)
                    for _ in range(max(1, args.edits))]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result = runs[0]  # the first edit's fields at the top, as before; the later ones under "again"
    result["again"] = runs[1:]
    result["machine"] = f"{os.cpu_count()} CPUs (shared), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    result["load_average"] = os.getloadavg()[0]
    result["model"] = Path(args.model).name
    for t, label in result["events"]:
        print(f"{t:9.3f} s  {label}")
    for n, run in enumerate(runs, 1):
        print(f"edit {n}: total {run['total_s']} s, first event {run['first_event_s']} s, first preview "
              f"{run['first_preview_s']} s, longest gap {run['longest_gap_s']} s between {run['longest_gap_between']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
