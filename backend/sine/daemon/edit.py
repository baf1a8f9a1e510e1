"""One edit job on the worker thread: cached or fresh fine-tune, guided sampling, exact-size result, mask composite."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from sine.cache import MANIFEST, WeightCache, cache_key
from sine.compositing import finish_result
from sine.daemon.loaded import LoadedFinetunes
from sine.daemon.progress import ProgressReporter
from sine.errors import Cancelled
from sine_protocol.frames import RGBAImage
from sine_protocol.messages import EditRequest

log = logging.getLogger("sine.daemon.edit")

# Fault injection for the crash tests: while the file this names exists, a cache write waits after the
# weights are on disk and before the entry is published, so a test can SIGKILL the daemon mid-write.
PAUSE_ENV = "SINE_TEST_CACHE_WRITE_PAUSE_FILE"
SPEED_CHECK_PART = "speed check"  # `part_of` of the `loading` events while the first job measures the machine


@dataclass
class EditOutcome:
    """What the `result` reply carries: one image per seed, in order."""

    images: list[RGBAImage]
    seeds: list[int]
    cache_hit: bool
    timings: dict[str, float]
    style_cache_hit: bool | None = None  # None: no style picture
    memory_hit: bool = False  # the source's fine-tune was still loaded from an earlier job: no disk read
    notes: list[str] = field(default_factory=list)  # what the painter should know (sine.job_notes)

    @property
    def image(self) -> RGBAImage:
        return self.images[0]


def _engine() -> Any:
    """Import the engine lazily: torch/diffusers load only in the worker thread."""
    from sine import finetune, prompts, sampler

    return finetune, sampler, prompts


def edit_cache_key(request: EditRequest, base: Any, source_prompt: str, settings: dict,
                   image: RGBAImage | None = None, subject: str | None = None) -> str:
    """The cache key of this request's fine-tune on `image` (default: its source; see sine.cache.cache_key)."""
    image = image or request.image
    return cache_key(
        image.data,
        image.width,
        image.height,
        source_prompt=source_prompt,
        subject=request.subject if subject is None else subject,
        style=request.style,
        model_id=str(getattr(base, "model_id", "")),
        revision=getattr(base, "revision", None),
        settings=settings,
    )


def run_edit(request: EditRequest, base: Any, cache: WeightCache, report: ProgressReporter,
             should_stop: Any, loaded: LoadedFinetunes | None = None) -> EditOutcome:
    """Run one edit end to end; raises Cancelled when ``should_stop()`` turns true between steps."""
    ft_mod, sampler_mod, prompts_mod = _engine()
    t0 = time.perf_counter()
    source = Image.frombytes("RGBA", request.image.size, request.image.data)
    timings = {"load_s": 0.0, "finetune_s": 0.0, "sample_s": 0.0, "total_s": 0.0}
    base.new_scheduler(_sampling_settings(sampler_mod, request).steps)  # more steps than the model has: before the fine-tune
    report.phase_start("loading")  # the job is the worker's: what precedes the fine-tune is not silent
    if hasattr(report, "set_estimate"):
        calibrating = getattr(report, "part", None)
        report.set_estimate(estimate_seconds(
            request, base, cache, loaded,
            progress=None if calibrating is None else lambda done, of: calibrating(SPEED_CHECK_PART, done, of)))
    notes = _job_notes(request, base, source)
    if notes:
        report.set_notes(notes)  # on the job's next progress: the painter learns it before the result
    tuned, cache_hit, memory_hit = _finetuned(request, request.image, request.subject, base, cache, report,
                                              should_stop, timings, loaded)
    guides: Any = tuned
    style_hit = None
    if request.style_image is not None:  # multi-model guidance: the second picture fine-tuned and cached alike
        from sine.noise_prediction import content_and_style_guides

        style_tuned = None
        if _style_used(sampler_mod, request):  # style weight 0: the same pixels without its fine-tune
            style_tuned, style_hit, _ = _finetuned(request, request.style_image, request.style_subject, base, cache,
                                                   report, should_stop, timings, loaded)
        guides = content_and_style_guides(
            tuned, style_tuned, _sampling_settings(sampler_mod, request),
            content_weight=request.sampling.get("content_weight"), style_weight=request.sampling.get("style_weight"))

    t_sample = time.perf_counter()
    out_w, out_h = request.output
    sampling_settings = _sampling_settings(sampler_mod, request)
    report.phase_start("sample", sampler_mod.sample_steps(base, out_w, out_h, sampling_settings,
                                                                request.count))
    edited = sampler_mod.sample_edits(
        base, guides, request.prompt, out_w, out_h, sampling_settings, source=source, seeds=request.seeds,
        progress=lambda step, total, preview: report.step("sample", step, total, preview),
        should_stop=should_stop, parts=report.part,
    )
    if should_stop():
        raise Cancelled("cancelled during sampling")
    timings["sample_s"] = time.perf_counter() - t_sample

    report.phase_start("decode", 1)
    results = [finish_image(image, source, request) for image in edited]
    timings["total_s"] = time.perf_counter() - t0
    return EditOutcome([RGBAImage(r.width, r.height, r.tobytes()) for r in results], request.seeds, cache_hit,
                       {k: round(v, 4) for k, v in timings.items()}, style_hit, memory_hit, notes)


def _job_notes(request: EditRequest, base: Any, source: Image.Image) -> list[str]:
    """The job's notes (sine.job_notes: a cut prompt, a photo for the demo model); a cut prompt is
    logged once per prompt, as `sine edit` prints it."""
    from sine.job_notes import job_notes, job_prompts

    style_subject = request.style_subject if request.style_image is not None else None
    base.warn_cut(job_prompts(request.prompt, request.subject, request.style, style_subject))
    return job_notes(base, request.prompt, request.subject, request.style, style_subject, picture=source)


def estimate_seconds(request: EditRequest, base: Any, cache: WeightCache,
                     loaded: LoadedFinetunes | None = None, progress: Any = None) -> float | None:
    """The job's expected time (sine.estimate: remembered per-machine rates, calibrated on first use, with
    `progress(done, of)` after each calibration step), or None."""
    from sine import estimate

    ft_mod, sampler_mod, prompts_mod = _engine()
    try:
        settings = ft_mod.FinetuneSettings(**request.finetune, style=request.style)
        settings_dict = settings.to_dict(base.recipes)
        steps = 0
        pictures = [(request.image, request.subject)]
        if request.style_image is not None and _style_used(sampler_mod, request):
            pictures.append((request.style_image, request.style_subject))
        for image, subject in pictures:
            key = edit_cache_key(request, base, prompts_mod.source_prompt(subject, request.style), settings_dict,
                                 image, subject)
            if not (cache.entry_path(key) / MANIFEST).exists() and not (loaded is not None and key in loaded):
                steps += int(settings_dict["steps"])
        rates = estimate.rates_for(base, settings.resolved(base.recipes), progress=progress)
        work = estimate.sampling_work(base, *request.output, _sampling_settings(sampler_mod, request), steps,
                                      count=request.count)
        return estimate.estimate(rates, work).total_s
    except Exception as exc:  # an estimate must never cost the edit
        log.warning("no time estimate: %s", exc)
        return None


def _sampling_settings(sampler_mod: Any, request: EditRequest) -> Any:
    """The engine's settings from the wire's `sampling` (only the keys sent; the engine's defaults otherwise)."""
    wire_to_engine = (("steps", "steps"), ("w", "guidance"), ("v", "v"), ("k", "k"), ("strength", "strength"),
                      ("start", "start"))
    sampling = request.sampling
    return sampler_mod.SamplingSettings(
        seed=request.seed, **{name: sampling[wire] for wire, name in wire_to_engine if wire in sampling})


def _style_used(sampler_mod: Any, request: EditRequest) -> bool:
    """Whether the style picture's model guides this edit (a style weight of 0 leaves it out)."""
    from sine.noise_prediction import style_model_used

    return style_model_used(_sampling_settings(sampler_mod, request).v, request.sampling.get("content_weight"),
                            request.sampling.get("style_weight"))


def _finetuned(request: EditRequest, image: RGBAImage, subject: str, base: Any, cache: WeightCache,
               report: ProgressReporter, should_stop: Any, timings: dict[str, float],
               loaded: LoadedFinetunes | None = None) -> tuple[Any, bool, bool]:
    """The fine-tuned model of `image` (the source, or the style picture): still loaded in memory, from the
    cache, or fine-tuned and cached. Returns (model, cache hit, memory hit); adds to the load and fine-tune
    timings."""
    ft_mod, _, prompts_mod = _engine()
    picture = Image.frombytes("RGBA", image.size, image.data)
    prompt_src = prompts_mod.source_prompt(subject, request.style)
    # The style also picks how the positional embedding is resized (bilinear for photos, nearest for paintings).
    settings = ft_mod.FinetuneSettings(**request.finetune, style=request.style)
    settings_dict = settings.to_dict(base.recipes)
    key = edit_cache_key(request, base, prompt_src, settings_dict, image, subject)
    cache_hit = False
    with cache.claim(key):  # a second job for the same image waits here for the first fine-tune
        if should_stop():
            raise Cancelled("cancelled before it started")
        t_load = time.perf_counter()
        tuned = loaded.get(key) if loaded is not None else None
        memory_hit = cache_hit = tuned is not None
        folder = None if memory_hit else cache.lookup(key)
        if folder is not None:
            try:
                tuned = ft_mod.FineTuned.load(folder, base)
                cache_hit = True
            except Exception as exc:  # a verified entry the engine still cannot read: rebuild it
                log.warning("cache entry %s failed to load (%s); fine-tuning again", key[:12], exc)
                cache.remove(key)
        timings["load_s"] += time.perf_counter() - t_load
        if tuned is None:
            t_ft = time.perf_counter()
            report.phase_start("finetune", int(settings_dict["steps"]))
            tuned = ft_mod.finetune(
                base, picture, prompt_src, settings,  # the engine lays transparent pixels over white
                progress=lambda step, total, _loss: report.step("finetune", step, total),
                should_stop=should_stop,
            )
            if should_stop():
                raise Cancelled("cancelled during fine-tuning")
            timings["finetune_s"] += time.perf_counter() - t_ft
            try:
                cache.store(key, _saver(tuned), settings_dict)
            except Exception as exc:  # noqa: BLE001 - a full disk costs the cache, never the edit
                # (safetensors raises its own SafetensorError, not OSError, when the disk is full)
                log.warning("could not cache the fine-tune %s: %s: %s", key[:12], type(exc).__name__, exc)
        if loaded is not None:
            loaded.put(key, tuned)
    return tuned, cache_hit, memory_hit


def _saver(tuned: Any) -> Any:
    pause_file = os.environ.get(PAUSE_ENV)

    def save(folder: Any) -> None:
        tuned.save(folder)
        deadline = time.monotonic() + 300
        while pause_file and os.path.exists(pause_file) and time.monotonic() < deadline:
            time.sleep(0.05)

    return save


def finish_image(edited: Image.Image, source: Image.Image, request: EditRequest) -> Image.Image:
    """Exactly ``request.output`` pixels, RGBA, with the source's alpha (transparent stays transparent);
    with a mask, the source shows through wherever it is 0 (`sine.compositing.finish_result`, as `sine edit`)."""
    mask = None if request.mask is None else Image.frombytes("L", request.mask.size, request.mask.data)
    return finish_result(edited, source, mask, tuple(request.output))
