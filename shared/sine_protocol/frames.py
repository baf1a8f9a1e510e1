"""Pixel payloads: RGBA images and masks, zlib packing with a size cap, small previews.

Pure Python on purpose (no PIL/numpy): this module runs inside Krita's and GIMP's bundled
Python, where no compiled package can be relied on.
"""

from __future__ import annotations

import zlib
from array import array
from dataclasses import dataclass

from .errors import BAD_REQUEST, ProtocolError

BYTES_PER_PIXEL: dict[str, int] = {"rgba8": 4, "a8": 1}
COMPRESSIONS: frozenset[str] = frozenset({"none", "zlib"})
PREVIEW_MAX_SIDE = 128

# zlib level 1: pixels are mostly sent over loopback, so speed matters more than ratio.
_ZLIB_LEVEL = 1


def _check_size(name: str, width: object, height: object) -> None:
    for label, value in (("width", width), ("height", height)):
        if type(value) is not int or value <= 0:
            raise ValueError(f"{name} {label} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class RGBAImage:
    """Straight-alpha RGBA8 pixels, rows top to bottom; ``len(data) == width * height * 4``."""

    width: int
    height: int
    data: bytes

    def __post_init__(self) -> None:
        _check_size("RGBAImage", self.width, self.height)
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        expected = self.width * self.height * 4
        if len(self.data) != expected:
            raise ValueError(f"RGBAImage {self.width}x{self.height} needs {expected} bytes, got {len(self.data)}")

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


def nothing_visible(rgba: bytes) -> bool:
    """Whether RGBA8 pixels (``RGBAImage.data``, a layer as the plugins send it) have alpha 0 everywhere:
    an edit of them would come back invisible."""
    return not rgba[3::4].strip(b"\0")


@dataclass(frozen=True)
class Mask:
    """8-bit selection mask (255 = selected), rows top to bottom; ``len(data) == width * height``."""

    width: int
    height: int
    data: bytes

    def __post_init__(self) -> None:
        _check_size("Mask", self.width, self.height)
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        expected = self.width * self.height
        if len(self.data) != expected:
            raise ValueError(f"Mask {self.width}x{self.height} needs {expected} bytes, got {len(self.data)}")

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


def pack(data: bytes, compress: bool) -> tuple[bytes, str]:
    """Return ``(payload, compression)``; compressed only when it actually saves space."""
    if compress:
        packed = zlib.compress(data, _ZLIB_LEVEL)
        if len(packed) < len(data):
            return packed, "zlib"
    return bytes(data), "none"


def unpack(payload: bytes, compression: str, expected_size: int) -> bytes:
    """Undo :func:`pack`, refusing anything that is not exactly ``expected_size`` bytes.

    Decompression stops one byte past ``expected_size``, so a zlib bomb costs at most that much
    memory before it is rejected.
    """
    if compression == "none":
        if len(payload) != expected_size:
            raise ProtocolError(BAD_REQUEST, f"blob has {len(payload)} bytes, expected {expected_size}")
        return bytes(payload)
    if compression != "zlib":
        raise ProtocolError(BAD_REQUEST, f"unknown compression {compression!r}")
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(payload, expected_size + 1)
    except zlib.error as exc:
        raise ProtocolError(BAD_REQUEST, f"blob is not valid zlib data: {exc}") from None
    if len(data) > expected_size:
        raise ProtocolError(BAD_REQUEST, f"blob decompresses to more than the expected {expected_size} bytes")
    if not inflater.eof:
        raise ProtocolError(BAD_REQUEST, f"blob is a truncated zlib stream ({len(data)} of {expected_size} bytes)")
    if inflater.unused_data:
        raise ProtocolError(BAD_REQUEST, "blob has trailing bytes after the zlib stream")
    if len(data) != expected_size:
        raise ProtocolError(BAD_REQUEST, f"blob decompresses to {len(data)} bytes, expected {expected_size}")
    return data


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size that fits ``max_side`` on the long side, keeping the aspect (never upscales)."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    return max(1, round(width * max_side / longest)), max(1, round(height * max_side / longest))


def resize_nearest(image: RGBAImage, width: int, height: int) -> RGBAImage:
    """Nearest-neighbour resize; each output pixel copies the source pixel under its centre."""
    _check_size("resize", width, height)
    if (width, height) == image.size:
        return image
    pixels = memoryview(image.data).cast("I")  # one 32-bit item per RGBA pixel
    cols = [((2 * x + 1) * image.width) // (2 * width) for x in range(width)]
    out = array("I")
    row_cache: dict[int, array] = {}
    for y in range(height):
        sy = ((2 * y + 1) * image.height) // (2 * height)
        row = row_cache.get(sy)
        if row is None:
            base = sy * image.width
            row = array("I", [pixels[base + sx] for sx in cols])
            row_cache = {sy: row}
        out.extend(row)
    return RGBAImage(width, height, out.tobytes())


def make_preview(image: RGBAImage, max_side: int = PREVIEW_MAX_SIDE) -> RGBAImage:
    """A small copy for progress events (long side <= ``max_side``)."""
    width, height = scaled_size(image.width, image.height, max_side)
    return resize_nearest(image, width, height)
