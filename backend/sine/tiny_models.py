"""Stable-Diffusion-shaped models with random weights, built from configs.

Tests and benchmarks need real diffusers/transformers models without any download: these
builders write a complete SD folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
scheduler/) that `sine.models.load_base_model` then loads through the normal `from_pretrained`
path, exactly like a real checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from .shapes.tokenizer import byte_alphabet

# SD1.x scheduler settings (also what SINE samples with).
SD1_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
    timestep_spacing="leading",
)


def write_char_tokenizer(folder: Path, max_length: int = 16) -> None:
    """A CLIP BPE tokenizer with no merges: every word becomes its characters (enough for tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = byte_alphabet()
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                    "pad_token": "<|endoftext|>"})
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length,
                    "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                    "pad_token": "<|endoftext|>", "do_lower_case": True})
    )


def model_index() -> dict:
    """model_index.json of a Stable Diffusion folder (no safety checker)."""
    return {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.30.0",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


def make_sd_folder(
    folder: str | Path,
    *,
    unet_channels: tuple[int, ...],
    layers_per_block: int,
    cross_dim: int,
    heads: int | tuple[int, ...],
    vae_channels: tuple[int, ...],
    text_layers: int,
    text_heads: int,
    text_intermediate: int,
    sample_size: int,
    max_length: int,
    norm_groups: int = 32,
    vae_norm_groups: int = 32,
    seed: int = 0,
    attention_levels: tuple[bool, ...] | None = None,
) -> Path:
    """Write an SD-layout folder with random weights and return its path.

    `attention_levels` says which UNet levels have (cross-)attention; default SD1's: all but the last.
    """
    folder = Path(folder)
    torch.manual_seed(seed)
    n = len(unet_channels)
    levels = attention_levels or tuple(i < n - 1 for i in range(n))
    down = tuple("CrossAttnDownBlock2D" if attn else "DownBlock2D" for attn in levels)
    up = tuple(reversed(tuple(b.replace("Down", "Up") for b in down)))
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=unet_channels,
        layers_per_block=layers_per_block,
        cross_attention_dim=cross_dim,
        attention_head_dim=heads,
        norm_num_groups=norm_groups,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        block_out_channels=vae_channels,
        layers_per_block=1 if vae_channels[0] < 64 else 2,
        latent_channels=4,
        norm_num_groups=vae_norm_groups,
        sample_size=sample_size * 2 ** (len(vae_channels) - 1),
        scaling_factor=0.18215,
    )
    text_config = CLIPTextConfig(
        vocab_size=514,
        hidden_size=cross_dim,
        intermediate_size=text_intermediate,
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        max_position_embeddings=max_length,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )
    text_encoder = CLIPTextModel(text_config)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text_encoder.save_pretrained(folder / "text_encoder")
    write_char_tokenizer(folder / "tokenizer", max_length=max_length)
    DDIMScheduler(**SD1_SCHEDULER).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps(model_index(), indent=2))
    return folder


def make_tiny_sd(folder: str | Path, seed: int = 0, attention_everywhere: bool = False) -> Path:
    """A ~4 MB SD-shaped model for CPU tests (VAE f=4, 8×8 latents at 32 px). By default attention
    only at the second level, so large tiled canvases stay cheap on a CPU."""
    return make_sd_folder(
        folder,
        unet_channels=(32, 64),
        layers_per_block=1,
        cross_dim=32,
        heads=4,
        vae_channels=(16, 32, 32),
        text_layers=2,
        text_heads=2,
        text_intermediate=64,
        sample_size=8,
        max_length=32,
        norm_groups=16,
        vae_norm_groups=16,
        seed=seed,
        attention_levels=(True, True) if attention_everywhere else (False, True),
    )


def make_sd15_shaped(folder: str | Path, seed: int = 0) -> Path:
    """SD1.5's exact architecture with random weights, for GPU speed/memory measurements."""
    return make_sd_folder(
        folder,
        unet_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_dim=768,
        heads=8,
        vae_channels=(128, 256, 512, 512),
        text_layers=12,
        text_heads=12,
        text_intermediate=3072,
        sample_size=64,
        max_length=77,
        seed=seed,
    )
