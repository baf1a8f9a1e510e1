"""Time estimates: the arithmetic, the work counted off the sampler's plan, the remembered calibration."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

from sine.estimate import (
    MAX_ENTRIES,
    Rates,
    Work,
    calibrate,
    describe,
    estimate,
    fingerprint,
    format_duration,
    load_rates,
    observed_rates,
    pass_evals,
    rates_for,
    sampling_work,
    save_rates,
)
from sine.finetune import FinetuneSettings
from sine.sampler import SamplingSettings

RATES = Rates(finetune_setup_s=2.0, finetune_step_s=0.5, sample_setup_s=1.0, unet_eval_s=0.1, decode_s=0.25)


def test_estimate_adds_setup_steps_unet_calls_and_vae() -> None:
    est = estimate(RATES, Work(finetune_steps=100, unet_evals=60.0, vae_images=4.0, sampling_steps=20))
    assert est.finetune_s == pytest.approx(2.0 + 100 * 0.5)
    assert est.sample_s == pytest.approx(1.0 + 60 * 0.1 + 4 * 0.25)
    assert est.total_s == pytest.approx(52.0 + 8.0)


def test_reused_weights_cost_no_fine_tune() -> None:
    assert estimate(RATES, Work(0, 10.0, 1.0, 5)).finetune_s == 0.0


def test_the_message_names_the_total_and_the_phases() -> None:
    work = Work(300, 150.0, 1.0, 50)
    line = describe(estimate(RATES, work), work)
    assert line.startswith("estimate: about 2 min 48 s in all") and "fine-tune 300 steps ~2 min 32 s" in line
    with_start = describe(estimate(RATES, work), work, so_far=12.0)
    assert with_start.startswith("estimate: about 3 min 00 s in all") and with_start.endswith("12 s so far)")
    assert format_duration(5) == "5 s" and format_duration(5520) == "1 h 32 min"


def test_one_latent_counts_three_calls_while_the_fine_tuned_model_guides_and_two_after() -> None:
    # a 16x16 latent on a 16-cell model: each call is one evaluation
    assert pass_evals((16, 16), [(0, 0, 16, 16)], 16, [True, True, False], whole_view=True) == 3 + 3 + 2
    # half the cells: half the work
    assert pass_evals((8, 16), [(0, 0, 8, 16)], 16, [True], whole_view=True) == pytest.approx(1.5)


def test_tiles_under_a_whole_view_cost_the_view_plus_one_call_per_tile() -> None:
    tiles = [(0, 0, 16, 16), (0, 16, 16, 16)]  # a 16x32 latent in two model-size tiles
    # whole view: the picture shrunk to 8x16 (half a model-size latent) x 3 calls, then one call per tile
    assert pass_evals((16, 32), tiles, 16, [True], whole_view=True) == pytest.approx(3 * 0.5 + 2)
    # SINE per tile: three calls on each tile
    assert pass_evals((16, 32), tiles, 16, [True], whole_view=False) == pytest.approx(3 * 2)


def test_sampling_work_follows_the_samplers_plan(base) -> None:
    side = base.sample_size // base.vae_scale_factor
    small = sampling_work(base, base.sample_size, base.sample_size, SamplingSettings(steps=10, k=0, strength=1.0), 7)
    assert small.finetune_steps == 7 and small.sampling_steps == 10
    assert small.unet_evals == pytest.approx(10 * 3)  # every step guided, one model-size latent
    assert small.vae_images == pytest.approx(1.0)
    big = sampling_work(base, 4 * base.sample_size, 3 * base.sample_size,
                        SamplingSettings(steps=10, k=0, strength=1.0), 7)
    up = sampling_work(base, 4 * base.sample_size, 3 * base.sample_size,
                       SamplingSettings(steps=10, k=0, strategy="upscale", strength=1.0), 7)
    refine = sampling_work(base, 4 * base.sample_size, 3 * base.sample_size,
                           SamplingSettings(steps=10, k=0, strategy="refine", refine_strength=0.5, strength=1.0), 7)
    assert up.unet_evals == pytest.approx(10 * 3 * 0.75)  # rendered at the model's size, 4:3
    assert big.unet_evals > 12 * 10  # at least one call per model-size tile of the 4x3 picture, every step
    assert up.unet_evals < refine.unet_evals < big.unet_evals + up.unet_evals
    assert refine.sampling_steps == 15
    assert side > 0


def test_calibration_is_remembered_and_read_back(tmp_path) -> None:
    path = tmp_path / "state" / "calibration.json"
    assert load_rates("key-a", path) is None
    save_rates("key-a", RATES, path)
    save_rates("key-b", dataclasses.replace(RATES, finetune_step_s=9.0), path)
    assert load_rates("key-a", path) == RATES
    assert load_rates("key-b", path).finetune_step_s == 9.0
    assert load_rates("key-c", path) is None
    assert not [p for p in path.parent.iterdir() if p.name != "calibration.json"]  # no temporary left


def test_the_calibration_file_keeps_the_most_recent_keys(tmp_path) -> None:
    path = tmp_path / "calibration.json"
    for i in range(MAX_ENTRIES + 5):
        save_rates(f"key-{i}", RATES, path)
    save_rates("key-6", RATES, path)  # measured again: now the most recent
    kept = list(json.loads(path.read_text()))
    assert len(kept) == MAX_ENTRIES and kept[-1] == "key-6" and "key-0" not in kept and "key-20" in kept


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"key-a": {"finetune_step_s": "x"}}', '{"key-a": 3}'])
def test_a_broken_calibration_file_means_measure_again(tmp_path, content: str) -> None:
    path = tmp_path / "sine-edit" / "calibration.json"  # sine-edit's own state folder (another may be the user's)
    path.parent.mkdir()
    path.write_text(content)
    assert load_rates("key-a", path) is None
    save_rates("key-a", RATES, path)  # and it is replaced by a good one
    assert load_rates("key-a", path) == RATES


def test_another_model_device_dtype_threads_or_method_is_another_key(base, tiny_folder) -> None:
    key = fingerprint(base, "lora")
    assert fingerprint(base, "lora") == key
    assert fingerprint(base, "full") != key
    assert fingerprint(dataclasses.replace(base, dtype=torch.float64), "lora") != key
    assert fingerprint(dataclasses.replace(base, device=torch.device("meta")), "lora") != key
    assert fingerprint(dataclasses.replace(base, model_id="other/model"), "lora") != key
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert fingerprint(base, "lora") != key
    finally:
        torch.set_num_threads(threads)
    weights = next((tiny_folder / "unet").glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, (stat.st_atime, stat.st_mtime + 10))  # the model file was replaced
    try:
        assert fingerprint(base, "lora") != key
    finally:
        os.utime(weights, (stat.st_atime, stat.st_mtime))


def test_rates_are_measured_once_then_read_from_the_state_dir(base, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SINE_STATE_DIR", str(tmp_path))
    settings = FinetuneSettings(method="lora").resolved(base.recipes)
    said: list[str] = []
    first = rates_for(base, settings, log=said.append)
    assert len(said) == 1 and first.finetune_step_s > 0 and first.unet_eval_s > 0
    assert min(dataclasses.astuple(first)) >= 0
    stored = json.loads((tmp_path / "calibration.json").read_text())
    assert list(stored) == [fingerprint(base, "lora")]
    assert rates_for(base, settings, log=said.append) == first and len(said) == 1  # remembered: no new run


def test_calibration_measures_real_steps(base) -> None:
    rates = calibrate(base, FinetuneSettings(method="lora", steps=500).resolved(base.recipes))
    assert rates.finetune_step_s > 0 and rates.unet_eval_s > 0
    assert rates.finetune_setup_s >= 0 and rates.sample_setup_s >= 0


def test_a_finished_edit_replaces_the_rates_with_what_it_ran_at() -> None:
    work = Work(finetune_steps=4, unet_evals=12.0, vae_images=2.0, sampling_steps=4)
    # fine-tune: started at 0, steps end at 1.5, 2, 2.5, 3 -> 0.5 s a step, 1 s of setup
    # sampling: started at 10, steps end at 11, 12, 13, 14 -> 1 s a step = 3 evaluations, 1/3 s each;
    # setup 0; the decode of 2 model-size pictures took 1 s
    got = observed_rates(RATES, work, [1.5, 2.0, 2.5, 3.0], 0.0, [11.0, 12.0, 13.0, 14.0], 10.0, 15.0)
    want = Rates(finetune_setup_s=1.0, finetune_step_s=0.5, sample_setup_s=0.0, unet_eval_s=1 / 3, decode_s=0.5)
    assert dataclasses.astuple(got) == pytest.approx(dataclasses.astuple(want))
    # reused weights: no fine-tune steps measured, the prior's stay
    kept = observed_rates(RATES, work, [], 0.0, [11.0, 12.0], 10.0, 13.0)
    assert (kept.finetune_setup_s, kept.finetune_step_s) == (RATES.finetune_setup_s, RATES.finetune_step_s)


def test_strength_inversion_and_several_results_scale_the_work(base) -> None:
    size = base.sample_size
    full = sampling_work(base, size, size, SamplingSettings(steps=10, k=0, strength=1.0), 0)
    default = sampling_work(base, size, size, SamplingSettings(steps=10, k=0), 0)
    half = sampling_work(base, size, size, SamplingSettings(steps=10, k=0, strength=0.5), 0)
    inverted = sampling_work(base, size, size, SamplingSettings(steps=10, k=0, strength=0.5, start="inversion"), 0)
    four = sampling_work(base, size, size, SamplingSettings(steps=10, k=0, strength=1.0), 0, count=4)
    assert default.unet_evals == pytest.approx(6 * 3) and default.sampling_steps == 6  # the default 0.6 of 10
    assert half.unet_evals == pytest.approx(5 * 3) and half.vae_images == pytest.approx(2.0)  # + the source encode
    assert inverted.unet_evals == pytest.approx(5 * 3 + 5) and inverted.sampling_steps == 10
    assert four.unet_evals == pytest.approx(4 * full.unet_evals) and four.vae_images == pytest.approx(4.0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_pipe_in_place_of_the_calibration_file_means_measure_again(tmp_path) -> None:
    """The daemon's worker reads the calibration file before each job: a named pipe there held it (and every
    queued edit) for ever."""
    import threading

    path = tmp_path / "sine-edit" / "calibration.json"  # sine-edit's own state folder (another may be the user's)
    path.parent.mkdir()
    os.mkfifo(path)
    answers: list[object] = []
    reader = threading.Thread(target=lambda: answers.append(load_rates("key-a", path)), daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():
        with open(path, "w"):  # let the stuck reader go before failing
            pass
        pytest.fail("load_rates waited on a named pipe")
    assert answers == [None]
    save_rates("key-a", RATES, path)  # and it is replaced by a good file
    assert path.is_file() and load_rates("key-a", path) == RATES
