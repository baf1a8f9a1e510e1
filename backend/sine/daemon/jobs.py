"""Jobs and the bounded job queue shared by the socket thread (submit/cancel) and the worker (next/finish)."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL_STATES = (DONE, FAILED, CANCELLED)


class QueueFull(Exception):
    """The queue (total or this client's share) is full: reply ``busy``."""


class QueueClosed(Exception):
    """The daemon is shutting down and accepts no new jobs."""


@dataclass
class Job:
    """One edit request on its way through the daemon."""

    client: bytes  # ROUTER identity of the requesting connection
    request_id: str
    request: Any  # sine_protocol EditRequest
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = QUEUED
    phase: str = "queued"
    step: int = 0  # last step the worker finished in ``phase`` (updated every step, sent or not)
    total: int = 0  # steps in ``phase`` (for the socket thread's heartbeat)
    created: float = field(default_factory=time.monotonic)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    nbytes: int = 0  # pixel bytes this job holds while pending (bounded in total by the queue)
    stopped_by_daemon: bool = False  # cancelled because the daemon is stopping, not by its client

    def should_stop(self) -> bool:
        """Polled by the engine between steps."""
        return self.cancel_event.is_set()


class JobQueue:
    """FIFO of jobs for one worker, bounded in total and per client."""

    def __init__(self, max_total: int = 32, max_per_client: int = 4, keep_finished: int = 64,
                 max_total_bytes: int | None = None) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.max_total_bytes = max_total_bytes
        self._cond = threading.Condition(threading.RLock())
        self._queue: collections.deque[Job] = collections.deque()
        self._jobs: dict[str, Job] = {}
        self._finished: collections.deque[str] = collections.deque()
        self._keep_finished = keep_finished
        self._closed = False

    def submit(self, job: Job) -> int:
        """Queue ``job``; return its 0-based position (0 = next to run). Raises QueueFull / QueueClosed."""
        with self._cond:
            self.check_room(job.client, job.nbytes)
            self._queue.append(job)
            self._jobs[job.id] = job
            self._cond.notify_all()
            return len(self._queue) - 1 + (1 if self.running() else 0)

    def check_room(self, client: bytes, nbytes: int) -> None:
        """Raise QueueFull / QueueClosed unless a job of `client` holding `nbytes` of pixels would be taken
        (the socket thread asks before unpacking a request's pixels, and again on submit)."""
        with self._cond:
            if self._closed:
                raise QueueClosed("the daemon is shutting down")
            if len(self._queue) >= self.max_total:
                raise QueueFull(f"the queue is full ({self.max_total} jobs); try again later")
            mine = sum(1 for j in self._jobs.values() if j.client == client and j.state in (QUEUED, RUNNING))
            if mine >= self.max_per_client:
                raise QueueFull(f"you already have {mine} jobs queued or running (limit {self.max_per_client})")
            if self.max_total_bytes is not None:
                held = sum(j.nbytes for j in self._jobs.values() if j.state in (QUEUED, RUNNING))
                if held and held + nbytes > self.max_total_bytes:
                    raise QueueFull(f"the queue holds {held} bytes of pixels already (limit {self.max_total_bytes});"
                                    " try again when a job is done")

    def next(self, timeout: float | None = None) -> Job | None:
        """Block until a job is ready (mark it running) or the timeout passes / the queue closes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            job = self._queue.popleft()
            job.state = RUNNING
            job.phase = "loading"
            return job

    def finish(self, job: Job, state: str) -> None:
        """Record the final state of a job the worker took."""
        with self._cond:
            job.state = state
            self._remember_finished(job)
            self._cond.notify_all()

    def cancel(self, job_id: str, client: bytes | None = None) -> Job | None:
        """Cancel one job. A queued job is dropped now (returned with state cancelled); a running job
        gets its cancel flag set and is returned still running (the worker finishes it). None if unknown,
        final, or (with ``client``) another client's job."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINAL_STATES or (client is not None and job.client != client):
                return None
            job.cancel_event.set()
            if job.state == QUEUED:
                self._queue.remove(job)
                job.state = CANCELLED
                self._remember_finished(job)
            return job

    def cancel_client(self, client: bytes) -> list[Job]:
        """Cancel every pending job of one client (it went away)."""
        with self._cond:
            ids = [j.id for j in self._jobs.values() if j.client == client and j.state in (QUEUED, RUNNING)]
        return [job for job in (self.cancel(i) for i in ids) if job is not None]

    def close(self) -> list[Job]:
        """Refuse new jobs, cancel all pending ones; return them (queued ones already final)."""
        with self._cond:
            self._closed = True
            ids = [j.id for j in self._jobs.values() if j.state in (QUEUED, RUNNING)]
            for job_id in ids:  # a job its client already cancelled stays the client's cancel
                self._jobs[job_id].stopped_by_daemon = not self._jobs[job_id].cancel_event.is_set()
            self._cond.notify_all()
        return [job for job in (self.cancel(i) for i in ids) if job is not None]

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def running(self) -> Job | None:
        with self._cond:
            return next((j for j in self._jobs.values() if j.state == RUNNING), None)

    def position(self, job_id: str) -> int | None:
        """0-based position counting the running job, or None if not queued."""
        with self._cond:
            for index, job in enumerate(self._queue):
                if job.id == job_id:
                    return index + (1 if self.running() else 0)
            return None

    def pending_clients(self) -> set[bytes]:
        with self._cond:
            return {j.client for j in self._jobs.values() if j.state in (QUEUED, RUNNING)}

    def queued(self) -> list[Job]:
        with self._cond:
            return list(self._queue)

    def snapshot(self, client: bytes | None = None) -> tuple[list[str], dict[str, dict]]:
        """Queue order and known jobs' state/phase for `status`: only ``client``'s own when given."""
        with self._cond:
            return (
                [j.id for j in self._queue if client is None or j.client == client],
                {j.id: {"state": j.state, "phase": j.phase} for j in self._jobs.values()
                 if client is None or j.client == client},
            )

    def others(self, client: bytes) -> dict[str, int]:
        """Other clients' pending jobs as counts only (their ids and prompts are not ours to see)."""
        with self._cond:
            theirs = [j for j in self._jobs.values() if j.client != client]
            return {"queued": sum(j.state == QUEUED for j in theirs), "running": sum(j.state == RUNNING for j in theirs)}

    def pending_request(self, client: bytes, request_id: str) -> bool:
        """Whether ``client`` already has a queued or running job for ``request_id``."""
        with self._cond:
            return any(j.client == client and j.request_id == request_id and j.state in (QUEUED, RUNNING)
                       for j in self._jobs.values())

    def _remember_finished(self, job: Job) -> None:
        job.request = None  # the pixels are not needed any more; keep only the bookkeeping
        job.nbytes = 0
        self._finished.append(job.id)
        while len(self._finished) > self._keep_finished:
            self._jobs.pop(self._finished.popleft(), None)
