"""Make the vendored ``sine_protocol`` importable before anything imports it.

The installer copies ``shared/sine_protocol`` into ``<plugin>/_vendor/``; putting that folder first
on ``sys.path`` means the plugin always gets the protocol version it was installed with, even if
another copy is importable in the host's Python.
"""

from __future__ import annotations

import os
import sys

VENDOR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_vendor")


def ensure_vendor_path(vendor_dir: str = VENDOR_DIR) -> bool:
    """Put ``vendor_dir`` at the front of ``sys.path``; False when it does not exist (dev checkout)."""
    if not os.path.isdir(vendor_dir):
        return False
    if sys.path[:1] != [vendor_dir]:
        while vendor_dir in sys.path:
            sys.path.remove(vendor_dir)
        sys.path.insert(0, vendor_dir)
    return True
