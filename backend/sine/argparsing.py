"""argparse as a newcomer needs it: a mistyped flag is named with the flag probably meant, and a
path typed as `"~/my picture.png"` (quoted for its space, so the shell left the `~`) is the home folder."""

from __future__ import annotations

import argparse
import difflib
import os
from pathlib import Path
from typing import NoReturn


def user_path(text: str) -> str:
    """An argparse `type` for a path: a leading `~` or `~user` means that home folder."""
    return os.path.expanduser(text)


def user_folder(text: str) -> Path:
    """`user_path` as a Path (for --cache-dir)."""
    return Path(user_path(text))


class SineParser(argparse.ArgumentParser):
    """Remembers the words it parsed, so that its errors can name the unknown flags among them."""

    _words: list[str] = []

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        if args is not None:
            self._words = [str(word) for word in args]
        return super().parse_known_args(args, namespace)

    def unknown_flags(self) -> list[str]:
        """The `--name` words that match no flag of this parser, in the order typed."""
        known = [s for s in self._option_string_actions if s.startswith("--")]
        unknown = []
        for word in self._words:
            if word == "--":
                break
            name = word.split("=", 1)[0]
            if name.startswith("--") and len(name) > 2 and not any(k.startswith(name) for k in known):
                unknown.append(name)
        return unknown

    def flag_hints(self) -> list[str]:
        """"did you mean --out?" for each unknown flag close to a real one."""
        known = [s for s in self._option_string_actions if s.startswith("--")]
        hints = []
        for name in self.unknown_flags():
            match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            if match:
                hints.append(f"{name}: did you mean {match[0]}?")
        return hints

    def error(self, message: str) -> NoReturn:
        unknown = self.unknown_flags()
        if unknown and "unrecognized arguments" not in message:
            message = f"unrecognized arguments: {' '.join(unknown)}; {message}"
        hints = self.flag_hints()
        if hints:
            message = f"{message} ({'; '.join(hints)})"
        super().error(message)
