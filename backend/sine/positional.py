"""SINE's positional embedding: a fixed 2-D sin/cos table added after the fine-tuned UNet's conv_in.

Training sees crops of the image; the table tells the UNet *where* a crop came from, so at sampling
time the whole table (resized to any latent size) asks for the whole picture, at any resolution or
aspect, with every object where it belongs. No weights are added: a forward hook on `conv_in` adds
the table, so the saved UNet stays a vanilla `UNet2DConditionModel`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

GRID = 128  # cells per side of the table (the 1024-px view of SD1 in 8-px latent cells)


def axis_embedding(channels_per_axis: int, grid: int = GRID) -> torch.Tensor:
    """e(p) for p = 1..grid: [sin(p·ω_k)]_k ++ [cos(p·ω_k)]_k, ω_k = 10000^(−k/(D/2−1)); shape (grid, D)."""
    half = channels_per_axis // 2
    if half < 2 or channels_per_axis % 2:
        raise ValueError(f"need an even number ≥ 4 of channels per axis, got {channels_per_axis}")
    k = torch.arange(half, dtype=torch.float64)
    omega = 10000.0 ** (-k / (half - 1))
    pos = torch.arange(1, grid + 1, dtype=torch.float64)[:, None]
    return torch.cat([torch.sin(pos * omega), torch.cos(pos * omega)], dim=1).float()


def positional_table(channels: int, grid: int = GRID) -> torch.Tensor:
    """(C, grid, grid): channels 0..D−1 carry e(column+1), channels D..2D−1 carry e(row+1), D = C/2."""
    if channels % 4:
        raise ValueError(f"conv_in channels must be divisible by 4, got {channels}")
    d = channels // 2
    e = axis_embedding(d, grid)  # (grid, D)
    table = torch.empty(channels, grid, grid)
    table[:d] = e.T[:, None, :].expand(d, grid, grid)  # varies along columns
    table[d:] = e.T[:, :, None].expand(d, grid, grid)  # varies along rows
    return table


def interp_mode(style: str) -> str:
    """Bilinear for photos, nearest for paintings (the paper's choice)."""
    return "nearest" if style == "painting" else "bilinear"


def crop_embedding(table: torch.Tensor, box: tuple[int, int, int, int], size: tuple[int, int], mode: str) -> torch.Tensor:
    """Training: the table's crop box (y0, x0, y1, x1) in cells, resized to the latent size (h, w)."""
    y0, x0, y1, x1 = box
    crop = table[:, y0:y1, x0:x1][None]
    if mode == "bilinear":
        out = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
    else:
        out = F.interpolate(crop, size=size, mode="nearest")
    return out[0]


def region_embedding(
    table: torch.Tensor,
    full_size: tuple[float, float],
    offset: tuple[int, int],
    size: tuple[int, int],
    mode: str,
) -> torch.Tensor:
    """Sampling: the embedding of a latent region inside a picture of `full_size` latent cells.

    The whole table spans the picture (align_corners: first cell → table cell 0, last → 127). The
    region starts at latent `offset` (y, x) and has `size` (h, w) cells; cells past the picture's
    edge (padding to a multiple of 8 px) repeat the border. The whole picture at an exact size gives
    the same result as resizing the whole table (bilinear with align_corners, as training resizes
    crops; nearest with training's floor rule).
    """
    full_h, full_w = full_size
    (y_off, x_off), (h, w) = offset, size
    if mode == "nearest":
        return _nearest_region(table, full_size, offset, size)

    def axis(start: int, n: int, full: float) -> torch.Tensor:
        idx = torch.arange(start, start + n, dtype=torch.float64)
        return (2.0 * idx / max(full - 1.0, 1e-9) - 1.0).clamp(-1.0, 1.0).float()

    gy, gx = torch.meshgrid(axis(y_off, h, full_h), axis(x_off, w, full_w), indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)[None].to(table.device)
    out = F.grid_sample(table[None].float(), grid, mode=mode, padding_mode="border", align_corners=True)
    return out[0]


def _nearest_region(table: torch.Tensor, full_size: tuple[float, float], offset: tuple[int, int],
                    size: tuple[int, int]) -> torch.Tensor:
    """Nearest by training's rule (`F.interpolate(mode="nearest")`: cell i of n reads table cell
    floor(i·G/n)), so a painting's whole picture meets the same table cells it was trained with."""
    def axis(start: int, n: int, full: float, cells: int) -> torch.Tensor:
        scale = torch.tensor(cells, dtype=torch.float32) / torch.tensor(full, dtype=torch.float32)  # as ATen does
        idx = torch.arange(start, start + n, dtype=torch.float32)
        return (idx * scale).floor().clamp(0, cells - 1).long().to(table.device)

    rows = axis(offset[0], size[0], full_size[0], table.shape[-2])
    cols = axis(offset[1], size[1], full_size[1], table.shape[-1])
    return table[:, rows][:, :, cols].float()


class PositionalHook:
    """Adds the current embedding to `conv_in`'s output; holds nothing when unset (then a no-op)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self._handle = unet.conv_in.register_forward_hook(self._add)

    def _add(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.value is None:
            return output
        if self.value.shape[-2:] != output.shape[-2:]:
            raise RuntimeError(f"positional embedding {tuple(self.value.shape)} does not match conv_in output "
                               f"{tuple(output.shape)}")
        return output + self.value.to(device=output.device, dtype=output.dtype)

    @contextmanager
    def using(self, value: torch.Tensor | None) -> Iterator[None]:
        """Within the block, every UNet call gets `value` ((C,h,w) or (B,C,h,w)) added after conv_in."""
        previous, self.value = self.value, value
        try:
            yield
        finally:
            self.value = previous

    def remove(self) -> None:
        self._handle.remove()
