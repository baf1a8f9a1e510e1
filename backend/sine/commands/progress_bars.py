"""Progress bars: a bar redrawn in place on a terminal, a few plain redraws in a log.

tqdm redraws about ten times a second. On a terminal that is one line; in a file or a pipe
(`sine edit ... 2> log`, a job runner, a wrapper script) every redraw stays: an 18-second edit left
444 of them. Off a terminal a bar is redrawn every LOG_INTERVAL_S instead, plus where it started and ended.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm

LOG_INTERVAL_S = 10.0
TERMINAL_INTERVAL_S = 0.1  # tqdm's own


def progress_bar(total: int, desc: str, file: TextIO | None = None) -> tqdm:
    """A tqdm bar of `total` steps on `file` (stderr), redrawn seldom when that is not a terminal."""
    from tqdm import tqdm

    file = file or sys.stderr
    try:
        terminal = file.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        terminal = False
    return tqdm(total=total, desc=desc, unit="step", file=file,
                mininterval=TERMINAL_INTERVAL_S if terminal else LOG_INTERVAL_S)
