"""`sine daemon`: run the local GPU daemon the Krita and GIMP plugins talk to."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from sine.cache import parse_size
from sine.devices import MAX_CPU_THREADS
from sine.preflight import float_in, int_in

from ..argparsing import user_folder, user_path

MIN_MESSAGE_BYTES = 64 * 1024  # far below, even `hello` is cut off (ZMQ_MAXMSGSIZE) and every client hangs
CONFIG_MAX_BYTES = 1 << 20  # the installer's config.json holds a model name; a bigger file is not it
C_INT_MAX = 2**31 - 1  # ZeroMQ's SNDHWM and SNDBUF are C ints: a larger value was an OverflowError traceback
MIN_QUEUED_BYTES = 8 * 8 * 4  # the smallest edit's pixels (8x8 RGBA): below, every edit is refused `busy`


def size_at_least(low: int, high: int | None = None) -> type:
    """An argparse `type` for a byte size (2GB, 500MiB, ...) of at least `low` (and at most `high`) bytes."""
    def parse(text: str) -> int:
        try:
            value = parse_size(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below the minimum of {low} bytes")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} is above the maximum of {high} bytes")
        return value
    parse.__name__ = "size"
    return parse  # type: ignore[return-value]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("daemon", help="run the editing daemon (ZeroMQ, loopback only by default)",
                              description="Run the sine daemon: it owns the GPU, queues edits from the plugins,"
                                          " and caches per-image fine-tuned weights.")
    p.add_argument("--endpoint", help="tcp://127.0.0.1:PORT (default: SINE_ENDPOINT or tcp://127.0.0.1:47633)")
    p.add_argument("--model", type=user_path, help="base model: diffusers folder, .safetensors/.ckpt file or hub id (default: SINE_MODEL or the demo model)")
    p.add_argument("--cache-dir", type=user_folder, help="per-image weight cache (default: SINE_CACHE_DIR or the user cache)")
    p.add_argument("--cache-budget", type=size_at_least(0), default=None,
                   help="disk budget of the weight cache, e.g. 2GB, 500MB (default: SINE_CACHE_BUDGET or 2GB)")
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), help="default: cuda when available")
    p.add_argument("--max-input-pixels", type=int_in(64), help="largest accepted source image, in pixels")
    p.add_argument("--max-output-pixels", type=int_in(64), help="largest result, in pixels")
    p.add_argument("--max-message-bytes", type=size_at_least(MIN_MESSAGE_BYTES), help="largest accepted message (ZMQ_MAXMSGSIZE)")
    p.add_argument("--max-queued-per-client", type=int_in(1), default=4)
    p.add_argument("--max-queued", type=int_in(1), default=32, help="queued jobs in total before replying busy")
    p.add_argument("--max-queued-bytes", type=size_at_least(MIN_QUEUED_BYTES), default=parse_size("2GiB"),
                   help="pixel bytes held by pending jobs before replying busy (default 2GiB)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback tcp endpoint (anyone who can reach it and has the token may use the GPU;"
                        " the token and pictures travel unencrypted: use an SSH tunnel or a VPN)")
    p.add_argument("--no-ipc", action="store_true", help="do not also listen on ipc:// in the runtime dir")
    p.add_argument("--foreground", action="store_true",
                   help="accepted for clarity: the daemon never forks itself (a launcher detaches it) and"
                        " always logs to stderr and to daemon.log in the state dir")
    p.add_argument("--threads", type=int_in(1, MAX_CPU_THREADS), help="CPU threads for torch")
    p.add_argument("--progress-interval", type=float_in(0.0, 3600.0), default=0.25,
                   help="seconds between progress events of one job (first and last step always sent)")
    p.add_argument("--preview-every", type=int_in(1), default=5, help="sampling steps between preview images")
    p.add_argument("--send-hwm", type=int_in(1, C_INT_MAX), default=1000,
                   help="replies queued for a slow client before its progress events are dropped (default 1000)")
    p.add_argument("--send-buffer", type=size_at_least(4096, C_INT_MAX), help="kernel send buffer per connection (default: the OS's)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def default_model() -> str | None:
    """SINE_MODEL, else the model the installer recorded in config.json, else the bundled demo model."""
    if os.environ.get("SINE_MODEL"):
        return os.environ["SINE_MODEL"]
    from sine_protocol import paths

    try:  # a pipe or /dev/zero in its place must not hold the start for ever
        recorded = json.loads(paths.read_small_file(paths.config_dir() / "config.json", CONFIG_MAX_BYTES)).get("model")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, str) and recorded:
        return recorded
    demo = Path(__file__).resolve().parents[1] / "demo_model"
    return str(demo) if (demo / "model_index.json").exists() else None


def folder_problem(cache_flag: Path | None) -> str | None:
    """A folder setting that is relative, holds a line break, or names a file (or a device): said by name at
    start, not as a token written where no plug-in looks, a split log line, "File exists", or a token file
    that is not one (the token's path runs through the file)."""
    from sine_protocol import paths

    for name in paths.FOLDER_SETTINGS:
        problem = None if name == "SINE_CACHE_DIR" and cache_flag else paths.folder_setting_problem(name)
        if problem:
            return problem
    named = [("SINE_STATE_DIR", paths.state_dir()), ("SINE_CONFIG_DIR", paths.config_dir()),
             ("--cache-dir", cache_flag) if cache_flag else ("SINE_CACHE_DIR", paths.cache_dir())]
    for name, folder in named:
        if os.path.lexists(folder) and not folder.is_dir():
            return f"{name} {folder} is a file, not a folder: name a folder (it is made when missing)"
    return None


def environment_problem(device_given: bool = False) -> str | None:
    """What is wrong with the SINE_* settings the worker reads later (threads, memory budget, device and
    dtypes), or None: the daemon refuses them at start instead of answering every job with an error."""
    from sine.daemon.loaded import loaded_budget
    from sine.errors import BadInput
    from sine.preflight import check_environment

    try:
        check_environment(device_given)
    except BadInput as exc:
        return str(exc)
    try:
        loaded_budget()
    except ValueError as exc:
        return f"SINE_LOADED_BUDGET: {exc}"
    return None


def run(args: argparse.Namespace) -> int:
    from sine.daemon.config import ConfigError, DaemonConfig
    from sine.daemon.logging_setup import setup_logging
    from sine.daemon.server import Daemon, StartupError
    from sine.errors import printable
    from sine_protocol import paths
    from sine_protocol.messages import Limits

    if args.cache_budget is None:  # read here, not while the parsers are built: a typo breaks only this command
        budget = os.environ.get("SINE_CACHE_BUDGET")
        try:
            args.cache_budget = parse_size(budget) if budget else DaemonConfig.cache_budget
        except ValueError as exc:
            print(f"sine daemon: SINE_CACHE_BUDGET: {exc}", file=sys.stderr)
            return 2
    problem = environment_problem(device_given=args.device is not None) or folder_problem(args.cache_dir)
    if problem:  # at start, not as every job's error (or a worker that dies at its first job)
        print(f"sine daemon: {problem}", file=sys.stderr)
        return 2
    state = paths.state_dir()
    try:
        log_path = setup_logging(state, getattr(logging, args.log_level), stderr=True)
    except OSError as exc:
        print(f"sine daemon: cannot keep the log in {state} (SINE_STATE_DIR): {exc.strerror or exc}", file=sys.stderr)
        return 2
    defaults = Limits()
    limits = Limits(
        max_input_pixels=args.max_input_pixels or defaults.max_input_pixels,
        max_output_pixels=args.max_output_pixels or defaults.max_output_pixels,
        max_message_bytes=args.max_message_bytes or defaults.max_message_bytes,
        max_queued_per_client=args.max_queued_per_client,
    )
    config = DaemonConfig(
        endpoint=args.endpoint or paths.default_endpoint(),
        state_dir=state,
        cache_dir=args.cache_dir or paths.cache_dir(),
        runtime_dir=None if args.no_ipc else paths.runtime_dir(),
        model=args.model or default_model(),
        device=args.device,
        cache_budget=args.cache_budget,
        max_queued_per_client=args.max_queued_per_client,
        max_queued_total=args.max_queued,
        max_queued_bytes=args.max_queued_bytes,
        allow_remote=args.allow_remote,
        progress_interval_s=args.progress_interval,
        preview_every=args.preview_every,
        threads=args.threads,
        send_hwm=args.send_hwm,
        send_buffer_bytes=args.send_buffer,
    )
    try:
        # No token here: the daemon reads or writes it only once it holds the endpoint lock.
        daemon = Daemon(config, limits=limits, token_path=paths.token_file())
        logging.getLogger("sine.daemon").info("logging to %s", log_path)
        code = daemon.serve()
        if daemon.abandoned:  # the worker is stuck in a step that cannot be interrupted: don't wait for it
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except (ConfigError, StartupError) as exc:
        print(f"sine daemon: {printable(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl+C before the daemon's own handler is installed (still starting up)
        return 130
