"""Fine-tune a copy of the model on the one source image: the paper's recipe ("full") or LoRA ("lora").

The pre-trained model is never touched: the fine-tuned UNet and text encoder are copies (LoRA: a
copy carrying small adapters), and only the fine-tuned UNet gets the positional-embedding hook.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel

from sine_protocol import defaults

from .devices import finetuned_dtype, weight_dtype
from .errors import BadInput, Cancelled
from .images import flatten_rgb, to_tensor
from .memory import check_full_finetune_fits
from .models import BaseModel
from .patches import PatchSampler, TrainingView, WholeImageSampler
from .positional import PositionalHook, crop_embedding, interp_mode, positional_table
from .predictions import clean_latent, raw_outputs, training_target
from .recipes import RECIPES, Recipe
from .xl import crop_time_ids, size_conditioning_rows

ProgressFn = Callable[[int, int, float], None]
StopFn = Callable[[], bool]
MAX_BATCH = 64  # training views per step (FinetuneSettings.batch)

ARTIFACT_FORMAT = 3  # 2: LoRA on the ResNet convolutions and time projections too; 3: their 3x3 ones at rank 4
# Attention alone (format 1) could not make the demo model reproduce its source (see bench/quality.py):
# the layout and colours live in the ResNet blocks.
UNET_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "conv_shortcut", "time_emb_proj"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
CONV_3X3_TARGETS = ["conv1", "conv2"]  # their adapters' down-projections are 3x3: 63 % of an SD1.5 entry at rank 8


_JSON_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "bool": (bool,), "float": (int, float), "str": (str,),
                                          "None": (type(None),)}


def _saved_settings(folder: Path, meta: dict) -> FinetuneSettings:
    """The settings of a saved fine-tune, each of the type FinetuneSettings declares: `--weights` names a
    folder of the user's, whose hand-edited finetune.json was a TypeError/KeyError traceback."""
    saved = meta.get("settings")
    if not isinstance(saved, dict) or not isinstance(meta.get("source_prompt"), str):
        raise BadInput(f"{folder}: finetune.json lacks its settings or source prompt; fine-tune again")
    saved = dict(saved)
    if "whole_view" in saved:  # artifacts written before the rename
        saved["whole_image_share"] = saved.pop("whole_view")
    declared = {f.name: str(f.type) for f in fields(FinetuneSettings)}
    for name, value in saved.items():
        if name not in declared:
            raise BadInput(f"{folder}: finetune.json has an unknown setting {name[:40]!r}; fine-tune again")
        allowed = tuple(t for part in declared[name].split("|") for t in _JSON_TYPES[part.strip()])
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise BadInput(f"{folder}: finetune.json setting {name} is {str(value)[:40]!r}, not {declared[name]}")
    if saved.get("method", defaults.METHOD) not in defaults.FINETUNE_METHODS:
        raise BadInput(f"{folder}: finetune.json method must be one of {', '.join(defaults.FINETUNE_METHODS)}")
    return FinetuneSettings(**saved)


@dataclass(frozen=True)
class FinetuneSettings:
    """How to adapt to one image. `None` fields take the recipe's defaults (see `resolved`)."""

    method: str = defaults.METHOD
    steps: int | None = None
    patch: bool = True
    positional: bool | None = None  # default: on with patches, off without
    style: str = defaults.STYLE  # photo → bilinear PE resize, painting → nearest
    lr: float | None = None
    weight_decay: float = 0.01
    lora_rank: int = 8
    # Rank of the 3x3 ResNet convolutions' adapters (None: lora_rank). 4 keeps an SD1.5 entry at 8.5 MB
    # (12.4 MB at 8) with no loss on the quality benchmark's subset (docs/results/cpu/lora_conv_rank_quality.json).
    lora_conv_rank: int | None = 4
    train_text_encoder: bool | None = None
    train_conv_in: bool | None = None  # LoRA: also train conv_in fully (default: when the PE is on)
    offset_noise: float | None = None  # per-channel constant added to the noise; None: as the base model was trained
    whole_image_share: float | None = None  # patch runs: share of steps on the whole picture instead of a crop
    rec_weight: float = 1.0  # weight of the x̂0 reconstruction loss (patch runs only)
    # Training views per step, each with its own crop, timestep and noise, for one optimizer step (None:
    # the recipe's `patch_batch` with patches, else 1). A small model's step is call-bound on a CPU: 4
    # views cost about 1.8x one view's step.
    batch: int | None = None
    # Checkpoint the UNet's blocks while training (None: the recipe's, on for SDXL). The same weights up
    # to float rounding, so it is no part of `to_dict` (cache keys, manifests).
    gradient_checkpointing: bool | None = None
    seed: int = 0

    def resolved(self, recipes: dict[str, Recipe] | None = None) -> FinetuneSettings:
        """Every `None` filled from the recipe (`recipes`: the base model's, see `BaseModel.recipes`)."""
        recipes = RECIPES if recipes is None else recipes
        if self.method not in recipes:
            raise BadInput(f"fine-tune method must be one of {sorted(recipes)}, not {self.method!r}")
        r = recipes[self.method]
        positional = self.patch if self.positional is None else self.positional
        return replace(
            self,
            steps=self.steps if self.steps is not None else (r.patch_steps if self.patch else r.steps),
            positional=positional,
            lr=self.lr if self.lr is not None else r.lr,
            whole_image_share=((r.whole_image_share if self.patch else 0.0) if self.whole_image_share is None
                               else self.whole_image_share),
            train_text_encoder=r.train_text_encoder if self.train_text_encoder is None else self.train_text_encoder,
            train_conv_in=(self.method == "lora" and positional) if self.train_conv_in is None else self.train_conv_in,
            gradient_checkpointing=(r.gradient_checkpointing if self.gradient_checkpointing is None
                                    else self.gradient_checkpointing),
            batch=(r.patch_batch if self.patch else 1) if self.batch is None else self.batch,
        )

    def to_dict(self, recipes: dict[str, Recipe] | None = None) -> dict:
        """All settings with defaults filled in: stable input for cache keys and manifests."""
        out = asdict(self.resolved(recipes))
        del out["gradient_checkpointing"]  # how memory is spent, not what is learned
        if out["batch"] == 1:  # every entry made before batches existed was trained one view per step
            del out["batch"]
        return out


class FineTuned:
    """The per-image model: a fine-tuned UNet (with PE hook) and the text encoder that reads ĉ."""

    def __init__(self, base: BaseModel, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
                 settings: FinetuneSettings, source_prompt: str, merge: bool = True,
                 lora_state: dict[str, torch.Tensor] | None = None) -> None:
        """`unet`/`text_encoder`: the trained copies; LoRA adapters are merged into the UNet here (see
        `_for_inference`) unless `merge` is False (the reference path of the equivalence tests).
        `lora_state`: a stored entry's adapters, for a `unet` that is a plain copy of the base."""
        self.base = base
        self.settings = settings.resolved(base.recipes)
        # What a LoRA artifact stores, taken before the adapters are merged away (fp16 on the CPU).
        if lora_state is None and self.settings.method == "lora":
            lora_state = _fp16_cpu(_unet_lora_state(unet, self.settings))
        self.lora_state: dict[str, torch.Tensor] = lora_state or {}
        self.te_lora_state: dict[str, torch.Tensor] = (
            _fp16_cpu(get_peft_model_state_dict(text_encoder))
            if self.settings.method == "lora" and self.settings.train_text_encoder else {})
        self.unet, self.text_encoder = _for_inference(base, unet, text_encoder, self.settings, merge, self.lora_state)
        self.source_prompt = source_prompt
        self.pe_table = positional_table(base.pe_channels, base.pe_grid).to(base.device) if self.settings.positional else None
        self.pe_mode = interp_mode(self.settings.style)
        self.hook = PositionalHook(unet)

    @torch.no_grad()
    def encode_source(self) -> torch.Tensor:
        """ĉ: the source prompt through the fine-tuned text encoder."""
        return self.encode_prompts([self.source_prompt])

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Prompts through the fine-tuned text encoder, in the fine-tuned UNet's dtype (SDXL: both
        frozen encoders, pooled embedding packed, see `xl`)."""
        if self.base.is_xl:
            return self.base.encode_prompts(prompts).to(weight_dtype(self.unet))
        return self.text_encoder(self.base.tokenize(prompts))[0].to(weight_dtype(self.unet))

    # -- saving and loading -------------------------------------------------------------------
    def save(self, folder: str | Path) -> list[Path]:
        """Write the artifact (safetensors + finetune.json); returns the files written."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        s = self.settings
        files: list[Path] = []
        if s.method == "lora":
            files.append(_save_tensors(self.lora_state, folder / "unet_lora.safetensors"))
            if s.train_text_encoder:
                files.append(_save_tensors(self.te_lora_state, folder / "text_encoder_lora.safetensors"))
        else:
            files.append(_save_tensors(self.unet.state_dict(), folder / "unet.safetensors"))
            if s.train_text_encoder:
                files.append(_save_tensors(self.text_encoder.state_dict(), folder / "text_encoder.safetensors"))
        meta = {"format": ARTIFACT_FORMAT, "settings": s.to_dict(), "source_prompt": self.source_prompt,
                "base_model": self.base.model_id, "base_revision": self.base.revision}
        meta_path = folder / "finetune.json"
        meta_path.write_text(json.dumps(meta, indent=2))
        return [*files, meta_path]

    @classmethod
    def load(cls, folder: str | Path, base: BaseModel, merge: bool = True) -> FineTuned:
        folder = Path(folder)
        try:
            meta = json.loads((folder / "finetune.json").read_text())
        except (OSError, ValueError) as exc:
            raise BadInput(f"{folder} holds no fine-tuned weights ({exc.__class__.__name__})") from None
        if not isinstance(meta, dict) or meta.get("format") != ARTIFACT_FORMAT:
            raise BadInput(f"{folder}: unknown artifact format "
                           f"{meta.get('format') if isinstance(meta, dict) else type(meta).__name__!r}")
        trained_from = meta.get("base_revision")
        if trained_from and base.revision and trained_from != base.revision:  # never mix two models' weights
            raise BadInput(f"{folder} holds a fine-tune of another model ({meta.get('base_model')}, {trained_from[:19]}), "
                           f"not of {base.model_id} ({base.revision[:19]}): fine-tuned weights only fit the model they "
                           "were trained from; use that model, or a new folder to fine-tune this one")
        settings = _saved_settings(folder, meta)
        try:
            return cls._load_weights(folder, base, meta, settings, merge)
        except (OSError, SafetensorError, RuntimeError) as exc:  # a tensor file gone, damaged or of other shapes
            raise BadInput(f"{folder}: the saved fine-tune cannot be read ({exc.__class__.__name__}: "
                           f"{str(exc)[:120]}); fine-tune again into a new folder") from None

    @classmethod
    def _load_weights(cls, folder: Path, base: BaseModel, meta: dict, settings: FinetuneSettings,
                      merge: bool) -> FineTuned:
        if settings.method == "lora" and merge:  # straight into a plain copy of the base (`merge_lora_state`)
            state = load_file(folder / "unet_lora.safetensors")
            _check_lora_matches(base.unet, state, folder / "unet_lora.safetensors")
            text_encoder = _text_encoder_copy(base, settings)
            if settings.train_text_encoder:
                _load_lora(text_encoder, folder / "text_encoder_lora.safetensors", base)
            return cls(base, copy.deepcopy(base.unet), text_encoder, settings, meta["source_prompt"], lora_state=state)
        unet, text_encoder = _trainable_copies(base, settings)
        if settings.method == "lora":
            _load_lora(unet, folder / "unet_lora.safetensors", base, conv_in=settings.train_conv_in)
            if settings.train_text_encoder:
                _load_lora(text_encoder, folder / "text_encoder_lora.safetensors", base)
        else:
            unet.load_state_dict(load_file(folder / "unet.safetensors"))
            if settings.train_text_encoder:
                text_encoder.load_state_dict(load_file(folder / "text_encoder.safetensors"))
        return cls(base, unet, text_encoder, settings, meta["source_prompt"], merge=merge)

    def export_unet(self, folder: str | Path) -> Path:
        """Save the fine-tuned UNet as a plain diffusers UNet (LoRA merged, no hook, no extra weights)."""
        unet = copy.deepcopy(self.unet)
        for hook in list(unet.conv_in._forward_hooks):
            del unet.conv_in._forward_hooks[hook]
        if self.settings.method == "lora" and getattr(unet, "peft_config", None):  # an unmerged copy
            unet.fuse_lora()
            unet.unload_lora()
        unet.save_pretrained(folder)
        return Path(folder)

    def nbytes(self) -> int:
        """Bytes of the stored artifact's UNet tensors (fp16)."""
        if self.settings.method == "lora":
            return sum(t.numel() * 2 for t in self.lora_state.values())
        return sum(p.numel() * 2 for p in self.unet.parameters())

    def memory_bytes(self) -> int:
        """Bytes this fine-tune holds in memory: its UNet copy, and its text encoder when it has its own."""
        modules = [self.unet] + ([self.text_encoder] if self.text_encoder is not self.base.text_encoder else [])
        return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


def _fp16_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in state.items()}


def _save_tensors(state: dict[str, torch.Tensor], path: Path) -> Path:
    save_file(_fp16_cpu(state), path)
    return path


def _unet_lora_state(unet: torch.nn.Module, s: FinetuneSettings) -> dict[str, torch.Tensor]:
    """What a LoRA artifact stores: the adapters, plus conv_in when it was trained (for the PE)."""
    state = dict(get_peft_model_state_dict(unet))
    if s.train_conv_in:
        state.update({f"conv_in.{k}": v for k, v in unet.conv_in.state_dict().items()})
    return state


def _load_lora(module: torch.nn.Module, path: Path, base: BaseModel, conv_in: bool = False) -> None:
    state = {k: v.to(torch.float32) for k, v in load_file(path).items()}
    if conv_in:
        conv = {k.removeprefix("conv_in."): state.pop(k) for k in list(state) if k.startswith("conv_in.")}
        module.conv_in.load_state_dict({k: v.to(module.conv_in.weight.dtype) for k, v in conv.items()})
    result = set_peft_model_state_dict(module, state)
    if getattr(result, "unexpected_keys", None):
        raise BadInput(f"{path} does not match this base model (unexpected {result.unexpected_keys[:3]})")


def _lora_config(rank: int, targets: list[str], ranks: dict[str, int] | None = None) -> LoraConfig:
    """Scale 1 (alpha = rank) for every layer, also those `ranks` gives their own rank."""
    ranks = {k: v for k, v in (ranks or {}).items() if v != rank}
    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets,
                      rank_pattern=ranks, alpha_pattern=dict(ranks))


def _trainable_copies(base: BaseModel, s: FinetuneSettings) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    """Copies to train: fp32 master weights for what trains; the base dtype for what stays frozen."""
    unet = copy.deepcopy(base.unet)
    text_encoder = _text_encoder_copy(base, s)
    if s.method == "full":
        unet.float().requires_grad_(True)
        if s.train_text_encoder:
            text_encoder.float().requires_grad_(True)
    else:
        add_unet_lora(unet, s)
        _lora_params_fp32(unet)
        if s.train_conv_in:  # the PE is added right after conv_in: let the first layer make room for it
            unet.conv_in.float().requires_grad_(True)
    return unet, text_encoder


def _text_encoder_copy(base: BaseModel, s: FinetuneSettings) -> CLIPTextModel:
    """The text encoder a fine-tune trains (a copy, with LoRA adapters for `lora`), or the base's own."""
    if not s.train_text_encoder:
        return base.text_encoder
    text_encoder = copy.deepcopy(base.text_encoder)
    if s.method == "lora":
        text_encoder = inject_adapter_in_model(_lora_config(s.lora_rank, TEXT_LORA_TARGETS), text_encoder)
        _lora_params_fp32(text_encoder)
    return text_encoder


def _lora_parts(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """A stored LoRA state's conv_in tensors (by parameter name) and each adapted layer's factors
    ({"A": ..., "B": ...} by layer name), from peft's keys ("...conv1.lora_A.weight")."""
    conv_in: dict[str, torch.Tensor] = {}
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.startswith("conv_in."):
            conv_in[key.removeprefix("conv_in.")] = value
        else:
            layer, part = key.rsplit(".lora_", 1)
            factors.setdefault(layer, {})[part.split(".")[0]] = value
    return conv_in, factors


def _check_lora_matches(unet: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Every stored adapter names a layer of `unet` and fits its weight (else another base model's entry)."""
    def refuse(detail: str) -> BadInput:
        return BadInput(f"{path} does not match this base model ({detail})")

    conv_in, factors = _lora_parts(state)
    for name, value in conv_in.items():
        try:
            target = unet.conv_in.get_parameter(name)
        except AttributeError:
            raise refuse(f"unexpected conv_in.{name}") from None
        if value.shape != target.shape:
            raise refuse(f"conv_in.{name}: {tuple(value.shape)} against {tuple(target.shape)}")
    for name, ab in factors.items():
        try:
            weight = unet.get_submodule(name).weight
        except AttributeError:
            raise refuse(f"unexpected {name}") from None
        if set(ab) != {"A", "B"}:
            raise refuse(f"{name} lacks half of its adapter")
        if ab["A"].shape[1] != weight.shape[1] or ab["B"].shape[0] != weight.shape[0]:
            raise refuse(f"{name}: adapters {tuple(ab['A'].shape)} / {tuple(ab['B'].shape)} against "
                         f"{tuple(weight.shape)}")


def add_unet_lora(unet: UNet2DConditionModel, s: FinetuneSettings) -> None:
    """The recipe's LoRA adapters on `unet` (targets, rank, the 3x3 convolutions' own rank)."""
    conv_rank = s.lora_rank if s.lora_conv_rank is None else s.lora_conv_rank
    unet.add_adapter(_lora_config(s.lora_rank, UNET_LORA_TARGETS, {name: conv_rank for name in CONV_3X3_TARGETS}))


def _lora_params_fp32(module: torch.nn.Module) -> None:
    for name, param in module.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()
            param.requires_grad_(True)
        else:
            param.requires_grad_(False)


def _for_inference(base: BaseModel, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
                   s: FinetuneSettings, merge: bool = True, lora_state: dict[str, torch.Tensor] | None = None,
                   ) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    """The trained copies ready to sample, in the fine-tuned dtype (`finetuned_dtype`: fp16 on CUDA,
    where the base runs in bf16, whose 8-bit mantissa would round small weight changes away).

    LoRA: the adapters are merged into the weights in fp32 (`merge_lora_layerwise`), so a fine-tuned
    call costs a plain UNet call and the small changes meet a single rounding, to the fine-tuned dtype.
    The text encoder, when not trained, is the base's own and is left alone."""
    dtype = finetuned_dtype(base.device, base.dtype)
    if s.method == "lora" and merge:
        if getattr(unet, "peft_config", None):  # a fresh fine-tune's adapters
            merge_lora_layerwise(unet, dtype)
        else:  # a plain copy of the base and a stored entry
            merge_lora_state(unet, lora_state or {}, dtype)
        if s.train_text_encoder:
            text_encoder = _merge_peft_layers(text_encoder.float())
    trained = [unet, text_encoder] if s.train_text_encoder else [unet]
    for module in trained:
        module.requires_grad_(False)
        module.eval()
        module.to(base.device, dtype)
    return unet, text_encoder


@torch.no_grad()
def merge_lora_layerwise(unet: UNet2DConditionModel, dtype: torch.dtype) -> None:
    """Merge the UNet's peft LoRA adapters into its weights (`merge_lora_state` on their values), then
    remove the adapters: a plain UNet in `dtype`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in unet.modules():
        if isinstance(module, BaseTunerLayer) and any(v != 1.0 for v in module.scaling.values()):
            raise ValueError(f"LoRA scaling {module.scaling} is not 1 (alpha = rank): merge_lora_state assumes it")
    state = dict(get_peft_model_state_dict(unet))
    unet.unload_lora()  # the base layers back, unchanged
    merge_lora_state(unet, state, dtype)


@torch.no_grad()
def merge_lora_state(unet: UNet2DConditionModel, state: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    """Add each adapted layer's update ΔW = B·A (scale 1: alpha = rank) to its weight, one layer at a
    time in fp32, then cast the UNet to `dtype`; `conv_in.*` entries (trained for the PE) replace the
    base's. One fp32 layer above the model at a time instead of an fp32 copy of all of it (3.4 GB for
    SD1.5), and no adapter modules: a cached entry is merged straight into a plain copy of the base,
    with the same arithmetic as a fresh fine-tune, so both give bit-identical edits. (peft's own path
    built 208 adapter modules, 0.5 s, and merged the 3×3 convolutions through conv2d, 4.5 s of a 9 s
    SD1.5 load on one CPU thread.)"""
    conv_in, factors = _lora_parts(state)
    for name, value in conv_in.items():
        param = unet.conv_in.get_parameter(name)
        param.data = value.to(param.device, torch.float32).to(dtype)
    for name, ab in factors.items():
        layer = unet.get_submodule(name)
        weight = layer.weight
        a, b = (ab[k].to(weight.device, torch.float32) for k in ("A", "B"))
        delta = (b.flatten(1) @ a.flatten(1)).view(weight.shape)  # linear, 1×1 and 3×3 convolutions alike
        weight.data = (weight.data.float() + delta).to(dtype)
    unet.to(dtype)


def _merge_peft_layers(module: torch.nn.Module) -> torch.nn.Module:
    """Merge peft LoRA layers injected with `inject_adapter_in_model` and put the plain layers back."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, child in list(module.named_modules()):
        if isinstance(child, BaseTunerLayer):
            child.merge()
            parent = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            setattr(parent, name.rsplit(".", 1)[-1], child.get_base_layer())
    return module


def _trainable_parameters(*modules: torch.nn.Module) -> list[torch.nn.Parameter]:
    seen: dict[int, torch.nn.Parameter] = {}
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                seen[id(p)] = p
    return list(seen.values())


# Where torch's fused AdamW kernel is used: on the CPU too, where one LoRA step of the demo model's
# adapters took 4 ms fused against 30 ms multi-tensor (bench/adapt_speed.py, docs/benchmarks.md).
FUSED_ADAMW_DEVICES = ("cuda", "cpu")


def adamw(params: list[torch.nn.Parameter], lr: float, weight_decay: float, device: torch.device,
          fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW, fused (one kernel for all parameters) on FUSED_ADAMW_DEVICES unless `fused` says,
    else torch's multi-tensor (`foreach`) path. The same update up to float rounding."""
    fused = device.type in FUSED_ADAMW_DEVICES if fused is None else fused
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None,
                             foreach=None if fused else True)


def _make_sampler(image: Image.Image, base: BaseModel, s: FinetuneSettings,
                  rng: random.Random) -> PatchSampler | WholeImageSampler:
    if s.patch:
        return PatchSampler(image, base.sample_size, rng, base.pe_grid, s.whole_image_share)
    return WholeImageSampler(image, base.sample_size, base.pe_grid)


def _crop_conditioning(base: BaseModel, boxes: list[tuple[int, int, int, int]]) -> contextlib.AbstractContextManager:
    """SDXL: its own crop conditioning (time_ids) told where each view's crop is, as the PE is; others: nothing."""
    if not base.is_xl:
        return contextlib.nullcontext()
    return size_conditioning_rows([crop_time_ids(box, base.pe_grid, base.sample_size) for box in boxes])


class _ViewLatents:
    """The training views' latents: encoded together, one encoder call per step; the whole picture's
    (the same pixels every time it comes) encoded once."""

    def __init__(self, base: BaseModel) -> None:
        self.base = base
        self.whole_box = (0, 0, base.pe_grid, base.pe_grid)  # the box every sampler gives the whole picture
        self.whole: torch.Tensor | None = None

    def __call__(self, views: list[TrainingView]) -> torch.Tensor:
        rows: list[torch.Tensor | None] = [self.whole if v.box == self.whole_box else None for v in views]
        todo = [i for i, row in enumerate(rows) if row is None]
        if todo:
            pixels = torch.cat([to_tensor(views[i].image) for i in todo])
            encoded = self.base.encode_image(pixels).float()  # posterior mean: a small VAE's samples are noisy
            for i, z in zip(todo, encoded, strict=True):
                rows[i] = z[None]
                if views[i].box == self.whole_box:
                    self.whole = rows[i]
        return torch.cat(rows)  # type: ignore[arg-type]


def training_autocast(base: BaseModel) -> torch.dtype | None:
    """The dtype a fine-tune's UNet call autocasts to: the base's on CUDA, none on the CPU."""
    return base.dtype if base.device.type == "cuda" else None


def denoising_loss(
    unet: UNet2DConditionModel,
    hook: PositionalHook,
    z0: torch.Tensor,
    encoder_states: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    pe: torch.Tensor | None,
    rec_weight: float,
    alphas_cumprod: torch.Tensor,
    prediction: str = "epsilon",
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """MSE to what the model predicts (ε, or v for v-prediction models) plus, when `rec_weight` > 0,
    SINE's (t/T)²-weighted L1 on the predicted clean latent x̂₀ (read from ε or v accordingly).
    The UNet call runs under autocast to `autocast_dtype` when one is given."""
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
    with (hook.using(pe), raw_outputs(),
          torch.autocast(z0.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)):
        dtype = weight_dtype(unet)
        out = unet(z_t.to(dtype), t, encoder_states.to(dtype)).sample
    out = out.float()
    loss = F.mse_loss(out, training_target(z0, noise, a, prediction))
    if rec_weight > 0:
        x0_hat = clean_latent(out, z_t, a, prediction)
        weight = (t.float() / len(alphas_cumprod)) ** 2
        rec = (weight * (x0_hat - z0).abs().mean(dim=(1, 2, 3))).mean()
        loss = loss + rec_weight * rec
    return loss


def finetune(
    base: BaseModel,
    image: Image.Image,
    source_prompt: str,
    settings: FinetuneSettings | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> FineTuned:
    """Adapt a copy of `base` to `image`, learning it as `source_prompt`. Raises Cancelled when asked."""
    s = (settings or FinetuneSettings()).resolved(base.recipes)
    if base.is_xl and s.train_text_encoder:
        raise BadInput("training SDXL's two text encoders is not supported: use train_text_encoder=False "
                       "(the default for SDXL)")
    if not 1 <= s.batch <= MAX_BATCH:
        raise BadInput(f"fine-tune batch must be 1 to {MAX_BATCH} views per step, not {s.batch}")
    check_full_finetune_fits(base, s)  # before the copies: refuse in a second, not after an OOM
    rng = random.Random(s.seed)
    gen = torch.Generator("cpu").manual_seed(s.seed)
    image = flatten_rgb(image)
    # The adapters' random init comes from the seed (the same settings give the same fine-tune in any
    # process); the caller's generators are left as they were.
    with torch.random.fork_rng(devices=[base.device] if base.device.type == "cuda" else []):
        torch.manual_seed(s.seed)
        unet, text_encoder = _trainable_copies(base, s)
    unet.to(base.device).train()
    if s.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    text_encoder.to(base.device).train(s.train_text_encoder)
    hook = PositionalHook(unet)
    table = positional_table(base.pe_channels, base.pe_grid).to(base.device) if s.positional else None
    mode = interp_mode(s.style)
    sampler = _make_sampler(image, base, s, rng)
    params = _trainable_parameters(unet, text_encoder)
    optimizer = adamw(params, s.lr, s.weight_decay, base.device)
    alphas = base.new_scheduler().alphas_cumprod.to(base.device, torch.float32)
    ids = base.tokenize([source_prompt])
    frozen_states = None if s.train_text_encoder else base.encode_prompts([source_prompt])
    latents = _ViewLatents(base)
    rec_weight = s.rec_weight if s.patch else 0.0
    offset = base.offset_noise if s.offset_noise is None else s.offset_noise
    try:
        for step in range(s.steps):
            if should_stop is not None and should_stop():
                raise Cancelled("fine-tuning cancelled")
            views = [sampler.sample() for _ in range(s.batch)]
            z0 = latents(views)
            pe = (torch.stack([crop_embedding(table, v.box, tuple(z0.shape[-2:]), mode) for v in views])
                  if table is not None else None)
            t = torch.randint(0, len(alphas), (s.batch,), generator=gen).to(base.device)
            noise = torch.randn(z0.shape, generator=gen)
            if offset:
                noise = noise + offset * torch.randn((*z0.shape[:2], 1, 1), generator=gen)
            noise = noise.to(base.device)
            if s.train_text_encoder:
                with torch.autocast(base.device.type, dtype=base.dtype, enabled=base.device.type == "cuda"):
                    states = text_encoder(ids)[0]
            else:
                states = frozen_states
            states = states.expand(s.batch, -1, -1)
            with _crop_conditioning(base, [v.box for v in views]):
                loss = denoising_loss(unet, hook, z0, states, t, noise, pe, rec_weight, alphas,
                                      base.prediction_type, training_autocast(base))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if progress is not None:
                progress(step + 1, s.steps, float(loss.detach()))
    finally:
        hook.remove()
        del optimizer
        if s.gradient_checkpointing:
            unet.disable_gradient_checkpointing()
    _round_like_storage(s, unet, text_encoder)
    return FineTuned(base, unet, text_encoder, s, source_prompt)


@torch.no_grad()
def _round_like_storage(s: FinetuneSettings, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
    """Round the trained weights to fp16 as `save` stores them, so a fresh fine-tune and its cached
    copy give bit-identical edits."""
    modules = [unet, text_encoder] if s.train_text_encoder else [unet]
    for module in modules:
        for name, param in module.named_parameters():
            if s.method == "full" or "lora_" in name or (s.train_conv_in and name.startswith("conv_in.")):
                param.data = param.data.to(torch.float16).to(param.dtype)


@torch.no_grad()
def evaluation_loss(base: BaseModel, model: FineTuned, image: Image.Image, n: int = 8, seed: int = 1234) -> float:
    """Mean diffusion loss of `model` on `n` fixed (view, t, noise) draws of `image`: comparable across runs."""
    s = model.settings
    rng = random.Random(seed)
    gen = torch.Generator("cpu").manual_seed(seed)
    sampler = _make_sampler(flatten_rgb(image), base, s, rng)
    alphas = base.new_scheduler().alphas_cumprod.to(base.device, torch.float32)
    states = model.encode_source()
    total = 0.0
    for i in range(n):
        view = sampler.sample()
        z0 = base.encode_image(to_tensor(view.image)).float()
        pe = crop_embedding(model.pe_table, view.box, tuple(z0.shape[-2:]), model.pe_mode)[None] \
            if model.pe_table is not None else None
        t = torch.tensor([int((i + 0.5) * len(alphas) / n)], device=base.device)
        noise = torch.randn(z0.shape, generator=gen).to(base.device)
        with _crop_conditioning(base, [view.box]):
            total += float(denoising_loss(model.unet, model.hook, z0, states, t, noise, pe, 0.0, alphas,
                                          base.prediction_type, training_autocast(base)))
    return total / n
