"""How long an edit will take, said before it starts: step counts and sizes times per-machine rates.

The rates come from a short calibration (a few real fine-tune and sampling steps of the loaded model
at its own size), remembered in the user's state dir (`calibration.json`) under a key made of the
model (id, revision, weight file size and time) and the device (name, dtype, torch threads): another
model or device measures again. Sampling work is counted in "model-size UNet evaluations" (one UNet
call on one latent of the model's training size), read off the same plan the sampler follows, so
tiles, the whole view, `upscale` and `refine` are all costed by one rule: time ∝ latent cells.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sine_protocol import paths
from sine_protocol.defaults import PAPER_STRENGTH

if TYPE_CHECKING:
    from .finetune import FinetuneSettings
    from .models import BaseModel
    from .sampler import SamplingSettings

CALIBRATION_VERSION = 1
CALIBRATION_FILE = "calibration.json"
CALIBRATION_MAX_BYTES = 1 << 20  # MAX_ENTRIES entries of a few numbers each
MAX_SECONDS = 1e6  # per step or set-up: a remembered rate above this (or NaN, negative) is a damaged file
MAX_ENTRIES = 16  # models x devices remembered; temporary model folders (tests) must not grow the file forever
CALIBRATION_STEPS = 4  # per phase; the first step is a warm-up, the rate comes from the others


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of work on one machine with one model (one fine-tune method)."""

    finetune_setup_s: float  # copies, adapters, optimizer: before the first step
    finetune_step_s: float
    sample_setup_s: float  # prompt encodings, noise: before the first sampling step
    unet_eval_s: float  # one UNet call on one model-size latent (batch 1)
    decode_s: float  # one model-size latent through the VAE


@dataclass(frozen=True)
class Work:
    """What an edit will do, in the units `Rates` prices."""

    finetune_steps: int  # 0 when saved weights are reused
    unet_evals: float  # model-size UNet evaluations, all sampling passes together
    vae_images: float  # model-size pictures through the VAE (the final decode, refine's encode)
    sampling_steps: int  # for the message only


@dataclass(frozen=True)
class Estimate:
    finetune_s: float
    sample_s: float

    @property
    def total_s(self) -> float:
        return self.finetune_s + self.sample_s


def estimate(rates: Rates, work: Work) -> Estimate:
    """Pure arithmetic: the fine-tune (setup + steps) and the sampling (setup + UNet calls + VAE)."""
    finetune_s = rates.finetune_setup_s + work.finetune_steps * rates.finetune_step_s if work.finetune_steps else 0.0
    sample_s = rates.sample_setup_s + work.unet_evals * rates.unet_eval_s + work.vae_images * rates.decode_s
    return Estimate(finetune_s, sample_s)


def format_duration(seconds: float) -> str:
    """'45 s', '3 min 10 s', '1 h 32 min'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def describe(est: Estimate, work: Work, so_far: float = 0.0) -> str:
    """One line for the user, printed before the work starts; `so_far`: seconds already spent (start-up,
    model load), counted in the total."""
    parts = []
    if work.finetune_steps:
        parts.append(f"fine-tune {work.finetune_steps} steps ~{format_duration(est.finetune_s)}")
    parts.append(f"sampling {work.sampling_steps} steps ~{format_duration(est.sample_s)}")
    if so_far:
        parts.append(f"{format_duration(so_far)} so far")
    return f"estimate: about {format_duration(so_far + est.total_s)} in all ({', '.join(parts)})"


# -- the sampling work of a request: the sampler's own plan, counted --------------------------------

def pass_evals(latent_hw: tuple[int, int], tiles: list[tuple[int, int, int, int]], model_side: int,
               active: list[bool], whole_view: bool) -> float:
    """Model-size UNet evaluations of one sampling pass (one entry of `active` per step: whether the
    fine-tuned model guides at that step). Mirrors sine.sampler: one latent → ε_pre(∅), ε_pre(c) and,
    while active, ε_ft; tiles under a whole view → those three on the whole picture shrunk to the
    model's size plus one fine-tuned call per tile; tiles without it → all three per tile."""
    cells = model_side * model_side
    per_active = [2 + int(a) for a in active]
    if len(tiles) == 1:
        h, w = latent_hw
        return sum(per_active) * h * w / cells
    tile_cells = sum(h * w for (_, _, h, w) in tiles) / cells
    if whole_view:
        lh, lw = latent_hw
        shrink = min(1.0, model_side / max(lh, lw))
        small = max(1, round(lh * shrink)) * max(1, round(lw * shrink)) / cells
        return sum(per_active) * small + len(active) * tile_cells
    return sum(per_active) * tile_cells


def sampling_work(base: BaseModel, width: int, height: int, settings: SamplingSettings,
                  finetune_steps: int, count: int = 1) -> Work:
    """The `Work` of `count` results of `width`×`height` with `settings` (plan and timesteps from the
    sampler). Results batched in one latent cost what they cost one by one: time ∝ cells."""
    from dataclasses import replace

    from .guidance import single_model_guides
    from .large_canvas import plan_strategy
    from .sampler import timesteps_for
    from .start import first_step, needs_source

    f = base.vae_scale_factor
    side = base.sample_size // f
    model_cells = side * side
    guide = single_model_guides(settings.v, base.model_timestep(settings.k))[0]
    timesteps = timesteps_for(base, settings.steps)
    run = timesteps[first_step(len(timesteps), settings.strength):]
    active = [guide.active(t) for t in run]
    plan = plan_strategy(base, width, height, settings)
    whole = bool(settings.whole_view)
    cells = plan.latent_h * plan.latent_w / model_cells
    evals = pass_evals((plan.latent_h, plan.latent_w), plan.tiles, side, active, whole)
    vae = cells
    steps = len(run)
    if needs_source(settings.strength, settings.start):
        vae += cells  # the source through the encoder
    if settings.start == "inversion":  # one content-model call per step over the whole latent (or its tiles)
        tile_cells = cells if len(plan.tiles) == 1 else sum(h * w for (_, _, h, w) in plan.tiles) / model_cells
        evals += len(run) * tile_cells
        steps += len(run)
    if settings.strategy == "refine" and plan.upscale_to is not None:
        restart = min(len(timesteps) - 1, round(len(timesteps) * (1 - settings.refine_strength)))
        full = plan_strategy(base, width, height, replace(settings, strategy="tiled"))
        refine_active = [guide.active(t) for t in timesteps[restart:]]
        evals += pass_evals((full.latent_h, full.latent_w), full.tiles, side, refine_active, whole)
        vae += 2 * full.latent_h * full.latent_w / model_cells  # encode the resized picture, decode the result
        steps += len(timesteps) - restart
    return Work(finetune_steps, count * evals, count * vae, count * steps)


# -- calibration: measured once per model and device, remembered ------------------------------------

def calibration_path() -> Path:
    return paths.state_dir() / CALIBRATION_FILE


def fingerprint(base: BaseModel, method: str) -> str:
    """Model (id, revision, UNet weights' size and time), device, dtype, threads and fine-tune method."""
    import torch

    from .devices import describe_device

    weights = sorted((base.folder / "unet").glob("*.safetensors")) + sorted((base.folder / "unet").glob("*.bin"))
    stamp = [(w.name, w.stat().st_size, int(w.stat().st_mtime)) for w in weights]
    return json.dumps([CALIBRATION_VERSION, base.model_id, base.revision, stamp, describe_device(base.device),
                       str(base.device), str(base.dtype), torch.get_num_threads(), method])


def load_rates(key: str, path: Path | None = None) -> Rates | None:
    """The remembered rates for `key`, or None (no file, another key, unreadable or old format)."""
    path = path or calibration_path()
    try:
        entries = json.loads(paths.read_small_file(path, CALIBRATION_MAX_BYTES))  # a pipe there must not hold us
        entry = entries[key]
        values = {f.name: float(entry[f.name]) for f in fields(Rates)}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # json reads NaN and Infinity: a NaN estimate could not be sent (allow_nan=False) and failed every edit
    if not all(math.isfinite(v) and 0.0 <= v < MAX_SECONDS for v in values.values()):
        return None
    return Rates(**values)


def save_rates(key: str, rates: Rates, path: Path | None = None) -> None:
    """Remember `rates` under `key` (atomically: written beside, then renamed over the file). A damaged file is
    replaced in sine-edit's own folder; in another (SINE_STATE_DIR) it may be the user's: OSError, left as it is."""
    path = path or calibration_path()
    own_folder = paths.APP_NAME in path.parent.parts  # else SINE_STATE_DIR names a folder of the user's
    try:
        data = paths.read_small_file(path, CALIBRATION_MAX_BYTES)
    except FileNotFoundError:
        data = b""
    except OSError as exc:  # a pipe, a big file
        if not own_folder:
            raise OSError(f"{path} is not sine-edit's calibration ({exc}); left as it is") from None
        data = b""
    try:
        entries = json.loads(data) if data.strip() else {}
    except (ValueError, UnicodeDecodeError):
        entries = None
    if not (isinstance(entries, dict) and all(isinstance(v, dict) and "measured" in v for v in entries.values())):
        if not own_folder:
            raise OSError(f"{path} is not sine-edit's calibration (a file of yours?); left as it is")
        entries = {}  # a damaged file of ours: replaced
    entries.pop(key, None)  # re-inserted last: the file keeps the most recently measured keys
    entries[key] = {**asdict(rates), "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    entries = dict(list(entries.items())[-MAX_ENTRIES:])
    path.parent.mkdir(parents=True, exist_ok=True)
    paths.replace_privately(path, json.dumps(entries, indent=1).encode("utf-8"))


def _step_times(marks: list[float], start: float) -> tuple[float, float]:
    """(setup, per step) from the times of the step callbacks: the first step pays the warm-up."""
    per_step = (marks[-1] - marks[0]) / max(1, len(marks) - 1)
    return max(0.0, marks[0] - start - per_step), per_step


def calibrate(base: BaseModel, finetune: FinetuneSettings,
              progress: Callable[[int, int], None] | None = None) -> Rates:
    """A few real fine-tune steps (this recipe) and sampling steps at the model's size, timed;
    `progress(done, of)` after each of them (the daemon shows them while the job is `loading`)."""
    from dataclasses import replace

    from PIL import Image

    from .finetune import finetune as run_finetune
    from .sampler import SamplingSettings, sample_edit

    size = base.sample_size
    picture = Image.new("RGB", (size, size), (120, 140, 160))
    marks: list[float] = []
    done = [0]

    def mark(*_: Any) -> None:
        marks.append(time.perf_counter())
        done[0] += 1
        if progress is not None:
            progress(min(done[0], 2 * CALIBRATION_STEPS), 2 * CALIBRATION_STEPS)

    start = time.perf_counter()
    tuned = run_finetune(base, picture, "a picture", replace(finetune, steps=CALIBRATION_STEPS), progress=mark)
    ft_setup, ft_step = _step_times(marks, start)
    marks = []
    start = time.perf_counter()
    # k=0: the fine-tuned model guides every step, so each step is exactly 3 model-size evaluations; from
    # pure noise, every step run (a step costs the same at any strength)
    settings = SamplingSettings(steps=CALIBRATION_STEPS, k=0, strategy="single", strength=PAPER_STRENGTH)
    sample_edit(base, tuned, "a picture", size, size, settings, progress=mark)
    end = time.perf_counter()
    sample_setup, step = _step_times(marks, start)
    return Rates(ft_setup, ft_step, sample_setup, step / 3, max(0.0, end - marks[-1]))


def observed_rates(prior: Rates, work: Work, finetune_marks: list[float], finetune_start: float,
                   sample_marks: list[float], sample_start: float, end: float) -> Rates:
    """The rates a finished edit actually ran at (step callbacks' times), `prior` where it measured nothing.

    Remembering these after every edit corrects a calibration taken while the machine was busier
    (or idler) than it is now."""
    rates = asdict(prior)
    if len(finetune_marks) >= 2:
        rates["finetune_setup_s"], rates["finetune_step_s"] = _step_times(finetune_marks, finetune_start)
    if len(sample_marks) >= 2 and work.unet_evals > 0:
        n = len(sample_marks)
        per_step = (sample_marks[-1] - sample_marks[0]) / (n - 1)
        rates["unet_eval_s"] = per_step * n / work.unet_evals
        rates["sample_setup_s"] = max(0.0, sample_marks[0] - sample_start - per_step)
        rates["decode_s"] = max(0.0, end - sample_marks[-1]) / max(work.vae_images, 1e-9)
    return Rates(**rates)


def rates_for(base: BaseModel, finetune: FinetuneSettings, log: Any = None,
              progress: Callable[[int, int], None] | None = None) -> Rates:
    """The remembered rates of this model, device and recipe, calibrating (and remembering) if there are none
    (`progress`: see `calibrate`)."""
    rates = load_rates(fingerprint(base, finetune.method))
    if rates is None:
        if log is not None:
            log("measuring this machine's speed once for time estimates...")
        rates = calibrate(base, finetune, progress)
        remember_rates(base, finetune.method, rates)
    return rates


def remember_rates(base: BaseModel, method: str, rates: Rates) -> None:
    try:
        save_rates(fingerprint(base, method), rates)
    except OSError as exc:
        logging.getLogger("sine.estimate").warning("time estimates not remembered: %s", exc)  # never the edit
