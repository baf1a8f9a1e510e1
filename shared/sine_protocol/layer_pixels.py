"""Putting the daemon's 8-bit result into a host layer at the layer's own precision.

The model works on 8-bit sRGB RGBA. A painter's layer may hold 16 bits (or floats) per channel;
outside the selection the result layer must equal the source at that precision, and its alpha is
the source's everywhere. The plug-ins therefore composite on the host, in the layer's own pixel
format: the source's native bytes where the mask is 0, the result (converted to that format by
the host) where it is not, and the source's alpha bytes throughout. Only byte slicing and ``re``
are used, so this runs at C speed in the hosts' plain Python (no numpy in GIMP or Krita).
"""

from __future__ import annotations

import re

_SELECTED = re.compile(rb"[^\x00]+")


def selected_runs(mask: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` pixel ranges where the one-byte-per-pixel mask is not 0."""
    return [match.span() for match in _SELECTED.finditer(mask)]


def composite_native(
    source: bytes, result: bytes, mask: bytes | None, pixel_size: int, alpha_offset: int, alpha_size: int
) -> bytes:
    """Source and result in the same native format (``pixel_size`` bytes a pixel, alpha at
    ``alpha_offset`` for ``alpha_size`` bytes): the result inside the mask (everywhere without one),
    the source outside it, and the source's alpha in every pixel."""
    if len(source) != len(result) or len(source) % pixel_size:
        raise ValueError(f"source {len(source)} and result {len(result)} bytes, {pixel_size} a pixel")
    if mask is None:
        out = bytearray(result)
    else:
        if len(mask) * pixel_size != len(source):
            raise ValueError(f"mask of {len(mask)} pixels for {len(source) // pixel_size}")
        out = bytearray(source)
        for start, end in selected_runs(mask):
            out[start * pixel_size : end * pixel_size] = result[start * pixel_size : end * pixel_size]
    for k in range(alpha_offset, alpha_offset + alpha_size):
        out[k::pixel_size] = source[k::pixel_size]
    return bytes(out)


def u8_to_u16(data: bytes) -> bytes:
    """8-bit channels to little-endian 16-bit ones, exactly (v * 257 is the byte v twice)."""
    out = bytearray(2 * len(data))
    out[0::2] = data
    out[1::2] = data
    return bytes(out)


def u16_to_u8(data: bytes) -> bytes:
    """Little-endian 16-bit channels to 8-bit ones by their high byte (v >> 8): exact for values
    that came from 8 bits, at most one level below round(v / 257) otherwise. Only what the model
    sees goes through here; what lands outside the selection is the source's own 16 bits."""
    if len(data) % 2:
        raise ValueError(f"{len(data)} bytes is not a whole number of 16-bit channels")
    return bytes(data[1::2])

