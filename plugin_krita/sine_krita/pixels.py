"""Byte-order conversion between Krita's pixel buffers and the wire format.

Krita hands out 8-bit RGBA layers as B,G,R,A bytes (its internal order); the daemon speaks
straight-alpha R,G,B,A. Swapping channels with extended slices runs at C speed, which matters in
the host's plain Python where numpy cannot be assumed.
"""

from __future__ import annotations


def swap_red_blue(data: bytes) -> bytes:
    """Swap bytes 0 and 2 of every 4-byte pixel; BGRA->RGBA and RGBA->BGRA are the same swap."""
    if len(data) % 4:
        raise ValueError(f"pixel buffer of {len(data)} bytes is not a whole number of 4-byte pixels")
    out = bytearray(data)
    out[0::4] = data[2::4]
    out[2::4] = data[0::4]
    return bytes(out)


def bgra_to_rgba(data: bytes) -> bytes:
    """Krita ``pixelData`` (B,G,R,A) to wire RGBA."""
    return swap_red_blue(data)


def rgba_to_bgra(data: bytes) -> bytes:
    """Wire RGBA to what Krita's ``setPixelData`` expects (B,G,R,A)."""
    return swap_red_blue(data)
