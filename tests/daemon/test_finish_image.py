"""The daemon's last step: exact size, the source's alpha, the source outside the selection."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sine.daemon.edit import finish_image
from sine_protocol.frames import Mask, RGBAImage
from sine_protocol.messages import EditRequest


def _source() -> Image.Image:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    arr[..., 3] = 255
    arr[5:15, 10:20, 3] = 0  # a transparent hole
    arr[20:25, :, 3] = 128  # a half-transparent band
    return Image.fromarray(arr, "RGBA")


def _request(source: Image.Image, mask: bytes | None, output: tuple[int, int] | None = None) -> EditRequest:
    w, h = source.size
    return EditRequest(
        image=RGBAImage(w, h, source.tobytes()), mask=Mask(w, h, mask) if mask is not None else None,
        prompt="p", subject="", style="photo", seed=0, sampling={}, finetune={}, output=output or (w, h),
    )


def test_result_alpha_is_the_sources_without_selection() -> None:
    source = _source()
    edited = Image.new("RGB", source.size, (9, 200, 9))  # the engine's output is opaque RGB
    out = finish_image(edited, source, _request(source, None))
    assert out.mode == "RGBA" and out.size == source.size
    assert np.array_equal(np.asarray(out)[..., 3], np.asarray(source)[..., 3])
    rgba = np.asarray(out)
    assert (rgba[rgba[..., 3] != 128, :3] == (9, 200, 9)).all()  # opaque, and the hole: as drawn
    band = rgba[20:25, :, :3].astype(np.float32)  # the model drew the band over white: its own colour is darker
    assert (np.abs(band[..., 1] * 128 / 255 + 127 - 200) <= 1).all()  # (laid over white again: what was drawn)
    assert (band[..., [0, 2]] == 0).all()  # as dark as a half-transparent pixel gets (9 over white is unreachable)


def test_result_alpha_is_the_sources_inside_a_selection() -> None:
    source = _source()
    w, h = source.size
    mask = np.zeros((h, w), np.uint8)
    mask[2:28, 5:35] = 255
    out = np.asarray(finish_image(Image.new("RGB", source.size, (9, 200, 9)), source,
                                  _request(source, mask.tobytes())))  # fmt: skip
    src = np.asarray(source)
    assert np.array_equal(out[..., 3], src[..., 3])
    assert np.array_equal(out[mask == 0], src[mask == 0])
    assert (out[10:20, 15:25, 1] == 200).all()


def test_alpha_follows_the_source_at_another_output_size() -> None:
    source = _source()
    out = finish_image(Image.new("RGB", (80, 60), (1, 2, 3)), source, _request(source, None, (80, 60)))
    alpha = np.asarray(out)[..., 3]
    assert out.size == (80, 60) and alpha[20, 30] == 0 and alpha[0, 0] == 255
