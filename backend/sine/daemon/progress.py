"""Turn the engine's per-step callbacks into rate-limited `progress` events with occasional previews."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from sine_protocol.frames import PREVIEW_MAX_SIDE, RGBAImage
from sine_protocol.messages import PROGRESS, bounded_notes, image_blob, make_reply

Emit = Callable[[list[bytes]], None]


def preview_blob(image: Image.Image) -> tuple[dict[str, Any], bytes]:
    """A small RGBA preview (long side <= 128) as a blob."""
    small = image.convert("RGBA")
    small.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.BILINEAR)
    return image_blob(RGBAImage(small.width, small.height, small.tobytes()), role="preview", compress=True)


class ProgressReporter:
    """Send at most one event per ``interval_s`` per job, but always the first and last step of each phase.

    Previews cost a (small) VAE decode, so they are built only for events that are actually sent: on the
    first step (quick feedback), then at most every ``preview_every`` steps, and on the last.
    """

    def __init__(self, emit: Emit, job_id: str, request_id: str, interval_s: float = 0.25, preview_every: int = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.emit = emit
        self.job_id = job_id
        self.request_id = request_id
        self.interval_s = interval_s
        self.preview_every = max(1, preview_every)
        self.clock = clock
        self.phase: str | None = None
        self._phase_start = 0.0
        self._last_sent = -1e9
        self._last_preview_step = 0
        self._estimate_s: float | None = None
        self._notes: list[str] = []
        self._step, self._total = 0, 0  # the step reached in the current phase (sent or not): what `part` repeats
        self._eta, self._eta_at = 0.0, 0.0  # the last step's estimate of the phase's rest, and when it was made
        self.sent = 0

    def set_estimate(self, seconds: float | None) -> None:
        """The whole job's expected time (sine.estimate): the next phase start carries it as `eta_s` and `estimate_s`."""
        self._estimate_s = seconds

    def set_notes(self, notes: list[str]) -> None:
        """The job's notes for the painter (sine.job_notes): the next event carries them, once."""
        self._notes = bounded_notes(notes)

    def phase_start(self, phase: str, total: int = 0) -> None:
        """Announce a phase (always sent): step 0 of ``total``."""
        self.phase = phase
        self._phase_start = self.clock()
        self._last_preview_step = 0
        self._step, self._total = 0, total
        estimate, self._estimate_s = self._estimate_s, None
        if estimate is None:
            self._send(phase, 0, total, 0.0, None)
        else:
            self._send(phase, 0, total, estimate, None, estimate_s=_rounded(float(estimate)))

    def step(self, phase: str, step: int, total: int, preview: Callable[[], Image.Image] | None = None) -> None:
        """Report ``step`` of ``total`` (1-based); decides whether an event goes out."""
        if phase != self.phase:
            self.phase = phase
            self._phase_start = self.clock()
            self._last_preview_step = 0
        now = self.clock()
        last = step >= total
        self._step, self._total = step, total
        if not (step <= 1 or last or now - self._last_sent >= self.interval_s):
            return
        elapsed = now - self._phase_start
        eta = elapsed / step * (total - step) if step > 0 else 0.0
        self._eta, self._eta_at = eta, now
        blob = None
        if preview is not None and (step == 1 or last or step - self._last_preview_step >= self.preview_every):
            blob = preview_blob(preview())
            self._last_preview_step = step
        self._send(phase, step, total, eta, blob)

    def part(self, what: str, part: int, parts: int) -> None:
        """Progress inside the current step (``what``: "tile" of a tiled sampling step, "decode tile" of the
        VAE's): an event with the step's numbers and ``part``/``parts``/``part_of``, only when ``interval_s``
        has passed since the last event, so a big layer's minutes-long step moves the bar, a small one adds nothing."""
        now = self.clock()
        if self.phase is None or now - self._last_sent < self.interval_s:
            return
        eta = max(0.0, self._eta - (now - self._eta_at)) if self._step > 0 else 0.0
        self._send(self.phase, self._step, self._total, eta, None, part=part, parts=parts, part_of=what)

    def _send(self, phase: str, step: int, total: int, eta: float, blob: tuple[dict, bytes] | None,
              **extra: Any) -> None:
        self._last_sent = self.clock()
        self.sent += 1
        if self._notes:
            extra["notes"], self._notes = self._notes, []
        self.emit(make_reply(PROGRESS, self.request_id, [blob] if blob else None, job=self.job_id, phase=phase,
                             step=step, total=total, eta_s=round(float(eta), 2), **extra))


def _rounded(seconds: float) -> float:
    """Tenths of a second, but never 0 for work that takes some (a cached tiny job: 0.04 s)."""
    return round(seconds, 1) if seconds >= 0.1 else float(f"{seconds:.1g}")
