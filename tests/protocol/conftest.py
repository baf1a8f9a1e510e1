"""Make the source tree's ``sine_protocol`` importable even when the project is not installed.

An editable install made before ``__init__.py`` existed maps ``sine_protocol`` as a namespace
package; that shadow is replaced with the real package too.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
try:
    import sine_protocol
    _real = getattr(sine_protocol, "__file__", None) is not None
except ImportError:
    _real = False
if not _real:
    for name in [n for n in sys.modules if n == "sine_protocol" or n.startswith("sine_protocol.")]:
        del sys.modules[name]
    sys.path.insert(0, str(SHARED))
