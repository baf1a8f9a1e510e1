"""Pick the torch device and dtype: CUDA in bf16 (fp16 where bf16 is missing), else CPU in fp32."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import BadInput

if TYPE_CHECKING:  # torch loads inside the functions: `sine` imports this module before anything heavy
    import torch

_DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
           "bf16": "bfloat16", "bfloat16": "bfloat16"}  # names -> torch attribute
DTYPE_NAMES: tuple[str, ...] = tuple(sorted(_DTYPES))  # what --dtype, SINE_DTYPE and SINE_FT_DTYPE take


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` (or $SINE_DEVICE) wins; otherwise the first CUDA GPU, else the CPU."""
    import torch

    name = requested or os.environ.get("SINE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BadInput(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise BadInput(f"device {name!r} is not available here ({count} CUDA GPU(s) usable); use cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise BadInput(f"device {name!r} is not available here (no Apple GPU); use cpu")
    return device


def pick_dtype(device: torch.device, requested: str | torch.dtype | None = None) -> torch.dtype:
    """Inference dtype of the frozen models; training keeps its own weights in fp32."""
    import torch

    requested = requested or os.environ.get("SINE_DTYPE")
    if isinstance(requested, torch.dtype):
        return requested
    if requested:
        try:
            return getattr(torch, _DTYPES[requested.lower()])
        except KeyError:
            raise ValueError(f"unknown dtype {requested!r}; use one of {sorted(_DTYPES)}") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def describe_device(device: torch.device) -> str:
    """A human name for status lines: the GPU's model name, or 'CPU'."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type.upper()


def weight_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype of `module`'s first parameter: what diffusers' `model.dtype` answers for our models,
    without its walk over every submodule looking for casting hooks (1.4 ms on an SD1.5 UNet, paid
    several times a step where it is asked inside a loop)."""
    return next(module.parameters()).dtype


def finetuned_dtype(device: torch.device, base_dtype: torch.dtype) -> torch.dtype:
    """Dtype of a fine-tuned copy at sampling time: fp16 on CUDA (where the base runs in bf16, whose
    8-bit mantissa rounds 77-92 % of the paper recipe's weight changes back to the pre-trained
    values; fp16 has 10 bits), else the base's dtype. $SINE_FT_DTYPE overrides it."""
    import torch

    requested = os.environ.get("SINE_FT_DTYPE")
    if requested:
        return pick_dtype(device, requested)
    if device.type == "cuda" and base_dtype in (torch.bfloat16, torch.float16):
        return torch.float16
    return base_dtype


# --- CPU threads under contention ---------------------------------------------------------------
# On a busy machine torch's default (one OpenMP thread per core, spinning at every barrier) collapses:
# each parallel op waits for its slowest thread, and a thread whose core a neighbour holds is
# descheduled for a whole time slice, so a 2-thread run beside one busy process can take many times
# as long as a 1-thread run. So: no more threads than free cores, and threads that sleep, not spin,
# when they wait.
COMPILE_ENV = "SINE_COMPILE"
_COMPILE_VALUES = {"": "off", "0": "off", "false": "off", "no": "off", "off": "off",
                   "1": "cuda", "true": "cuda", "yes": "cuda", "on": "cuda", "force": "force"}


def compile_setting() -> str:
    """$SINE_COMPILE as "off", "cuda" (compile the UNet calls on CUDA) or "force" (on any device: tests);
    a value it cannot mean is named, not taken as off without a word."""
    value = os.environ.get(COMPILE_ENV, "").strip().lower()
    if value not in _COMPILE_VALUES:
        raise BadInput(f"{COMPILE_ENV}={value[:20]!r} is not a setting; use 1 (compile on CUDA), 0 (off) or force")
    return _COMPILE_VALUES[value]


THREADS_ENV = "SINE_THREADS"
# More threads than any machine has cores: libgomp tries to allocate them all at the next parallel step
# and aborts the process ("Out of memory allocating 216000001344 bytes" for 10^9), daemon included.
MAX_CPU_THREADS = 1024
# Below this many UNet parameters one thread is fastest: a small model's ops are too short to pay for
# waking a passively waiting thread. Measured on an idle 2-core VM (docs/benchmarks.md, "CPU threads
# and model size"): 100 demo fine-tune steps (1.5 M parameters) take 7.0 s on one thread, 18.4 s on two
# passive ones and 107 s on two spinning ones beside a busy neighbour; an SD1.5 UNet forward at 512²
# (860 M) takes 8.2 s on one thread and 5.0 s on two. Real checkpoints are all far above the line.
PARALLEL_MIN_PARAMS = 100_000_000


def prepare_cpu_runtime() -> None:
    """Before torch loads: OpenMP threads wait passively (they yield the core instead of spinning).
    Only a default: an OMP_WAIT_POLICY already in the environment wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(interval_s: float = 0.2) -> float:
    """Cores busy right now, from two /proc/stat samples (else the 1-minute load average)."""
    def sample() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                fields = [int(x) for x in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    first = sample()
    if first is not None:
        import time

        time.sleep(interval_s)
        second = sample()
        if second is not None and second[0] > first[0]:
            total, idle = second[0] - first[0], second[1] - first[1]
            return (os.cpu_count() or 1) * (1 - idle / total)
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def pick_cpu_threads(requested: int | None = None, model_params: int | None = None) -> int:
    """`requested`, $SINE_THREADS or $OMP_NUM_THREADS wins; otherwise 1 for a model of fewer than
    PARALLEL_MIN_PARAMS UNet parameters, else the usable cores that are not busy, at least 1."""
    fixed = requested or threads_from_env()
    if fixed > 0:
        return fixed
    if model_params is not None and model_params < PARALLEL_MIN_PARAMS:
        return 1
    cores = usable_cores()
    return max(1, min(cores, int(cores - busy_cores() + 0.5)))


def threads_from_env() -> int:
    """$SINE_THREADS (a wrong value is named), else $OMP_NUM_THREADS's outer level ("4,2" is valid OpenMP;
    a value OpenMP would ignore is ignored here too); 0 when neither is set."""
    own = os.environ.get(THREADS_ENV, "").strip()
    if own:
        if not own.isdigit():
            raise BadInput(f"{THREADS_ENV}={own[:20]!r} is not a number of CPU threads")
        if len(own) > 6 or int(own) > MAX_CPU_THREADS:
            raise BadInput(f"{THREADS_ENV}={own[:20]} is more CPU threads than any machine has (0..{MAX_CPU_THREADS};"
                           " 0 = pick from the free cores)")
        return int(own)
    outer = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(outer) if outer.isdigit() and len(outer) <= 6 and int(outer) <= MAX_CPU_THREADS else 0


def apply_cpu_threads(requested: int | None = None, model_params: int | None = None) -> int:
    """Set torch's CPU threads for the next piece of work (call between jobs, not inside one)."""
    import torch

    threads = pick_cpu_threads(requested, model_params)
    torch.set_num_threads(threads)
    return threads
