"""Malformed protocol-v1 requests and the error code each must get.

Shared data: the protocol tests run every case through ``parse_request``, and the daemon tests
send the same frames over a real socket. Each case is ``(name, build(token) -> frames, code)``;
the codes assume the default ``Limits()``. Frames never include the ROUTER identity.
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import sine_protocol  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from sine_protocol.messages import PROTOCOL_VERSION, encode_message

Builder = Callable[[str], list[bytes]]

W, H = 8, 8  # the smallest image the daemon accepts
PIXELS = bytes(range(W * H * 4))
MASK = bytes([255, 0] * (W * H // 2))
CLEAR = bytes(b if i % 4 != 3 else 0 for i, b in enumerate(PIXELS))  # colours under alpha 0 everywhere


def image_desc(**over: Any) -> dict[str, Any]:
    desc = {"role": "image", "format": "rgba8", "width": W, "height": H, "compression": "none"}
    desc.update(over)
    return desc


def mask_desc(**over: Any) -> dict[str, Any]:
    desc = {"role": "mask", "format": "a8", "width": W, "height": H, "compression": "none"}
    desc.update(over)
    return desc


def edit_header(secret: str, **over: Any) -> dict[str, Any]:
    header: dict[str, Any] = {
        "v": PROTOCOL_VERSION, "type": "edit", "id": "bad-1", "token": secret,
        "prompt": "make the circle green", "subject": "circle", "style": "photo", "seed": 1,
        "sampling": {"steps": 2, "w": 7.5, "v": 0.7, "k": 400},
        "finetune": {"method": "lora", "steps": 2, "patch": False},
        "output": {"width": 8, "height": 8},
    }
    header.update(over)
    return header


def edit(token: str, blobs: list[tuple[dict[str, Any], bytes]] | None = None, **over: Any) -> list[bytes]:
    """A valid edit (8x8 output of an 8x8 image) with header fields overridden."""
    return encode_message(edit_header(token, **over), [(image_desc(), PIXELS)] if blobs is None else blobs)


def ascii_edit(token: str, **over: Any) -> list[bytes]:
    """An edit whose header is written with \\u escapes, so it can carry lone surrogates."""
    header = edit_header(token, **over)
    header["blobs"] = [image_desc()]
    return [json.dumps(header, ensure_ascii=True).encode(), PIXELS]


def valid_edit(token: str) -> list[bytes]:
    """The control case: a request that must be accepted."""
    return edit(token)


def simple(secret: str, rtype: str = "ping", **over: Any) -> dict[str, Any]:
    """A ping (or other blob-less request) with fields overridden (``token=`` replaces the secret)."""
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": rtype, "id": "bad-1", "token": secret}
    header.update(over)
    return header


def raw(text: str) -> Builder:
    """Frames from a JSON template; ``$TOKEN`` is replaced (used where json.dumps cannot produce the input)."""
    return lambda token: [text.replace("$TOKEN", token).encode("utf-8")]


def without(header: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in header.items() if k not in keys}


def nested(field: str, **over: Any) -> Builder:
    """An edit whose nested object ``field`` has keys overridden."""
    def build(token: str) -> list[bytes]:
        inner = dict(edit_header(token)[field])
        inner.update(over)
        return edit(token, **{field: inner})
    return build


def _bomb_payload() -> bytes:
    return zlib.compress(bytes(8 * 1024 * 1024), 9)  # 8 MiB of zeros for a 64-byte image


CASES: list[tuple[str, Builder, str]] = [
    # not JSON / not an object
    ("not_utf8", lambda t: [b'\xff\xfe{"v": 1}'], "bad_request"),
    ("not_json", lambda t: [b'{"v": 1, "type": "ping",'], "bad_request"),
    ("empty_header", lambda t: [b""], "bad_request"),
    ("json_array", lambda t: [b"[1, 2, 3]"], "bad_request"),
    ("json_string", lambda t: [b'"ping"'], "bad_request"),
    ("json_nan", raw('{"v": 1, "type": "ping", "id": "a", "token": "$TOKEN", "x": NaN}'), "bad_request"),
    ("json_infinity", raw('{"v": 1, "type": "ping", "id": "a", "token": "$TOKEN", "x": -Infinity}'), "bad_request"),
    ("json_float_overflow", raw('{"v": 1, "type": "ping", "id": "a", "token": "$TOKEN", "x": 1e999}'), "bad_request"),
    ("json_duplicate_key", raw('{"v": 1, "type": "ping", "type": "edit", "id": "a", "token": "$TOKEN"}'), "bad_request"),
    ("json_deep_nesting", lambda t: [b"[" * 100000 + b"]" * 100000], "bad_request"),
    # version
    ("version_missing", lambda t: encode_message(without(simple(t), "v")), "bad_request"),
    ("version_string", lambda t: encode_message(simple(t, v="1")), "bad_request"),
    ("version_bool", lambda t: encode_message(simple(t, v=True)), "bad_request"),
    ("version_2", lambda t: encode_message(simple(t, v=2)), "unsupported_version"),
    ("version_0", lambda t: encode_message(simple(t, v=0)), "unsupported_version"),
    # token
    ("token_missing", lambda t: encode_message(without(simple(t), "token")), "unauthorized"),
    ("token_wrong", lambda t: encode_message(simple(t, token="0" * len(t))), "unauthorized"),
    ("token_prefix", lambda t: encode_message(simple(t, token=t[:-1])), "unauthorized"),
    ("token_int", lambda t: encode_message(simple(t, token=12345)), "unauthorized"),
    ("token_wrong_on_edit", lambda t: edit("x" + t), "unauthorized"),
    # id / type
    ("id_missing", lambda t: encode_message(without(simple(t), "id")), "bad_request"),
    ("id_int", lambda t: encode_message(simple(t, id=7)), "bad_request"),
    ("id_empty", lambda t: encode_message(simple(t, id="")), "bad_request"),
    ("id_too_long", lambda t: encode_message(simple(t, id="x" * 129)), "bad_request"),
    ("type_missing", lambda t: encode_message(without(simple(t), "type")), "bad_request"),
    ("type_list", lambda t: encode_message(simple(t, type=["ping"])), "bad_request"),
    ("type_unknown", lambda t: encode_message(simple(t, type="explode")), "bad_request"),
    ("type_is_reply_name", lambda t: encode_message(simple(t, type="result")), "bad_request"),
    # edit fields
    ("edit_missing_prompt",
     lambda t: encode_message(without(edit_header(t), "prompt"), [(image_desc(), PIXELS)]), "bad_request"),
    ("edit_prompt_int", lambda t: edit(t, prompt=5), "bad_request"),
    ("edit_prompt_blank", lambda t: edit(t, prompt="   "), "bad_request"),
    ("edit_prompt_too_long", lambda t: edit(t, prompt="a" * 4097), "too_large"),
    ("edit_subject_too_long", lambda t: edit(t, subject="a" * 4097), "too_large"),
    ("edit_unknown_field", lambda t: edit(t, prompts="typo"), "bad_request"),
    ("edit_style_unknown", lambda t: edit(t, style="sketch"), "bad_request"),
    ("edit_seed_negative", lambda t: edit(t, seed=-1), "bad_request"),
    ("edit_seed_too_big", lambda t: edit(t, seed=2**32), "bad_request"),
    ("edit_seed_string", lambda t: edit(t, seed="42"), "bad_request"),
    ("edit_seed_float", lambda t: edit(t, seed=4.0), "bad_request"),
    ("edit_seed_bool", lambda t: edit(t, seed=True), "bad_request"),
    ("sampling_not_object", lambda t: edit(t, sampling=[2, 7.5]), "bad_request"),
    ("sampling_unknown_field", nested("sampling", K=400), "bad_request"),
    ("sampling_steps_zero", nested("sampling", steps=0), "bad_request"),
    ("sampling_steps_too_many", nested("sampling", steps=1001), "bad_request"),
    ("sampling_steps_bool", nested("sampling", steps=True), "bad_request"),
    ("sampling_w_too_big", nested("sampling", w=50.5), "bad_request"),
    ("sampling_w_string", nested("sampling", w="7.5"), "bad_request"),
    ("sampling_v_negative", nested("sampling", v=-0.1), "bad_request"),
    ("sampling_v_bool", nested("sampling", v=False), "bad_request"),
    # JSON integers past what a float holds (10**400): math.isfinite raised OverflowError, an `internal` error
    *((f"sampling_{key}_int_past_float", nested("sampling", **{key: 10**400}), "bad_request")
      for key in ("w", "v", "strength", "style_weight", "content_weight")),
    ("sampling_k_float", nested("sampling", k=400.0), "bad_request"),
    ("sampling_k_too_big", nested("sampling", k=1001), "bad_request"),
    ("finetune_unknown_field", nested("finetune", lr=1e-4), "bad_request"),
    ("finetune_method_unknown", nested("finetune", method="dreambooth"), "bad_request"),
    ("finetune_steps_zero", nested("finetune", steps=0), "bad_request"),
    ("finetune_steps_too_many", nested("finetune", steps=20001), "bad_request"),
    ("finetune_patch_int", nested("finetune", patch=1), "bad_request"),
    ("output_unknown_field", nested("output", depth=3), "bad_request"),
    ("output_missing_height", lambda t: edit(t, output={"width": 64}), "bad_request"),
    ("output_too_small", nested("output", width=4), "bad_request"),
    ("output_side_too_big", nested("output", width=16385), "bad_request"),
    ("output_float", nested("output", height=64.0), "bad_request"),
    ("output_too_many_pixels", nested("output", width=16384, height=16384), "too_large"),
    # blobs: count and descriptors
    ("blobs_not_list", lambda t: [json.dumps(dict(edit_header(t), blobs={"0": image_desc()})).encode(), PIXELS],
     "bad_request"),
    ("blob_missing_frame", lambda t: [json.dumps(dict(edit_header(t), blobs=[image_desc()])).encode()],
     "bad_request"),
    ("blob_extra_frame", lambda t: encode_message(edit_header(t), [(image_desc(), PIXELS)]) + [PIXELS],
     "bad_request"),
    ("blob_on_ping", lambda t: encode_message(simple(t), [(image_desc(), PIXELS)]), "bad_request"),
    ("blob_desc_not_object", lambda t: [json.dumps(dict(edit_header(t), blobs=["image"])).encode(), PIXELS],
     "bad_request"),
    ("blob_desc_unknown_key", lambda t: edit(t, blobs=[(image_desc(stride=16), PIXELS)]), "bad_request"),
    ("blob_desc_missing_width", lambda t: edit(t, blobs=[(without(image_desc(), "width"), PIXELS)]), "bad_request"),
    ("blob_role_unknown", lambda t: edit(t, blobs=[(image_desc(role="picture"), PIXELS)]), "bad_request"),
    ("blob_format_unknown", lambda t: edit(t, blobs=[(image_desc(format="rgb8"), PIXELS)]), "bad_request"),
    ("blob_compression_unknown", lambda t: edit(t, blobs=[(image_desc(compression="gzip"), PIXELS)]),
     "bad_request"),
    ("blob_width_zero", lambda t: edit(t, blobs=[(image_desc(width=0), b"")]), "bad_request"),
    ("blob_height_negative", lambda t: edit(t, blobs=[(image_desc(height=-4), PIXELS)]), "bad_request"),
    ("blob_width_string", lambda t: edit(t, blobs=[(image_desc(width="4"), PIXELS)]), "bad_request"),
    ("blob_width_absurd", lambda t: edit(t, blobs=[(image_desc(width=10**12), PIXELS)]), "bad_request"),
    ("blob_too_many_pixels", lambda t: edit(t, blobs=[(image_desc(width=10000, height=10000), PIXELS)]),
     "too_large"),
    ("blob_short", lambda t: edit(t, blobs=[(image_desc(), PIXELS[:-1])]), "bad_request"),
    ("blob_long", lambda t: edit(t, blobs=[(image_desc(), PIXELS + b"\0")]), "bad_request"),
    ("blob_rows_of_rgb", lambda t: edit(t, blobs=[(image_desc(), PIXELS[: W * H * 3])]), "bad_request"),
    # blobs: roles
    ("edit_without_image", lambda t: edit(t, blobs=[]), "bad_request"),
    ("edit_only_mask", lambda t: edit(t, blobs=[(mask_desc(), MASK)]), "bad_request"),
    ("edit_two_images", lambda t: edit(t, blobs=[(image_desc(), PIXELS), (image_desc(), PIXELS)]), "bad_request"),
    ("edit_preview_blob", lambda t: edit(t, blobs=[(image_desc(), PIXELS), (image_desc(role="preview"), PIXELS)]),
     "bad_request"),
    ("image_as_a8", lambda t: edit(t, blobs=[(image_desc(format="a8"), PIXELS[: W * H])]), "bad_request"),
    ("mask_as_rgba8", lambda t: edit(t, blobs=[(image_desc(), PIXELS), (mask_desc(format="rgba8"), PIXELS)]),
     "bad_request"),
    ("mask_size_mismatch",
     lambda t: edit(t, blobs=[(image_desc(), PIXELS), (mask_desc(width=2, height=2), MASK[:4])]), "bad_request"),
    ("mask_short", lambda t: edit(t, blobs=[(image_desc(), PIXELS), (mask_desc(), MASK[:-1])]), "bad_request"),
    ("two_masks",
     lambda t: edit(t, blobs=[(image_desc(), PIXELS), (mask_desc(), MASK), (mask_desc(), MASK)]), "bad_request"),
    # blobs: zlib
    ("zlib_garbage", lambda t: edit(t, blobs=[(image_desc(compression="zlib"), b"not zlib at all")]),
     "bad_request"),
    ("zlib_truncated", lambda t: edit(t, blobs=[(image_desc(compression="zlib"), zlib.compress(PIXELS)[:-6])]),
     "bad_request"),
    ("zlib_wrong_size", lambda t: edit(t, blobs=[(image_desc(compression="zlib"), zlib.compress(PIXELS[:-4]))]),
     "bad_request"),
    ("zlib_bomb", lambda t: edit(t, blobs=[(image_desc(compression="zlib"), _bomb_payload())]), "bad_request"),
    ("zlib_trailing_bytes",
     lambda t: edit(t, blobs=[(image_desc(compression="zlib"), zlib.compress(PIXELS) + b"junk")]), "bad_request"),
    ("zlib_two_streams",
     lambda t: edit(t, blobs=[(image_desc(compression="zlib"), zlib.compress(PIXELS) + zlib.compress(PIXELS))]),
     "bad_request"),
    # cancel
    ("cancel_missing_job", lambda t: encode_message(simple(t, "cancel")), "bad_request"),
    ("cancel_job_int", lambda t: encode_message(simple(t, "cancel", job=3)), "bad_request"),
    ("cancel_unknown_field", lambda t: encode_message(simple(t, "cancel", job="j1", force=True)), "bad_request"),
    # size
    ("header_too_big", lambda t: encode_message(simple(t, pad="x" * (1024 * 1024 + 1))), "too_large"),
    # found by the hostile-input probe (issue 17): refused before `accepted`, echoes bounded
    ("prompt_lone_surrogate", raw('{"v": 1, "type": "edit", "id": "a", "token": "$TOKEN", "prompt": "a \\ud800 x",'
                                  ' "blobs": []}'), "bad_request"),
    ("subject_lone_surrogate", lambda t: ascii_edit(t, subject="circle \udfff"), "bad_request"),
    ("prompt_lone_surrogate_with_image", lambda t: ascii_edit(t, prompt="green \ud83d"), "bad_request"),
    ("image_under_8_px", lambda t: edit(t, blobs=[(image_desc(width=4, height=4), PIXELS[: 4 * 4 * 4])]),
     "bad_request"),
    ("image_one_row", lambda t: edit(t, blobs=[(image_desc(width=64, height=1), PIXELS[: 64 * 4])]), "bad_request"),
    ("type_one_megabyte", lambda t: encode_message(simple(t, type="x" * (1024 * 1024 - 200))), "bad_request"),
    ("many_long_unknown_keys", lambda t: edit(t, **{f"k{n}" + "y" * 5000: n for n in range(100)}), "bad_request"),
    # second hostile-input round: these were `accepted`, then failed when their turn came (after a queue wait)
    ("inversion_with_count_2",
     lambda t: edit(t, count=2, sampling={"steps": 2, "start": "inversion", "strength": 0.5}), "bad_request"),
    ("content_weight_over_1_with_the_default_style_weight",
     lambda t: edit(t, sampling={"steps": 2, "content_weight": 0.8},
                    blobs=[(image_desc(), PIXELS), (image_desc(role="style"), PIXELS)]), "bad_request"),
    ("mask_selects_nothing",  # an all-zero mask: minutes of fine-tuning for the unchanged picture
     lambda t: edit(t, blobs=[(image_desc(), PIXELS), (mask_desc(), bytes(W * H))]), "bad_request"),
    ("low_v_gives_a_content_weight_over_1_with_style",
     lambda t: edit(t, sampling={"steps": 2, "v": 0.1},
                    blobs=[(image_desc(), PIXELS), (image_desc(role="style"), PIXELS)]), "bad_request"),
    ("image_fully_transparent",  # a layer its mask hides: the edit would come back invisible
     lambda t: edit(t, blobs=[(image_desc(), CLEAR)]), "bad_request"),
    ("style_picture_fully_transparent",
     lambda t: edit(t, blobs=[(image_desc(), PIXELS), (image_desc(role="style"), CLEAR)]), "bad_request"),
]

# Sanity: names are unique, so test ids are too.
assert len({name for name, _, _ in CASES}) == len(CASES)
