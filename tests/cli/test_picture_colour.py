"""Pictures with an embedded colour profile (Adobe RGB, Display P3: cameras, phones, print work) are read in
sRGB, the space the model and the result are in; a profile that cannot be used is said, not a traceback.

The profiles are written by hand (an ICC v2 matrix/curve profile, as cameras embed), so no file of the
system's is needed.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from sine.images import load_image, picture_notes

D50 = (0.9642, 1.0, 0.8249)
# the primaries (D50-adapted colorants) and gamma of two wide-gamut spaces
SPACES = {
    "Adobe RGB (1998)": ([(0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446)], 2.2),
    "Display P3": ([(0.5151, 0.2412, -0.0011), (0.2919, 0.6922, 0.0419), (0.1572, 0.0666, 0.7841)], 2.2),
}


def icc_profile(name: str) -> bytes:
    """An ICC v2 RGB display profile of the space ``name`` (see SPACES): colorants, white point, gamma curves."""
    colorants, gamma = SPACES[name]

    def xyz(values: tuple[float, float, float]) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    text = name.encode() + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    tags = [(b"desc", desc), (b"cprt", b"text" + bytes(4) + b"none\0"), (b"wtpt", xyz(D50)),
            (b"rXYZ", xyz(colorants[0])), (b"gXYZ", xyz(colorants[1])), (b"bXYZ", xyz(colorants[2])),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    table, data = b"", b""
    start = 128 + 4 + 12 * len(tags)
    for sig, body in tags:
        table += sig + struct.pack(">II", start + len(data), len(body))
        data += body + bytes(-len(body) % 4)
    size = start + len(data)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + bytes(12)
              + b"acsp" + bytes(4 + 4 + 4 + 4 + 8) + struct.pack(">I", 0)
              + b"".join(struct.pack(">i", round(v * 65536)) for v in D50) + bytes(4 + 44))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


COLOUR = (100, 150, 80)  # a green well inside both gamuts; read as sRGB it is duller than the photo shows


def _in_srgb(profile: bytes, colour: tuple[int, int, int]) -> tuple[int, ...]:
    """What littlecms makes of ``colour`` in ``profile``, in sRGB: what a colour-managed viewer shows."""
    pixel = Image.new("RGB", (1, 1), colour)
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    return ImageCms.profileToProfile(pixel, source, ImageCms.createProfile("sRGB"), outputMode="RGB").getpixel((0, 0))


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("name", ["photo.png", "photo.jpg", "photo.tif", "photo.webp"])
def test_a_wide_gamut_picture_is_read_converted_to_srgb(tmp_path: Path, space: str, name: str) -> None:
    profile = icc_profile(space)
    expected = _in_srgb(profile, COLOUR)
    assert max(abs(a - b) for a, b in zip(expected, COLOUR, strict=True)) > 10  # the profile matters
    path = tmp_path / name
    Image.new("RGB", (16, 16), COLOUR).save(path, icc_profile=profile, **({"quality": 100} if "jpg" in name else {}))
    picture = load_image(path)
    got = picture.getpixel((8, 8))[:3]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= 2, (got, expected)  # it was COLOUR
    assert any(space in note and "sRGB" in note for note in picture_notes(picture, path)), picture_notes(picture, path)


def test_a_transparent_wide_gamut_picture_keeps_its_alpha(tmp_path: Path) -> None:
    profile = icc_profile("Display P3")
    picture = Image.new("RGBA", (16, 16), (*COLOUR, 255))
    picture.putpixel((0, 0), (*COLOUR, 0))
    picture.putpixel((1, 0), (*COLOUR, 77))
    picture.save(tmp_path / "p3.png", icc_profile=profile)
    alpha = np.asarray(load_image(tmp_path / "p3.png"))[..., 3]
    assert alpha[0, 0] == 0 and alpha[0, 1] == 77 and alpha[8, 8] == 255


def test_an_srgb_profile_changes_nothing_and_says_nothing(tmp_path: Path) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (16, 16), COLOUR).save(tmp_path / "s.png", icc_profile=srgb)
    picture = load_image(tmp_path / "s.png")
    assert picture.getpixel((8, 8))[:3] == COLOUR and picture_notes(picture, tmp_path / "s.png") == []


@pytest.mark.parametrize("case", ["damaged profile", "grey profile on a colour picture"])
def test_a_profile_that_cannot_be_used_is_said_and_the_pixels_read_as_they_are(tmp_path: Path, case: str) -> None:
    profile = b"\0\0\0\x80garbage" + bytes(120) if case == "damaged profile" else icc_profile("Display P3")
    if case != "damaged profile":
        profile = profile[:12] + b"mntrGRAY" + profile[20:]  # a grey profile's header on RGB pixels
    path = tmp_path / "odd.png"
    Image.new("RGB", (16, 16), COLOUR).save(path, icc_profile=profile)
    picture = load_image(path)
    assert picture.getpixel((8, 8))[:3] == COLOUR
    notes = picture_notes(picture, path)
    assert len(notes) == 1 and "colour profile" in notes[0] and "as sRGB" in notes[0], notes


def test_sine_edit_says_it_converted_a_wide_gamut_picture(tmp_path: Path) -> None:
    source, style = tmp_path / "photo.jpg", tmp_path / "style.png"
    Image.new("RGB", (32, 32), COLOUR).save(source, icc_profile=icc_profile("Display P3"))
    Image.new("RGB", (32, 32), COLOUR).save(style, icc_profile=icc_profile("Adobe RGB (1998)"))
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "edit", str(source), "--prompt", "x", "--style-from",
                           str(style), "--out", str(tmp_path)],  # refused after the inputs are read
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "is a folder" in lines[-1], proc.stderr
    assert any(str(source) in line and "Display P3" in line for line in lines), proc.stderr
    assert any(str(style) in line and "Adobe RGB" in line for line in lines), proc.stderr
