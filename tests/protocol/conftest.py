"""Make ``sine_protocol`` importable from the source tree when the project is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
try:
    import sine_protocol  # noqa: F401
except ImportError:
    sys.path.insert(0, str(SHARED))
