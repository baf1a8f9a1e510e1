"""The GPU worker thread: the only thread that touches torch. It loads the base model, runs jobs one by
one, and hands every outgoing message to the socket thread over an inproc PAIR socket."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import secrets
import threading
import time
from typing import Any

import zmq

from sine.cache import WeightCache
from sine.daemon.edit import run_edit
from sine.daemon.jobs import CANCELLED as STATE_CANCELLED
from sine.daemon.jobs import DONE, FAILED, Job, JobQueue
from sine.daemon.loaded import LoadedFinetunes
from sine.daemon.progress import ProgressReporter
from sine_protocol.errors import CANCELLED, DAEMON_STOPPING, INTERNAL, MODEL_MISSING, OUT_OF_MEMORY
from sine_protocol.messages import RESULT, image_blob, make_error, make_reply

log = logging.getLogger("sine.daemon.worker")
EVENTS_ADDRESS = "inproc://sine-worker-events"
# The libraries the model load needs, imported one by one (seconds each on a CPU) so waiting jobs see the
# start-up move (`Worker.startup`); the model's own load is the last part.
STARTUP_IMPORTS = ("torch", "transformers", "diffusers", "diffusers.models.unets.unet_2d_condition")
STARTUP_PART = "start-up"  # `part_of` of the `loading` events sent while they load


def internal_message(ref: str) -> str:
    """What a client is told about a daemon bug: a short message and the reference to find it in the log."""
    return f"internal error in the daemon (reference {ref}); the details are in daemon.log"


def stopping_reply(job: Job) -> list[bytes]:
    """The final event of a job the daemon's stop (SIGTERM, Ctrl+C) ended: not the painter's cancel, and
    worth sending again once a daemon runs."""
    at = "while it waited its turn" if job.phase in ("queued", "loading") else f"at {job.phase} step {job.step}"
    return make_error(DAEMON_STOPPING, f"the daemon was stopped before this edit finished ({at}); nothing was"
                      " changed: start the daemon again and send the edit again", job.request_id, job.id)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocation failures, whichever exception type the backend raised."""
    if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def free_accelerator_memory() -> None:
    """Drop what a failed job left behind so the next job starts clean."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort only
        pass


class Worker(threading.Thread):
    """Runs jobs from ``queue``; replies go to the job's client via the socket thread."""

    def __init__(self, context: zmq.Context, queue: JobQueue, cache: WeightCache, model: str | None,
                 device: str | None, progress_interval_s: float = 0.25, preview_every: int = 5,
                 threads: int | None = None) -> None:
        super().__init__(name="sine-worker", daemon=True)
        self.context = context
        self.queue = queue
        self.cache = cache
        self.model = model
        self.device = device
        self.progress_interval_s = progress_interval_s
        self.preview_every = preview_every
        self.threads = threads
        self.base: Any = None
        self.loaded = LoadedFinetunes()  # the last few fine-tunes, so a second edit skips the disk
        self.model_error: str | None = None
        self.ready = threading.Event()  # set once the model loaded or failed to
        self.stopping = threading.Event()
        # Plain values the socket thread may read (it never touches torch itself).
        self.device_name: str = device or "unknown"
        self.models: list[str] = [model or "demo"]
        self.model_kind: str | None = None  # e.g. "SDXL, ε-prediction, 1024 px", once loaded
        self.gpu_info: dict | None = None
        self.startup = (0, len(STARTUP_IMPORTS) + 1)  # start-up parts done, of all: read by the socket thread
        self._sock: zmq.Socket | None = None

    # --- thread body --------------------------------------------------------------------------------
    def run(self) -> None:
        self._sock = self.context.socket(zmq.PAIR)
        self._sock.setsockopt(zmq.LINGER, 2000)
        self._sock.connect(EVENTS_ADDRESS)
        try:
            self._load_model()
            while not self.stopping.is_set():
                job = self.queue.next(timeout=0.2)
                if job is not None:
                    self._run_job(job)
        finally:
            self._sock.close()

    def _import_libraries(self) -> None:
        """Import what the model load needs, a part at a time (a failure is left to the load to report)."""
        for done, name in enumerate(STARTUP_IMPORTS, 1):
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - e.g. a module diffusers moved: the load imports what it needs
                log.debug("start-up: could not import %s first", name, exc_info=True)
            self.startup = (done, self.startup[1])

    def _load_model(self) -> None:
        try:
            self._import_libraries()
            from sine.devices import THREADS_ENV
            from sine.models import load_base_model

            if self.threads:  # fixed; otherwise chosen from the free cores before every job
                os.environ[THREADS_ENV] = str(self.threads)
            t0 = time.perf_counter()
            self.base = load_base_model(self.model, device=self.device)
            from sine.devices import describe_device

            self.device_name = describe_device(self.base.device)
            self.models = [self.base.model_id]
            self.model_kind = self.base.kind.describe()
            log.info("model %s (%s) loaded on %s in %.1f s", self.model, self.model_kind, self.device_name,
                     time.perf_counter() - t0)
            self._update_gpu_info()
        except Exception as exc:  # noqa: BLE001 - reported to every job as model_missing
            self.model_error = f"could not load the base model {self.model!r}: {exc}"
            log.error("%s", self.model_error)
        finally:
            self.startup = (self.startup[1], self.startup[1])
            self.ready.set()

    def _send(self, job: Job, frames: list[bytes]) -> None:
        assert self._sock is not None
        self._sock.send_multipart([job.client, *frames])

    def _run_job(self, job: Job) -> None:
        log.info("job %s: start", job.id[:8])
        reporter = ProgressReporter(lambda frames: self._send(job, frames), job.id, job.request_id,
                                    self.progress_interval_s, self.preview_every)
        try:
            if job.should_stop():
                raise _JobCancelled
            if self.base is None:
                state, final = FAILED, make_error(MODEL_MISSING, self.model_error or "no model", job.request_id, job.id)
            else:
                job.phase = "finetune"
                if self.base.device.type == "cpu":
                    from sine.devices import apply_cpu_threads

                    log.info("job %s: %d CPU threads", job.id[:8], apply_cpu_threads(model_params=self.base.unet_params))
                outcome = run_edit(job.request, self.base, self.cache, _PhaseTracking(reporter, job), job.should_stop,
                                   self.loaded)
                if job.should_stop():
                    raise _JobCancelled
                state = DONE
                extra = {} if outcome.style_cache_hit is None else {"style_cache_hit": outcome.style_cache_hit}
                if outcome.notes:
                    extra["notes"] = outcome.notes
                final = make_reply(RESULT, job.request_id, [image_blob(image) for image in outcome.images], job=job.id,
                                   seed=job.request.seed, cache_hit=outcome.cache_hit, memory_hit=outcome.memory_hit,
                                   timings=outcome.timings,
                                   results=[{"index": i, "seed": s} for i, s in enumerate(outcome.seeds)], **extra)
                log.info("job %s: done (cache_hit=%s, %s)", job.id[:8], outcome.cache_hit, outcome.timings)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply, never a dead worker
            state, final = self._failure(job, exc)
        # Record the final state before the client can see the final event (and ask `status`).
        self.queue.finish(job, state)
        self._send(job, final)
        self._update_gpu_info()

    def _failure(self, job: Job, exc: BaseException) -> tuple[str, list[bytes]]:
        """The final state and event for a job that raised."""
        if isinstance(exc, _JobCancelled) or getattr(exc, "code", None) == CANCELLED:
            if job.stopped_by_daemon:
                log.info("job %s: stopped with the daemon", job.id[:8])
                return STATE_CANCELLED, stopping_reply(job)
            log.info("job %s: cancelled", job.id[:8])
            stopped_at = {"phase": job.phase, "step": job.step}
            return STATE_CANCELLED, make_reply(CANCELLED, job.request_id, job=job.id, stopped_at=stopped_at)
        if is_out_of_memory(exc):
            log.warning("job %s: out of memory: %s", job.id[:8], exc)
            self.loaded.clear()  # kept fine-tunes give their memory back first
            free_accelerator_memory()
            return FAILED, make_error(OUT_OF_MEMORY, "not enough GPU memory for this edit; try a smaller size or"
                                      " close other GPU programs", job.request_id, job.id, retriable=True)
        code = getattr(exc, "code", None)
        if isinstance(code, str) and code != INTERNAL and type(exc).__module__.startswith("sine"):
            log.warning("job %s: %s: %s", job.id[:8], code, exc)
            return FAILED, make_error(code, str(exc), job.request_id, job.id)
        ref = secrets.token_hex(4)
        log.error("job %s: internal error [ref %s]", job.id[:8], ref, exc_info=exc)
        free_accelerator_memory()
        # The exception text stays in the log (it may name paths and internals); the client gets a reference.
        return FAILED, make_error(INTERNAL, internal_message(ref), job.request_id, job.id)

    def _update_gpu_info(self) -> None:
        try:
            import torch

            if torch.cuda.is_available():
                self.gpu_info = {
                    "name": torch.cuda.get_device_name(),
                    "allocated": int(torch.cuda.memory_allocated()),
                    "reserved": int(torch.cuda.memory_reserved()),
                    "max_allocated": int(torch.cuda.max_memory_allocated()),
                    "total": int(torch.cuda.get_device_properties(0).total_memory),
                }
        except Exception:  # noqa: BLE001 - status is informative only
            self.gpu_info = None


class _JobCancelled(Exception):
    """Internal: the job's cancel flag was seen outside the engine."""


class _PhaseTracking:
    """A reporter wrapper that also keeps ``job.phase`` current for `status` replies."""

    def __init__(self, reporter: ProgressReporter, job: Job) -> None:
        self._reporter = reporter
        self._job = job

    def set_estimate(self, seconds: float | None) -> None:
        self._reporter.set_estimate(seconds)

    def set_notes(self, notes: list[str]) -> None:
        self._reporter.set_notes(notes)

    def phase_start(self, phase: str, total: int = 0) -> None:
        self._job.phase, self._job.step, self._job.total = phase, 0, total
        self._reporter.phase_start(phase, total)

    def step(self, phase: str, step: int, total: int, preview: Any = None) -> None:
        self._job.phase, self._job.step, self._job.total = phase, step, total
        self._reporter.step(phase, step, total, preview)

    def part(self, what: str, part: int, parts: int) -> None:
        self._reporter.part(what, part, parts)
