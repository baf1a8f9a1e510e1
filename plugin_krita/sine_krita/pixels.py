"""Byte-order and depth conversion between Krita's pixel buffers and the wire format.

Krita hands out RGBA layers as B,G,R,A channels (its internal order) at the layer's depth (1 byte
a channel for U8, 2 little-endian bytes for U16); the daemon speaks straight-alpha 8-bit R,G,B,A.
Extended slices run at C speed, which matters in the host's plain Python where numpy cannot be
assumed.
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


def native_to_rgba8(data: bytes, channel_bytes: int) -> bytes:
    """Krita B,G,R,A at 1 or 2 bytes a channel to wire RGBA (16 bits by their high byte)."""
    if channel_bytes == 2:
        from sine_protocol.layer_pixels import u16_to_u8

        data = u16_to_u8(data)
    return swap_red_blue(data)


def rgba8_to_native(rgba: bytes, channel_bytes: int) -> bytes:
    """Wire RGBA to Krita B,G,R,A at 1 or 2 bytes a channel (8 to 16 bits exactly: v * 257)."""
    bgra = swap_red_blue(rgba)
    if channel_bytes == 2:
        from sine_protocol.layer_pixels import u8_to_u16

        return u8_to_u16(bgra)
    return bgra
