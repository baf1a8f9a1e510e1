"""Load test of the sine daemon: N concurrent clients × M small edit jobs over real sockets.

Checks that every job ends with exactly one `result` or a clear `error` (none lost, none
duplicated) and measures throughput and latency. Prints a table and writes JSON.

    python bench/load_test.py                      # starts its own daemon with a tiny random model
    python bench/load_test.py --endpoint tcp://127.0.0.1:47633   # against a running daemon (token from config)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _sub in ("backend", "shared"):
    if str(REPO / _sub) not in sys.path:
        sys.path.insert(0, str(REPO / _sub))

from sine_protocol.frames import RGBAImage  # noqa: E402
from sine_protocol.messages import decode_reply, encode_message, image_blob, make_request  # noqa: E402


@dataclass
class JobRecord:
    client: int
    rid: str
    submitted: float
    accepted: int = 0
    finals: list[str] = field(default_factory=list)  # "result" / "error:<code>" / "cancelled"
    progress: int = 0
    latency_s: float | None = None
    size_ok: bool | None = None


def _image(size: int, variant: int) -> RGBAImage:
    data = bytearray()
    for y in range(size):
        for x in range(size):
            data += bytes([(x * 7 + variant * 61) % 256, (y * 5 + variant * 17) % 256, (x ^ y) % 256, 255])
    return RGBAImage(size, size, bytes(data))


class _Conn:
    """A raw DEALER (pyzmq or the pure ZMTP client): every frame that arrives is seen, duplicates included."""

    def __init__(self, endpoint: str, pure: bool, token: str) -> None:
        from sine_protocol.auth import plain_credentials

        self.pure = pure
        plain = plain_credentials(token)  # the daemon authenticates every connection (PLAIN)
        if pure:
            from sine_protocol.zmtp import ZMTPConnection

            self.conn = ZMTPConnection(endpoint, timeout=10, plain=plain)
        else:
            import zmq

            self.sock = zmq.Context.instance().socket(zmq.DEALER)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.setsockopt(zmq.PLAIN_USERNAME, plain[0])
            self.sock.setsockopt(zmq.PLAIN_PASSWORD, plain[1])
            self.sock.connect(endpoint)

    def send(self, frames: list[bytes]) -> None:
        if self.pure:
            self.conn.send_multipart(frames, timeout=30)
        else:
            self.sock.send_multipart(frames)

    def recv(self, timeout: float) -> list[bytes] | None:
        if self.pure:
            return self.conn.recv_multipart(timeout)
        return self.sock.recv_multipart() if self.sock.poll(int(timeout * 1000)) else None

    def close(self) -> None:
        if self.pure:
            self.conn.close()
        else:
            self.sock.close(0)


def _client(index: int, endpoint: str, token: str, jobs: int, images: int, size: int, ft_steps: int,
            sample_steps: int, pure: bool, timeout: float, records: list[JobRecord], lock: threading.Lock) -> None:
    conn = _Conn(endpoint, pure, token)
    mine: dict[str, JobRecord] = {}
    try:
        for j in range(jobs):
            rid = f"c{index}-j{j}-{uuid.uuid4().hex[:6]}"
            header = make_request("edit", rid, token, prompt="a green square", subject="square", style="photo",
                                  seed=j, sampling={"steps": sample_steps},
                                  finetune={"method": "lora", "steps": ft_steps, "patch": False})
            record = JobRecord(index, rid, time.perf_counter())
            mine[rid] = record
            conn.send(encode_message(header, [image_blob(_image(size, (index + j) % images))]))
        deadline = time.monotonic() + timeout
        # Keep listening a little after the last final, so a duplicate final would be seen.
        while time.monotonic() < deadline:
            done = all(r.finals for r in mine.values())
            frames = conn.recv(0.5 if done else 1.0)
            if frames is None:
                if done:
                    break
                continue
            event = decode_reply(frames)
            record = mine.get(event.id)
            if record is None:
                continue
            if event.type == "accepted":
                record.accepted += 1
            elif event.type == "progress":
                record.progress += 1
            elif event.is_final:
                label = event.type if event.type != "error" else f"error:{event.header.get('code')}"
                record.finals.append(label)
                record.latency_s = time.perf_counter() - record.submitted
                if event.type == "result":
                    record.size_ok = event.image is not None and event.image.size == (size, size)
    finally:
        conn.close()
        with lock:
            records.extend(mine.values())


def run_load(endpoint: str, token: str, clients: int = 8, jobs: int = 3, images: int = 4, size: int = 32,
             ft_steps: int = 2, sample_steps: int = 3, timeout: float = 300.0) -> dict:
    """Run the load and return a summary (every job's outcome plus throughput and latency)."""
    records: list[JobRecord] = []
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_client, args=(i, endpoint, token, jobs, images, size, ft_steps, sample_steps,
                                               i % 2 == 1, timeout, records, lock))
        for i in range(clients)
    ]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    latencies = sorted(r.latency_s for r in records if r.latency_s is not None)
    outcomes: dict[str, int] = {}
    for r in records:
        key = r.finals[0] if len(r.finals) == 1 else ("lost" if not r.finals else "duplicated")
        outcomes[key] = outcomes.get(key, 0) + 1

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, round(q * (len(latencies) - 1)))]

    return {
        "clients": clients,
        "jobs_per_client": jobs,
        "jobs": len(records),
        "expected_jobs": clients * jobs,
        "outcomes": outcomes,
        "wall_s": round(wall, 3),
        "jobs_per_s": round(outcomes.get("result", 0) / wall, 3) if wall else None,
        "latency_p50_s": pct(0.5),
        "latency_p95_s": pct(0.95),
        "latency_mean_s": statistics.fmean(latencies) if latencies else None,
        "records": [asdict(r) for r in records],
    }


def print_table(summary: dict) -> None:
    rows = [
        ("clients × jobs", f"{summary['clients']} × {summary['jobs_per_client']}"),
        ("jobs seen", f"{summary['jobs']} / {summary['expected_jobs']}"),
        ("outcomes", ", ".join(f"{k}={v}" for k, v in sorted(summary["outcomes"].items()))),
        ("wall time", f"{summary['wall_s']:.2f} s"),
        ("throughput", f"{summary['jobs_per_s']:.2f} jobs/s"),
        ("latency p50", f"{summary['latency_p50_s']:.2f} s" if summary["latency_p50_s"] is not None else "-"),
        ("latency p95", f"{summary['latency_p95_s']:.2f} s" if summary["latency_p95_s"] is not None else "-"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _start_daemon(root: Path, model: str | None, port: int) -> subprocess.Popen:
    env = {**os.environ, "SINE_CONFIG_DIR": str(root / "config"), "SINE_STATE_DIR": str(root / "state"),
           "SINE_CACHE_DIR": str(root / "cache"), "SINE_RUNTIME_DIR": str(root / "run"),
           "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")])}
    if model is None:
        from sine.tiny_models import make_tiny_sd

        model = str(make_tiny_sd(root / "model"))
    return subprocess.Popen([sys.executable, "-m", "sine.cli", "daemon", "--endpoint", f"tcp://127.0.0.1:{port}",
                             "--model", model, "--no-ipc", "--threads", "1"], env=env,
                            stdout=open(root / "daemon.out", "wb"), stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", help="a running daemon (default: start one with a tiny model)")
    parser.add_argument("--token", help="default: the token file in the config dir")
    parser.add_argument("--model", help="model for the daemon this script starts (default: tiny random model)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--ft-steps", type=int, default=2)
    parser.add_argument("--sample-steps", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("bench/results/load_test.json"))
    args = parser.parse_args(argv)

    from sine_protocol import paths

    proc = None
    tmp = None
    endpoint, token = args.endpoint, args.token
    if endpoint is None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        tmp = Path(tempfile.mkdtemp(prefix="sine-load-"))
        proc = _start_daemon(tmp, args.model, port)
        endpoint = f"tcp://127.0.0.1:{port}"
        token_path = tmp / "config" / "token"
    else:
        token_path = paths.token_file()
    try:
        if token is None:
            deadline = time.monotonic() + 120
            while not (token := paths.read_token(token_path)):
                if time.monotonic() > deadline or (proc and proc.poll() is not None):
                    print("load_test: the daemon did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        from sine_protocol.client import SineClient

        with SineClient(endpoint, token, timeout=5) as client:  # wait for the model before timing
            deadline = time.monotonic() + 120
            while not client.hello().get("model_ready", True) and time.monotonic() < deadline:
                time.sleep(0.2)
        summary = run_load(endpoint, token, args.clients, args.jobs, size=args.size, ft_steps=args.ft_steps,
                           sample_steps=args.sample_steps)
        print_table(summary)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
        print(f"wrote {args.json}")
        ok = summary["outcomes"].get("result", 0) == summary["expected_jobs"]
        return 0 if ok else 1
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    sys.exit(main())
