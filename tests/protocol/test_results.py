"""sine_protocol.results: reading several results from one event, choosing among them, the history."""

from __future__ import annotations

import pytest

from sine_protocol.frames import RGBAImage
from sine_protocol.messages import decode_reply, image_blob, make_reply
from sine_protocol.results import APPLIED, DISCARDED, PENDING, ResultChoices, ResultHistory, results_of


def _image(value: int, w: int = 4, h: int = 2) -> RGBAImage:
    return RGBAImage(w, h, bytes([value, 0, 0, 255]) * (w * h))


def _event(images: list[RGBAImage], **header):
    return decode_reply(make_reply("result", "r1", [image_blob(i) for i in images], **header))


def test_results_keep_order_and_take_seeds_from_the_header():
    event = _event([_image(10), _image(20), _image(30)], seed=5,
                   results=[{"index": 0, "seed": 5}, {"index": 1, "seed": 77}, {"index": 2, "seed": 8}])
    got = results_of(event)
    assert [(r.index, r.seed, r.image.data[0]) for r in got] == [(0, 5, 10), (1, 77, 20), (2, 8, 30)]


def test_without_a_results_list_seeds_count_up_from_the_seed():
    assert [r.seed for r in results_of(_event([_image(1), _image(2)], seed=2**32 - 1))] == [2**32 - 1, 0]
    single = results_of(_event([_image(1)], seed=3))
    assert len(single) == 1 and single[0].seed == 3


def test_preview_blobs_are_not_results():
    frames = make_reply("result", "r", [image_blob(_image(1)), image_blob(_image(2), role="preview")], seed=0)
    assert len(results_of(decode_reply(frames))) == 1


def test_apply_places_once_and_drops_the_pixels():
    choices = ResultChoices(results_of(_event([_image(1), _image(2)], seed=0)))
    placed = []
    layer = choices.apply(1, lambda r: placed.append((r.seed, r.image.data[0])) or "layer")
    assert layer == "layer" and placed == [(1, 2)]
    assert choices.choices[1].state == APPLIED and choices.choices[1].image is None
    assert choices.choices[1].thumbnail is not None
    with pytest.raises(ValueError, match="already applied"):
        choices.apply(1, lambda r: "again")
    assert choices.pending() == [0]


def test_a_failed_placement_leaves_the_result_waiting():
    choices = ResultChoices(results_of(_event([_image(1)], seed=0)))

    def broken(result):
        raise RuntimeError("no document")

    with pytest.raises(RuntimeError):
        choices.apply(0, broken)
    assert choices.choices[0].state == PENDING and choices.choices[0].image is not None


def test_discard_forgets_and_cannot_be_applied():
    choices = ResultChoices(results_of(_event([_image(1), _image(2), _image(3)], seed=0)))
    choices.discard(0)
    choices.discard_pending()
    assert [c.state for c in choices.choices] == [DISCARDED] * 3
    assert all(c.image is None for c in choices.choices)
    with pytest.raises(ValueError):
        choices.apply(2, lambda r: "x")
    with pytest.raises(IndexError):
        choices.discard(3)


def test_history_is_per_document_newest_first_and_short():
    history = ResultHistory(limit=3)
    a, b = object(), object()
    first = ResultChoices(results_of(_event([_image(1), _image(2)], seed=10)))
    history.add(a, first, "one", 0.5)
    history.add(b, ResultChoices(results_of(_event([_image(3)], seed=1))), "other")
    history.add(a, ResultChoices(results_of(_event([_image(4), _image(5)], seed=20))), "two", 1.0)
    entries = history.entries(a)
    assert [(e.prompt, e.seed) for e in entries] == [("two", 20), ("two", 21), ("one", 10)]
    first.apply(0, lambda r: "layer")
    assert history.entries(a)[2].label() == "one (seed 10, strength 0.50): applied"
    assert [e.label() for e in history.entries(b)] == ["other (seed 1): pending"]
    history.forget(a)
    assert history.entries(a) == []


def test_history_keeps_the_pixels_of_applied_and_discarded_results_for_a_second_apply():
    history = ResultHistory()
    doc = object()
    choices = ResultChoices(results_of(_event([_image(1), _image(2)], seed=4)), context="press")
    history.add(doc, choices, "again")
    choices.apply(0, lambda r: "layer")
    choices.discard(1)
    assert all(c.image is None for c in choices.choices)  # the press itself keeps nothing
    entries = history.entries(doc)
    assert [e.image.data for e in entries] == [_image(1).data, _image(2).data]
    assert [e.context for e in entries] == ["press", "press"] and all(e.can_reapply for e in entries)


def test_history_pixels_are_capped_in_bytes_across_documents_oldest_first():
    one = len(_image(1).data)  # 32 bytes an image
    history = ResultHistory(limit=10, max_bytes=3 * one + 100)
    a, b = object(), object()
    history.add(a, ResultChoices(results_of(_event([_image(1), _image(2)], seed=0)), context="a1"), "a1",
                context_bytes=50)  # fmt: skip
    history.add(b, ResultChoices(results_of(_event([_image(3)], seed=0)), context="b1"), "b1", context_bytes=50)
    # 2 + 1 images and two contexts: 196 bytes, within 196 allowed
    assert all(e.can_reapply for e in history.entries(a) + history.entries(b))
    history.add(a, ResultChoices(results_of(_event([_image(4)], seed=9)), context="a2"), "a2", context_bytes=50)
    kept = {e.prompt + str(e.seed): e.can_reapply for e in history.entries(a) + history.entries(b)}
    assert kept == {"a29": True, "b10": True, "a10": False, "a11": False}  # the oldest press lost its pixels
    old = history.entries(a)[1]
    assert old.image is None and old.context is None and old.thumbnail is not None  # still listed
    assert history.kept_bytes() <= 3 * one + 100


def test_the_newest_press_keeps_its_pixels_even_over_the_budget():
    history = ResultHistory(max_bytes=10)
    doc = object()
    history.add(doc, ResultChoices(results_of(_event([_image(1)], seed=0))), "big")
    assert history.entries(doc)[0].can_reapply
    history.add(doc, ResultChoices(results_of(_event([_image(2)], seed=1))), "bigger")
    assert [e.can_reapply for e in history.entries(doc)] == [True, False]


def test_history_keeps_a_bounded_number_of_documents():
    history = ResultHistory(documents=2)
    a, b, c = object(), object(), object()
    for doc in (a, b, a, c):  # a was used after b: b is the one forgotten
        history.add(doc, ResultChoices(results_of(_event([_image(1)], seed=0))), "x")
    assert history.entries(b) == [] and len(history.entries(a)) == 2 and len(history.entries(c)) == 1
