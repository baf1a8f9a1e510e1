"""Load test of the sine daemon: N concurrent clients × M small edit jobs over real sockets.

Each client keeps more jobs in flight than the daemon allows per client, so some are answered
``busy`` and resubmitted after a back-off. Checks that every job ends with exactly one `result`
or a clear `error` (none lost, none duplicated), measures throughput, latency and the daemon's
RSS, and with ``--faults`` runs a fault probe beside the load. Prints a table and writes JSON.

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
    """One logical job: resubmitted under a new request id after each ``busy``."""

    client: int
    number: int
    rids: list[str] = field(default_factory=list)
    busy: int = 0
    accepted: int = 0
    finals: list[str] = field(default_factory=list)  # non-busy finals: "result" / "error:<code>" / "cancelled"
    progress: int = 0
    latency_s: float | None = None
    size_ok: bool | None = None
    first_sent: float = 0.0


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


def _client(index: int, endpoint: str, token: str, jobs: int, window: int, images: int, size: int, ft_steps: int,
            sample_steps: int, pure: bool, timeout: float, records: list[JobRecord], stats: dict,
            lock: threading.Lock) -> None:
    """Keep ``window`` jobs in flight (more than the daemon's per-client limit, so ``busy`` happens);
    resubmit a busy job after a growing back-off; count every final per request id."""
    conn = _Conn(endpoint, pure, token)
    mine = [JobRecord(index, j) for j in range(jobs)]
    todo: list[tuple[float, JobRecord]] = [(0.0, r) for r in mine]  # (not before, job)
    inflight: dict[str, JobRecord] = {}
    by_rid: dict[str, JobRecord] = {}
    finals_per_rid: dict[str, int] = {}
    sent = 0
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (todo or inflight):
            now = time.monotonic()
            for item in sorted(todo, key=lambda t: t[0]):
                if len(inflight) >= window or item[0] > now:
                    continue
                todo.remove(item)
                record = item[1]
                rid = f"c{index}-j{record.number}-a{len(record.rids)}-{uuid.uuid4().hex[:6]}"
                header = make_request("edit", rid, token, prompt="a green square", subject="square", style="photo",
                                      seed=record.number, sampling={"steps": sample_steps},
                                      finetune={"method": "lora", "steps": ft_steps, "patch": False})
                record.rids.append(rid)
                record.first_sent = record.first_sent or time.perf_counter()
                inflight[rid] = by_rid[rid] = record
                conn.send(encode_message(header, [image_blob(_image(size, (index + record.number) % images))]))
                sent += 1
            frames = conn.recv(0.5)
            if frames is None:
                continue
            _note(decode_reply(frames), by_rid, inflight, finals_per_rid, todo, size)
        linger = time.monotonic() + 1.0  # a duplicate final would arrive now
        while time.monotonic() < linger:
            frames = conn.recv(0.2)
            if frames is not None:
                _note(decode_reply(frames), by_rid, inflight, finals_per_rid, todo, size)
    finally:
        conn.close()
        with lock:
            records.extend(mine)
            stats["sent"] = stats.get("sent", 0) + sent
            stats["duplicated_rids"] = stats.get("duplicated_rids", 0) + sum(n > 1 for n in finals_per_rid.values())


def _note(event, by_rid: dict, inflight: dict, finals_per_rid: dict, todo: list, size: int) -> None:
    record = by_rid.get(event.id)
    if record is None:
        return
    if event.type == "accepted":
        record.accepted += 1
    elif event.type == "progress":
        record.progress += 1
    elif event.is_final:
        finals_per_rid[event.id] = finals_per_rid.get(event.id, 0) + 1
        inflight.pop(event.id, None)
        if event.type == "error" and event.header.get("code") == "busy" and finals_per_rid[event.id] == 1:
            record.busy += 1
            todo.append((time.monotonic() + min(2.0, 0.1 * 2 ** min(record.busy, 5)), record))
            return
        label = event.type if event.type != "error" else f"error:{event.header.get('code')}"
        record.finals.append(label)
        record.latency_s = time.perf_counter() - record.first_sent
        if event.type == "result":
            record.size_ok = event.image is not None and event.image.size == (size, size)


def _rss_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_faults(endpoint: str, token: str, port: int) -> dict:
    """Hostile and clumsy peers while the load runs: the malformed corpus, raw bytes, no token, a
    vanishing client, a slow reader. Returns cases tried / answered clearly / faults survived."""
    import random
    import socket

    sys.path.insert(0, str(REPO / "tests" / "protocol"))
    from malformed_corpus import CASES

    out: dict = {"cases_tried": 0, "cases_answered": 0, "wrong": [], "faults": {}}
    conn = _Conn(endpoint, False, token)
    try:
        for name, build, code in CASES:  # every case must get its error code
            out["cases_tried"] += 1
            conn.send(build(token))
            frames = conn.recv(30)
            event = decode_reply(frames) if frames else None
            if event is not None and event.type == "error" and event.header.get("code") == code:
                out["cases_answered"] += 1
            else:
                out["wrong"].append(name)
    finally:
        conn.close()
    rng = random.Random(5)
    closed = 0
    socks = []
    for n in range(300):  # raw non-ZMTP bytes on the port
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n" if n % 2 else bytes(rng.randrange(256) for _ in range(64)))
        socks.append(sock)
    for sock in socks:
        sock.settimeout(15)
        try:
            closed += sock.recv(64) == b""
        except OSError:
            closed += 1
        sock.close()
    out["faults"]["raw_bytes_closed"] = f"{closed}/300"
    import zmq

    thief = zmq.Context.instance().socket(zmq.DEALER)  # no token: never gets a pipe
    thief.setsockopt(zmq.LINGER, 0)
    thief.connect(endpoint)
    sent = thief.poll(2000, zmq.POLLOUT)
    if sent:
        thief.send_multipart([encode_message(make_request("ping", "x", token))[0]], zmq.NOBLOCK)
    out["faults"]["no_token_answered"] = bool(thief.poll(2000))
    thief.close(0)
    vanishing = _Conn(endpoint, True, token)  # submits, then disappears mid-job
    vanishing.send(encode_message(make_request("edit", "gone", token, prompt="x", subject="y",
                                               sampling={"steps": 3}, finetune={"method": "lora", "steps": 2}),
                                  [image_blob(_image(32, 99))]))
    vanishing.close()
    out["faults"]["vanished_client"] = "sent and closed"
    return out


def run_load(endpoint: str, token: str, clients: int = 8, jobs: int = 20, window: int = 6, images: int = 4,
             size: int = 32, ft_steps: int = 2, sample_steps: int = 3, timeout: float = 1800.0,
             daemon_pid: int | None = None, faults_port: int | None = None) -> dict:
    """Run the load (and, with ``faults_port``, the fault probe beside it); return a summary."""
    records: list[JobRecord] = []
    stats: dict = {}
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_client, args=(i, endpoint, token, jobs, window, images, size, ft_steps,
                                               sample_steps, i % 2 == 1, timeout, records, stats, lock))
        for i in range(clients)
    ]
    rss_before = _rss_kb(daemon_pid)
    faults: dict = {}
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    if faults_port is not None:
        faults = run_faults(endpoint, token, faults_port)
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    rss_after = _rss_kb(daemon_pid)
    latencies = sorted(r.latency_s for r in records if r.latency_s is not None)
    outcomes: dict[str, int] = {}
    for r in records:
        key = r.finals[0] if len(r.finals) == 1 else ("lost" if not r.finals else "duplicated")
        outcomes[key] = outcomes.get(key, 0) + 1
    alive = None
    if faults_port is not None:
        from sine_protocol.client import SineClient

        with SineClient(endpoint, token, timeout=10) as client:
            alive = client.ping(timeout=10)
        faults["daemon_alive_after"] = alive

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, round(q * (len(latencies) - 1)))]

    return {
        "clients": clients,
        "jobs_per_client": jobs,
        "window": window,
        "jobs": len(records),
        "expected_jobs": clients * jobs,
        "submissions_sent": stats.get("sent", 0),
        "busy_retries": sum(r.busy for r in records),
        "lost": outcomes.get("lost", 0),
        "duplicated": outcomes.get("duplicated", 0) + stats.get("duplicated_rids", 0),
        "exactly_one_final": sum(len(r.finals) == 1 for r in records),
        "outcomes": outcomes,
        "wall_s": round(wall, 3),
        "jobs_per_s": round(outcomes.get("result", 0) / wall, 3) if wall else None,
        "latency_p50_s": pct(0.5),
        "latency_p95_s": pct(0.95),
        "latency_mean_s": statistics.fmean(latencies) if latencies else None,
        "daemon_rss_kb_before": rss_before,
        "daemon_rss_kb_after": rss_after,
        "faults": faults,
        "records": [asdict(r) for r in records],
    }


def print_table(summary: dict) -> None:
    rss = ("-" if summary["daemon_rss_kb_before"] is None or summary["daemon_rss_kb_after"] is None else
           f"{summary['daemon_rss_kb_before'] / 1024:.0f} -> {summary['daemon_rss_kb_after'] / 1024:.0f} MiB")
    rows = [
        ("clients × jobs", f"{summary['clients']} × {summary['jobs_per_client']} (window {summary['window']})"),
        ("jobs seen", f"{summary['jobs']} / {summary['expected_jobs']}"),
        ("exactly one final", f"{summary['exactly_one_final']} / {summary['expected_jobs']}"),
        ("sent / busy retries", f"{summary['submissions_sent']} / {summary['busy_retries']}"),
        ("lost / duplicated", f"{summary['lost']} / {summary['duplicated']}"),
        ("outcomes", ", ".join(f"{k}={v}" for k, v in sorted(summary["outcomes"].items()))),
        ("daemon RSS", rss),
        ("wall time", f"{summary['wall_s']:.2f} s"),
        ("throughput", f"{summary['jobs_per_s']:.2f} jobs/s"),
        ("latency p50", f"{summary['latency_p50_s']:.2f} s" if summary["latency_p50_s"] is not None else "-"),
        ("latency p95", f"{summary['latency_p95_s']:.2f} s" if summary["latency_p95_s"] is not None else "-"),
    ]
    if summary["faults"]:
        f = summary["faults"]
        rows.append(("malformed cases", f"{f['cases_answered']} / {f['cases_tried']} answered with their code"))
        rows.append(("faults", ", ".join(f"{k}={v}" for k, v in f["faults"].items())))
        rows.append(("daemon alive after", str(f.get("daemon_alive_after"))))
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
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--window", type=int, default=6,
                        help="jobs each client keeps in flight (above the daemon's per-client limit of 4: busy retries)")
    parser.add_argument("--faults", action="store_true",
                        help="also run the fault probe (malformed corpus, raw bytes, no token, vanishing client)")
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
        port = int(endpoint.rsplit(":", 1)[1]) if endpoint.startswith("tcp://") else None
        summary = run_load(endpoint, token, args.clients, args.jobs, args.window, size=args.size,
                           ft_steps=args.ft_steps, sample_steps=args.sample_steps,
                           daemon_pid=proc.pid if proc else None, faults_port=port if args.faults else None)
        print_table(summary)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
        print(f"wrote {args.json}")
        ok = summary["outcomes"].get("result", 0) == summary["expected_jobs"] and not summary["duplicated"]
        return 0 if ok else 1
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    sys.exit(main())
