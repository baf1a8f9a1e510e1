"""SDXL's extra conditioning: two text encoders, the pooled text embedding and the size/crop
conditioning (`time_ids`), carried through an engine written for one text-state tensor.

For SDXL the text states of a prompt are the two encoders' penultimate hidden states side by side
(L × (768 + 1280)) plus ONE extra token holding the pooled embedding (zero-padded). Every batch
operation the engine does on text states (expand, cat, index) keeps that token with its prompt. A
forward pre-hook on each SDXL UNet (the pre-trained one and its fine-tuned copies) takes it off
again and passes it, with the `time_ids` in force (`size_conditioning`), as `added_cond_kwargs`.
So the guidance, the tiles, the whole view and the fine-tuning loop are the same for every family.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

# Rows of (original_h, original_w, crop_top, crop_left, target_h, target_w), as SDXL was trained with:
# one row for the whole batch, or one per batch row
_TIME_IDS: ContextVar[list[tuple[float, ...]] | None] = ContextVar("sine_sdxl_time_ids", default=None)


def is_xl_unet(unet: torch.nn.Module) -> bool:
    return getattr(unet.config, "addition_embed_type", None) == "text_time"


@contextmanager
def size_conditioning(original: tuple[float, float], crop_top_left: tuple[float, float],
                      target: tuple[float, float]) -> Iterator[None]:
    """Within the block, SDXL UNet calls get these time_ids (pixels) for every batch row."""
    with size_conditioning_rows([(original, crop_top_left, target)]):
        yield


@contextmanager
def size_conditioning_rows(rows: list[tuple[tuple[float, float], ...]]) -> Iterator[None]:
    """Within the block, SDXL UNet calls get one (original, crop_top_left, target) per batch row (a
    fine-tune step's views, each its own crop)."""
    token = _TIME_IDS.set([(*original, *crop, *target) for original, crop, target in rows])
    try:
        yield
    finally:
        _TIME_IDS.reset(token)


def crop_time_ids(box: tuple[int, int, int, int], grid: int, train_size: int) -> tuple[tuple[float, float], ...]:
    """(original, crop_top_left, target) for a training crop `box` (cells of a `grid`² view) resized to
    `train_size`²: the whole view at the crop's scale, and where the crop starts in it. The whole
    view (box = the grid) is (train², (0, 0), train²), what sampling at the native size tells."""
    y0, x0, y1, x1 = box
    sy, sx = train_size / (y1 - y0), train_size / (x1 - x0)  # pixels per cell at the crop's scale
    return (grid * sy, grid * sx), (y0 * sy, x0 * sx), (float(train_size), float(train_size))


def pack(hidden: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """(B, L, D) hidden states + (B, P) pooled (P ≤ D) -> (B, L + 1, D)."""
    extra = torch.zeros(hidden.shape[0], 1, hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
    extra[:, 0, : pooled.shape[-1]] = pooled.to(hidden.dtype)
    return torch.cat([hidden, extra], dim=1)


def install_hook(unet: torch.nn.Module, native: int) -> None:
    """Unpack the pooled token into added_cond_kwargs on every call; time_ids default to the native size."""
    pooled_dim = int(unet.config.projection_class_embeddings_input_dim) - 6 * int(unet.config.addition_time_embed_dim)

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if kwargs.get("added_cond_kwargs") is not None:
            return args, kwargs
        args = list(args)
        if len(args) >= 3:
            states = args[2]
        else:
            states = kwargs["encoder_hidden_states"]
        hidden, pooled = states[:, :-1], states[:, -1, :pooled_dim]
        if len(args) >= 3:
            args[2] = hidden
        else:
            kwargs["encoder_hidden_states"] = hidden
        rows = _TIME_IDS.get() or [(native, native, 0, 0, native, native)]
        time_ids = torch.tensor(rows, dtype=hidden.dtype, device=hidden.device).expand(hidden.shape[0], -1)
        kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
        return tuple(args), kwargs

    unet.register_forward_pre_hook(hook, with_kwargs=True)


def encode(tokenizers: list, encoders: list, prompts: list[str], device: torch.device,
           zeros_for_empty: bool) -> torch.Tensor:
    """Packed SDXL text states: penultimate hidden states of both encoders, and encoder 2's pooled
    (projected) embedding. With `zeros_for_empty` (SDXL base's `force_zeros_for_empty_prompt`)
    an empty prompt is all zeros, as SDXL's pipeline gives its unconditional branch."""
    hidden, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, encoders, strict=True):
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        out = encoder(ids, output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        pooled = out[0] if out[0].ndim == 2 else pooled  # CLIPTextModelWithProjection: text_embeds first
    assert pooled is not None, "SDXL's second text encoder must be a CLIPTextModelWithProjection"
    states = pack(torch.cat(hidden, dim=-1), pooled)
    if zeros_for_empty:
        empty = torch.tensor([p == "" for p in prompts], device=states.device)
        states = torch.where(empty[:, None, None], torch.zeros_like(states), states)
    return states
