"""One SINE edit seen from the plug-in: connect, submit, follow events, cancel.

Nothing here imports ``gi``: the plug-in's GIMP glue (pixels, dialogs, progress bar) passes plain
bytes and callbacks in, so this module runs (and is tested) against the real daemon from a plain
Python on the host too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from sine_protocol import DaemonUnavailable, Mask, ProtocolError, RGBAImage, SineClient, defaults
from sine_protocol.client import transport_setting_problem
from sine_protocol.messages import (
    SLOW_STEP_S,
    daemon_error_text,
    daemon_lost_text,
    part_text,
    step_fraction,
    still_working,
)
from sine_protocol.results import EditResult, results_of

# Inside GIMP only pure-Python code may be relied on (GIMP on Windows bundles no pyzmq), so the
# plug-in uses the pure ZMTP transport everywhere: the path that ships is the path that is tested.
DEFAULT_TRANSPORT = "pure"
PING_TIMEOUT_S = 2.0
# A job that sends no event for this long (not even "queued" progress) is treated as lost.
DEFAULT_IDLE_TIMEOUT_S = 600.0
CANCEL_GRACE_S = 5.0


class EditFailed(Exception):
    """An edit could not be done; ``str(exc)`` is a message written for the GIMP user."""

    def __init__(self, message: str, code: str = "internal") -> None:
        super().__init__(message)
        self.code = code


class DaemonNotRunning(EditFailed):
    """Nothing answers at the endpoint (the user may be offered to start the daemon)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="daemon_not_running")


class EditCancelled(EditFailed):
    """The user cancelled; the daemon job was cancelled too."""

    def __init__(self, message: str = "SINE edit cancelled.") -> None:
        super().__init__(message, code="cancelled")


@dataclass
class EditRequest:
    """The procedure's arguments, as the plug-in got them from the dialog or the PDB."""

    prompt: str
    subject: str = ""
    style: str = defaults.STYLE
    seed: int = defaults.SEED
    steps: int = defaults.STEPS
    guidance: float = defaults.GUIDANCE
    v: float = defaults.V
    k: int = defaults.K
    method: str = defaults.METHOD
    finetune_steps: int = 0  # 0: the daemon's default for the method
    output_width: int = 0  # 0: the layer's width
    output_height: int = 0  # 0: the layer's height
    strength: float = defaults.STRENGTH  # 1.0 is pure noise (SINE); lower keeps more of the source
    start: str = defaults.START  # below strength 1: "noise" or "inversion"
    count: int = 1  # results (seeds seed, seed+1, ...)
    style_weight: float = defaults.STYLE_WEIGHT  # weight of the style picture's model, when one is sent
    content_weight: float = defaults.CONTENT_WEIGHT  # the source's own model beside it (sent as set)

    def sampling(self, with_style: bool = False) -> dict:
        """The ``sampling`` field of the ``edit`` message."""
        sampling = {"steps": self.steps, "w": self.guidance, "v": self.v, "k": self.k,
                    "strength": self.strength, "start": self.start}  # fmt: skip
        if with_style:
            sampling["style_weight"] = self.style_weight
            sampling["content_weight"] = self.content_weight
        return sampling

    def check_weights(self) -> None:
        """The daemon takes style + content weight up to 1: say so in words before sending."""
        if self.style_weight + self.content_weight > 1.0 + 1e-9:
            raise EditFailed(f"The style weight {self.style_weight:.2f} and content weight {self.content_weight:.2f} "
                             "add up to more than 1: lower one of them.", "bad_request")

    def finetune(self) -> dict:
        """The ``finetune`` field; ``steps`` None lets the daemon pick its default."""
        return {"method": self.method, "steps": self.finetune_steps or None}

    def output_size(self, layer_width: int, layer_height: int) -> tuple[int, int]:
        """Requested output size; a zero side falls back to the layer's."""
        return (self.output_width or layer_width, self.output_height or layer_height)


@dataclass
class Progress:
    """One progress step, ready for a progress bar: per-phase fraction and a short text."""

    phase: str
    step: int
    total: int
    text: str
    fraction: float
    preview: RGBAImage | None = None


_PHASE_WORDS = {
    "queued": "waiting in the queue",
    "loading": "loading the model",
    "finetune": "fine-tuning",
    "sample": "sampling",
    "decode": "decoding",
}


def progress_text(phase: str, step: int, total: int) -> str:
    """Short status line such as ``fine-tuning 12/40`` or ``sampling 30/100``."""
    word = _PHASE_WORDS.get(phase, phase)
    if phase in ("finetune", "sample") and total > 0:
        return f"{word} {step}/{total}"
    return word


def endpoint_in_use(endpoint: str | None) -> str:
    """The endpoint the client will dial, for messages (env override, else the default)."""
    if endpoint:
        return endpoint
    from sine_protocol import paths

    return os.environ.get("SINE_ENDPOINT") or paths.default_endpoint()


def not_running_message(endpoint: str | None) -> str:
    """The message shown when no daemon answers."""
    return (
        f"The SINE daemon is not running (nothing answers at {endpoint_in_use(endpoint)}). "
        "Start it with `sine daemon` (or log in again if autostart is installed), then retry."
    )


def connect(endpoint: str | None = None, transport: str | None = None) -> SineClient:
    """A client whose daemon answered a ping; raises DaemonNotRunning otherwise."""
    transport = transport or os.environ.get("SINE_TRANSPORT") or DEFAULT_TRANSPORT
    problem = transport_setting_problem(transport)
    if problem:
        raise EditFailed(f"{problem}.", "bad_setting")
    try:
        client = SineClient(endpoint=endpoint, transport=transport)
    except (DaemonUnavailable, OSError) as exc:
        raise DaemonNotRunning(f"{not_running_message(endpoint)} ({exc})") from exc
    except ProtocolError as exc:
        raise EditFailed(error_message(exc.code, exc.message), exc.code) from exc
    except ValueError as exc:  # a malformed SINE_ENDPOINT
        raise EditFailed(
            f"Bad SINE daemon endpoint {endpoint_in_use(endpoint)!r}: {exc}", "bad_endpoint"
        ) from exc
    try:
        alive = client.ping(timeout=PING_TIMEOUT_S)
    except (DaemonUnavailable, OSError):
        alive = False
    except ProtocolError as exc:
        client.close()
        raise EditFailed(error_message(exc.code, exc.message), exc.code) from exc
    if not alive:
        client.close()
        raise DaemonNotRunning(not_running_message(endpoint))
    return client


def start_daemon_and_connect(
    endpoint: str | None = None,
    wait_s: float = 120.0,
    should_cancel: Callable[[], bool] = lambda: False,
    idle: Callable[[], None] = lambda: None,
) -> SineClient:
    """Start the installed daemon (daemon.json) and wait until it answers.

    ``idle`` runs between pings (the UI pumps its events there); a daemon that exits early ends
    the wait after a short grace (a second instance exits when another one already runs).
    """
    from sine_protocol import DaemonNotInstalled, launch, paths

    try:
        process = launch.start_daemon()
    except DaemonNotInstalled as exc:
        raise EditFailed(str(exc), "daemon_not_installed") from exc
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if should_cancel():
            raise EditCancelled("Stopped waiting for the SINE daemon to start (it may still be starting).")
        try:
            return connect(endpoint)
        except DaemonNotRunning:
            if process.poll() is not None:
                deadline = min(deadline, time.monotonic() + 3.0)
            idle()
            time.sleep(0.25)
    log = paths.state_dir() / launch.LOG_NAME
    if process.poll() is not None:
        raise DaemonNotRunning(
            f"The SINE daemon stopped right after starting (exit code {process.returncode}); see {log}."
        )
    raise DaemonNotRunning(
        f"The SINE daemon was started but did not answer within {wait_s:.0f} s; see {log}."
    )


def internal_error_message(exc: BaseException) -> str:
    """What the painter reads when the plug-in itself fails (a bug): in words, not Python's repr of the exception."""
    words = [a for a in exc.args if isinstance(a, str) and a.strip()]
    detail = words[-1].strip() if words else "no description"
    return (f"The SINE plug-in failed unexpectedly ({detail[:200]}). The details are printed on GIMP's terminal "
            "(start GIMP from a terminal to see them); please report them.")


def error_message(code: str, message: str) -> str:
    """A GIMP-user message for a daemon ``error`` reply: advice first, the daemon's words after."""
    return daemon_error_text(code, message, "run the filter again")


def run_edit(
    client: SineClient,
    request: EditRequest,
    image: RGBAImage,
    mask: Mask | None = None,
    on_progress: Callable[[Progress], None] = lambda p: None,
    should_cancel: Callable[[], bool] = lambda: False,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    poll_s: float = 0.1,
) -> RGBAImage:
    """The first (for ``count`` 1: the only) result of :func:`run_edit_results`."""
    return run_edit_results(client, request, image, mask, on_progress, should_cancel, idle_timeout_s, poll_s)[0].image


def run_edit_results(
    client: SineClient,
    request: EditRequest,
    image: RGBAImage,
    mask: Mask | None = None,
    on_progress: Callable[[Progress], None] = lambda p: None,
    should_cancel: Callable[[], bool] = lambda: False,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    poll_s: float = 0.1,
    style_image: RGBAImage | None = None,
    on_notes: Callable[[list[str]], None] = lambda notes: None,
) -> list[EditResult]:
    """Submit the edit and follow it to its results (``request.count`` of them, in seed order),
    calling ``on_progress`` for every event and ``on_notes`` with the job's notes (e.g. a cut prompt)
    when an event carries them (its first progress, its result).

    ``should_cancel`` is polled between events (every ``poll_s``) so the caller's UI stays alive;
    when it turns true the daemon job is cancelled and EditCancelled raised. ``style_image`` is the
    second picture of multi-model guidance (``request.style_weight`` is its weight,
    ``request.content_weight`` the source model's).
    """
    if not request.prompt.strip():
        raise EditFailed("Write an edit prompt first (what should change in the picture).", "bad_request")
    out_w, out_h = request.output_size(image.width, image.height)
    extra: dict = {}
    if request.count != 1:
        extra["count"] = request.count
    if style_image is not None:
        request.check_weights()
        extra["style_image"] = style_image
    try:
        rid = client.submit_edit(
            image,
            request.prompt,
            subject=request.subject,
            style=request.style,
            seed=request.seed,
            sampling=request.sampling(with_style=style_image is not None),
            finetune=request.finetune(),
            output_size=(out_w, out_h),
            mask=mask,
            **extra,
        )
    except DaemonUnavailable as exc:
        raise DaemonNotRunning(f"{not_running_message(None)} ({exc})") from exc
    except ProtocolError as exc:
        raise EditFailed(error_message(exc.code, exc.message), exc.code) from exc
    shown = Progress("queued", 0, 0, progress_text("queued", 0, 0), 0.0)
    on_progress(shown)
    job: str | None = None
    last_event, last_text = time.monotonic(), ""
    while True:
        if should_cancel():
            _cancel(client, rid, job)
            raise EditCancelled()
        try:
            event = client.poll_event(poll_s)
        except DaemonUnavailable as exc:
            raise DaemonNotRunning(daemon_lost_text(str(exc), "Run the filter again to start it again.")) from exc
        if event is None:
            now = time.monotonic()
            if now - last_event >= SLOW_STEP_S:  # one long step (a big layer's): say how long it has run
                longer = replace(shown, text=still_working(shown.text, now - last_event), preview=None)
                if longer.text != last_text:
                    last_text = longer.text
                    on_progress(longer)
            # The daemon's heartbeat (every few seconds while a step runs) shows no event but counts here:
            # only a daemon that sent nothing at all for idle_timeout_s is given up.
            if now - max(last_event, client.last_heard) > idle_timeout_s:
                if job is not None:
                    _cancel(client, rid, job)
                raise EditFailed(
                    f"The SINE daemon sent nothing for {idle_timeout_s:.0f} s; the edit was abandoned.",
                    "timeout",
                )
            continue
        header = event.header
        if header.get("id") not in (None, rid):
            continue  # a stray reply to an earlier request
        last_event, last_text = time.monotonic(), ""
        if event.notes:
            on_notes(event.notes)
        if event.type == "accepted":
            job = header.get("job")
            pos = header.get("queue_position") or 0
            text = "waiting in the queue" + (f" (position {pos})" if pos else "")
            shown = Progress("queued", 0, 0, text, 0.0)
            on_progress(shown)
        elif event.type == "progress":
            job = header.get("job", job)
            phase = str(header.get("phase", ""))
            step, total = int(header.get("step") or 0), int(header.get("total") or 0)
            text = progress_text(phase, step, total) + part_text(header)  # " · tile 5/24" inside a long step
            shown = Progress(phase, step, total, text, step_fraction(header), event.preview)
            on_progress(shown)
        elif event.type == "result":
            results = results_of(event)
            wrong = [r.image for r in results if r.image.size != (out_w, out_h)]
            if len(results) != request.count or wrong:
                got = f"{len(results)} image(s)" + (f", one {wrong[0].width}x{wrong[0].height}" if wrong else "")
                raise EditFailed(
                    f"The SINE daemon returned {got}, expected {request.count} of {out_w}x{out_h}.", "bad_reply"
                )
            return results
        elif event.type == "cancelled":
            raise EditCancelled("The SINE edit was cancelled by the daemon.")
        elif event.type == "error":
            code = str(header.get("code", "internal"))
            raise EditFailed(error_message(code, str(header.get("message", ""))), code)


def _cancel(client: SineClient, rid: str, job: str | None) -> None:
    """Ask the daemon to drop the job and wait briefly for its final event (best effort)."""
    if job is None:
        # Not yet accepted: wait a moment for the job id so the daemon does not run it for nobody.
        deadline = time.monotonic() + CANCEL_GRACE_S
        while job is None and time.monotonic() < deadline:
            try:
                event = client.poll_event(0.1)
            except DaemonUnavailable:
                return
            if event is not None and event.header.get("id") == rid:
                if event.type in ("result", "error", "cancelled"):
                    return
                job = event.header.get("job")
        if job is None:
            return
    try:
        client.cancel(job)
    except (DaemonUnavailable, ProtocolError, OSError):
        return
    deadline = time.monotonic() + CANCEL_GRACE_S
    while time.monotonic() < deadline:
        try:
            event = client.poll_event(0.1)
        except DaemonUnavailable:
            return
        if event is None or event.type not in ("result", "error", "cancelled"):
            continue
        if event.header.get("id") == rid or event.header.get("job") == job:
            return
