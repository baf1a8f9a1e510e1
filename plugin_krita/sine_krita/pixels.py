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


# ---- linear-light documents ---------------------------------------------------------------------
# Krita's linear profiles (its default for new 16-bit documents is sRGB-elle-V2-g10.icc) hold linear
# values; the model sees sRGB-encoded pictures. Only the tone curve is converted (IEC 61966-2-1);
# other primaries (Rec2020, ACEScg) are left as they are.


def _encode(x: float) -> float:
    return 12.92 * x if x <= 0.0031308 else 1.055 * x ** (1 / 2.4) - 0.055


def _decode(x: float) -> float:
    return x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4


_ENCODE8 = bytes(round(255 * _encode(i / 255)) for i in range(256))
_DECODE8 = bytes(round(255 * _decode(i / 255)) for i in range(256))
_DECODE16 = [round(65535 * _decode(i / 255)) for i in range(256)]
_encode16: bytes = b""  # 65536 entries, made on first use


def linear_native_to_rgba8(data: bytes, channel_bytes: int) -> bytes:
    """Linear-light Krita B,G,R,A (1 or 2 bytes a channel) to sRGB-encoded wire RGBA; alpha as
    :func:`native_to_rgba8` gives it."""
    global _encode16
    out = bytearray(native_to_rgba8(data, channel_bytes))  # R,G,B,A now; alpha done
    if channel_bytes == 2:
        import array

        if not _encode16:
            _encode16 = bytes(round(255 * _encode(i / 65535)) for i in range(65536))
        values = array.array("H")
        values.frombytes(data)
        for wire, native in ((0, 2), (1, 1), (2, 0)):  # R,G,B from B,G,R
            out[wire::4] = bytes(map(_encode16.__getitem__, values[native::4]))
    else:
        for wire in (0, 1, 2):
            out[wire::4] = out[wire::4].translate(_ENCODE8)
    return bytes(out)


def rgba8_to_linear_native(rgba: bytes, channel_bytes: int) -> bytes:
    """sRGB-encoded wire RGBA to linear-light Krita B,G,R,A at 1 or 2 bytes a channel; alpha as
    :func:`rgba8_to_native` gives it."""
    bgra = swap_red_blue(rgba)
    if channel_bytes == 2:
        import array

        values = array.array("H")
        values.frombytes(rgba8_to_native(rgba, 2))
        for channel in (0, 1, 2):
            values[channel::4] = array.array("H", map(_DECODE16.__getitem__, bgra[channel::4]))
        return values.tobytes()
    out = bytearray(bgra)
    for channel in (0, 1, 2):
        out[channel::4] = bgra[channel::4].translate(_DECODE8)
    return bytes(out)


# ---- float documents ----------------------------------------------------------------------------
# Krita's RGBA F16/F32 layers: little-endian half or single floats, 0..1 nominal (HDR values beyond).
FLOAT_CODES = {"F16": "e", "F32": "f"}


def _unit_byte(value: float) -> int:
    """0..1 to 0..255; below 0 (and NaN) 0, above 1 255."""
    return round(value * 255) if 0 < value < 1 else (255 if value >= 1 else 0)


_FLOAT_TABLES: dict[tuple[str, bool], bytes] = {}


def _float_table(depth: str, linear: bool) -> bytes:
    """The byte of every 16-bit pattern: a half float (F16), or a float's top half (F32: sign, exponent and
    7 bits of mantissa, taken at the middle of the floats it stands for, so within a level of exact)."""
    key = (depth, linear)
    if key not in _FLOAT_TABLES:
        import struct

        if depth == "F16":
            values = struct.unpack("<65536e", struct.pack("<65536H", *range(65536)))
        else:
            values = struct.unpack("<65536f", struct.pack("<65536I", *((b << 16) | 0x8000 for b in range(65536))))
        curve = _encode if linear else float
        _FLOAT_TABLES[key] = bytes(_unit_byte(curve(v)) if v > 0 else 0 for v in values)  # NaN: 0
    return _FLOAT_TABLES[key]


def float_native_to_rgba8(data: bytes, depth: str, linear: bool) -> bytes:
    """Krita float B,G,R,A to wire RGBA: colours sRGB-encoded when ``linear``, clipped to 0..1. Through a
    table of 16-bit patterns, as 16-bit layers are read: a value at a time took 5 s a megapixel."""
    import array

    if depth == "F32":  # the top half of each little-endian float
        halves = bytearray(len(data) // 2)
        halves[0::2], halves[1::2] = data[2::4], data[3::4]
        data = bytes(halves)
    values = array.array("H")
    values.frombytes(data)
    colour, alpha = _float_table(depth, linear), _float_table(depth, False)
    out = bytearray(len(values))
    for channel in range(4):
        out[channel::4] = bytes(map((alpha if channel == 3 else colour).__getitem__, values[channel::4]))
    return swap_red_blue(bytes(out))


def rgba8_to_float_native(rgba: bytes, depth: str, linear: bool) -> bytes:
    """Wire RGBA to Krita float B,G,R,A (colours sRGB-decoded when ``linear``; alpha v/255)."""
    import struct

    colour = [_decode(i / 255) if linear else i / 255 for i in range(256)]
    alpha = [i / 255 for i in range(256)]
    bgra = swap_red_blue(rgba)
    values = [0.0] * len(bgra)
    for channel in range(4):
        table = alpha if channel == 3 else colour
        values[channel::4] = [table[v] for v in bgra[channel::4]]
    return struct.pack(f"<{len(values)}{FLOAT_CODES[depth]}", *values)
