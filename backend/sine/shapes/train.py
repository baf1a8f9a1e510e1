"""Train the shapes-world demo model: a tiny Stable-Diffusion-shaped latent diffusion model.

Stage 1 trains the VAE (f=4: 64x64 RGB -> 16x16x4 latents); stage 2 trains the UNet and the CLIP text
encoder jointly from scratch on the VAE's latents; stage 3 refines the decoder alone. The result is a
diffusers folder with the same classes and layout as Stable Diffusion, so the engine loads it exactly
as it loads SD.

How the committed `demo_model/` was made (one NVIDIA H200, seed 0; `bench/gpu_run.sh` runs it):
    sine train-demo --out M --config gpu --minutes 5.75          # VAE 1383 steps, UNet 2223 steps of 256,
                                                                # decoder refinement 1137 steps
    sine train-demo --out M --config gpu --stage decoder --minutes 2.3 --decoder-steps 100000   # +2739
then, in a session without a GPU, stage 2 went on for 68 minutes on 2 CPU cores (UNet 2223 -> 8402
steps of 64; held-out object colour 40 % -> 83 %), and its non-EMA weights were kept:
    sine train-demo --out M --config cpu --stage resume --minutes 68 --threads 2 --unet-steps 1000000 \
        --unet-batch 64 --unet-lr 3e-4 --latent-scenes 100000 --ema-decay 0.999 --raw-out M-raw
The `gpu` config keeps the CPU config's sizes (so the shipped model stays fast on a laptop CPU) and
spends the GPU on data: 100,000 scenes, batches of 256, a VAE trained 4x longer than the earlier
CPU-trained model's (343 steps), whose VAE turned every textured object into a blob that no fine-tune
could bring back. Without offset noise the base model ignored the text (held-out background colour
right 8%); with it, 98%. Budgets are wall-clock, so the step counts (recorded in
`training_info.json`), not the per-step results, depend on the machine.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..tiny_models import model_index
from .tokenizer import MODEL_MAX_LENGTH, write_tokenizer
from .world import (
    OBJECT_COLORS,
    UNSEEN_BACKGROUNDS,
    UNSEEN_TEXTURES,
    Background,
    Scene,
    random_scene,
)

SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
}

# Seeds below this bound are training scenes; evaluation and benchmarks use seeds above it.
HELD_OUT_SEED = 10_000_000


@dataclass
class TrainConfig:
    """Sizes and budgets of one training run (`cpu` for 2 shared cores, `gpu` for a real GPU)."""

    name: str = "cpu"
    seed: int = 0
    vae_channels: tuple[int, ...] = (16, 32, 64)
    vae_groups: int = 16
    vae_latent_channels: int = 4  # SD's 4; the UNet's in/out channels follow
    vae_steps: int = 2000
    vae_batch: int = 32
    vae_lr: float = 1e-3
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_layers: int = 1
    text_hidden: int = 64
    text_layers: int = 3
    unet_steps: int = 3000
    unet_batch: int = 32
    unet_lr: float = 6e-4
    latent_scenes: int = 16000
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    # Per-channel constant added to the training noise ("offset noise"). At 16x16 latents a flat
    # background's colour survives even t=999 of SD1's schedule (256 cells average the noise away),
    # so without it the UNet reads colours off z_t and learns to ignore the text.
    offset_noise: float = 0.3
    # Extra eps-MSE weight on the latent cells the objects cover. A medium shape covers ~5 % of the
    # 16x16 latent, so the plain loss is mostly background and colour; the shape comes last.
    object_weight: float = 0.0
    decoder_steps: int = 1500  # stage 3: decoder-only refinement, encoder (latent space) frozen
    minutes: float | None = None  # wall-clock budget for all stages; None: run all steps
    vae_share: float = 0.2  # part of `minutes` given to the VAE
    decoder_share: float = 0.15  # part of `minutes` given to the decoder refinement
    threads: int | None = None
    device: str = "cpu"
    extra: dict = field(default_factory=dict)


CONFIGS = {
    "cpu": TrainConfig(),
    # The GPU run keeps the CPU model's sizes (the shipped model must stay fast on a laptop CPU) and
    # spends the GPU on more data and steps: bigger batches, more scenes, a longer VAE stage.
    "gpu": TrainConfig(
        name="gpu", device="cuda", vae_steps=6000, vae_batch=64, unet_steps=60000, unet_batch=256,
        unet_lr=6e-4, latent_scenes=100_000, ema_decay=0.9995,
    ),
}


def make_vae(cfg: TrainConfig) -> AutoencoderKL:
    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=cfg.vae_latent_channels, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels, layers_per_block=1, norm_num_groups=cfg.vae_groups,
        mid_block_add_attention=False,
    )


def make_unet(cfg: TrainConfig) -> UNet2DConditionModel:
    if cfg.unet_channels[0] % 4:
        raise ValueError("block_out_channels[0] must be divisible by 4 (SINE's positional embedding)")
    return UNet2DConditionModel(
        sample_size=16, in_channels=cfg.vae_latent_channels, out_channels=cfg.vae_latent_channels,
        block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.unet_layers,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cfg.text_hidden, attention_head_dim=8, norm_num_groups=32,
    )


def make_text_encoder(cfg: TrainConfig, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=4 * cfg.text_hidden,
        num_hidden_layers=cfg.text_layers, num_attention_heads=4, max_position_embeddings=MODEL_MAX_LENGTH,
        projection_dim=cfg.text_hidden, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def to_tensor(images: list) -> torch.Tensor:
    """PIL RGB images -> float tensor in [-1, 1], NCHW."""
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2) / 127.5 - 1.0


def vae_scene(seed: int) -> Scene:
    """VAE training scenes include the unseen textures: like SD's VAE, it must encode any image."""
    scene = random_scene(seed)
    rng = random.Random(seed ^ 0x5EED)
    if rng.random() < 0.25:
        scene = scene.with_texture(rng.randrange(len(scene.objects)), rng.choice(UNSEEN_TEXTURES))
    if rng.random() < 0.1:
        kind = rng.choice(UNSEEN_BACKGROUNDS)
        colors = tuple(rng.sample([c for c in OBJECT_COLORS if c not in {o.color for o in scene.objects}], 2))
        scene = scene.with_background(Background(kind, colors[:1] if kind == "noisy" else colors))
    return scene


def encode_tokens(tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


class Clock:
    """A stage's deadline; None means no time limit."""

    def __init__(self, minutes: float | None) -> None:
        minutes = None if minutes is None else max(0.0, minutes)  # spent before the stage began: one step
        self.end = None if minutes is None else time.monotonic() + 60 * minutes
        self.length = 60 * (minutes or 0) or 1.0

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() > self.end

    def fraction(self) -> float:
        """Part of the budget used so far (0 without a budget)."""
        if self.end is None:
            return 0.0
        return 1.0 - max(0.0, self.end - time.monotonic()) / self.length


def vae_loss(vae: AutoencoderKL, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1's loss on a batch (L1 + MSE of the reconstruction from a sampled latent, a whisper of KL),
    and its L1 part for the log."""
    post = vae.encode(x).latent_dist
    rec = vae.decode(post.sample()).sample
    l1 = (rec - x).abs().mean()
    return l1 + F.mse_loss(rec, x) + 1e-6 * post.kl().mean(), l1


def train_vae(cfg: TrainConfig, log: Callable[[str], None], minutes: float | None) -> tuple[AutoencoderKL, int]:
    torch.manual_seed(cfg.seed)
    vae = make_vae(cfg).to(cfg.device)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    clock = Clock(minutes)
    step = 0
    for step in range(1, cfg.vae_steps + 1):
        seeds = range((step - 1) * cfg.vae_batch, step * cfg.vae_batch)
        x = to_tensor([vae_scene(s).render()[0] for s in seeds]).to(cfg.device)
        loss, l1 = vae_loss(vae, x)
        for g in opt.param_groups:
            g["lr"] = cfg.vae_lr * min(1.0, step / 50)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 25 == 0:
            log(f"vae step {step} l1 {l1.item():.4f} loss {loss.item():.4f}")
        if clock.expired():
            log(f"vae: time budget reached at step {step}")
            break
    vae.eval()
    return vae, step


@torch.no_grad()
def latent_scale(vae: AutoencoderKL, n: int = 512) -> float:
    """1/std of the latents, so scaled latents have unit variance (SD1's 0.18215 was found this way)."""
    x = to_tensor([random_scene(HELD_OUT_SEED + s).render()[0] for s in range(n)]).to(vae.device)
    z = vae.encode(x).latent_dist.mean
    return float(1.0 / z.std())


@dataclass
class LatentSet:
    """The UNet stage's training data: scaled VAE latents of scenes 0..n-1 and, per latent cell,
    the share of its pixels that belong to an object (for `object_weight`)."""

    latents: torch.Tensor  # (n, C, h, w) float32
    cover: torch.Tensor  # (n, 1, h, w) float16 in [0, 1]

    def __len__(self) -> int:
        return len(self.latents)


@torch.no_grad()
def encode_dataset(vae: AutoencoderKL, n: int, first_seed: int, chunk: int = 256) -> LatentSet:
    latents, cover = [], []
    for start in range(0, n, chunk):
        scenes = [random_scene(first_seed + s).render() for s in range(start, min(n, start + chunk))]
        x = to_tensor([image for image, _ in scenes])
        z = (vae.encode(x.to(vae.device)).latent_dist.mean * vae.config.scaling_factor).cpu()
        masks = torch.from_numpy(np.stack([m.union() for _, m in scenes])).float()[:, None]
        latents.append(z)
        cover.append(F.adaptive_avg_pool2d(masks, z.shape[-2:]).half())
    return LatentSet(torch.cat(latents), torch.cat(cover))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)


def save_model(folder: Path, vae: AutoencoderKL, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
               tokenizer_dir: Path, info: dict) -> None:
    """Write the diffusers folder (StableDiffusionPipeline layout): UNet and VAE as fp16 safetensors
    (diffusers loads them as fp32 unless asked otherwise), the text encoder as fp32."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in (("vae", vae), ("unet", unet)):
        copy.deepcopy(model).to("cpu", torch.float16).save_pretrained(folder / name, safe_serialization=True)
    # The text encoder stays fp32: transformers loads a checkpoint in its saved dtype by default, and the
    # engine expects fp32 on CPU; it is small anyway.
    copy.deepcopy(text_encoder).to("cpu", torch.float32).save_pretrained(folder / "text_encoder", safe_serialization=True)
    tok = CLIPTokenizer.from_pretrained(tokenizer_dir)
    tok.save_pretrained(folder / "tokenizer")
    DDIMScheduler(**SCHEDULER_CONFIG).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps(model_index(), indent=2) + "\n")
    (folder / "training_info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")


def refine_decoder(folder: str | Path, cfg: TrainConfig, log: Callable[[str], None] = print,
                   minutes: float | None = None) -> int:
    """Stage 3: train only the VAE decoder, encoder frozen, so the latent space the UNet learned stays
    exactly the same (as SD's ft-MSE decoder was made). Rewrites vae/ in `folder`; returns steps done."""
    folder = Path(folder)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32).to(cfg.device)
    vae.requires_grad_(False)
    vae.decoder.requires_grad_(True)
    vae.post_quant_conv.requires_grad_(True)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.vae_lr, weight_decay=0.0)
    clock = Clock(minutes)
    step = 0
    offset = 10 * HELD_OUT_SEED  # scenes the first stage did not see
    for step in range(1, cfg.decoder_steps + 1):
        seeds = range(offset + (step - 1) * cfg.vae_batch, offset + step * cfg.vae_batch)
        x = to_tensor([vae_scene(s).render()[0] for s in seeds]).to(cfg.device)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        loss = l1 + F.mse_loss(rec, x)
        for g in opt.param_groups:
            g["lr"] = cfg.vae_lr * min(1.0, step / 25)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 25 == 0:
            log(f"decoder step {step} l1 {l1.item():.4f}")
        if clock.expired():
            log(f"decoder: time budget reached at step {step}")
            break
    vae.eval().to("cpu", torch.float16).save_pretrained(folder / "vae", safe_serialization=True)
    info_path = folder / "training_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info["decoder_steps"] = step
    info_path.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return step


def train_unet(out: Path, cfg: TrainConfig, vae: AutoencoderKL, data: LatentSet, tok_dir: Path,
               unet: UNet2DConditionModel, text_encoder: CLIPTextModel, minutes: float | None, info: dict,
               log: Callable[[str], None], checkpoint_minutes: float = 5.0, round_: int = 0,
               raw_out: Path | None = None) -> int:
    """Stage 2: UNet and text encoder jointly, eps-MSE, t ~ U{0..999}, caption dropout for CFG.
    Saves the EMA weights to `out` (periodically and at the end); `round_` > 0 continues a finished
    run with fresh random streams; `raw_out` also receives the non-averaged weights."""
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    started = time.monotonic()
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.01, fused=cfg.device.startswith("cuda"))
    latents = data.latents.to(cfg.device)
    cover = data.cover.to(cfg.device)
    noise_sched = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"})
    rng = random.Random(cfg.seed + 2 + 1000 * round_)
    gen = torch.Generator().manual_seed(cfg.seed + 3 + 1000 * round_)
    first = int(info.get("unet_steps", 0)) if round_ else 0
    clock = Clock(minutes)
    last_ckpt = time.monotonic()
    step = 0
    running = 0.0
    losses: list[torch.Tensor] = []
    for step in range(1, cfg.unet_steps + 1):
        idx = torch.randint(0, len(latents), (cfg.unet_batch,), generator=gen)
        picked = idx.to(cfg.device)
        texts = []
        for i in idx.tolist():
            texts.append("" if rng.random() < cfg.caption_dropout else random_scene(i).random_caption(rng))
        ids = encode_tokens(tokenizer, texts).to(cfg.device, non_blocking=True)
        x0 = latents[picked]
        noise = torch.randn(x0.shape, generator=gen).to(cfg.device, non_blocking=True)
        if cfg.offset_noise:
            offset = torch.randn((*x0.shape[:2], 1, 1), generator=gen).to(cfg.device, non_blocking=True)
            noise = noise + cfg.offset_noise * offset
        t = torch.randint(0, 1000, (cfg.unet_batch,), generator=gen).to(cfg.device, non_blocking=True)
        zt = noise_sched.add_noise(x0, noise, t)
        cond = text_encoder(ids).last_hidden_state
        pred = unet(zt, t, cond).sample
        if cfg.object_weight:
            weight = 1.0 + cfg.object_weight * cover[picked].float()
            loss = ((pred - noise) ** 2 * weight).mean() / weight.mean()
        else:
            loss = F.mse_loss(pred, noise)
        lr = cfg.unet_lr * min(1.0, step / 100)
        # cosine tail over the run: by steps when they are known, by the clock under a time budget
        done = clock.fraction() if minutes is not None else step / cfg.unet_steps
        lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, done))) * 0.9 + 0.1
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = cfg.ema_decay if round_ else min(cfg.ema_decay, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text_encoder, decay)
        losses.append(loss.detach())  # read every 25 steps: a per-step .item() would stall the GPU queue
        if len(losses) == 25:
            for value in torch.stack(losses).tolist():
                running = 0.98 * running + 0.02 * value if running else value
            losses.clear()
        if step % 25 == 0:
            log(f"unet step {first + step} loss {running:.4f} lr {lr:.2e} "
                f"elapsed {(time.monotonic() - started) / 60:.1f} min")
        if time.monotonic() - last_ckpt > 60 * checkpoint_minutes:
            save_model(out, vae, ema_unet, ema_text, tok_dir, {**info, "unet_steps": first + step, "partial": True})
            if raw_out is not None:
                save_model(raw_out, vae, unet, text_encoder, tok_dir, {**info, "unet_steps": first + step})
            last_ckpt = time.monotonic()
            log(f"checkpoint at step {first + step}")
        if clock.expired():
            log(f"unet: time budget reached at step {first + step}")
            break
    info.update(unet_steps=first + step, partial=False)
    save_model(out, vae, ema_unet, ema_text, tok_dir, info)
    if raw_out is not None:
        save_model(raw_out, vae, unet, text_encoder, tok_dir, dict(info))
    return first + step


def resume_unet(folder: str | Path, cfg: TrainConfig, log: Callable[[str], None] = print,
                minutes: float | None = None, raw_out: str | Path | None = None) -> int:
    """Continue stage 2 on a finished model folder (fresh optimizer, EMA seeded with the saved weights).
    Used when the first run's time budget was too short; the VAE is left untouched. `minutes` is the
    whole call's wall clock, re-encoding the scenes included (as `train`'s is)."""
    started = time.monotonic()
    folder = Path(folder)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)
    info = json.loads((folder / "training_info.json").read_text())
    round_ = int(info.get("resumed", 0)) + 1
    info["resumed"] = round_
    info.setdefault("history", []).append(
        f"resume round {round_} on {cfg.device}: batch {cfg.unet_batch}, lr {cfg.unet_lr:g}, "
        f"ema {cfg.ema_decay:g}, {cfg.latent_scenes} scenes, object weight {cfg.object_weight:g}, {minutes} min")
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32).to(cfg.device).eval()
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32).to(cfg.device)
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=torch.float32).to(cfg.device)
    unet.train()
    text_encoder.train()
    data = encode_dataset(vae, cfg.latent_scenes, first_seed=0)
    log(f"resume round {round_}: encoded {len(data)} scenes")
    remaining = None if minutes is None else minutes - (time.monotonic() - started) / 60
    return train_unet(folder, cfg, vae, data, folder / "tokenizer", unet, text_encoder, remaining, info, log,
                      round_=round_, raw_out=Path(raw_out) if raw_out else None)


def train(out: str | Path, cfg: TrainConfig, log: Callable[[str], None] = print,
          checkpoint_minutes: float = 5.0) -> Path:
    """Run both stages and write the model folder to `out` (also periodically during stage 2)."""
    out = Path(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)  # tiny weights decaying towards zero must not slow the CPU down
    started = time.monotonic()
    tok_dir = write_tokenizer(out / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)

    vae_minutes = None if cfg.minutes is None else cfg.minutes * cfg.vae_share
    decoder_minutes = None if cfg.minutes is None else cfg.minutes * cfg.decoder_share
    vae, vae_steps = train_vae(cfg, log, vae_minutes)
    vae.requires_grad_(False)
    scale = latent_scale(vae)
    vae.register_to_config(scaling_factor=scale)
    log(f"vae done after {vae_steps} steps, scaling_factor {scale:.5f}")

    data = encode_dataset(vae, cfg.latent_scenes, first_seed=0)
    log(f"encoded {len(data)} scenes, latent std {data.latents.std().item():.3f}")

    torch.manual_seed(cfg.seed + 1)
    unet = make_unet(cfg).to(cfg.device)
    text_encoder = make_text_encoder(cfg, tokenizer).to(cfg.device)
    remaining = None if cfg.minutes is None else (
        cfg.minutes * (1 - cfg.decoder_share) - (time.monotonic() - started) / 60)
    info = {"config": asdict(cfg), "vae_steps": vae_steps, "scaling_factor": scale}
    train_unet(out, cfg, vae, data, tok_dir, unet, text_encoder, remaining, info, log, checkpoint_minutes)
    if cfg.decoder_steps:
        refine_decoder(out, cfg, log, decoder_minutes)
    info = json.loads((out / "training_info.json").read_text())
    info["minutes"] = (time.monotonic() - started) / 60
    (out / "training_info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    log(f"saved {out} after {info['minutes']:.1f} min")
    return out
