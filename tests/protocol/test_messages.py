"""Strict request validation, encoding and reply decoding."""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import malformed_corpus as corpus  # noqa: E402

from sine_protocol import messages as m  # noqa: E402
from sine_protocol.errors import ERROR_CODES, ProtocolError  # noqa: E402
from sine_protocol.frames import Mask, RGBAImage  # noqa: E402

TOKEN = "f" * 64


def _image(width: int = 5, height: int = 3) -> RGBAImage:
    return RGBAImage(width, height, bytes((i * 7) % 256 for i in range(width * height * 4)))


@pytest.mark.parametrize("name,build,code", corpus.CASES, ids=[c[0] for c in corpus.CASES])
def test_malformed_request_gets_its_code(name: str, build: corpus.Builder, code: str) -> None:
    assert code in ERROR_CODES
    with pytest.raises(ProtocolError) as info:
        m.parse_request(build(TOKEN), TOKEN, m.Limits())
    assert info.value.code == code, info.value.message
    assert info.value.message  # a clear message, never empty
    # The error reply for it is itself a valid, decodable message.
    event = m.decode_reply(m.error_frames(info.value))
    assert event.type == "error" and event.header["code"] == code


def test_corpus_is_big_enough_and_covers_every_validation_code() -> None:
    assert len(corpus.CASES) >= 25
    assert {code for _, _, code in corpus.CASES} == {"bad_request", "unsupported_version", "unauthorized", "too_large"}


def test_corpus_control_case_is_valid() -> None:
    req = m.parse_request(corpus.valid_edit(TOKEN), TOKEN)
    assert req.type == "edit" and req.id == "bad-1"
    assert req.edit is not None and req.edit.image.data == corpus.PIXELS and req.edit.output == (8, 8)


def test_error_echoes_request_id_when_readable() -> None:
    frames = m.encode_message(m.make_request("edit", "req-9", TOKEN, prompt=3), [m.image_blob(_image())])
    with pytest.raises(ProtocolError) as info:
        m.parse_request(frames, TOKEN)
    assert info.value.request_id == "req-9"
    assert m.decode_reply(m.error_frames(info.value)).id == "req-9"


def test_unauthorized_is_checked_before_fields() -> None:
    frames = m.encode_message({"v": 1, "type": "nonsense", "id": "x", "token": "wrong"})
    with pytest.raises(ProtocolError) as info:
        m.parse_request(frames, TOKEN)
    assert info.value.code == "unauthorized"


def test_edit_round_trip_with_mask_and_options() -> None:
    image = _image(8, 8)
    mask = Mask(8, 8, bytes([0, 255] * 32))
    header = m.make_request(
        "edit", "e1", TOKEN, prompt="a red hat", subject="dog", style="painting", seed=2**32 - 1,
        sampling={"steps": 3, "w": 7, "v": 0.5, "k": 0}, finetune={"method": "full", "steps": None, "patch": True},
        output={"width": 12, "height": 8},
    )
    frames = m.encode_message(header, [m.image_blob(image, compress=True), m.mask_blob(mask, compress=False)])
    req = m.parse_request(frames, TOKEN)
    edit = req.edit
    assert edit is not None
    assert (edit.image, edit.mask) == (image, mask)
    assert (edit.prompt, edit.subject, edit.style, edit.seed) == ("a red hat", "dog", "painting", 2**32 - 1)
    assert edit.sampling == {"steps": 3, "w": 7.0, "v": 0.5, "k": 0}
    assert isinstance(edit.sampling["w"], float)
    assert edit.finetune == {"method": "full", "patch": True}  # steps null = engine default
    assert edit.output == (12, 8)


def test_edit_defaults_when_optional_fields_are_missing() -> None:
    image = _image(8, 8)
    frames = m.encode_message(m.make_request("edit", "e2", TOKEN, prompt="x"), [m.image_blob(image)])
    edit = m.parse_request(frames, TOKEN).edit
    assert edit is not None
    assert (edit.subject, edit.style, edit.seed, edit.sampling, edit.finetune, edit.mask) == ("", "photo", 0, {}, {}, None)
    assert edit.output == image.size


def test_limits_are_configurable() -> None:
    image = _image(10, 10)
    frames = m.encode_message(m.make_request("edit", "e3", TOKEN, prompt="abcdef"), [m.image_blob(image)])
    m.parse_request(frames, TOKEN, m.Limits())
    for limits in (m.Limits(max_input_pixels=99), m.Limits(max_prompt_chars=5), m.Limits(max_message_bytes=64),
                   m.Limits(max_output_pixels=99)):
        with pytest.raises(ProtocolError) as info:
            m.parse_request(frames, TOKEN, limits)
        assert info.value.code == "too_large"


def test_zlib_bomb_is_refused_without_inflating_it() -> None:
    image = _image(4, 4)
    bomb = zlib.compress(bytes(64 * 1024 * 1024), 9)  # 64 MiB behind ~64 KiB
    desc, _ = m.image_blob(image)
    desc["compression"] = "zlib"
    frames = m.encode_message(m.make_request("edit", "b", TOKEN, prompt="x"), [(desc, bomb)])
    with pytest.raises(ProtocolError, match="more than"):
        m.parse_request(frames, TOKEN)


@pytest.mark.parametrize("rtype", ["hello", "ping", "status"])
def test_simple_requests(rtype: str) -> None:
    req = m.parse_request(m.encode_message(m.make_request(rtype, "s1", TOKEN, client="krita 5.2")), TOKEN)
    assert (req.type, req.id, req.edit, req.job) == (rtype, "s1", None, None)


def test_cancel_request() -> None:
    req = m.parse_request(m.encode_message(m.make_request("cancel", "c1", TOKEN, job="job-7")), TOKEN)
    assert (req.type, req.job) == ("cancel", "job-7")


def test_encode_message_fills_blob_descriptors_and_rejects_nan() -> None:
    image = _image()
    frames = m.encode_message({"v": 1, "type": "x", "id": "1"}, [m.image_blob(image, compress=False)])
    header = json.loads(frames[0])
    assert header["blobs"] == [{"role": "image", "format": "rgba8", "width": 5, "height": 3, "compression": "none"}]
    assert frames[1] == image.data
    with pytest.raises(ValueError):
        m.encode_message({"v": 1, "eta_s": float("nan")})


def test_reply_round_trip_with_image_and_preview() -> None:
    image = _image(20, 10)
    preview = _image(4, 2)
    frames = m.make_reply("result", "r1", [m.image_blob(image), m.image_blob(preview, role="preview")],
                          job="j1", seed=3, cache_hit=True, timings={"total_s": 1.5})
    event = m.decode_reply(frames)
    assert (event.type, event.id, event.job, event.is_final) == ("result", "r1", "j1", True)
    assert event.image == image and event.preview == preview
    assert event.header["timings"] == {"total_s": 1.5}


def test_error_reply_fields_and_raise() -> None:
    event = m.decode_reply(m.make_error("busy", "queue full", "r5", job="j5"))
    assert event.header["retriable"] is True and event.job == "j5" and event.is_final
    with pytest.raises(ProtocolError) as info:
        event.raise_for_error()
    assert (info.value.code, info.value.request_id, info.value.retriable) == ("busy", "r5", True)
    assert m.decode_reply(m.make_error("bad_request", "no")).header["retriable"] is False


@pytest.mark.parametrize("frames", [
    [],
    [b"not json"],
    [b'{"v": 2, "type": "pong", "id": "a"}'],
    [b'{"v": 1, "id": "a"}'],
    [b'{"v": 1, "type": "result", "id": "a", "blobs": [{"role": "image", "format": "rgba8", "width": 2, "height": 2}]}',
     b"123"],
    [b'{"v": 1, "type": "pong", "id": "a"}', b"unexpected"],
])
def test_malformed_reply_raises_bad_reply(frames: list[bytes]) -> None:
    with pytest.raises(ProtocolError) as info:
        m.decode_reply(frames)
    assert info.value.code == "bad_reply"


def test_a_message_of_more_frames_than_a_request_names_the_limit() -> None:
    """The daemon passes only a request's first frames and the count of the rest (`frame_count`)."""
    header = m.encode_message(m.make_request("ping", "many", "tok"))
    for frames, count in (([header[0], b"", b"", b"", b""], None), ([header[0], b""], 3_000_000)):
        with pytest.raises(ProtocolError) as caught:
            m.parse_request(frames, "tok", frame_count=count)
        assert caught.value.request_id == "many" and "at most 4" in caught.value.message


def test_an_edit_whose_results_would_not_fit_one_reply_is_refused_before_accepted() -> None:
    """All of an edit's results come back in one `result`: 8 results at the largest output (64 M pixels, 256 MB
    each) would be a 2 GB reply, over the bound every client holds replies to (Limits.max_message_bytes)."""
    image = _image(10, 10)
    big = {"width": 16384, "height": 4096}
    frames = m.encode_message(m.make_request("edit", "e8", TOKEN, prompt="x", count=8, output=big), [m.image_blob(image)])
    with pytest.raises(ProtocolError) as info:
        m.parse_request(frames, TOKEN, m.Limits())
    assert info.value.code == "too_large"
    assert "8 results of 16384x4096" in info.value.message and str(m.Limits().max_reply_bytes) in info.value.message
    # A daemon started with a larger incoming limit (sine daemon --max-message-bytes 4GB) still refuses it:
    # the bound is what the clients take, not what the daemon accepts.
    with pytest.raises(ProtocolError, match="8 results"):
        m.parse_request(frames, TOKEN, m.Limits(max_message_bytes=4 << 30))
    fits = m.encode_message(m.make_request("edit", "e2", TOKEN, prompt="x", count=2, output=big), [m.image_blob(image)])
    assert m.parse_request(fits, TOKEN, m.Limits()).edit.count == 2
    # The same bound, configured smaller: 10x10 pixels are 400 bytes a result.
    few = m.encode_message(m.make_request("edit", "e3", TOKEN, prompt="x", count=3), [m.image_blob(image)])
    assert m.parse_request(few, TOKEN, m.Limits(max_reply_bytes=1200)).edit.count == 3
    with pytest.raises(ProtocolError, match="3 results of 10x10"):
        m.parse_request(few, TOKEN, m.Limits(max_reply_bytes=1199))


def test_a_reply_over_the_bound_is_refused_before_it_is_inflated() -> None:
    images = [m.image_blob(_image(10, 10)) for _ in range(3)]
    frames = m.make_reply("result", "r1", images, job="j")
    assert len(m.decode_reply(frames, m.Limits(max_reply_bytes=1200)).images) == 3
    with pytest.raises(ProtocolError) as info:
        m.decode_reply(frames, m.Limits(max_reply_bytes=1199))
    assert info.value.code == "bad_reply" and info.value.request_id == "r1"


@pytest.mark.parametrize("frame", [b"", b"  \r\n"])
def test_an_empty_header_frame_is_said_to_be_empty(frame: bytes) -> None:
    """A message of one empty frame was answered "header is not valid JSON: Expecting value: line 1 column 1
    (char 0)", which says nothing to whoever wrote the client."""
    with pytest.raises(m.ProtocolError, match="the header frame is empty") as info:
        m.parse_request([frame], TOKEN)
    assert info.value.code == "bad_request" and "JSON object" in info.value.message
