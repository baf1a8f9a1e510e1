"""Errors the engine raises; the CLI and the daemon turn them into one-line messages / error codes."""

from __future__ import annotations

import unicodedata
from pathlib import Path


class SineError(Exception):
    """Base class: a failure the user can understand from its message alone."""

    code = "internal"


class BadInput(SineError):
    code = "bad_request"


class ModelMissing(SineError):
    code = "model_missing"


class Cancelled(SineError):
    code = "cancelled"


class BadModel(ModelMissing):
    """A model file or folder that is there but unusable (truncated, unsafe, inpainting, unknown kind).

    Its wire code stays model_missing (the protocol's code for "no usable model"); the message names
    the file and says what to do."""


def shown_path(path: str | Path, limit: int = 120) -> str:
    """A path for a one-line error: a very long one is cut in the middle."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit // 2]}…{text[-limit // 2:]}"


def printable(text: str) -> str:
    """``text`` with control, format and separator characters escaped (``\\n``, ``\\x1b``): a file name
    may hold a newline or a terminal escape, which a printed error must neither obey nor split on."""
    return "".join(c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in text)
