"""Errors the engine raises; the CLI and the daemon turn them into one-line messages / error codes."""

from __future__ import annotations


class SineError(Exception):
    """Base class: a failure the user can understand from its message alone."""

    code = "internal"


class BadInput(SineError):
    code = "bad_request"


class ModelMissing(SineError):
    code = "model_missing"


class Cancelled(SineError):
    code = "cancelled"
