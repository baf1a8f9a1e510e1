"""Pictures a user brings to `sine edit` (and `--mask`, `--style-from`): read as they look, or refused clearly.

Real files written with Pillow (and one PNG written by hand), read by `sine.images.load_image`.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sine.errors import BadInput
from sine.images import load_image
from sine_protocol.messages import Limits


def _png(path: Path, width: int, height: int, rows: bytes, color_type: int = 0, depth: int = 8) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1))
                     + chunk(b"IEND", b""))
    return path


def _grey_mean(path: Path) -> float:
    return float(np.asarray(load_image(path))[..., :3].mean())


GRADIENT = np.linspace(0.0, 1.0, 64 * 48).reshape(48, 64)  # mean 0.5


def test_a_16_bit_grey_png_is_scaled_not_clipped_to_white(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    Image.fromarray((GRADIENT * 65535).round().astype(np.uint16)).save(path)
    assert abs(_grey_mean(path) - 127.5) < 2  # clipped, it was 254.5


def test_a_float_tiff_of_0_to_1_is_scaled_not_black(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(GRADIENT.astype(np.float32)).save(path)
    assert abs(_grey_mean(path) - 127.5) < 2  # clipped, it was 0


def test_the_exif_orientation_is_applied_as_viewers_show_it(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    picture = Image.new("RGB", (64, 32), (255, 0, 0))
    exif = picture.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    picture.save(path, exif=exif.tobytes())
    assert load_image(path).size == (32, 64)


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    """A 200 kB PNG that declares 9000 × 8000 (72 Mpx, under Pillow's own guard) was decoded whole."""
    path = _png(tmp_path / "bomb.png", 9000, 8000, b"\0" * (9001 * 8000))
    t0 = time.process_time()
    with pytest.raises(BadInput, match="Mpx"):
        load_image(path)
    assert time.process_time() - t0 < 0.5  # refused from the header, nothing decoded
    assert 9000 * 8000 > Limits().max_input_pixels


@pytest.mark.parametrize("size", [(1, 1), (1, 8192), (7, 300)])
def test_pictures_under_8_pixels_a_side_are_refused(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "thin.png"
    Image.new("RGB", size).save(path)
    with pytest.raises(BadInput, match="at least 8 px"):
        load_image(path)


def test_palette_transparency_cmyk_and_48_bit_read_as_they_look(tmp_path: Path) -> None:
    """The conversions Pillow already does right stay right (a control for the scaling above)."""
    palette = Image.new("RGB", (16, 16), (10, 200, 30)).convert("P")
    palette.save(tmp_path / "p.png", transparency=palette.getpixel((0, 0)))
    assert np.asarray(load_image(tmp_path / "p.png"))[..., 3].min() == 0
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    assert np.asarray(load_image(tmp_path / "cmyk.jpg"))[0, 0, :3].tolist()[0] > 240
    rows = b"".join(b"\0" + np.full((16, 3), 40000, ">u2").tobytes() for _ in range(16))
    assert abs(_grey_mean(_png(tmp_path / "rgb48.png", 16, 16, rows, color_type=2, depth=16)) - 40000 / 257) < 1


def test_a_fifo_or_a_folder_is_refused_not_waited_on(tmp_path: Path) -> None:
    """Opening a named pipe waits for a writer forever: `sine edit pipe.png` hung."""
    import os
    import threading

    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "folder.png").mkdir()
    for name in ("pipe.png", "folder.png"):
        outcome: list[BaseException] = []

        def read(name: str = name, outcome: list[BaseException] = outcome) -> None:
            try:
                load_image(tmp_path / name)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(5)
        if reader.is_alive():  # let the stuck open() return, then fail
            os.close(os.open(tmp_path / name, os.O_WRONLY | os.O_NONBLOCK))
            pytest.fail(f"load_image waited on {name}")
        assert isinstance(outcome[0], BadInput) and "not a picture file" in str(outcome[0]), outcome


@pytest.mark.parametrize("chunk", ["zTXt", "iTXt", "iCCP"])
def test_a_png_with_a_huge_metadata_chunk_is_one_line_not_a_traceback(tmp_path: Path, chunk: str) -> None:
    """Pillow refuses a text or colour-profile chunk that unpacks past 1 MB with a ValueError, which
    escaped `sine edit` as a traceback."""
    from PIL import PngImagePlugin

    path = tmp_path / f"{chunk}.png"
    picture = Image.new("RGB", (16, 16), (200, 10, 10))
    if chunk == "iCCP":
        picture.save(path, icc_profile=bytes(4 * 1024 * 1024))
    else:
        info = PngImagePlugin.PngInfo()
        (info.add_text if chunk == "zTXt" else info.add_itxt)("comment", "a" * 4 * 1024 * 1024, zip=True)
        picture.save(path, pnginfo=info)
    with pytest.raises(BadInput, match=f"{path.name}.*metadata"):
        load_image(path)


def test_a_path_the_system_cannot_look_up_is_one_line(tmp_path: Path) -> None:
    """A file name over the system's 255-byte limit made the existence check itself raise OSError."""
    with pytest.raises(BadInput, match="cannot open"):
        load_image(tmp_path / ("a" * 300 + ".png"))


def test_a_float_picture_with_nan_reads_without_a_numpy_warning(tmp_path: Path) -> None:
    import warnings

    path = tmp_path / "nan.tiff"
    values = np.full((16, 16), 0.5, np.float32)
    values[:8] = np.nan
    Image.fromarray(values).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grey = np.asarray(load_image(path))[..., 0]
    assert grey[:8].max() == 0 and abs(int(grey[8:].mean()) - 128) <= 1


@pytest.mark.parametrize("damage", ["short IHDR", "truncated qoi"])
def test_a_damaged_file_pillow_answers_with_valueerror_is_one_line(tmp_path: Path, damage: str) -> None:
    """Found by flipping bytes of small pictures: Pillow raises ValueError (not OSError) for some."""
    import io

    if damage == "short IHDR":
        data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 5) + b"IHDR" + bytes(5) + struct.pack(">I", zlib.crc32(b"IHDR" + bytes(5)))
        path = tmp_path / "short.png"
    else:
        buffer = io.BytesIO()
        Image.new("RGB", (24, 24), (1, 2, 3)).save(buffer, "qoi")
        data = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        path = tmp_path / "half.qoi"
    path.write_bytes(data)
    with pytest.raises(BadInput, match=f"cannot read .*{path.name}"):
        load_image(path)


def test_a_mask_saved_as_white_on_transparency_selects_only_its_opaque_part(tmp_path: Path) -> None:
    """`--mask` read its colour and ignored its alpha: a selection saved as white on transparent pixels (which
    keep their white colour) selected the whole picture."""
    from sine.cli import build_parser
    from sine.preflight import check_edit_inputs

    levels = np.zeros((16, 16, 2), np.uint8)
    levels[..., 0] = 255  # white everywhere...
    levels[:, 8:, 1] = 255  # ...opaque on the right half only
    Image.fromarray(levels, "LA").save(tmp_path / "mask.png")
    Image.new("RGB", (16, 16), (255, 255, 255)).save(tmp_path / "plain.png")
    Image.new("RGB", (16, 16), (30, 140, 60)).save(tmp_path / "source.png")

    def mask_of(name: str) -> np.ndarray:
        args = build_parser().parse_args(["edit", str(tmp_path / "source.png"), "--prompt", "x", "--mask",
                                          str(tmp_path / name), "--out", str(tmp_path / "out.png")])
        return np.asarray(check_edit_inputs(args).mask)

    mask = mask_of("mask.png")
    assert mask[:, :8].max() == 0 and mask[:, 8:].min() == 255
    assert mask_of("plain.png").min() == 255  # an opaque mask reads as before


def test_a_16_bit_picture_is_scaled_without_float64_copies(tmp_path: Path) -> None:
    """A 64 Mpx 16-bit grey picture (the limit) peaked at 1.8 GB (five float64 copies); now float32, in place."""
    import tracemalloc

    side = 2048
    path = tmp_path / "grey16.png"
    Image.fromarray((np.arange(side * side, dtype=np.uint32) % 65536).astype(np.uint16).reshape(side, side)).save(
        path, compress_level=1)
    tracemalloc.start()
    try:
        picture = load_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert picture.size == (side, side)
    assert peak < 12 * side * side, f"{peak / 2**20:.0f} MB traced for a {side}² picture"


def test_a_postscript_picture_never_starts_ghostscript(tmp_path: Path) -> None:
    """Pillow reads EPS by running Ghostscript on the file: `sine edit` on an untrusted .eps ran an
    interpreter of a programming language (one with a history of sandbox escapes). A `gs` on PATH that
    only leaves a mark shows whether it was started."""
    import os
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mark = tmp_path / "gs-was-started"
    (bin_dir / "gs").write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    (bin_dir / "gs").chmod(0o755)
    eps = tmp_path / "drawing.eps"
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nnewpath 0 0 moveto 32 32 lineto stroke\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "edit", str(eps), "--prompt", "x",
                           "--out", str(tmp_path / "o.png")], capture_output=True, text=True, timeout=120, env=env)
    assert not mark.exists(), "Ghostscript was started on the picture"
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "EPS" in proc.stderr.strip().splitlines()[-1], proc.stderr


def _frames(path: Path, **save: object) -> Path:
    """Three frames, red then green then blue, in whatever format ``path`` names."""
    first, *rest = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    first.save(path, save_all=True, append_images=rest, **save)
    return path


@pytest.mark.parametrize("name", ["anim.png", "anim.gif", "anim.webp", "pages.tif"])
def test_an_animation_or_multi_page_file_gives_its_first_frame_and_says_how_many(tmp_path: Path, name: str) -> None:
    picture = load_image(_frames(tmp_path / name, **({"lossless": True} if name.endswith("webp") else {})))
    assert picture.getpixel((16, 16)) == (255, 0, 0, 255)
    assert picture.info["frames"] == 3


def test_sine_edit_says_when_it_uses_only_the_first_frame(tmp_path: Path) -> None:
    """An animated GIF, a multi-page TIFF mask and an animated WebP style picture were read as their first frame
    without a word: the painter could not tell why the result showed none of the rest."""
    import os
    import subprocess
    import sys

    source, mask, style = _frames(tmp_path / "a.gif"), tmp_path / "m.tif", _frames(tmp_path / "s.webp")
    Image.new("L", (32, 32), 255).save(mask, save_all=True, append_images=[Image.new("L", (32, 32), 0)])
    Image.new("RGB", (32, 32)).save(tmp_path / "still.png")
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "edit", str(source), "--prompt", "x", "--mask", str(mask),
                           "--style-from", str(style), "--out", str(tmp_path)],  # refused after the inputs are read
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "is a folder" in lines[-1], proc.stderr
    for path, frames in ((source, 3), (mask, 2), (style, 3)):
        assert f"note: {path} holds {frames} frames (an animation or pages); only the first is used" in lines
    still = subprocess.run([sys.executable, "-m", "sine.cli", "edit", str(tmp_path / "still.png"), "--prompt", "x",
                            "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert "frames" not in still.stderr, still.stderr


def test_the_pages_of_a_big_multi_page_tiff_are_counted_only_so_far(tmp_path: Path) -> None:
    """Counting every page of a TIFF walks them all: 5,000 tiny pages took 1.3 s (100 MB of them, a minute)."""
    from sine.images import FRAMES_COUNTED, frames_note

    path = tmp_path / "pages.tif"
    first, *rest = [Image.new("L", (8, 8), n % 256) for n in range(FRAMES_COUNTED + 50)]
    first.save(path, save_all=True, append_images=rest)
    picture = load_image(path)
    assert picture.getpixel((0, 0)) == (0, 0, 0, 255) and picture.info["frames"] == FRAMES_COUNTED + 1
    assert f"holds more than {FRAMES_COUNTED} frames" in frames_note(picture, path)


def test_a_photo_whose_exif_pillow_cannot_write_back_still_reads_rotated(tmp_path: Path) -> None:
    """Pillow rewrites the EXIF block after applying its orientation: a tag of another type than the standard
    says (SamplesPerPixel as text, as damaged files have) raised struct.error, a traceback in `sine edit`."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010F] = "cam"  # Make, text, relabelled below (big-endian) SamplesPerPixel, which is a number
    raw = exif.tobytes().replace(b"\x01\x0f\x00\x02", b"\x01\x15\x00\x02")
    assert raw != exif.tobytes()
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (64, 32), (255, 0, 0)).save(path, exif=raw)
    assert load_image(path).size == (32, 64)


def test_pillows_warnings_about_damaged_metadata_stay_out_of_the_output(tmp_path: Path) -> None:
    """A tag claiming more data than the file holds made Pillow print two lines of Python warning (its source
    file and line) into `sine edit`'s output; the picture reads anyway, and the metadata is not used."""
    import warnings

    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "cam"
    raw = exif.tobytes().replace(b"\x01\x0f\x00\x02\x00\x00\x00\x04", b"\x01\x0f\x00\x02\x00\x00\x7f\xff")
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (64, 32)).save(path, exif=raw)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert load_image(path).size == (32, 64)
    assert not [str(w.message) for w in shown]


@pytest.mark.parametrize("fmt,cut,damage", [
    ("TIFF", None, {78: 127, 131: 124}),  # TypeError: Missing dimensions
    ("SPIDER", 2866, {56: 128, 68: 60, 107: 127, 307: 103, 371: 128}),  # AttributeError: ... 'stkoffset'
])
def test_a_damaged_file_pillow_answers_with_any_error_is_one_line(tmp_path: Path, fmt: str, cut: int | None,
                                                                  damage: dict[int, int]) -> None:
    """Pillow's format readers answer some damaged files with TypeError or AttributeError (found by fuzzing
    a few header bytes): a traceback in `sine edit`, where OSError and ValueError were one line."""
    picture = Image.linear_gradient("L").resize((40, 30)).convert("RGB" if fmt == "TIFF" else "F")
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    data = bytearray(buffer.getvalue()[:cut])
    for offset, value in damage.items():
        data[offset] = value
    path = tmp_path / "damaged.bin"
    path.write_bytes(data)
    with pytest.raises(BadInput, match=f"cannot read {path} as an image"):
        load_image(path)


@pytest.mark.parametrize("flags,size", [(["--width", "150"], (150, 50)), (["--height", "20"], (60, 20)),
                                        (["--width", "100", "--height", "100"], (100, 100)), ([], (60, 20))])
def test_one_side_given_keeps_the_pictures_aspect_ratio(tmp_path: Path, flags: list[str], size: tuple) -> None:
    """`--width 150` alone on a 60×20 picture gave 150×20, stretched; as in an image editor's scale dialog the
    other side follows the picture's aspect ratio. Both sides given: exactly those."""
    from sine.cli import build_parser
    from sine.preflight import check_edit_inputs

    Image.new("RGB", (60, 20), (30, 140, 60)).save(tmp_path / "source.png")
    args = build_parser().parse_args(["edit", str(tmp_path / "source.png"), "--prompt", "x", *flags,
                                      "--out", str(tmp_path / "out.png")])
    inputs = check_edit_inputs(args)
    assert (inputs.width, inputs.height) == size


def _float_rgb_tiff(path: Path, width: int = 2, height: int = 2) -> Path:
    """An uncompressed 32-bit float RGB TIFF (what a 32-bit float document exports), written by hand:
    Pillow reads float grey TIFFs but not float colour ones."""
    data = np.full((height, width, 3), 0.5, dtype="<f4").tobytes()
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, None), (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 1, len(data)), (284, 3, 1, 1),
               (339, 3, 3, None)]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at = 8 + ifd_size
    formats_at = bits_at + 6
    data_at = formats_at + 6
    values = {258: bits_at, 273: data_at, 339: formats_at}
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = values.get(tag, value)
        ifd += struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 and count == 1
                                                        else struct.pack("<I", value))
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 32, 32, 32)
                     + struct.pack("<3H", 3, 3, 3) + data)
    return path


def test_a_float_colour_tiff_pillow_cannot_read_is_named_with_what_to_do(tmp_path: Path) -> None:
    """A 32-bit float colour TIFF (Krita's or GIMP's export of a float document) was 'cannot read … as an
    image (UnidentifiedImageError)': nothing said what is wrong with it or what to do."""
    path = _float_rgb_tiff(tmp_path / "hdr.tif")
    with pytest.raises(BadInput, match=r"hdr\.tif: a TIFF whose pixels Pillow cannot read .*float.*"
                                       r"export it as an 8- or 16-bit PNG"):
        load_image(path)
