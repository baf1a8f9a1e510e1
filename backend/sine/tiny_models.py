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
from diffusers import AutoencoderKL, UNet2DConditionModel
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
    text_act: str = "quick_gelu",
    linear_projection: bool = False,
    scheduler: dict | None = None,
    in_channels: int = 4,
    latent_scale: float = 0.18215,
    unet_options: dict | None = None,
) -> Path:
    """Write an SD-layout folder with random weights and return its path.

    `attention_levels` says which UNet levels have (cross-)attention; default SD1's: all but the last.
    SD2-shaped: `text_act="gelu"` (OpenCLIP), `linear_projection=True`. `scheduler`: the scheduler
    config written (default SD1_SCHEDULER); `in_channels=9` makes an inpainting-shaped UNet;
    `unet_options`: more UNet config (e.g. class or added conditioning other pipelines give it).
    """
    folder = Path(folder)
    torch.manual_seed(seed)
    n = len(unet_channels)
    levels = attention_levels or tuple(i < n - 1 for i in range(n))
    down = tuple("CrossAttnDownBlock2D" if attn else "DownBlock2D" for attn in levels)
    up = tuple(reversed(tuple(b.replace("Down", "Up") for b in down)))
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=unet_channels,
        layers_per_block=layers_per_block,
        cross_attention_dim=cross_dim,
        attention_head_dim=heads,
        norm_num_groups=norm_groups,
        use_linear_projection=linear_projection,
        **(unet_options or {}),
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
        scaling_factor=latent_scale,
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
        hidden_act=text_act,
    )
    text_encoder = CLIPTextModel(text_config)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text_encoder.save_pretrained(folder / "text_encoder")
    write_char_tokenizer(folder / "tokenizer", max_length=max_length)
    write_scheduler(folder / "scheduler", SD1_SCHEDULER if scheduler is None else scheduler)
    (folder / "model_index.json").write_text(json.dumps(model_index(), indent=2))
    return folder


def write_scheduler(folder: Path, config: dict) -> None:
    """scheduler_config.json with exactly these keys (a missing key stays missing, as in some hub folders)."""
    folder.mkdir(parents=True, exist_ok=True)
    full = {"_class_name": "DDIMScheduler", "_diffusers_version": "0.30.0", **config}
    (folder / "scheduler_config.json").write_text(json.dumps(full, indent=2))


def make_tiny_sd(folder: str | Path, seed: int = 0, attention_everywhere: bool = False, **options: object) -> Path:
    """A ~4 MB SD-shaped model for CPU tests (VAE f=4, 8×8 latents at 32 px). By default attention
    only at the second level, so large tiled canvases stay cheap on a CPU. `options` go to make_sd_folder."""
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
        **options,  # type: ignore[arg-type]
    )


def make_tiny_sd2(folder: str | Path, v_prediction: bool, seed: int = 0) -> Path:
    """SD2-shaped tiny model: OpenCLIP-style text encoder (gelu), linear attention projections.
    ε: at SD2-base's relative size (8×8 latents, like tiny SD1's "512"); v: at SD2's 768/512 = 1.5×
    (12×12 latents), so the PE grid (2 × latent size) follows the model's size. Latents scaled to
    about unit variance, as SD's factor does for its trained VAE (this random VAE's are ~0.04), so
    that v's x₀ term weighs as it does in a real model."""
    scheduler = dict(SD1_SCHEDULER, prediction_type="v_prediction" if v_prediction else "epsilon")
    return make_sd_folder(
        folder, unet_channels=(32, 64), layers_per_block=1, cross_dim=32, heads=4, vae_channels=(16, 32, 32),
        text_layers=2, text_heads=2, text_intermediate=64, sample_size=12 if v_prediction else 8, max_length=32,
        norm_groups=16, vae_norm_groups=16, seed=seed, attention_levels=(False, True), text_act="gelu",
        linear_projection=True, scheduler=scheduler, latent_scale=4.0,
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


# --- single-file checkpoints in the original (LDM) layout, as painters download them ------------------

_RESNET_TO_LDM = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                  ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
               "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers UNet state dict in LDM keys (`model.diffusion_model.…`): the inverse of diffusers'
    `convert_ldm_unet_checkpoint` for SD-style UNets."""
    n = config["layers_per_block"] + 1
    attn_up = ["CrossAttn" in b for b in config["up_block_types"]]
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        new = None
        head = next((h for h in (".".join(parts[:2]), parts[0]) if h in _UNET_FIXED), None)
        if head is not None:
            new = _UNET_FIXED[head] + key[len(head):]
        elif parts[0] == "down_blocks":
            b, kind = int(parts[1]), parts[2]
            rest = ".".join(parts[4:])
            if kind == "resnets":
                new = f"input_blocks.{b * n + int(parts[3]) + 1}.0.{_resnet(rest)}"
            elif kind == "attentions":
                new = f"input_blocks.{b * n + int(parts[3]) + 1}.1.{rest}"
            else:  # downsamplers.0.conv.*
                new = f"input_blocks.{(b + 1) * n}.0.op.{parts[-1]}"
        elif parts[0] == "up_blocks":
            b, kind = int(parts[1]), parts[2]
            rest = ".".join(parts[4:])
            if kind == "resnets":
                new = f"output_blocks.{b * n + int(parts[3])}.0.{_resnet(rest)}"
            elif kind == "attentions":
                new = f"output_blocks.{b * n + int(parts[3])}.1.{rest}"
            else:  # upsamplers.0.conv.*
                new = f"output_blocks.{b * n + n - 1}.{2 if attn_up[b] else 1}.conv.{parts[-1]}"
        elif parts[0] == "mid_block":
            rest = ".".join(parts[3:])
            j = int(parts[2])
            new = f"middle_block.{2 * j}.{_resnet(rest)}" if parts[1] == "resnets" else f"middle_block.1.{rest}"
        if new is None:
            raise ValueError(f"no LDM name for UNet key {key}")
        out["model.diffusion_model." + new] = value
    return out


def _resnet(rest: str) -> str:
    for diffusers_name, ldm_name in _RESNET_TO_LDM:
        if rest.startswith(diffusers_name + "."):
            return ldm_name + rest[len(diffusers_name):]
    return rest


def vae_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict in LDM keys (`first_stage_model.…`)."""
    n_up = len(config["up_block_types"])
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in state.items():
        side, rest = key.split(".", 1)
        parts = rest.split(".")
        if parts[0] == "down_blocks":
            i = parts[1]
            tail = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
            new = f"down.{i}.block.{parts[3]}.{tail}" if parts[2] == "resnets" else f"down.{i}.downsample.conv.{parts[-1]}"
        elif parts[0] == "up_blocks":
            i = n_up - 1 - int(parts[1])
            tail = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
            new = f"up.{i}.block.{parts[3]}.{tail}" if parts[2] == "resnets" else f"up.{i}.upsample.conv.{parts[-1]}"
        elif parts[0] == "mid_block" and parts[1] == "resnets":
            new = f"mid.block_{int(parts[2]) + 1}." + ".".join(parts[3:]).replace("conv_shortcut", "nin_shortcut")
        elif parts[0] == "mid_block":
            tail = ".".join(parts[3:])
            for diffusers_name, ldm_name in attn.items():
                if tail.startswith(diffusers_name + "."):
                    tail = ldm_name + tail[len(diffusers_name):]
            new = "mid.attn_1." + tail
            if value.ndim == 2:  # LDM stores these as 1×1 convolutions
                value = value[:, :, None, None]
        elif parts[0] == "conv_norm_out":
            new = "norm_out." + parts[1]
        else:
            new = rest
        out[f"first_stage_model.{side}.{new}" if side in ("encoder", "decoder") else f"first_stage_model.{key}"] = value
    return out


def write_single_file(folder: str | Path, path: str | Path, sidecar: bool = True) -> Path:
    """The SD-style model in `folder` as one LDM-layout checkpoint at `path` (.safetensors, or .ckpt
    through torch.save of the plain state dict; an SD2-shaped one with its text encoder in OpenCLIP's
    layout, `cond_stage_model.model.*` with fused in_proj, as SD 2.x files carry it), plus, with `sidecar`, its `<path>.config/` folder
    (the diffusers folder without weights) that tells `from_single_file` its tiny shapes."""
    import shutil

    from safetensors.torch import save_file

    from .checkpoints import sidecar_folder

    folder, path = Path(folder), Path(path)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    vae = AutoencoderKL.from_pretrained(folder / "vae")
    text = CLIPTextModel.from_pretrained(folder / "text_encoder")
    state = unet_to_ldm(unet.state_dict(), dict(unet.config))
    state.update(vae_to_ldm(vae.state_dict(), dict(vae.config)))
    # transformers ≥ 5.6 dropped the text_model level of the key names
    text_state = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in text.state_dict().items()}
    if text.config.hidden_act == "gelu":  # SD 2.x: OpenCLIP's layout, with its (unused) projection
        text_state["text_projection.weight"] = torch.eye(text.config.hidden_size)
        state.update(_open_clip_state(text_state, "cond_stage_model.model."))
        state["cond_stage_model.model.logit_scale"] = torch.tensor(4.6052)
    else:
        state.update({"cond_stage_model.transformer." + k: v for k, v in text_state.items()})
    state = {k: v.contiguous() for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    if sidecar:
        target = sidecar_folder(path)
        shutil.copytree(folder, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return path


def sdxl_model_index() -> dict:
    return {
        "_class_name": "StableDiffusionXLPipeline",
        "_diffusers_version": "0.30.0",
        "force_zeros_for_empty_prompt": True,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


def make_tiny_sdxl(folder: str | Path, seed: int = 0, sample_size: int = 8) -> Path:
    """An SDXL-shaped model with random weights: two text encoders (CLIP-L-like and a bigG-like one
    with a projection for the pooled embedding), a UNet with SDXL's text_time added conditioning
    (pooled + 6 time_ids), SDXL's VAE scaling factor with force_upcast. Tiny: 32-px native size."""
    from transformers import CLIPTextModelWithProjection

    folder = Path(folder)
    torch.manual_seed(seed)
    hidden_1, hidden_2, time_dim = 32, 48, 8  # unequal: diffusers tells the two encoders apart by width
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=hidden_1 + hidden_2,
        attention_head_dim=(2, 4), norm_num_groups=16, use_linear_projection=True, transformer_layers_per_block=1,
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=hidden_2 + 6 * time_dim,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 32), layers_per_block=1,
        latent_channels=4, norm_num_groups=16, sample_size=sample_size * 4, scaling_factor=0.13025, force_upcast=True,
    )
    common = dict(vocab_size=514, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  max_position_embeddings=32, bos_token_id=512, eos_token_id=513, pad_token_id=513)
    text_1 = CLIPTextModel(CLIPTextConfig(hidden_size=hidden_1, hidden_act="quick_gelu", **common))
    text_2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=hidden_2, hidden_act="gelu",
                                                        projection_dim=hidden_2, **common))
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text_1.save_pretrained(folder / "text_encoder")
    text_2.save_pretrained(folder / "text_encoder_2")
    write_char_tokenizer(folder / "tokenizer", max_length=32)
    write_char_tokenizer(folder / "tokenizer_2", max_length=32)
    write_scheduler(folder / "scheduler", SD1_SCHEDULER)  # SDXL's betas are SD1's
    (folder / "model_index.json").write_text(json.dumps(sdxl_model_index(), indent=2))
    return folder


def _open_clip_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection state dict in OpenCLIP's layout (the inverse of diffusers'
    `convert_open_clip_checkpoint`): q/k/v merged into in_proj, text_projection transposed."""
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
           prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
           prefix + "ln_final.weight": state["final_layer_norm.weight"],
           prefix + "ln_final.bias": state["final_layer_norm.bias"],
           prefix + "text_projection": state["text_projection.weight"].T.contiguous()}
    layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")}
    for i in sorted(layers):
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat([state[src + f"self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out[dst + f"attn.out_proj.{kind}"] = state[src + f"self_attn.out_proj.{kind}"]
            out[dst + f"ln_1.{kind}"] = state[src + f"layer_norm1.{kind}"]
            out[dst + f"ln_2.{kind}"] = state[src + f"layer_norm2.{kind}"]
            out[dst + f"mlp.c_fc.{kind}"] = state[src + f"mlp.fc1.{kind}"]
            out[dst + f"mlp.c_proj.{kind}"] = state[src + f"mlp.fc2.{kind}"]
    return out


def write_sdxl_single_file(folder: str | Path, path: str | Path) -> Path:
    """The tiny SDXL folder as one SDXL-layout (`conditioner.embedders.*`) .safetensors checkpoint,
    with its `<path>.config/` sidecar of configs."""
    import shutil

    from safetensors.torch import save_file
    from transformers import CLIPTextModelWithProjection

    from .checkpoints import sidecar_folder

    folder, path = Path(folder), Path(path)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    vae = AutoencoderKL.from_pretrained(folder / "vae")
    text_1 = CLIPTextModel.from_pretrained(folder / "text_encoder")
    text_2 = CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2")
    state = unet_to_ldm(unet.state_dict(), dict(unet.config))
    state.update(vae_to_ldm(vae.state_dict(), dict(vae.config)))
    state.update({"conditioner.embedders.0.transformer." + (k if k.startswith("text_model.") else f"text_model.{k}"): v
                  for k, v in text_1.state_dict().items()})
    state.update(_open_clip_state(text_2.state_dict(), "conditioner.embedders.1.model."))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    shutil.copytree(folder, sidecar_folder(path), dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return path
