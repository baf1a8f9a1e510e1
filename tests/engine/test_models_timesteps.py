"""Models trained with another number of timesteps than SD's 1000 (scheduler_config
`num_train_timesteps: 500/2000`), tiny models loaded with `from_pretrained`: the fine-tuned model
guides the same share of the steps as the paper's K = 400 of 1000 does (counted against diffusers'
own DDIM timesteps), and more sampling steps than the model has timesteps are refused in words
before any fine-tuning."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from sine.cli import main
from sine.finetune import FinetuneSettings, finetune
from sine.models import load_base_model
from sine.sampler import SamplingSettings, sample_edit, timesteps_for
from sine.tiny_models import SD1_SCHEDULER, make_tiny_sd

STEPS, K = 10, 400


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[int, object]:
    root = tmp_path_factory.mktemp("timesteps")
    return {t: make_tiny_sd(root / f"T{t}", scheduler=dict(SD1_SCHEDULER, num_train_timesteps=t)) for t in (500, 2000)}


def _finetuned_calls(folder: object, source_image: object) -> int:
    """UNet calls of the fine-tuned model in a 10-step edit with K = 400."""
    base = load_base_model(folder, device="cpu")
    model = finetune(base, source_image.resize((32, 32)), "a picture",
                     FinetuneSettings(method="lora", steps=1, patch=False))
    calls = []
    model.unet.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        sample_edit(base, model, "a dog", 32, 32, SamplingSettings(steps=STEPS, k=K, strategy="single", strength=1.0))
    return len(calls)


@pytest.mark.parametrize("train_timesteps", [500, 2000])
def test_k_is_the_same_share_of_the_schedule_for_every_number_of_train_timesteps(folders, source_image,
                                                                                  train_timesteps):
    config = dict(SD1_SCHEDULER, num_train_timesteps=train_timesteps)
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(STEPS)
    share = K / 1000  # the paper's K on SD's 1000-step schedule
    expected = sum(int(t) >= share * train_timesteps for t in scheduler.timesteps)
    assert expected == 6  # as on SD's schedule: 901, 801, ..., 401 of 991 ... 1
    assert _finetuned_calls(folders[train_timesteps], source_image) == expected


def test_more_steps_than_the_model_has_timesteps_are_refused_in_words_before_fine_tuning(folders, tmp_path,
                                                                                       source_image, capsys):
    source = tmp_path / "source.png"
    source_image.resize((32, 32)).save(source)
    rc = main(["edit", "--prompt", "a dog", "--model", str(folders[500]), "--steps", "600", "--finetune-steps", "1",
               "--quality", "full", "--no-patch", "--out", str(tmp_path / "out.png"), str(source)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "600" in err and "500" in err and "steps" in err, err
    assert "fine-tuning" not in err and not (tmp_path / "out.png").exists()


def _with_scheduler(folder, tmp_path, name, **changes):
    import json
    import shutil

    copy = shutil.copytree(folder, tmp_path / name)
    path = copy / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return copy


def test_scheduler_configs_that_contradict_their_timesteps_are_refused_in_words(tiny_folder, tmp_path):
    """trained_betas listing 500 betas for 1000 timesteps loaded, and the edit failed with an IndexError
    at the first step past 499; a num_train_timesteps of "1000" (a string) or 0 was called fine by doctor."""
    from sine.errors import BadModel
    from sine.models import describe_model

    betas = [0.001] * 500
    for name, changes, words in (("betas", {"trained_betas": betas}, "500 trained_betas for 1000 timesteps"),
                                 ("string", {"num_train_timesteps": "1000"}, "num_train_timesteps '1000' is not"),
                                 ("zero", {"num_train_timesteps": 0}, "num_train_timesteps 0 is not")):
        folder = _with_scheduler(tiny_folder, tmp_path, name, **changes)
        for call in (describe_model, lambda p: load_base_model(p, device="cpu")):
            with pytest.raises(BadModel, match=words):
                call(folder)
    whole = _with_scheduler(tiny_folder, tmp_path, "whole", trained_betas=[0.001] * 1000)
    assert load_base_model(whole, device="cpu").new_scheduler(10).alphas_cumprod.shape == (1000,)


def test_single_file_with_the_ldm_betas_buffer_of_another_schedule_samples_with_it(tiny_folder, tmp_path):
    """An LDM checkpoint carries its training schedule as a `betas` buffer (one per timestep). One trained
    with 500 timesteps was read with its configs' 1000 (SD's): sampled on a schedule it never saw. The
    buffer's schedule is used when it is not the configs'; SD's own buffer changes nothing."""
    import shutil

    from safetensors.torch import load_file, save_file

    from sine.models import model_report
    from sine.tiny_models import write_single_file

    plain = write_single_file(tiny_folder, tmp_path / "plain.safetensors")
    for name, steps in (("t500", 500), ("sd", 1000)):
        reference = DDIMScheduler.from_config(dict(SD1_SCHEDULER, num_train_timesteps=steps))
        path = tmp_path / f"{name}.safetensors"
        save_file({**load_file(str(plain)), "betas": reference.betas.clone()}, str(path))
        shutil.copytree(plain.with_suffix(".config"), path.with_suffix(".config"))
        base = load_base_model(path, device="cpu")
        assert base.train_timesteps == steps and (base.scheduler_config.get("trained_betas") is not None) == (steps != 1000)
        assert torch.allclose(base.new_scheduler(10).alphas_cumprod, reference.alphas_cumprod)
        assert model_report(path)[0] == base.kind


def test_zero_snr_file_with_sds_betas_buffer_keeps_its_configs_schedule(tiny_folder, tmp_path):
    """A zero-terminal-SNR file (`ztsnr` key) carries SD's betas as saved; its schedule is SD's rescaled,
    not taken for another one."""
    import shutil

    from safetensors.torch import load_file, save_file

    from sine.checkpoints import read_checkpoint, single_file_scheduler
    from sine.tiny_models import write_single_file

    plain = write_single_file(tiny_folder, tmp_path / "plain.safetensors")
    path = tmp_path / "zsnr.safetensors"
    betas = DDIMScheduler.from_config(dict(SD1_SCHEDULER)).betas.clone()
    save_file({**load_file(str(plain)), "betas": betas, "ztsnr": torch.zeros(0)}, str(path))
    shutil.copytree(plain.with_suffix(".config"), path.with_suffix(".config"))
    config = single_file_scheduler(path, read_checkpoint(path), path.with_suffix(".config"))
    assert config["rescale_betas_zero_snr"] is True and "trained_betas" not in config


@pytest.mark.parametrize("stated, zero_snr, spacing", [
    (None, False, "leading"), ("leading", False, "leading"), ("linspace", False, "leading"),
    ("trailing", False, "trailing"), (None, True, "trailing"), ("leading", True, "trailing")])
def test_sampling_timesteps_are_trailing_where_the_model_asks_for_them(tmp_path, stated, zero_snr, spacing):
    """SINE samples at the paper's leading timesteps (…, 1) unless the model was made for trailing ones:
    its scheduler config says "trailing" (SDXL-Turbo-like models), or it has zero terminal SNR, whose
    pure-noise step is t = 999 (Lin et al. 2023: sample from the last timestep). Before, such models
    were started at 901 for 10 steps, a level of noise the picture's pure noise is not. The inversion
    walks the same timesteps up."""
    from sine.start import inverse_scheduler

    scheduler = {k: v for k, v in SD1_SCHEDULER.items() if k != "timestep_spacing"}
    if stated:
        scheduler["timestep_spacing"] = stated
    if zero_snr:
        scheduler["rescale_betas_zero_snr"] = True
    base = load_base_model(make_tiny_sd(tmp_path / "m", scheduler=scheduler), device="cpu")
    reference = DDIMScheduler.from_config({**scheduler, "timestep_spacing": spacing, "steps_offset": 1})
    reference.set_timesteps(STEPS)
    got = timesteps_for(base, STEPS)
    assert got == [int(t) for t in reference.timesteps]
    assert got[0] == (999 if spacing == "trailing" else 901)
    inverse = inverse_scheduler(base.new_scheduler(STEPS))
    inverse.set_timesteps(STEPS)
    assert sorted(int(t) for t in inverse.timesteps) == sorted(got)


@pytest.mark.parametrize("extra", [{}, {"timestep_spacing": "trailing"}, {"rescale_betas_zero_snr": True},
                                   {"steps_offset": 0, "set_alpha_to_one": True}], ids=["sd", "trailing", "zero-snr",
                                                                                          "offset0-alpha1"])
def test_inversion_retraces_the_sampler_on_the_models_own_schedule(tmp_path, extra):
    """DDIM inversion with a fixed ε, sampled back with that ε, gives the source's latent back, whatever the
    model's scheduler_config says. A zero-terminal-SNR model's inversion used ᾱ = 0 at t = 999 (its
    config rebuilt without the sampler's floor), so the inverted start held no trace of the source and
    the inversion start gave a random picture (x̂₀ off by the latent's whole size)."""
    from sine.start import inverted_start

    base = load_base_model(make_tiny_sd(tmp_path / "m", scheduler={**SD1_SCHEDULER, **extra}), device="cpu")
    scheduler = base.new_scheduler(STEPS)
    scheduler.set_timesteps(STEPS)
    timesteps = [int(t) for t in scheduler.timesteps]
    gen = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 4, 8, 8, generator=gen)
    z = inverted_start(scheduler, STEPS, z0, timesteps[0], lambda _z, _t: eps)
    for t in timesteps:
        out = scheduler.step(eps, t, z, eta=0.0)
        z = out.prev_sample
    assert (out.pred_original_sample - z0).abs().max() < 1e-2  # zero SNR: z0 read back through √ᾱ = 2⁻¹² (fp32)
