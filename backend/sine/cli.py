"""The `sine` command: one subcommand per module in `sine.commands`."""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from .argparsing import SineParser

# Errors about the shape of a path the user typed (not about the machine): one line, never a traceback.
PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ELOOP})

# Each name is a module `sine.commands.<name>` with `add_parser(subparsers)` and `run(args) -> int`.
COMMANDS = ("edit", "demo", "daemon", "cache", "doctor", "train_demo")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sine-edit")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = SineParser(prog="sine", description="SINE single-image editing with diffusion models")
    parser.add_argument("--version", action="version", version=f"sine {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"sine.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"sine.commands.{name}":
                continue  # not built yet in this checkout
            raise
        sub_parser = module.add_parser(sub)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .devices import prepare_cpu_runtime  # torch is not imported yet: OpenMP reads this at its start

    prepare_cpu_runtime()
    parser = build_parser()
    args, extras = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if extras:  # argparse would blame the top-level parser; the subcommand knows its flags
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        (subparsers.choices.get(args.command) or parser).error(f"unrecognized arguments: {' '.join(extras)}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:  # Ctrl+C: one line, the shell's code for SIGINT, no traceback
        print(f"sine {args.command.replace('_', '-')}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in PATH_ERRNOS or exc.filename is None:
            raise
        from .errors import printable, shown_path

        print(f"sine {args.command.replace('_', '-')}: error: cannot use {printable(shown_path(exc.filename))}:"
              f" {exc.strerror}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
