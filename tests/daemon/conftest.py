"""Shared fixtures for the daemon tests: import paths and few CPU threads (2 cores for everything)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for sub in ("backend", "shared"):
    path = str(REPO / sub)
    if path not in sys.path:
        sys.path.insert(0, path)
