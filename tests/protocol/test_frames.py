"""Pixel containers, zlib packing and previews."""

from __future__ import annotations

import random
import zlib

import pytest

from sine_protocol.errors import ProtocolError
from sine_protocol.frames import Mask, RGBAImage, make_preview, pack, resize_nearest, scaled_size, unpack


def _pattern(width: int, height: int) -> RGBAImage:
    """Each pixel encodes its own coordinates, so resampling errors are visible."""
    data = bytearray()
    for y in range(height):
        for x in range(width):
            data += bytes((x % 256, y % 256, (x * 7 + y) % 256, 255))
    return RGBAImage(width, height, bytes(data))


def test_containers_validate_lengths_and_sizes() -> None:
    assert RGBAImage(2, 1, bytearray(8)).data == bytes(8)  # bytes-like is copied into bytes
    assert Mask(3, 2, memoryview(bytes(6))).size == (3, 2)
    for bad in [(2, 2, bytes(15)), (0, 1, b""), (-1, 2, bytes(8)), (True, 1, bytes(4)), (1.0, 1, bytes(4))]:
        with pytest.raises(ValueError):
            RGBAImage(*bad)
    with pytest.raises(ValueError):
        Mask(2, 2, bytes(5))


@pytest.mark.parametrize("compress", [True, False])
def test_pack_unpack_round_trip(compress: bool) -> None:
    rng = random.Random(1)
    for data in (bytes(4096), bytes(rng.getrandbits(8) for _ in range(4096)), b"\x01"):
        payload, compression = pack(data, compress)
        assert compression in ("none", "zlib")
        assert unpack(payload, compression, len(data)) == data
    # Compression is used only where it pays.
    assert pack(bytes(4096), True)[1] == "zlib"
    assert pack(bytes(rng.getrandbits(8) for _ in range(64)), True)[1] == "none"


@pytest.mark.parametrize("payload,compression", [
    (zlib.compress(bytes(100)), "zlib"),       # too big after inflating
    (zlib.compress(bytes(10)), "zlib"),        # too small
    (zlib.compress(bytes(64))[:-3], "zlib"),   # truncated
    (b"garbage", "zlib"),
    (zlib.compress(bytes(64)) + b"x", "zlib"),
    (bytes(63), "none"),
    (bytes(64), "lz4"),
])
def test_unpack_rejects(payload: bytes, compression: str) -> None:
    with pytest.raises(ProtocolError) as info:
        unpack(payload, compression, 64)
    assert info.value.code == "bad_request"


def test_scaled_size() -> None:
    assert scaled_size(100, 50, 128) == (100, 50)
    assert scaled_size(1024, 512, 128) == (128, 64)
    assert scaled_size(300, 1200, 128) == (32, 128)
    assert scaled_size(5000, 1, 128) == (128, 1)


def test_resize_nearest_picks_the_pixel_under_each_centre() -> None:
    src = _pattern(10, 6)
    out = resize_nearest(src, 5, 3)
    assert out.size == (5, 3)
    for y in range(3):
        for x in range(5):
            i = (y * 5 + x) * 4
            assert tuple(out.data[i:i + 2]) == (2 * x + 1, 2 * y + 1)
    up = resize_nearest(_pattern(2, 2), 4, 4)
    assert [up.data[(y * 4 + x) * 4] for y in range(4) for x in range(4)] == [0, 0, 1, 1] * 4


def test_make_preview_is_small_and_fast_enough() -> None:
    import time

    big = RGBAImage(2000, 1000, bytes(2000 * 1000 * 4))
    start = time.perf_counter()
    preview = make_preview(big)
    assert time.perf_counter() - start < 0.5
    assert preview.size == (128, 64)
    small = _pattern(40, 30)
    assert make_preview(small) is small
