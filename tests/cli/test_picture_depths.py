"""Grey pictures of more than 8 bits: the range their pixel type spans is black..white, as painters' programs
show them, whatever values this one picture happens to hold.

The files are written by hand (a one-strip TIFF, a binary PGM): Pillow writes neither unsigned 32-bit nor
signed 16-bit TIFFs, and its own 16-bit conversions clip.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sine.images import load_image

GRADIENT = np.linspace(0.0, 1.0, 64 * 48).reshape(48, 64)  # mean 0.5


def grey_tiff(path: Path, values: np.ndarray, sample_format: int) -> Path:
    """An uncompressed one-strip grey TIFF of ``values`` (its dtype gives the byte order and bits per sample;
    ``sample_format`` 1 unsigned, 2 signed, 3 float)."""
    height, width = values.shape
    order = b"MM" if values.dtype.byteorder == ">" else b"II"
    end = ">" if order == b"MM" else "<"
    data = values.tobytes()
    entries = [(256, 4, width), (257, 4, height), (258, 3, values.dtype.itemsize * 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(data)), (339, 3, sample_format)]
    data_at = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack(f"{end}H", len(entries))
    for tag, kind, value in entries:
        value = data_at if tag == 273 else value
        packed = struct.pack(f"{end}HH", value, 0) if kind == 3 else struct.pack(f"{end}I", value)
        ifd += struct.pack(f"{end}HHI", tag, kind, 1) + packed
    path.write_bytes(order + struct.pack(f"{end}HI", 42, 8) + ifd + struct.pack(f"{end}I", 0) + data)
    return path


def _grey_mean(path: Path) -> float:
    return float(np.asarray(load_image(path))[..., :3].mean())


def _off_the_gradient(path: Path) -> float:
    """The largest distance of the picture's grey from the gradient it was written from, in 8-bit levels."""
    return float(np.abs(np.asarray(load_image(path))[..., 0] - GRADIENT * 255).max())


@pytest.mark.parametrize(("name", "values", "sample_format"), [
    # Pillow's mode I: 0..2**32-1 read as signed (wrapped) and divided by 257, all but black clipped to white
    ("unsigned 32-bit", (GRADIENT * (2**32 - 1)).astype("<u4"), 1),
    ("signed 32-bit", (GRADIENT * (2**31 - 1)).astype("<i4"), 2),  # what Pillow writes for mode I
    ("signed 16-bit", (GRADIENT * (2**15 - 1)).astype("<i2"), 2),
    ("unsigned 16-bit big-endian", (GRADIENT * 65535).astype(">u2"), 1),
    ("unsigned 16-bit", (GRADIENT * 65535).astype("<u2"), 1),
])
def test_an_integer_grey_tiff_maps_its_types_range_to_black_and_white(tmp_path: Path, name: str,
                                                                       values: np.ndarray, sample_format: int) -> None:
    path = grey_tiff(tmp_path / "grey.tif", values, sample_format)
    assert _off_the_gradient(path) <= 1, name


def test_a_dark_32_bit_grey_tiff_stays_dark(tmp_path: Path) -> None:
    """Values up to 1000 of 4 294 967 295 are black; they read as 0..4 only because 1000 > 255 (chance)."""
    path = grey_tiff(tmp_path / "dark.tif", (GRADIENT * 200).astype("<u4"), 1)
    assert _grey_mean(path) < 1  # read as 8-bit values because none exceeds 255, it was 99.5


def test_a_dark_16_bit_pgm_stays_dark(tmp_path: Path) -> None:
    """A 16-bit PGM (Pillow's mode I) whose values all lie under 256 was read as 8-bit: near black became grey."""
    path = tmp_path / "dark.pgm"
    path.write_bytes(b"P5\n64 48\n65535\n" + (GRADIENT * 255).astype(">u2").tobytes())
    assert _grey_mean(path) < 1  # it was 127


@pytest.mark.parametrize(("top", "mean"), [(1.0, 127.5), (1.5, 127.5 * 2 / 3 + 255 / 3), (255.0, 127.5)])
def test_a_float_grey_picture_with_highlights_over_1_is_not_black(tmp_path: Path, top: float, mean: float) -> None:
    """A float picture of 0..1 with a highlight over 1 (an HDR document's export) was read as 0..255: black.
    0..top, clipped at white where it is a 0..1 picture."""
    path = tmp_path / "float.tif"
    values = GRADIENT * top
    Image.fromarray(values.astype(np.float32)).save(path)
    assert abs(_grey_mean(path) - mean) < 2
