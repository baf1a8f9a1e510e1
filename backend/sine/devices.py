"""Pick the torch device and dtype: CUDA in bf16 (fp16 where bf16 is missing), else CPU in fp32."""

from __future__ import annotations

import os

import torch

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` (or $SINE_DEVICE) wins; otherwise the first CUDA GPU, else the CPU."""
    name = requested or os.environ.get("SINE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dtype(device: torch.device, requested: str | torch.dtype | None = None) -> torch.dtype:
    """Inference dtype of the frozen models; training keeps its own weights in fp32."""
    requested = requested or os.environ.get("SINE_DTYPE")
    if isinstance(requested, torch.dtype):
        return requested
    if requested:
        try:
            return _DTYPES[requested.lower()]
        except KeyError:
            raise ValueError(f"unknown dtype {requested!r}; use one of {sorted(_DTYPES)}") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def describe_device(device: torch.device) -> str:
    """A human name for status lines: the GPU's model name, or 'CPU'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type.upper()


def finetuned_dtype(device: torch.device, base_dtype: torch.dtype) -> torch.dtype:
    """Dtype of a fine-tuned copy at sampling time: fp16 on CUDA (where the base runs in bf16, whose
    8-bit mantissa rounds 77-92 % of the paper recipe's weight changes back to the pre-trained
    values; fp16 has 10 bits), else the base's dtype. $SINE_FT_DTYPE overrides it."""
    requested = os.environ.get("SINE_FT_DTYPE")
    if requested:
        return pick_dtype(device, requested)
    if device.type == "cuda" and base_dtype in (torch.bfloat16, torch.float16):
        return torch.float16
    return base_dtype
