"""`sine cache list|clear`: inspect or empty the per-image weight cache."""

from __future__ import annotations

import argparse
import time

from ..argparsing import user_folder


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("cache", help="list or clear the per-image fine-tuned weights")
    p.add_argument("action", choices=("list", "clear"),
                   help="list: each cached fine-tune, its size and last use; clear: delete them all")
    p.add_argument("--cache-dir", type=user_folder, help="default: SINE_CACHE_DIR or the user cache folder")
    return p


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def run(args: argparse.Namespace) -> int:
    import sys

    from sine.cache import NotACacheFolder, WeightCache
    from sine.errors import printable
    from sine_protocol import paths

    problem = None if args.cache_dir else paths.folder_setting_problem("SINE_CACHE_DIR")
    if problem:  # the daemon refuses it too: this would be another folder than the daemon's
        print(f"sine cache: {problem}", file=sys.stderr)
        return 2
    root = args.cache_dir or paths.cache_dir()
    shown = printable(str(root))  # a folder name may hold a newline or a terminal escape
    if root.exists() and not root.is_dir():
        print(f"sine cache: {shown} is a file, not a cache folder (--cache-dir or SINE_CACHE_DIR)", file=sys.stderr)
        return 2
    try:  # listing never creates, marks or sweeps anything
        cache = WeightCache(root, read_only=args.action == "list")
    except NotACacheFolder as exc:
        print(f"sine cache: {printable(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sine cache: cannot use {shown}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.action == "clear":
        print(f"removed {cache.clear()} entries from {shown}")
        return 0
    entries = cache.entries()
    print(f"{len(entries)} entries, {_human(sum(e.bytes for e in entries))} in {shown}")
    for e in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
        method = printable(str(e.settings.get("method", "?"))[:20])  # from a file: never raw to the terminal
        print(f"  {e.key[:16]}  {_human(e.bytes):>9}  last used {used}  {method}")
    return 0
