"""Randomly damaged requests: parse_request must answer ProtocolError or a Request, nothing else."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import malformed_corpus as corpus  # noqa: E402

from sine_protocol import messages as m  # noqa: E402
from sine_protocol.errors import ERROR_CODES, ProtocolError  # noqa: E402
from sine_protocol.frames import Mask, RGBAImage  # noqa: E402

TOKEN = "z" * 64
ODD_VALUES: list[Any] = [None, True, False, 0, -1, 1, 2**31, 2**64, 10**30, 1e308, -0.0, 0.5, "", "x" * 5000,
                         "\ud800", [], [1], {}, {"a": 1}, "rgba8", "zlib", "image", "mask", 8, 16384]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            out += _paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            out += _paths(inner, prefix + (index,))
    return out


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


def _mutate(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    frames = list(frames)
    kind = rng.randrange(5)
    if kind == 0:  # type confusion / odd value anywhere in the header
        header = json.loads(frames[0])
        path = rng.choice(_paths(header)[1:])
        header = _replace(header, path, rng.choice(ODD_VALUES))
        frames[0] = json.dumps(header).encode("utf-8", "surrogatepass")
    elif kind == 1:  # delete a key somewhere
        header = json.loads(frames[0])
        path = rng.choice([p for p in _paths(header)[1:] if p])
        parent = header
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict):
            del parent[path[-1]]
        frames[0] = json.dumps(header).encode()
    elif kind == 2:  # flip bytes of the header
        raw = bytearray(frames[0])
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        frames[0] = bytes(raw)
    elif kind == 3 and len(frames) > 1:  # damage a blob
        index = rng.randrange(1, len(frames))
        blob = frames[index]
        frames[index] = rng.choice([blob[:-1], blob + b"\0", blob[: len(blob) // 2], b"", bytes(reversed(blob))])
    else:  # drop or duplicate a frame
        index = rng.randrange(len(frames))
        frames = frames[:index] + frames[index + 1 :] if rng.random() < 0.5 else frames + [frames[index]]
        frames = frames or [b""]
    return frames


def test_random_damage_never_escapes_as_another_exception() -> None:
    rng = random.Random(20261125)
    with_mask = m.encode_message(
        m.make_request("edit", "f1", TOKEN, prompt="p", output={"width": 8, "height": 8}),
        [m.image_blob(RGBAImage(6, 5, bytes(range(120)))), m.mask_blob(Mask(6, 5, bytes(30)), compress=True)],
    )
    base = [corpus.valid_edit(TOKEN), with_mask, m.encode_message(m.make_request("cancel", "c", TOKEN, job="j"))]
    outcomes = {"ok": 0, "error": 0}
    for _ in range(3000):
        frames = _mutate(rng, rng.choice(base))
        try:
            request = m.parse_request(frames, TOKEN)
        except ProtocolError as exc:
            assert exc.code in ERROR_CODES and exc.message
            outcomes["error"] += 1
        else:
            assert request.type in m.REQUEST_TYPES
            outcomes["ok"] += 1
    assert outcomes["error"] > 1000  # the mutations really did break things
