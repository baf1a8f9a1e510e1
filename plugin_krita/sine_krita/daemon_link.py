"""All talking to the daemon happens on one background thread, never on Krita's GUI thread.

The panel posts commands (probe, edit, cancel) and drains :class:`LinkEvent` objects from a queue
on a QTimer; the worker thread owns the :class:`SineClient` and does every blocking socket call.
No Qt and no Krita API here, so this runs (and is tested) anywhere.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The pure-Python ZMTP transport: hosts must not depend on a compiled pyzmq matching their Python.
TRANSPORT = "pure"
PROBE_TIMEOUT_S = 3.0
SEND_TIMEOUT_S = 60.0  # a large canvas takes a while to push through the socket
# With no event for this long during a job, ping the daemon to tell "busy" from "gone".
SILENCE_PING_S = 20.0
POLL_S = 0.05
# The code of an ``error`` event the link makes itself (the daemon gone or unreachable): its message is already
# the painter's words, where a daemon's own error reply gets its advice (sine_protocol.messages.daemon_error_text).
LINK_FAILED = "unavailable"
# What a painter is told to do once the daemon is gone mid-edit.
AGAIN_WHEN_RUNNING = "Press Edit again once it runs."


@dataclass
class LinkEvent:
    """One thing the panel must react to (kinds: connected, unavailable, accepted, progress,
    preview, result, error, cancelled)."""

    kind: str
    header: dict[str, Any] = field(default_factory=dict)
    image: Any = None  # sine_protocol.RGBAImage for result / preview
    message: str = ""
    ticket: int = 0  # which submit() an edit event belongs to (0: connection events)
    results: list[Any] = field(default_factory=list)  # a result's images with their seeds (EditResult)


def default_client_factory(timeout: float) -> Any:
    """A real client on the contract's default endpoint and token (env overrides honoured)."""
    from sine_protocol.client import SineClient

    return SineClient(transport=TRANSPORT, timeout=timeout)


def daemon_installed() -> bool:
    """Whether the installer left a command to start the daemon (``daemon.json``)."""
    try:
        from sine_protocol import paths

        return paths.daemon_command_file().exists()
    except Exception:
        return False


_OS_DETAIL = re.compile(r"\s*\(?\[Errno \d+\][^)]*\)?")
_START_HINT = " — start it with"


def describe_error(exc: BaseException) -> str:
    """One line for the status label, in words: no raw ``[Errno 111]``, and no generic "start it"
    hint (the panel adds the one that fits: its Start button or the command)."""
    text = str(exc) or type(exc).__name__
    text = _OS_DETAIL.sub("", text).split(_START_HINT)[0].strip()
    return text if len(text) < 300 else text[:297] + "..."


class DaemonLink:
    """Background worker that owns the socket; thread-safe ``probe``/``submit``/``cancel``/``drain``."""

    def __init__(self, client_factory: Callable[[float], Any] = default_client_factory) -> None:
        self._factory = client_factory
        self._commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._events: queue.Queue[LinkEvent] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="sine-daemon-link", daemon=True)
        self._client: Any = None
        self._request: str | None = None
        self._job: str | None = None
        self._cancel_wanted = False
        self._last_event = 0.0
        self._started = False
        self._ticket = 0  # ticket of the edit in flight (worker thread)
        self._last_ticket = 0
        self._ticket_lock = threading.Lock()

    # ---- called from the GUI thread -------------------------------------------------
    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Cancel any running job and end the thread (panel closing / Krita quitting)."""
        self._commands.put(("stop", None))
        if self._started:
            self._thread.join(timeout)

    def probe(self) -> None:
        """Ask for a ``hello``; answers with a ``connected`` or ``unavailable`` event."""
        self._commands.put(("probe", None))

    def submit(self, kwargs: dict[str, Any]) -> int:
        """Send one edit (kwargs of ``SineClient.submit_edit``); returns the ticket its events carry."""
        with self._ticket_lock:
            self._last_ticket += 1
            ticket = self._last_ticket
        self._commands.put(("edit", (ticket, kwargs)))
        return ticket

    def cancel(self) -> None:
        self._commands.put(("cancel", None))

    def drain(self, limit: int = 100) -> list[LinkEvent]:
        """Events that arrived since the last call (non-blocking)."""
        out: list[LinkEvent] = []
        while len(out) < limit:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                break
        return out

    @property
    def busy(self) -> bool:
        return self._request is not None

    # ---- worker thread ----------------------------------------------------------------
    def _emit(
        self, kind: str, header: dict[str, Any] | None = None, image: Any = None, message: str = "", ticket: int = 0,
        results: list[Any] | None = None,
    ) -> None:
        self._events.put(LinkEvent(kind, dict(header or {}), image, message, ticket, list(results or [])))

    def _get_client(self, timeout: float) -> Any:
        if self._client is None:
            self._client = self._factory(timeout)
        return self._client

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def _run(self) -> None:
        while True:
            try:
                timeout = 0 if self._request else POLL_S
                try:
                    cmd, arg = self._commands.get(timeout=timeout) if timeout else self._commands.get_nowait()
                except queue.Empty:
                    cmd, arg = None, None
                if cmd == "stop":
                    self._do_cancel()
                    self._drop_client()
                    return
                if cmd == "probe":
                    self._do_probe()
                elif cmd == "edit":
                    self._do_submit(arg)
                elif cmd == "cancel":
                    self._do_cancel()
                if self._request:
                    self._pump()
            except Exception as exc:  # never let the thread die silently
                self._fail(self._lost_message(exc), describe_error(exc))

    def _lost_message(self, exc: Exception) -> str:
        """In words: a daemon gone mid-edit (crashed, killed, stopped) is said so, with where its log is."""
        from sine_protocol.errors import DaemonUnavailable
        from sine_protocol.messages import daemon_lost_text

        if self._request is not None and isinstance(exc, DaemonUnavailable):
            return daemon_lost_text(describe_error(exc), AGAIN_WHEN_RUNNING)
        return f"daemon connection failed: {describe_error(exc)}"

    def _fail(self, message: str, status: str) -> None:
        """The connection failed: ``message`` ends a running edit, ``status`` is the connection line's words."""
        was_running = self._request is not None
        self._request = self._job = None
        self._cancel_wanted = False
        self._drop_client()
        if was_running:
            self._emit("error", {"code": LINK_FAILED}, message=message, ticket=self._ticket)
        self._emit("unavailable", {"installed": daemon_installed()}, message=status)

    def _do_probe(self) -> None:
        if self._request is not None:
            return  # a running job already proves the connection; don't interleave requests
        try:
            welcome = self._get_client(PROBE_TIMEOUT_S).hello()
        except Exception as exc:
            self._drop_client()
            self._emit("unavailable", {"installed": daemon_installed()}, message=describe_error(exc))
            return
        self._emit("connected", welcome)

    def _do_submit(self, arg: tuple[int, dict[str, Any]]) -> None:
        ticket, kwargs = arg
        if self._request is not None:
            self._emit("error", {"code": "busy"}, message="an edit is still running", ticket=ticket)
            return
        self._ticket = ticket
        self._cancel_wanted = False
        self._job = None
        from sine_protocol.errors import ProtocolError

        try:
            client = self._get_client(PROBE_TIMEOUT_S)
            client.timeout = SEND_TIMEOUT_S
            try:
                self._request = client.submit_edit(**kwargs)
            finally:
                client.timeout = PROBE_TIMEOUT_S
        except ProtocolError as exc:  # refused before it was sent (e.g. too large for a message): the daemon's terms
            self._emit("error", {"code": exc.code}, message=exc.message, ticket=ticket)
            return
        except Exception as exc:  # e.g. nothing listens: the panel must leave its "running" state
            self._drop_client()
            message = describe_error(exc)
            self._emit("error", {"code": LINK_FAILED}, message=f"could not send the edit: {message}", ticket=ticket)
            self._emit("unavailable", {"installed": daemon_installed()}, message=message)
            return
        self._last_event = time.monotonic()

    def _do_cancel(self) -> None:
        if self._request is None:
            return
        if self._job is None:
            self._cancel_wanted = True  # sent as soon as the daemon names the job
            return
        self._client.cancel(self._job)

    def _pump(self) -> None:
        event = self._client.poll_event(timeout=POLL_S)
        if event is None:
            if time.monotonic() - self._last_event > SILENCE_PING_S:
                if not self._client.ping(timeout=PROBE_TIMEOUT_S):
                    from sine_protocol.messages import daemon_lost_text

                    silent = time.monotonic() - self._last_event
                    self._fail(daemon_lost_text(f"it sent nothing for {silent:.0f} s and did not answer a ping "
                                                f"within {PROBE_TIMEOUT_S:.0f} s", AGAIN_WHEN_RUNNING),
                               "the daemon stopped answering")
                    return
                self._last_event = time.monotonic()
            return
        header = event.header
        ours = header.get("id") == self._request or (self._job is not None and header.get("job") == self._job)
        if not ours:
            return  # a stale reply (e.g. to an earlier probe)
        self._last_event = time.monotonic()
        kind = event.type
        if kind == "accepted":
            self._job = event.header.get("job")
            self._emit("accepted", event.header, ticket=self._ticket)
            if self._cancel_wanted and self._job:
                self._client.cancel(self._job)
        elif kind == "progress":
            self._emit("progress", event.header, image=event.preview, ticket=self._ticket)
        elif kind in ("result", "error", "cancelled"):
            image = event.image if kind == "result" else None
            message = str(event.header.get("message", "")) if kind == "error" else ""
            results = []
            if kind == "result":
                from sine_protocol.results import results_of

                results = results_of(event)
            self._request = self._job = None
            self._cancel_wanted = False
            self._emit(kind, event.header, image=image, message=message, ticket=self._ticket, results=results)
