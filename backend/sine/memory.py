"""What a fine-tune needs in device memory, checked before it starts.

The `full` recipe trains every UNet weight in fp32 with AdamW: per trained parameter a 4-byte master
weight, a 4-byte gradient and two 4-byte moments (FULL_BYTES_PER_PARAM), beside the frozen base UNet
that stays resident in its inference dtype. That alone is 43.0 GiB for SDXL's 2.57 B-parameter UNet,
before any activation (docs/results/cpu/sdxl_memory.json), so on a 24 GB card it cannot run: refuse
at once with the advice to use LoRA, instead of failing with CUDA out-of-memory minutes later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import BadInput

if TYPE_CHECKING:
    import torch

    from .finetune import FinetuneSettings
    from .models import BaseModel

FULL_BYTES_PER_PARAM = 4 + 4 + 2 * 4  # fp32 master weight + fp32 gradient + AdamW's two fp32 moments
GIB = 2**30


def module_bytes(*modules: torch.nn.Module | None) -> int:
    """Bytes of the parameters and buffers of `modules` (None skipped)."""
    return sum(t.numel() * t.element_size() for m in modules if m is not None
               for t in (*m.parameters(), *m.buffers()))


def full_finetune_bytes(trained_params: int, resident_bytes: int = 0) -> int:
    """A lower bound for `method=full`: weights, gradients and AdamW states of every trained parameter
    (FULL_BYTES_PER_PARAM each) plus `resident_bytes` (the frozen base UNet); activations come on top.
    SD1.5 (UNet + text encoder trained): 16.2 GiB, against 16.4 GiB measured on an H200
    (docs/results/gpu-h200/speed.json)."""
    return trained_params * FULL_BYTES_PER_PARAM + resident_bytes


def device_total_memory(device: torch.device) -> int | None:
    """Total memory of a CUDA device in bytes; None where torch does not report one (CPU, MPS)."""
    import torch

    if device.type != "cuda":
        return None
    return int(torch.cuda.get_device_properties(device).total_memory)


def check_full_finetune_fits(base: BaseModel, s: FinetuneSettings) -> None:
    """Refuse `method=full` before any copy is made when its lower bound exceeds the device's memory."""
    if s.method != "full":
        return
    total = device_total_memory(base.device)
    if total is None:
        return
    trained = [base.unet, base.text_encoder] if s.train_text_encoder else [base.unet]
    params = sum(p.numel() for m in trained for p in m.parameters())
    needed = full_finetune_bytes(params, module_bytes(base.unet))  # text encoders and VAE left out: a floor
    if needed > total:
        raise BadInput(
            f"method=full needs at least {needed / GIB:.1f} GiB of GPU memory for this model ({params / 1e9:.2f} B "
            f"trained parameters in fp32 with AdamW, plus the frozen model; activations come on top) but "
            f"{base.device} has {total / GIB:.1f} GiB: use method=lora (the default), which fits")
