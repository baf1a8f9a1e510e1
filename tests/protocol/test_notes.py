"""``notes`` on daemon events: the job's sentences for the painter (e.g. a cut prompt), optional,
bounded in count and length, tolerated when absent (old daemons) and ignored by decode_reply, which
never looked at keys it does not know (old clients)."""

from __future__ import annotations

import json

import pytest

from sine_protocol import messages as m
from sine_protocol.frames import RGBAImage
from sine_protocol.results import results_of

IMAGE = RGBAImage(4, 2, bytes(range(32)))


def _result(**fields: object) -> m.Event:
    """A result as a daemon (any daemon: JSON escapes, so a lone surrogate can reach the client) sends it."""
    desc, payload = m.image_blob(IMAGE)
    header = {"v": 1, "type": m.RESULT, "id": "r1", "job": "j1", "seed": 3, "blobs": [desc], **fields}
    return m.decode_reply([json.dumps(header).encode(), payload])


def test_notes_default_to_none_and_come_back_as_sent():
    assert _result().notes == []  # an old daemon sends no notes
    note = "the prompt's last 12 words were ignored (this model reads 75 tokens): “over the hills”"
    event = _result(notes=[note])
    assert event.notes == [note]
    progress = m.decode_reply(m.make_reply(m.PROGRESS, "r1", job="j1", phase="finetune", step=0, total=3, notes=[note]))
    assert progress.notes == [note]


@pytest.mark.parametrize("notes,expected", [
    ("one string, not a list", []),
    ({"a": 1}, []),
    (None, []),
    ([1, None, ["x"], "kept", "   ", "\ud800 lone surrogate"], ["kept"]),
    ([f"note {i}" for i in range(10)], [f"note {i}" for i in range(m.MAX_NOTES)]),
    (["line\nbreaks\tand   runs  of spaces"], ["line breaks and runs of spaces"]),
])
def test_notes_of_any_shape_are_bounded_and_never_fail_the_event(notes, expected):
    event = _result(notes=notes)
    assert event.notes == expected
    assert event.image == IMAGE and [r.seed for r in results_of(event)] == [3]  # the result itself is intact


def test_a_long_note_is_cut_to_the_limit():
    (note,) = _result(notes=["x" * 5000]).notes
    assert len(note) == m.MAX_NOTE_CHARS and note.endswith("…")


def test_decode_reply_keeps_the_event_whole_whatever_notes_hold():
    """What an older client reads of a new daemon's result: decode_reply checks no header key it does
    not know, so the image, seeds and timings are the same with notes as without."""
    plain = _result(timings={"total_s": 1.0})
    for notes in (["a note"], {"x": 1}, "x" * 100_000, [[["deep"]]]):
        event = _result(timings={"total_s": 1.0}, notes=notes)
        assert event.blobs == plain.blobs and event.header["timings"] == plain.header["timings"]
        assert {k: v for k, v in event.header.items() if k != "notes"} == plain.header
