"""The socket thread: one ROUTER socket, strict validation of every request, job bookkeeping, and
forwarding of the worker's events. It never touches torch; the worker never touches the ROUTER."""

from __future__ import annotations

import collections
import errno
import hashlib
import json
import logging
import os
import secrets
import signal
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from sine import __version__
from sine.cache import WeightCache
from sine.daemon.config import DaemonConfig
from sine.daemon.connections import ConnectionGuard
from sine.daemon.jobs import CANCELLED, QUEUED, Job, JobQueue, QueueClosed, QueueFull
from sine.daemon.lockfile import AlreadyRunning, DaemonLock, lock_path_for
from sine.daemon.token_keeper import TokenKeeper
from sine.daemon.worker import EVENTS_ADDRESS, STARTUP_PART, Worker, internal_message, stopping_reply
from sine.daemon.zap import ZapHandler
from sine_protocol import messages as m
from sine_protocol.auth import ZAP_DOMAIN
from sine_protocol.errors import BAD_REQUEST, BUSY, INTERNAL, ProtocolError
from sine_protocol.messages import MAX_REQUEST_FRAMES, Limits, make_error, make_reply, parse_request
from sine_protocol.paths import ensure_private_dir

log = logging.getLogger("sine.daemon")

QUEUED_PING_S = 2.0  # queued jobs get a `progress queued` event this often (also detects vanished clients)
# While the model loads, waiting jobs hear of a start-up part done within this (Worker.startup), and of the
# load at least every second (one import can take seconds: an event, not a silence, says it goes on).
STARTUP_PING_S, LOADING_PING_S = 0.25, 1.0
# A running job whose client heard nothing for this long gets a `heartbeat` (its phase and step),
# so clients can tell a slow step from a silent daemon (sine_protocol.client.SILENT_DAEMON_S).
HEARTBEAT_S = 5.0
SHUTDOWN_GRACE_S = 5.0  # after SIGTERM, the running job gets this long to stop at a step; then we exit anyway
REJECTION_WINDOW_S, REJECTIONS_LOGGED = 10.0, 20
HELD_PER_CLIENT = 256  # undroppable replies kept for one client that is not reading (each job has one final)
# Replies that may be dropped when a client reads too slowly: a later one supersedes them.
DROPPABLE = frozenset({m.PROGRESS, m.HEARTBEAT})
HANDSHAKE_TIMEOUT_MS = 5000  # a peer that has not finished the ZMTP + PLAIN handshake by then is closed


def raise_open_files_limit() -> tuple[int, int] | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each connection is a file descriptor); None where
    there is no such limit (Windows). Returns (soft, hard) after the change."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, target, exc)
    return soft, hard


@dataclass
class Incoming:
    """A message being read off the ROUTER: its identity and first frames (at most a request's), how many
    frames so far, and whether more follow."""

    frames: list[bytes]
    count: int
    more: bool


PARTS_PER_TURN = 100_000  # frames read per loop turn (~0.15 s): between turns the worker's events go out


def read_message(router: zmq.Socket, incoming: Incoming | None = None, budget: int = PARTS_PER_TURN) -> Incoming:
    """Read on in a message (a new one when ``incoming`` is None; ``zmq.Again`` when none is waiting), at most
    ``budget`` frames. Frames past a request's are counted and dropped: libzmq has the whole message in memory
    already (it delivers nothing before the last part); a list of its millions of empty parts doubled that,
    and reading them in one go held the socket thread (and every running job's events) for half a minute."""
    if incoming is None:
        first = router.recv(zmq.NOBLOCK, copy=False)
        incoming = Incoming([first.bytes], 1, first.more)
    while incoming.more and budget > 0:
        frame = router.recv(copy=False)  # the rest of a message is already there: never blocks
        incoming.count += 1
        budget -= 1
        if incoming.count <= MAX_REQUEST_FRAMES + 1:
            incoming.frames.append(frame.bytes)
        incoming.more = frame.more
    if not incoming.more and incoming.count > LARGE_MESSAGE_FRAMES:
        release_freed_memory()
    return incoming


LARGE_MESSAGE_FRAMES = 100_000  # after a message of more parts, hand the memory libzmq freed back to the system


def release_freed_memory() -> None:
    """glibc keeps freed heap for reuse; a message of millions of parts left ~1 GB of it behind for good."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without it)
        pass


class StartupError(RuntimeError):
    """The daemon cannot start (endpoint taken, another daemon running, ...); the message says why."""


class Daemon:
    """Owns the sockets, the queue, the cache and the worker. ``serve()`` runs until stopped."""

    def __init__(self, config: DaemonConfig, token: str | None = None, limits: Limits | None = None,
                 token_path: Path | None = None) -> None:
        """``token=None``: read or create the token file once the endpoint lock is ours, and keep it."""
        config.check()
        self.config = config
        self.token = token or ""
        self.keeper = None if token else TokenKeeper(token_path)
        self.limits = limits or Limits()
        self.queue = JobQueue(max_total=config.max_queued_total, max_per_client=config.max_queued_per_client,
                              max_total_bytes=config.max_queued_bytes)
        self.cache: WeightCache | None = None  # opened once the lock is ours (opening sweeps crash leftovers)
        self.stop_requested = threading.Event()
        self.give_up = threading.Event()  # a second Ctrl+C: stop without waiting for the running job
        self.bound: list[str] = []
        self._locks: list[DaemonLock] = []
        self._last_queued_ping = 0.0
        self._startup_sent: tuple[int, int] | None = None  # the worker's start-up parts the last ping told
        self.exit_code = 0
        self._tag_key = secrets.token_bytes(16)
        # Replies that met a full send queue and must not be lost (finals, accepted, answers), per client.
        self._held: dict[bytes, collections.deque[list[bytes]]] = {}
        self._last_sent: dict[bytes, float] = {}  # when each client was last sent something
        self._overflowing: set[bytes] = set()  # clients whose held replies overflowed (logged once)
        self._incoming: Incoming | None = None  # a message of very many parts, read over several loop turns
        self.dropped_progress = 0
        self._rejections_since, self._rejections_logged, self._rejections_unlogged = 0.0, 0, 0
        self.abandoned = False  # the worker was still busy at exit: the caller should exit the process hard

    def tag(self, identity: bytes) -> str:
        """A short name for a connection in the log: stable for this run, never the raw identity."""
        return "client-" + hashlib.blake2s(identity, key=self._tag_key, digest_size=4).hexdigest()

    # --- start / stop ------------------------------------------------------------------------------------
    def _acquire_locks(self) -> str | None:
        """Lock the TCP endpoint (refuse if taken) and the ipc path (skip ipc if taken); return ipc to bind."""
        main = DaemonLock(lock_path_for(self.config.state_dir, self.config.endpoint))
        try:
            main.acquire({"endpoint": self.config.endpoint})
        except AlreadyRunning as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(f"cannot take the daemon's lock: {exc.strerror or exc}") from None
        self._locks.append(main)
        ipc = self.config.ipc_endpoint()
        if ipc is None:
            return None
        runtime = Path(ipc[len("ipc://"):]).parent
        ipc_lock = DaemonLock(runtime / "daemon.sock.lock")
        try:
            ensure_private_dir(runtime)
            ipc_lock.acquire({"endpoint": ipc})
        except (AlreadyRunning, OSError) as exc:  # TCP still works; ipc is a convenience
            log.warning("not binding %s: %s", ipc, exc)
            return None
        self._locks.append(ipc_lock)
        return ipc

    def _bind(self, router: zmq.Socket, endpoint: str) -> None:
        try:
            router.bind(endpoint)
        except zmq.ZMQError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"{endpoint} is already in use (another sine daemon or another program);"
                                   " stop it or pick another --endpoint") from None
            raise StartupError(f"cannot listen on {endpoint}: {exc}") from None
        self.bound.append(endpoint)

    def request_stop(self, signum: int | None = None, _frame: object = None) -> None:
        """Signal-safe: stop accepting, cancel the running job at its next step, then exit.

        A second Ctrl+C while stopping gives up waiting: the loop abandons the running job at once (its
        client still gets its final event) and the process exits 130. Only flags are set here: an
        exception raised wherever the main thread happened to be skipped that final event and the cleanup.
        """
        if signum == signal.SIGINT and self.stop_requested.is_set():
            self.exit_code = 130
            self.give_up.set()
        self.stop_requested.set()

    def serve(self, install_signals: bool = True, ready: threading.Event | None = None) -> int:
        """Run the loop until SIGTERM/SIGINT/SIGHUP or ``request_stop()``; return the exit status (0 = clean)."""
        ipc = self._acquire_locks()  # first: a daemon that loses this race must not touch the token
        try:
            if self.keeper is not None:
                try:
                    self.token = self.keeper.start()
                except OSError as exc:
                    raise StartupError(f"cannot use the token file {self.keeper.path}: {exc}") from None
            try:
                self.cache = WeightCache(self.config.cache_dir, self.config.cache_budget)
            except OSError as exc:
                raise StartupError(f"cannot use the cache folder {self.config.cache_dir}: {exc}") from None
        except StartupError:
            for lock in reversed(self._locks):
                lock.release()
            raise
        limit = raise_open_files_limit()
        ctx = zmq.Context()
        zap = ZapHandler(ctx, lambda: self.token)  # bound before the ROUTER, so no handshake skips it
        router = ctx.socket(zmq.ROUTER)
        events = ctx.socket(zmq.PAIR)
        worker: Worker | None = None
        guard: ConnectionGuard | None = None
        try:
            router.setsockopt(zmq.IPV6, 1)  # tcp://[::1]:PORT is a loopback endpoint too (IPv4 still works)
            router.setsockopt(zmq.PLAIN_SERVER, 1)  # ZMTP 1.0/2.0 peers (raw bytes) are refused too
            router.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
            router.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_TIMEOUT_MS)
            router.setsockopt(zmq.BACKLOG, 1024)  # a burst of junk connections must not fill the accept queue
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            router.setsockopt(zmq.MAXMSGSIZE, self.limits.max_frame_bytes())
            router.setsockopt(zmq.LINGER, 1000)
            router.setsockopt(zmq.SNDHWM, self.config.send_hwm)
            if self.config.send_buffer_bytes:
                router.setsockopt(zmq.SNDBUF, self.config.send_buffer_bytes)
            router.setsockopt(zmq.RCVHWM, 1000)
            # before the first bind, so every connection is counted
            guard = ConnectionGuard(router, self.config.endpoint if self.config.endpoint.startswith("tcp://") else None,
                                    limit[0] if limit else None)
            self._bind(router, self.config.endpoint)
            if ipc:
                ipc_path = Path(ipc[len("ipc://"):])
                if ipc_path.is_symlink() or (ipc_path.exists() and not stat.S_ISSOCK(ipc_path.stat().st_mode)):
                    # SINE_RUNTIME_DIR may name a folder of the user's: binding would replace their file
                    log.warning("not binding %s: %s is not a socket, so it may be a file of yours; left as it is",
                                ipc, ipc_path)
                    ipc = None
                elif ipc_path.exists():  # left over by a crashed daemon; we hold its lock now
                    ipc_path.unlink()
            if ipc:
                try:
                    self._bind(router, ipc)
                except StartupError as exc:  # e.g. a path over the ~107-byte socket limit: TCP still works
                    log.warning("not binding %s: %s", ipc, exc)
                    ipc = None
            events.bind(EVENTS_ADDRESS)
            worker = Worker(ctx, self.queue, self.cache, self.config.model, self.config.device,
                            self.config.progress_interval_s, self.config.preview_every, self.config.threads)
            worker.start()
            self.worker = worker
            if install_signals:
                signal.signal(signal.SIGTERM, self.request_stop)
                signal.signal(signal.SIGINT, self.request_stop)
                # The terminal running `sine daemon` was closed: stop the same way (unless started with
                # `nohup`, which asked for SIGHUP to be ignored).
                if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
                    signal.signal(signal.SIGHUP, self.request_stop)
            if (warning := self.config.remote_warning()) is not None:
                log.warning(warning)
            log.info("sine daemon %s (pid %d) listening on %s (token required; open files limit %s)", __version__,
                     os.getpid(), ", ".join(self.bound), limit[0] if limit else "n/a")
            if ready is not None:
                ready.set()
            self._loop(router, events, worker, zap, guard)
            return self.exit_code
        finally:
            worker_alive = False
            if worker is not None:
                worker.stopping.set()
                until = time.monotonic() + (0.5 if self.abandoned else 5)
                while worker.is_alive() and time.monotonic() < until and not self.give_up.is_set():
                    worker.join(0.1)  # in slices: a second Ctrl+C stops this wait too
                worker_alive = worker.is_alive()
            self.abandoned = worker_alive
            if guard is not None:
                guard.close()
            router.close(linger=200)
            events.close(linger=0)
            zap.close()
            if worker_alive:  # e.g. still loading a large model: don't wait for its socket, exit anyway
                log.warning("worker still busy at exit; not waiting for it")
            else:
                ctx.term()
            if ipc and ipc in self.bound:
                Path(ipc[len("ipc://"):]).unlink(missing_ok=True)
            for lock in reversed(self._locks):
                lock.release()
            log.info("sine daemon stopped")

    # --- the loop ----------------------------------------------------------------------------------------
    def _loop(self, router: zmq.Socket, events: zmq.Socket, worker: Worker, zap: ZapHandler,
              guard: ConnectionGuard) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(events, zmq.POLLIN)
        poller.register(zap.socket, zmq.POLLIN)
        poller.register(guard.socket, zmq.POLLIN)
        shutdown_deadline: float | None = None
        while True:
            if self.stop_requested.is_set() and shutdown_deadline is None:
                log.info("stopping: no new jobs; cancelling pending ones")
                shutdown_deadline = time.monotonic() + SHUTDOWN_GRACE_S
                for job in self.queue.close():
                    if job.state == CANCELLED:  # was queued: the worker will never see it
                        self._send(router, job.client, stopping_reply(job))
            if shutdown_deadline is not None and (
                self.queue.running() is None or not worker.is_alive() or time.monotonic() > shutdown_deadline
                or self.give_up.is_set()
            ):
                self._drain_events(router, events)
                self._abandon_running(router)
                self._flush_held(router)
                return
            try:
                ready = dict(poller.poll(100))
            except zmq.ZMQError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if guard.socket in ready or not guard.listening:
                guard.handle_pending()
            if zap.socket in ready:
                zap.handle_pending()
            if events in ready:
                self._drain_events(router, events)
            if router in ready or self._incoming is not None:
                for _ in range(100):  # bounded, so worker events are never starved
                    try:
                        incoming = read_message(router, self._incoming)
                    except zmq.Again:
                        break
                    if incoming.more:  # a message of very many parts: serve the events, then read on
                        self._incoming = incoming
                        break
                    self._incoming = None
                    self._handle(router, incoming.frames, worker, incoming.count)
            self._flush_held(router)
            self._ping_queued(router, worker)
            if self.keeper is not None:
                self.keeper.check()
                self.token = self.keeper.token
            if not worker.is_alive() and not self.stop_requested.is_set():
                log.critical("the worker thread died; stopping so the daemon can be restarted")
                self.exit_code = 1
                self.stop_requested.set()

    def _drain_events(self, router: zmq.Socket, events: zmq.Socket) -> None:
        while True:
            try:
                identity, *frames = events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._send(router, identity, frames)

    def _abandon_running(self, router: zmq.Socket) -> None:
        """Shutting down and the running job did not stop in time: its client still gets its final event."""
        job = self.queue.running()
        if job is None:
            return
        log.warning("job %s: still in %s at exit; abandoned", job.id[:8], job.phase)
        self.abandoned = True
        self.queue.finish(job, CANCELLED)
        self._send(router, job.client, stopping_reply(job))

    @staticmethod
    def _reply_type(frames: list[bytes]) -> str:
        try:
            return str(json.loads(frames[0]).get("type", ""))
        except (ValueError, AttributeError, IndexError):
            return ""

    def _send(self, router: zmq.Socket, identity: bytes, frames: list[bytes]) -> bool:
        """Send to one client; a vanished client (EHOSTUNREACH) has its jobs cancelled.

        At the send high-water mark (a client not reading), ``progress`` is dropped (a later one
        supersedes it) and everything else is held and retried in order, so no final event is lost.
        """
        droppable = self._reply_type(frames) in DROPPABLE
        held = self._held.get(identity)
        if held:  # keep the order: nothing overtakes a held reply
            if droppable:
                self.dropped_progress += 1
                return False
            return self._hold(identity, frames)
        try:
            router.send_multipart([identity, *frames], zmq.NOBLOCK)
            self._last_sent[identity] = time.monotonic()
            return True
        except zmq.ZMQError as exc:
            if exc.errno == errno.EAGAIN:
                if droppable:
                    self.dropped_progress += 1
                    if self.dropped_progress % 100 == 1:
                        log.info("%s is reading slowly: %d progress event(s) dropped so far", self.tag(identity),
                                 self.dropped_progress)
                    return False
                return self._hold(identity, frames)
            self._lost(identity, exc)
            return False

    def _hold(self, identity: bytes, frames: list[bytes]) -> bool:
        held = self._held.setdefault(identity, collections.deque())
        if len(held) >= HELD_PER_CLIENT:
            # Drop the oldest answer to a ping/status/bad request, never a job's final event (a client
            # has few jobs, so those alone never fill the deque).
            index = next((i for i, reply in enumerate(held) if not self._is_job_final(reply)), 0)
            if identity not in self._overflowing:  # one line per episode, not one per dropped answer
                self._overflowing.add(identity)
                log.warning("%s has not read %d replies; dropping its oldest answers until it reads",
                            self.tag(identity), len(held))
            del held[index]
        held.append(frames)
        return False

    @staticmethod
    def _is_job_final(frames: list[bytes]) -> bool:
        try:
            header = json.loads(frames[0])
        except (ValueError, IndexError):
            return False
        return isinstance(header, dict) and header.get("type") in m.FINAL_TYPES and "job" in header

    def _flush_held(self, router: zmq.Socket) -> None:
        """Retry held replies, oldest first, until a client's queue is full again."""
        for identity in list(self._held):
            held = self._held[identity]
            while held:
                try:
                    router.send_multipart([identity, *held[0]], zmq.NOBLOCK)
                except zmq.ZMQError as exc:
                    if exc.errno != errno.EAGAIN:
                        held.clear()
                        self._lost(identity, exc)  # may forget the client (and its held deque) already
                    break
                held.popleft()
                self._last_sent[identity] = time.monotonic()
            if not held:
                self._held.pop(identity, None)
                self._overflowing.discard(identity)

    def _lost(self, identity: bytes, exc: zmq.ZMQError) -> None:
        if exc.errno == errno.EHOSTUNREACH:
            self._held.pop(identity, None)
            self._overflowing.discard(identity)
            self._last_sent.pop(identity, None)
            cancelled = self.queue.cancel_client(identity)
            if cancelled:
                log.info("%s went away: cancelled %d job(s)", self.tag(identity), len(cancelled))
        else:
            log.warning("send to %s failed: %s", self.tag(identity), exc)

    @staticmethod
    def _waiting_phase(worker: Worker) -> dict[str, Any]:
        """What a waiting job is waiting for: its turn, or the model to load (with the start-up's parts done)."""
        if worker.ready.is_set():
            return {"phase": "queued"}
        done, parts = worker.startup
        return {"phase": "loading", "part": done, "parts": parts, "part_of": STARTUP_PART}

    def _ping_interval(self, worker: Worker) -> float:
        """Seconds between events to waiting jobs: shorter while the model loads, shortest for a new part."""
        if worker.ready.is_set():
            return QUEUED_PING_S
        return STARTUP_PING_S if worker.startup != self._startup_sent else LOADING_PING_S

    def _ping_queued(self, router: zmq.Socket, worker: Worker) -> None:
        now = time.monotonic()
        if now - self._last_queued_ping < self._ping_interval(worker):
            return
        self._last_queued_ping = now
        self._startup_sent = worker.startup
        running = self.queue.running()
        if running is not None and now - self._last_sent.get(running.client, 0.0) >= HEARTBEAT_S:
            self._send(router, running.client, make_reply(m.HEARTBEAT, running.request_id, job=running.id,
                                                          phase=running.phase, step=running.step,
                                                          total=running.total))
        if len(self._last_sent) > 4096:  # forget long-gone clients
            self._last_sent = {c: t for c, t in self._last_sent.items() if now - t < 600}
        for job in self.queue.queued():
            position = self.queue.position(job.id)
            self._send(router, job.client, make_reply(m.PROGRESS, job.request_id, job=job.id, step=0, total=0,
                                                      eta_s=0.0, queue_position=position,
                                                      **self._waiting_phase(worker)))

    # --- requests ----------------------------------------------------------------------------------------
    def _handle(self, router: zmq.Socket, frames: list[bytes], worker: Worker, count: int | None = None) -> None:
        if len(frames) < 2:
            return  # an identity with no message: nothing to answer
        identity, body = frames[0], frames[1:]
        try:  # the loop must survive anything a client sends, the error reply's own encoding included
            reply = self._answer(router, identity, body, worker, None if count is None else count - 1)
        except Exception:  # noqa: BLE001
            ref = secrets.token_hex(4)
            log.exception("error while handling a request [ref %s]", ref)
            reply = make_error(INTERNAL, internal_message(ref), None)
        if reply is not None:
            self._send(router, identity, reply)

    def _answer(self, router: zmq.Socket, identity: bytes, body: list[bytes], worker: Worker,
                frame_count: int | None = None) -> list[bytes] | None:
        try:
            request = parse_request(body, self.token, self.limits,
                                    admit=lambda rid, nbytes: self._admit(identity, rid, nbytes),
                                    frame_count=frame_count)
            return self._dispatch(router, identity, request, worker)
        except ProtocolError as exc:
            self._log_rejection(identity, exc)
            return make_error(exc.code, exc.message, exc.request_id, exc.job)

    def _admit(self, identity: bytes, rid: str, nbytes: int) -> None:
        """Before an edit's pixels are unpacked: refuse a duplicate id or a full queue (asked again on submit)."""
        if self.queue.pending_request(identity, rid):
            raise ProtocolError(BAD_REQUEST, "this request id is already in use by one of your pending edits", rid)
        try:
            self.queue.check_room(identity, nbytes)
        except (QueueFull, QueueClosed) as exc:
            raise ProtocolError(BUSY, str(exc), rid) from None

    def _log_rejection(self, identity: bytes, exc: ProtocolError) -> None:
        """Log rejected requests, at most REJECTIONS_LOGGED per REJECTION_WINDOW_S (a flood must not
        rotate the useful lines out of the log); the rest are counted in one line."""
        now = time.monotonic()
        if now - self._rejections_since > REJECTION_WINDOW_S:
            if self._rejections_unlogged:
                log.warning("%d more rejected request(s) not logged one by one", self._rejections_unlogged)
            self._rejections_since, self._rejections_logged, self._rejections_unlogged = now, 0, 0
        if self._rejections_logged < REJECTIONS_LOGGED:
            self._rejections_logged += 1
            log.info("rejected a request from %s: %s: %s", self.tag(identity), exc.code, exc.message[:200])
        else:
            self._rejections_unlogged += 1

    def _dispatch(self, router: zmq.Socket, identity: bytes, request: m.Request, worker: Worker) -> list[bytes] | None:
        rid = request.id
        if request.type == m.PING:
            return make_reply(m.PONG, rid)
        if request.type == m.HELLO:
            return make_reply(m.WELCOME, rid, daemon_version=__version__, protocol_version=m.PROTOCOL_VERSION,
                              device=worker.device_name, models=list(worker.models), model_kind=worker.model_kind,
                              model_ready=worker.base is not None, model_error=worker.model_error,
                              cache=self.cache.stats())
        if request.type == m.STATUS:  # your own jobs in full; other clients' only as counts
            order, jobs = self.queue.snapshot(identity)
            return make_reply(m.STATUS, rid, queue=order, jobs=jobs, others=self.queue.others(identity),
                              cache=self.cache.stats(), gpu=worker.gpu_info)
        if request.type == m.CANCEL:
            assert request.job is not None
            job = self.queue.cancel(request.job, client=identity)
            if job is None:  # unknown, over, or someone else's: the same answer, so ids cannot be probed
                raise ProtocolError(BAD_REQUEST, f"no pending job {request.job!r}", rid, request.job)
            # Read after the flag is set: the worker stops at most one step past this point.
            at = {"phase": job.phase, "step": job.step}
            log.info("job %s: cancel requested at %s step %d", job.id[:8], at["phase"], at["step"])
            if job.state == CANCELLED:  # it was still queued: its final event goes out now
                self._send(router, job.client, make_reply(m.CANCELLED, job.request_id, job=job.id))
            return make_reply(m.CANCELLED, rid, job=job.id, at=at)
        if request.type == m.EDIT:
            assert request.edit is not None
            edit = request.edit
            nbytes = sum(len(picture.data) for picture in (edit.image, edit.mask, edit.style_image) if picture)
            # `_admit` refused a duplicate id before the pixels were unpacked, in this same thread; the
            # queue's room is checked again by submit (the pixels' real size).
            job = Job(client=identity, request_id=rid, request=edit, nbytes=nbytes)
            try:
                position = self.queue.submit(job)
            except (QueueFull, QueueClosed) as exc:
                raise ProtocolError(BUSY, str(exc), rid) from None
            log.info("job %s: accepted from %s at position %d", job.id[:8], self.tag(identity), position)
            self._send(router, identity, make_reply(m.ACCEPTED, rid, job=job.id, queue_position=position))
            if job.state == QUEUED:
                return make_reply(m.PROGRESS, rid, job=job.id, step=0, total=0, eta_s=0.0, queue_position=position,
                                  **self._waiting_phase(worker))
            return None
        raise ProtocolError(BAD_REQUEST, f"unknown request type {request.type!r}", rid)
