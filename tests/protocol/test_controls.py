"""The painter's controls on the wire: strength and start, several results, style from a second picture."""

from __future__ import annotations

from typing import Any

import pytest

from sine_protocol import messages as m
from sine_protocol.errors import ProtocolError
from sine_protocol.frames import Mask, RGBAImage

TOKEN = "c" * 64


def _image(width: int = 8, height: int = 8, salt: int = 0) -> RGBAImage:  # 8 px: the smallest side accepted
    return RGBAImage(width, height, bytes((i * 5 + salt) % 256 for i in range(width * height * 4)))


def _edit(blobs: list[tuple[dict[str, Any], bytes]] | None = None, **fields: Any) -> m.EditRequest:
    header = m.make_request("edit", "ctl", TOKEN, prompt="make it blue", **fields)
    frames = m.encode_message(header, [m.image_blob(_image())] if blobs is None else blobs)
    edit = m.parse_request(frames, TOKEN).edit
    assert edit is not None
    return edit


def test_strength_start_count_and_style_round_trip() -> None:
    style = _image(10, 9, salt=3)
    edit = _edit([m.image_blob(_image()), m.image_blob(style, "style")], seed=2**32 - 2, count=3,
                 style_subject="sunset", sampling={"strength": 0.6, "start": "noise", "style_weight": 0.25,
                                                   "content_weight": 0.3})
    assert edit.sampling == {"strength": 0.6, "start": "noise", "style_weight": 0.25, "content_weight": 0.3}
    assert (edit.count, edit.style_image, edit.style_subject) == (3, style, "sunset")
    assert edit.seeds == [2**32 - 2, 2**32 - 1, 0]  # seed, seed+1, ... wrapping like the seed's own range
    assert edit.image == _image()


def test_defaults_are_one_result_and_no_style() -> None:
    edit = _edit()
    assert (edit.count, edit.style_image, edit.style_subject, edit.seeds) == (1, None, "", [0])
    assert "strength" not in edit.sampling and "start" not in edit.sampling  # the engine's defaults apply


@pytest.mark.parametrize("fields,blobs,words", [
    ({"sampling": {"strength": 0}}, None, "strength"),
    ({"sampling": {"strength": 1.5}}, None, "strength"),
    ({"sampling": {"strength": "0.5"}}, None, "strength"),
    ({"sampling": {"start": "latent"}}, None, "start"),
    ({"count": 0}, None, "count"),
    ({"count": 9}, None, "count"),
    ({"count": True}, None, "count"),
    ({"style_subject": 3}, None, "style_subject"),
    ({"sampling": {"style_weight": 0.3}}, None, "style blob"),
    ({"sampling": {"style_weight": 0.7, "content_weight": 0.5}}, "style", "at most 1"),
    ({}, "two styles", "style blob"),
    ({}, "a8 style", "rgba8"),
])
def test_bad_controls_are_refused_with_the_field_named(fields: dict, blobs: str | None, words: str) -> None:
    image = m.image_blob(_image())
    if blobs == "style":
        blob_list = [image, m.image_blob(_image(), "style")]
    elif blobs == "two styles":
        blob_list = [image, m.image_blob(_image(), "style"), m.image_blob(_image(), "style")]
    elif blobs == "a8 style":
        desc, payload = m.mask_blob(Mask(4, 4, bytes(16)))
        blob_list = [image, ({**desc, "role": "style"}, payload)]
    else:
        blob_list = [image]
    with pytest.raises(ProtocolError) as info:
        _edit(blob_list, **fields)
    assert info.value.code == "bad_request"
    assert words in info.value.message


def test_a_result_with_several_images_decodes_them_in_order() -> None:
    images = [_image(salt=i) for i in range(3)]
    frames = m.make_reply(m.RESULT, "ctl", [m.image_blob(img) for img in images], job="j",
                          results=[{"index": i, "seed": 7 + i} for i in range(3)])
    event = m.decode_reply(frames)
    assert event.is_final and event.images == images and event.image == images[0]
    assert [r["seed"] for r in event.header["results"]] == [7, 8, 9]
