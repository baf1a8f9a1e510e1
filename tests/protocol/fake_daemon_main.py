"""Run the fake daemon as its own process: ``python fake_daemon_main.py ENDPOINT TOKEN``.

Used by the launch tests as the command in ``daemon.json``; exits on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import sine_protocol
    if getattr(sine_protocol, "__file__", None) is None:
        raise ImportError
except ImportError:
    sys.modules.pop("sine_protocol", None)
    sys.path.insert(0, str(HERE.parents[1] / "shared"))

from fake_daemon import FakeDaemon  # noqa: E402


def main() -> int:
    endpoint, token = sys.argv[1], sys.argv[2]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    daemon = FakeDaemon(token, endpoint)
    print(f"fake daemon up at {daemon.endpoint}", flush=True)
    stop.wait()
    daemon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
