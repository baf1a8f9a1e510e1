"""Protocol v1 messages: names, limits, strict request validation and encoding.

The daemon runs every incoming multipart message through :func:`parse_request`; anything that is
not a well-formed v1 request becomes a :class:`ProtocolError` with a wire error code, never a
crash. Clients use :func:`encode_message` to build requests and :func:`decode_reply` to read the
daemon's replies. See docs/design.md §3 for the contract.
"""

from __future__ import annotations

import hmac
import json
import math
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .defaults import (
    FINETUNE_METHODS,
    GUIDANCE_RANGE,
    K_RANGE,
    MAX_COUNT,
    START_MODES,
    STEPS_RANGE,
    STYLE,
    STYLES,
    V_RANGE,
    V,
    multi_model_weights,
    result_seeds,
)
from .errors import (
    BAD_REPLY,
    BAD_REQUEST,
    BUSY,
    CANCELLED,
    DAEMON_STOPPING,
    ERROR_CODES,
    INTERNAL,
    MODEL_MISSING,
    OUT_OF_MEMORY,
    RETRIABLE_CODES,
    TOO_LARGE,
    UNAUTHORIZED,
    UNSUPPORTED_VERSION,
    ProtocolError,
)
from .frames import BYTES_PER_PIXEL, COMPRESSIONS, Mask, RGBAImage, nothing_visible, pack, unpack

__all__ = [
    "PROTOCOL_VERSION",
    "BAD_REQUEST", "UNSUPPORTED_VERSION", "UNAUTHORIZED", "TOO_LARGE", "MODEL_MISSING",
    "OUT_OF_MEMORY", "BUSY", "CANCELLED", "INTERNAL", "ERROR_CODES", "RETRIABLE_CODES",
    "HELLO", "PING", "STATUS", "EDIT", "CANCEL", "REQUEST_TYPES",
    "WELCOME", "PONG", "ACCEPTED", "PROGRESS", "RESULT", "ERROR", "HEARTBEAT", "REPLY_TYPES", "FINAL_TYPES",
    "PHASES", "STYLES", "FINETUNE_METHODS", "START_MODES", "MAX_COUNT", "Limits", "EditRequest", "Request", "Event",
    "ProtocolError", "parse_request", "encode_message", "make_reply", "make_error", "error_frames",
    "decode_reply", "image_blob", "mask_blob", "daemon_summary", "MAX_NOTES", "MAX_NOTE_CHARS", "bounded_notes", "with_notes",
    "SLOW_STEP_S", "still_working", "MAX_PART_OF_CHARS", "within_step", "part_text", "step_fraction",
]

PROTOCOL_VERSION = 1

# Request types.
HELLO = "hello"
PING = "ping"
STATUS = "status"
EDIT = "edit"
CANCEL = "cancel"
REQUEST_TYPES: frozenset[str] = frozenset({HELLO, PING, STATUS, EDIT, CANCEL})

# Reply types (``status`` and ``cancelled`` are both a request/reply name and a reply name).
WELCOME = "welcome"
PONG = "pong"
ACCEPTED = "accepted"
PROGRESS = "progress"
RESULT = "result"
ERROR = "error"
# ``heartbeat``: a running job's "still working" (phase and step) when nothing else went out for 5 s;
# clients use it only to tell a long step from a silent daemon (SineClient does not pass it on).
HEARTBEAT = "heartbeat"
REPLY_TYPES: frozenset[str] = frozenset({WELCOME, PONG, STATUS, ACCEPTED, PROGRESS, RESULT, ERROR, CANCELLED,
                                         HEARTBEAT})
# After one of these, no more events come for that request id.
FINAL_TYPES: frozenset[str] = frozenset({RESULT, ERROR, CANCELLED})

PHASES: tuple[str, ...] = ("queued", "loading", "finetune", "sample", "decode")

BLOB_ROLES: frozenset[str] = frozenset({"image", "mask", "preview", "style"})
_BLOB_KEYS = frozenset({"role", "format", "width", "height", "compression"})
_BASE_KEYS = frozenset({"v", "type", "id", "token", "blobs"})
_EDIT_KEYS = _BASE_KEYS | {"prompt", "subject", "style", "seed", "sampling", "finetune", "output", "count",
                           "style_subject"}
_CANCEL_KEYS = _BASE_KEYS | {"job"}
MAX_ID_CHARS = 128
# A request is a header and at most three blobs (image, mask, style). The daemon keeps no more than this of a
# message and only counts the rest: libzmq holds a whole message, but a list of its millions of parts is ours.
MAX_REQUEST_FRAMES = 4
REPLY_HEADER_BYTES = 16 * 1024 * 1024  # what a client takes as a reply's header (status lists, notes)
MAX_SIDE = 65535  # larger sides are absurd whatever the pixel budget says
OUTPUT_SIDE_RANGE = (8, 16384)
# ``notes``: what the engine says a painter should know about a job (e.g. "the prompt's last 12 words were
# ignored ..."), on the job's first ``progress`` from the worker and on its ``result``. Optional: old daemons
# send none, old clients ignore the key.
MAX_NOTES = 4
MAX_NOTE_CHARS = 200


@dataclass(frozen=True)
class Limits:
    """Resource limits the daemon enforces (configurable; defaults are generous but bounded)."""

    max_input_pixels: int = 64 * 1024 * 1024
    max_output_pixels: int = 64 * 1024 * 1024
    max_message_bytes: int = 512 * 1024 * 1024
    # The pixels of one reply (a `result` holds every result image): what clients take, so NOT raised with
    # `sine daemon --max-message-bytes` (a daemon allowed to produce more would lose the work at the end).
    max_reply_bytes: int = 512 * 1024 * 1024
    max_header_bytes: int = 1024 * 1024
    max_prompt_chars: int = 4096
    max_queued_per_client: int = 4

    def max_frame_bytes(self) -> int:
        """The largest single frame a valid request can hold: the header, or the image blob at the
        pixel limit (4 bytes a pixel; zlib may add up to ~0.1 % to data it cannot shrink).
        The daemon sets ZMQ_MAXMSGSIZE to this, so a larger frame is refused while it arrives."""
        raw = self.max_input_pixels * BYTES_PER_PIXEL["rgba8"]
        zlib_bound = raw + (raw >> 12) + (raw >> 14) + (raw >> 25) + 64
        return min(self.max_message_bytes, max(self.max_header_bytes, zlib_bound))

    def max_reply_message(self) -> tuple[int, int]:
        """(parts, bytes) one daemon reply can take on the wire: a header and ``MAX_COUNT`` results whose pixels
        fit ``max_reply_bytes`` (zlib adds ~0.1 % to data it cannot shrink). The pure client drops a connection
        whose message goes past either, instead of holding it whole before `decode_reply` can refuse it."""
        raw = self.max_reply_bytes
        header = max(self.max_header_bytes, REPLY_HEADER_BYTES)
        return 1 + MAX_COUNT, header + raw + (raw >> 10) + 64 * MAX_COUNT

    def max_reply_part(self) -> int:
        """The largest single part of a daemon reply: its header, or every result's pixels in one blob. The
        pyzmq client sets ZMQ_MAXMSGSIZE to it, so libzmq drops a bigger part at its frame header."""
        raw = self.max_reply_bytes
        return max(self.max_header_bytes, REPLY_HEADER_BYTES, raw + (raw >> 10) + 64)

    def check_results_fit(self, check: _Checker, count: int, output: tuple[int, int]) -> None:
        """Every result of an edit comes back in ONE ``result``, whose pixels (4 bytes each, before any
        compression) must fit ``max_reply_bytes``: the bound the clients hold replies to
        (:func:`decode_reply`). The daemon refuses a larger edit before ``accepted``, not after hours of work."""
        need = count * output[0] * output[1] * BYTES_PER_PIXEL["rgba8"]
        if need > self.max_reply_bytes:
            raise check.fail(f"{count} results of {output[0]}x{output[1]} would be a reply of {need} bytes, over the"
                             f" limit of {self.max_reply_bytes} bytes; ask for fewer results or a smaller size",
                             TOO_LARGE)


@dataclass(frozen=True)
class EditRequest:
    """A validated ``edit``: pixels decoded, options type-checked.

    ``sampling`` and ``finetune`` hold only the keys the client sent (``k`` lower-case); the engine
    fills in its defaults for the rest. ``output`` defaults to the image size. ``count`` results come
    from seeds ``seed, seed+1, …`` (mod 2³²); ``style_image`` (the ``style`` blob) is the second
    picture of multi-model guidance, fine-tuned like the first with the prompt of ``style_subject``.
    """

    image: RGBAImage
    mask: Mask | None
    prompt: str
    subject: str
    style: str
    seed: int
    sampling: dict[str, Any]
    finetune: dict[str, Any]
    output: tuple[int, int]
    count: int = 1
    style_image: RGBAImage | None = None
    style_subject: str = ""

    @property
    def seeds(self) -> list[int]:
        """The seed of each result, in order."""
        return result_seeds(self.seed, self.count)


@dataclass(frozen=True)
class Request:
    """A validated request. ``edit`` is set for ``edit``, ``job`` for ``cancel``."""

    type: str
    id: str
    header: dict[str, Any]
    edit: EditRequest | None = None
    job: str | None = None


@dataclass
class Event:
    """One reply from the daemon: its header and its decoded (decompressed) blobs."""

    type: str
    header: dict[str, Any]
    blobs: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.header.get("id", ""))

    @property
    def job(self) -> str | None:
        job = self.header.get("job")
        return job if isinstance(job, str) else None

    @property
    def notes(self) -> list[str]:
        """The job's notes (sentences for the painter); empty when the daemon sent none."""
        return bounded_notes(self.header.get("notes"))

    @property
    def is_final(self) -> bool:
        """True for ``result``, ``error`` and ``cancelled``: the request is over."""
        return self.type in FINAL_TYPES

    def _first_image(self, role: str) -> RGBAImage | None:
        for desc, data in self.blobs:
            if desc.get("role") == role and desc.get("format") == "rgba8":
                return RGBAImage(desc["width"], desc["height"], data)
        return None

    @property
    def image(self) -> RGBAImage | None:
        """The ``image`` blob (a ``result``'s pixels), if any."""
        return self._first_image("image")

    @property
    def images(self) -> list[RGBAImage]:
        """Every ``image`` blob in order: a ``result`` with ``count`` > 1 carries one per seed."""
        return [RGBAImage(desc["width"], desc["height"], data) for desc, data in self.blobs
                if desc.get("role") == "image" and desc.get("format") == "rgba8"]

    @property
    def preview(self) -> RGBAImage | None:
        """The small ``preview`` blob of a ``progress`` event, if any."""
        return self._first_image("preview")

    def raise_for_error(self) -> None:
        """Raise the :class:`ProtocolError` that an ``error`` event carries."""
        if self.type == ERROR:
            raise ProtocolError(
                str(self.header.get("code", INTERNAL)), str(self.header.get("message", "")), self.id or None, self.job
            )


def bounded_notes(value: Any) -> list[str]:
    """``notes`` as the protocol bounds them: a list of at most MAX_NOTES text strings, each cut to
    MAX_NOTE_CHARS; anything else (absent, not a list, not text) counts as no note. Informative only, so
    a malformed one never costs the event that carries it."""
    if not isinstance(value, list):
        return []
    notes = [" ".join(v.split()) for v in value if isinstance(v, str) and v.strip() and _is_text(v)][:MAX_NOTES]
    return [n if len(n) <= MAX_NOTE_CHARS else n[: MAX_NOTE_CHARS - 1] + "…" for n in notes]


# ---------------------------------------------------------------- JSON parsing


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


MAX_ECHO_CHARS = 40  # error messages quote what the client sent, but never more than this


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # the literal may be the whole header long: quote its start only
        cut = text if len(text) <= MAX_ECHO_CHARS else f"{text[:MAX_ECHO_CHARS]}... ({len(text)} characters)"
        raise ValueError(f"number {cut} is out of range")
    return value


def shown(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters: error replies and the log never echo a flood back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {shown(key)}")
        result[key] = value
    return result


def _load_header(frame: bytes, max_bytes: int, code: str) -> dict[str, Any]:
    if len(frame) > max_bytes:
        raise ProtocolError(TOO_LARGE if code == BAD_REQUEST else code, f"header is over {max_bytes} bytes")
    try:
        text = bytes(frame).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(code, "header is not UTF-8") from None
    if not text.strip():
        raise ProtocolError(code, "the header frame is empty: a message's first frame is its header, a JSON object")
    try:
        header = json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_no_duplicates
        )
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(code, f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(code, "header must be a JSON object")
    return header


# ---------------------------------------------------------------- typed field checks


class _Checker:
    """Field checks that raise ``bad_request`` errors naming the field and echoing the id."""

    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id

    def fail(self, message: str, code: str = BAD_REQUEST) -> ProtocolError:
        return ProtocolError(code, message, self.request_id)

    def obj(self, value: Any, name: str, allowed: frozenset[str] | set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{name} must be an object")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise self.fail(f"unknown field(s) in {name}: {', '.join(shown(k) for k in unknown[:3])}{more}")
        return value

    def string(self, value: Any, name: str, max_chars: int | None = None, nonempty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{name} must be a string")
        if nonempty and not value.strip():
            raise self.fail(f"{name} must not be empty")
        if max_chars is not None and len(value) > max_chars:
            raise self.fail(f"{name} is longer than {max_chars} characters", TOO_LARGE)
        if not _is_text(value):  # a lone UTF-16 surrogate ("\\ud800") is valid JSON but not text
            raise self.fail(f"{name} is not valid Unicode text (it holds a lone surrogate)")
        return value

    def integer(self, value: Any, name: str, lo: int, hi: int) -> int:
        # bool is an int subclass in Python; JSON true is not a number.
        if type(value) is not int:
            raise self.fail(f"{name} must be an integer")
        if not lo <= value <= hi:
            raise self.fail(f"{name} must be in {lo}..{hi}, got {shown(value)}")
        return value

    def number(self, value: Any, name: str, lo: float, hi: float) -> float:
        if type(value) not in (int, float):
            raise self.fail(f"{name} must be a number")
        if not (lo <= value <= hi and math.isfinite(value)):  # range first: isfinite(10**400) overflows
            raise self.fail(f"{name} must be in {lo}..{hi}, got {shown(value)}")
        return float(value)

    def boolean(self, value: Any, name: str) -> bool:
        if type(value) is not bool:
            raise self.fail(f"{name} must be true or false")
        return value

    def choice(self, value: Any, name: str, options: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in options:
            raise self.fail(f"{name} must be one of {', '.join(options)}")
        return value


# ---------------------------------------------------------------- blobs


def _parse_blob_descriptors(check: _Checker, header: dict[str, Any], count: int) -> list[dict[str, Any]]:
    raw = header.get("blobs", [])
    if not isinstance(raw, list):
        raise check.fail("blobs must be a list")
    if len(raw) != count:
        raise check.fail(f"header describes {len(raw)} blob(s) but the message has {count}")
    descriptors = []
    for index, desc in enumerate(raw):
        name = f"blobs[{index}]"
        desc = check.obj(desc, name, _BLOB_KEYS)
        for key in ("role", "format", "width", "height"):
            if key not in desc:
                raise check.fail(f"{name} lacks {key}")
        role = check.choice(desc["role"], f"{name}.role", tuple(sorted(BLOB_ROLES)))
        fmt = check.choice(desc["format"], f"{name}.format", tuple(sorted(BYTES_PER_PIXEL)))
        width = check.integer(desc["width"], f"{name}.width", 1, MAX_SIDE)
        height = check.integer(desc["height"], f"{name}.height", 1, MAX_SIDE)
        compression = check.choice(desc.get("compression", "none"), f"{name}.compression", tuple(sorted(COMPRESSIONS)))
        descriptors.append(
            {"role": role, "format": fmt, "width": width, "height": height, "compression": compression}
        )
    return descriptors


def _decode_blob(check: _Checker, desc: dict[str, Any], payload: bytes, max_pixels: int) -> bytes:
    pixels = desc["width"] * desc["height"]
    if pixels > max_pixels:
        raise check.fail(f"{desc['role']} has {pixels} pixels, the limit is {max_pixels}", TOO_LARGE)
    expected = pixels * BYTES_PER_PIXEL[desc["format"]]
    try:
        return unpack(payload, desc["compression"], expected)
    except ProtocolError as exc:
        raise check.fail(f"{desc['role']} blob: {exc.message}", exc.code) from None


# ---------------------------------------------------------------- requests


def _request_id(header: dict[str, Any]) -> str | None:
    """The id to echo in an error reply: only one that can be sent back (a lone surrogate cannot be UTF-8)."""
    rid = header.get("id")
    if isinstance(rid, str) and 0 < len(rid) <= MAX_ID_CHARS and _is_text(rid):
        return rid
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def says_something(text: str) -> bool:
    """Whether ``text`` holds a visible character: not only spaces, controls or format characters (U+200B,
    U+FEFF...), which `str.strip` keeps but which ask the model for nothing."""
    return any(not unicodedata.category(char).startswith(("Z", "C")) for char in text)


INVISIBLE_PROMPT = ("has no visible character (only spaces, control or format characters such as U+200B): say"
                    " what the result should show")


def parse_request(frames: list[bytes], token: str, limits: Limits | None = None,
                  admit: Callable[[str, int], None] | None = None, frame_count: int | None = None) -> Request:
    """Validate one multipart request (without the ROUTER identity frame).

    Checks run cheapest first: size, JSON, version, token, type, fields, then blob decoding. The
    token is checked before any field so that an unauthorised peer learns nothing but
    ``unauthorized``. ``admit(id, pixel_bytes)`` runs on a valid ``edit`` before its pixels are
    unpacked (the daemon raises ``busy`` there: a full queue must not unpack 256 MB to refuse it).
    ``frame_count``: how many frames the message had, when ``frames`` holds only its first ones.
    Raises :class:`ProtocolError` with the wire error code.
    """
    limits = limits or Limits()
    if not frames:
        raise ProtocolError(BAD_REQUEST, "empty message")
    total = sum(len(f) for f in frames)
    if total > limits.max_message_bytes:
        raise ProtocolError(TOO_LARGE, f"message is {total} bytes, the limit is {limits.max_message_bytes}")
    header = _load_header(frames[0], limits.max_header_bytes, BAD_REQUEST)
    check = _Checker(_request_id(header))

    version = header.get("v")
    if type(version) is not int:
        raise check.fail("v (protocol version) must be an integer")
    if version != PROTOCOL_VERSION:
        raise check.fail(f"protocol version {shown(version)} is not supported (this daemon speaks {PROTOCOL_VERSION})",
                         UNSUPPORTED_VERSION)
    sent_token = header.get("token")
    if not isinstance(sent_token, str) or not hmac.compare_digest(
        sent_token.encode("utf-8", "surrogatepass"), token.encode("utf-8")
    ):
        raise check.fail("missing or wrong token", UNAUTHORIZED)
    count = len(frames) if frame_count is None else frame_count
    if count > MAX_REQUEST_FRAMES:
        raise check.fail(f"the message has {count} frames; a request has at most {MAX_REQUEST_FRAMES}"
                         " (a header and up to 3 blobs)")
    if "id" not in header:
        raise check.fail("id is missing")
    rid = check.string(header["id"], "id", nonempty=True)
    if len(rid) > MAX_ID_CHARS:
        raise check.fail(f"id is longer than {MAX_ID_CHARS} characters")
    if "type" not in header:
        raise check.fail("type is missing")
    rtype = check.string(header["type"], "type")
    if rtype not in REQUEST_TYPES:
        raise check.fail(f"unknown request type {shown(rtype)}")

    descriptors = _parse_blob_descriptors(check, header, len(frames) - 1)
    if rtype == EDIT:
        edit = _parse_edit(check, header, descriptors, frames[1:], limits, admit)
        return Request(rtype, rid, header, edit=edit)
    if descriptors:
        raise check.fail(f"{rtype} takes no blobs")
    if rtype == CANCEL:
        check.obj(header, "cancel", _CANCEL_KEYS)
        if "job" not in header:
            raise check.fail("cancel needs job")
        job = check.string(header["job"], "job", nonempty=True)
        if len(job) > MAX_ID_CHARS:
            raise check.fail(f"job is longer than {MAX_ID_CHARS} characters")
        return Request(rtype, rid, header, job=job)
    # hello / ping / status: extra fields (e.g. client info) are tolerated for forward compatibility.
    return Request(rtype, rid, header)


def _parse_edit(
    check: _Checker, header: dict[str, Any], descriptors: list[dict[str, Any]], payloads: list[bytes], limits: Limits,
    admit: Callable[[str, int], None] | None = None,
) -> EditRequest:
    check.obj(header, "edit", _EDIT_KEYS)
    if "prompt" not in header:
        raise check.fail("edit needs a prompt")
    prompt = check.string(header["prompt"], "prompt", limits.max_prompt_chars, nonempty=True)
    if not says_something(prompt):
        raise check.fail(f"prompt {INVISIBLE_PROMPT}")
    subject = check.string(header.get("subject", ""), "subject", limits.max_prompt_chars)
    style = check.choice(header.get("style", STYLE), "style", STYLES)
    seed = check.integer(header.get("seed", 0), "seed", 0, 2**32 - 1)

    sampling: dict[str, Any] = {}
    if header.get("sampling") is not None:
        raw = check.obj(header["sampling"], "sampling",
                        {"steps", "w", "v", "k", "strength", "start", "style_weight", "content_weight"})
        if "steps" in raw:
            sampling["steps"] = check.integer(raw["steps"], "sampling.steps", *STEPS_RANGE)
        if "w" in raw:
            sampling["w"] = check.number(raw["w"], "sampling.w", *GUIDANCE_RANGE)
        if "v" in raw:
            sampling["v"] = check.number(raw["v"], "sampling.v", *V_RANGE)
        if "k" in raw:
            sampling["k"] = check.integer(raw["k"], "sampling.k", *K_RANGE)
        if "strength" in raw:
            sampling["strength"] = check.number(raw["strength"], "sampling.strength", 0.0, 1.0)
            if sampling["strength"] <= 0.0:
                raise check.fail("sampling.strength must be above 0 (1 = from pure noise)")
        if "start" in raw:
            sampling["start"] = check.choice(raw["start"], "sampling.start", START_MODES)
        for key in ("style_weight", "content_weight"):
            if key in raw:
                sampling[key] = check.number(raw[key], f"sampling.{key}", 0.0, 1.0)
        if sampling.get("style_weight", 0.0) + sampling.get("content_weight", 0.0) > 1.0:
            raise check.fail("sampling.style_weight + sampling.content_weight must be at most 1")
    count = check.integer(header.get("count", 1), "count", 1, MAX_COUNT)
    style_subject = check.string(header.get("style_subject", ""), "style_subject", limits.max_prompt_chars)

    finetune: dict[str, Any] = {}
    if header.get("finetune") is not None:
        raw = check.obj(header["finetune"], "finetune", {"method", "steps", "patch"})
        if "method" in raw:
            finetune["method"] = check.choice(raw["method"], "finetune.method", FINETUNE_METHODS)
        if raw.get("steps") is not None:
            finetune["steps"] = check.integer(raw["steps"], "finetune.steps", 1, 20000)
        if "patch" in raw:
            finetune["patch"] = check.boolean(raw["patch"], "finetune.patch")

    roles = [d["role"] for d in descriptors]
    if roles.count("image") != 1:
        raise check.fail(f"edit needs exactly one image blob, got {roles.count('image')}")
    if roles.count("mask") > 1 or roles.count("style") > 1 or "preview" in roles:
        raise check.fail("edit takes one image blob, at most one mask blob and at most one style blob")
    if "style" not in roles and "style_weight" in sampling:
        raise check.fail("sampling.style_weight needs a style blob")
    if "style" in roles:  # the engine's defaults filled in, so a job is never refused only when its turn comes
        try:
            multi_model_weights(sampling.get("v", V), sampling.get("content_weight"), sampling.get("style_weight"))
        except ValueError as exc:
            raise check.fail(f"sampling: {exc}") from None
    if count > 1 and sampling.get("start") == "inversion":
        raise check.fail("sampling.start inversion is deterministic (every seed gives the same picture):"
                         " ask for one result (count 1)")
    if admit is not None:
        admit(check.request_id or "", sum(d["width"] * d["height"] * BYTES_PER_PIXEL[d["format"]] for d in descriptors))
    image = mask = style_image = None
    for desc, payload in zip(descriptors, payloads, strict=True):
        if desc["role"] == "image":
            if desc["format"] != "rgba8":
                raise check.fail("the image blob must be rgba8")
            image = RGBAImage(desc["width"], desc["height"], _decode_blob(check, desc, payload, limits.max_input_pixels))
    assert image is not None
    if min(image.size) < OUTPUT_SIDE_RANGE[0]:  # refused now, before any fine-tune or cache write
        raise check.fail(f"the image is {image.width}x{image.height}; each side must be at least"
                         f" {OUTPUT_SIDE_RANGE[0]} pixels")
    if nothing_visible(image.data):  # e.g. a layer its mask hides: the edit would come back invisible
        raise check.fail("every pixel of the image is fully transparent (alpha 0): there is nothing to edit")
    for desc, payload in zip(descriptors, payloads, strict=True):
        if desc["role"] == "mask":
            if desc["format"] != "a8":
                raise check.fail("the mask blob must be a8")
            if (desc["width"], desc["height"]) != image.size:
                raise check.fail(
                    f"mask is {desc['width']}x{desc['height']} but the image is {image.width}x{image.height}"
                )
            mask = Mask(desc["width"], desc["height"], _decode_blob(check, desc, payload, limits.max_input_pixels))
            if mask.data.count(0) == len(mask.data):  # as both plugins refuse a selection that misses the layer
                raise check.fail("the mask selects nothing (every pixel is 0); send no mask to edit the whole picture")
        if desc["role"] == "style":
            if desc["format"] != "rgba8":
                raise check.fail("the style blob must be rgba8")
            style_image = RGBAImage(desc["width"], desc["height"],
                                    _decode_blob(check, desc, payload, limits.max_input_pixels))
            if min(style_image.size) < OUTPUT_SIDE_RANGE[0]:  # it is fine-tuned too: refuse it up front
                raise check.fail(f"the style picture is {style_image.width}x{style_image.height}; each side must"
                                 f" be at least {OUTPUT_SIDE_RANGE[0]} pixels")
            if nothing_visible(style_image.data):
                raise check.fail("every pixel of the style picture is fully transparent (alpha 0): it shows no style")

    output = image.size
    if header.get("output") is None and max(output) > OUTPUT_SIDE_RANGE[1]:  # else refused after the fine-tune
        raise check.fail(f"the image is {image.width}x{image.height}, and so would the result be without output; each"
                         f" side of a result must be {OUTPUT_SIDE_RANGE[0]}..{OUTPUT_SIDE_RANGE[1]} pixels: send an"
                         " output size within that")
    if header.get("output") is not None:
        raw = check.obj(header["output"], "output", {"width", "height"})
        for key in ("width", "height"):
            if key not in raw:
                raise check.fail(f"output lacks {key}")
        lo, hi = OUTPUT_SIDE_RANGE
        output = (check.integer(raw["width"], "output.width", lo, hi), check.integer(raw["height"], "output.height", lo, hi))
    if output[0] * output[1] > limits.max_output_pixels:
        raise check.fail(f"output {output[0]}x{output[1]} is over the limit of {limits.max_output_pixels} pixels", TOO_LARGE)
    limits.check_results_fit(check, count, output)
    return EditRequest(image, mask, prompt, subject, style, seed, sampling, finetune, output, count, style_image,
                       style_subject)


# ---------------------------------------------------------------- encoding


def image_blob(image: RGBAImage, role: str = "image", compress: bool = True) -> tuple[dict[str, Any], bytes]:
    """Descriptor and payload for an RGBA image blob."""
    payload, compression = pack(image.data, compress)
    return {"role": role, "format": "rgba8", "width": image.width, "height": image.height,
            "compression": compression}, payload


def mask_blob(mask: Mask, compress: bool = True) -> tuple[dict[str, Any], bytes]:
    """Descriptor and payload for an a8 mask blob."""
    payload, compression = pack(mask.data, compress)
    return {"role": "mask", "format": "a8", "width": mask.width, "height": mask.height,
            "compression": compression}, payload


def encode_message(header: Mapping[str, Any], blobs: list[tuple[dict[str, Any], bytes]] | None = None) -> list[bytes]:
    """Frames for one message: the JSON header (with ``blobs`` filled in) then the payloads."""
    blobs = blobs or []
    full = dict(header)
    full["blobs"] = [dict(desc) for desc, _ in blobs]
    text = json.dumps(full, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return [text.encode("utf-8")] + [bytes(payload) for _, payload in blobs]


def make_request(rtype: str, request_id: str, token: str, **fields: Any) -> dict[str, Any]:
    """A request header with the common fields set."""
    return {"v": PROTOCOL_VERSION, "type": rtype, "id": request_id, "token": token, **fields}


def make_reply(
    rtype: str, request_id: str, blobs: list[tuple[dict[str, Any], bytes]] | None = None, **fields: Any
) -> list[bytes]:
    """Frames of a daemon reply (prefix the ROUTER identity before sending; no empty delimiter)."""
    return encode_message({"v": PROTOCOL_VERSION, "type": rtype, "id": request_id, **fields}, blobs)


def make_error(
    code: str, message: str, request_id: str | None = None, job: str | None = None, retriable: bool | None = None
) -> list[bytes]:
    """Frames of an ``error`` reply. ``id`` is ``""`` when the request's id could not be read."""
    fields: dict[str, Any] = {"code": code, "message": message,
                              "retriable": code in RETRIABLE_CODES if retriable is None else retriable}
    if job is not None:
        fields["job"] = job
    return make_reply(ERROR, request_id or "", **fields)


def error_frames(exc: ProtocolError) -> list[bytes]:
    """Frames of the ``error`` reply for a rejected request."""
    return make_error(exc.code, exc.message, exc.request_id, exc.job)


def decode_reply(frames: list[bytes], limits: Limits | None = None) -> Event:
    """Parse a daemon reply into an :class:`Event` (blobs decompressed and size-checked).

    Raises :class:`ProtocolError` with code ``bad_reply`` when the reply is malformed.
    """
    limits = limits or Limits()
    if not frames:
        raise ProtocolError(BAD_REPLY, "empty reply")
    header = _load_header(frames[0], max(limits.max_header_bytes, REPLY_HEADER_BYTES), BAD_REPLY)
    check = _Checker(_request_id(header))
    if header.get("v") != PROTOCOL_VERSION or type(header.get("v")) is not int:
        raise check.fail(f"reply has protocol version {header.get('v')!r}", BAD_REPLY)
    rtype = header.get("type")
    if not isinstance(rtype, str) or not isinstance(header.get("id"), str):
        raise check.fail("reply lacks a string type or id", BAD_REPLY)
    try:
        descriptors = _parse_blob_descriptors(check, header, len(frames) - 1)
        pixel_bytes = sum(d["width"] * d["height"] * BYTES_PER_PIXEL[d["format"]] for d in descriptors)
        if pixel_bytes > limits.max_reply_bytes:  # the bound Limits.check_results_fit holds edits to
            raise check.fail(f"the reply's pictures are {pixel_bytes} bytes, over the limit of"
                             f" {limits.max_reply_bytes} bytes", BAD_REPLY)
        blobs = [
            (desc, _decode_blob(check, desc, payload, max(limits.max_output_pixels, limits.max_input_pixels)))
            for desc, payload in zip(descriptors, frames[1:], strict=True)
        ]
    except ProtocolError as exc:
        raise ProtocolError(BAD_REPLY, exc.message, exc.request_id) from None
    return Event(rtype, header, blobs)


def daemon_summary(welcome: dict[str, Any]) -> str:
    """The plugins' status line from a ``welcome`` header: version, device and, once the model is
    loaded, its kind ("daemon 0.1.0 on CPU; model SDXL, ε-prediction, 1024 px")."""
    text = f"daemon {welcome.get('daemon_version', '?')} on {welcome.get('device', '?')}"
    if welcome.get("model_kind"):
        text += f"; model {welcome['model_kind']}"
    return text


# A running job sends progress at most every 0.25 s and at each step; this long without any means one long
# step (a big layer's tiled sampling step, its decode): the plug-ins then say how long it has worked.
SLOW_STEP_S = 5.0


# ``part``/``parts``/``part_of`` (optional, on ``progress``): how far the daemon is INSIDE the current step, e.g.
# part 5 of 24 of "tile" (a tiled sampling step) or of "decode tile" (the VAE's tiles of a big picture). Sent at
# most every 0.25 s like every progress event; old daemons send none, old clients ignore the keys.
MAX_PART_OF_CHARS = 40


def within_step(header: dict[str, Any]) -> tuple[str, int, int] | None:
    """A progress header's (part_of, part, parts), or None when it has none or they make no sense."""
    part, parts, what = header.get("part"), header.get("parts"), header.get("part_of")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (part, parts)) or not 0 <= part <= parts:
        return None
    if parts < 1 or not isinstance(what, str) or not what or len(what) > MAX_PART_OF_CHARS or not what.isprintable():
        return None
    return what, part, parts


def part_text(header: dict[str, Any]) -> str:
    """What the plug-ins add to a progress line: " · tile 5/24" ("" without parts)."""
    part = within_step(header)
    return "" if part is None else f" · {part[0]} {part[1]}/{part[2]}"


def step_fraction(header: dict[str, Any]) -> float:
    """How far a progress event is through its phase, 0..1, the parts of the current step included."""
    step, total = header.get("step"), header.get("total")
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in (step, total)):
        return 0.0
    try:  # JSON integers have no bound: 10**400 is no float
        step, total = float(step), float(total)
    except OverflowError:
        return 0.0
    if not (math.isfinite(step) and math.isfinite(total)) or total <= 0:
        return 0.0
    part = within_step(header)
    inside = part[1] / part[2] if part is not None and step < total else 0.0
    return max(0.0, min(1.0, (step + inside) / total))


def still_working(text: str, seconds: float) -> str:
    """A progress line with how long the current step has run: "sampling 0/1 · working 1 min 53 s"."""
    whole = int(seconds)
    spent = f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"
    return f"{text} · working {spent}"


def with_notes(message: str, notes: list[str]) -> str:
    """A plug-in's status line with the job's notes after it: "Added layer 'X' in 3.1 s — the prompt's
    last 12 words were ignored (…)." (the message unchanged when there are none)."""
    if not notes:
        return message
    return f"{message.rstrip('.')} — {'; '.join(notes)}."


def daemon_lost_text(detail: str, next_step: str) -> str:
    """What a plug-in says when the daemon went away mid-edit (a crash, the out-of-memory killer, a stop):
    what happened, where the daemon's log says why, and the plug-in's own way to go on (``next_step``).
    ``detail`` is the client's DaemonUnavailable text: of "lost the connection to the daemon at X (why)" only the
    "why" is kept; a silence ("the daemon at X sent nothing for 30 s …") is kept whole."""
    from .paths import daemon_log

    lost, _, why = detail.partition(" (")
    if lost.lower().startswith("lost the connection") and why.endswith(")"):
        what = f"The SINE daemon stopped during the edit ({why[:-1]})"
    else:
        what = f"The SINE daemon stopped answering during the edit: {detail}"
    return (f"{what}. It may have crashed, run out of memory or been stopped, and nothing was added. Its log may "
            f"say why: {daemon_log()}. {next_step}")


# What a painter is told for each error code of a daemon's `error` reply, before the daemon's own words: what
# happened and what to do ({again}: the plug-in's way to try once more: "run the filter again", "press Edit again").
ERROR_ADVICE = {
    MODEL_MISSING: "The daemon has no usable model. Run the installer to download one, or check the model set in "
                   "its config.",
    UNAUTHORIZED: "The daemon refused the access token. Both must use the same sine-edit config folder "
                  "(SINE_CONFIG_DIR): restart the daemon, then {again}.",
    OUT_OF_MEMORY: "The daemon ran out of GPU memory. Try a smaller output size or close other GPU programs.",
    TOO_LARGE: "The image, or the results asked for, are larger than the daemon accepts. Scale it down, ask for "
               "fewer results or a smaller output, or raise the daemon's limits.",
    DAEMON_STOPPING: "The SINE daemon was stopped before the edit finished; the image is unchanged. Start it "
                     "again and {again}.",
    BUSY: "The daemon is busy with other jobs. Try again in a moment.",
    UNSUPPORTED_VERSION: "The plug-in and the daemon speak different protocol versions. Reinstall both from one "
                         "release.",
    BAD_REQUEST: "The daemon rejected the request.",
    INTERNAL: "The SINE daemon failed on this edit (a bug): its log has the details, {log}; please report them.",
}


def daemon_error_text(code: str, message: str, again: str) -> str:
    """A daemon ``error`` reply in a painter's words: the advice for its code first, then "[code] the daemon's
    words" (the code to search for or report). ``again`` is the plug-in's way to try again."""
    from .paths import daemon_log

    advice = ERROR_ADVICE.get(code, "The SINE daemon reported an error.").format(again=again, log=daemon_log())
    return f"{advice} [{code}] {message}".strip()
