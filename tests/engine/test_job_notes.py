"""What the engine warns a painter about, as short sentences the daemon sends with the job (and the log
and `sine edit` print): a prompt longer than the text encoder reads is cut, and its note names the
ignored words and the token limit. Tiny model loaded with `from_pretrained` (its CLIP reads 30 tokens)."""

from __future__ import annotations

import logging
from pathlib import Path

from sine.job_notes import MAX_NOTE_CHARS, job_notes, prompt_notes

ASSETS = Path(__file__).resolve().parents[2] / "backend" / "sine" / "demo_assets"


def _long(count: int, stem: str = "w") -> str:
    return " ".join(f"{stem}{i}" for i in range(count))  # each word is several tokens


def test_a_cut_prompt_gets_a_note_naming_the_ignored_words_and_the_limit(base):
    reads = base.tokenizer.model_max_length - 2
    assert job_notes(base, "a red hat", "hat") == []  # a prompt that fits says nothing
    notes = job_notes(base, _long(100), "hat")
    assert len(notes) == 1, notes
    note = notes[0]
    assert note.startswith("the prompt's last ") and f"this model reads {reads} tokens" in note, note
    assert "w99" in note and "w0 " not in note  # the end of the prompt is what is dropped
    dropped = int(note.split("last ")[1].split(" ")[0])
    kept = " ".join(_long(100).split()[: 100 - dropped])
    assert len(base.tokenizer(kept).input_ids) - 2 <= reads < len(base.tokenizer(_long(101 - dropped)).input_ids) - 2
    assert len(note) <= MAX_NOTE_CHARS


def test_a_long_subject_is_named_as_the_subject_and_every_note_stays_short(base):
    notes = job_notes(base, "x" * 4000, _long(60, "subj"), style_subject=_long(60, "sty"))
    assert [n.split("'s last")[0] for n in notes] == ["the prompt", "the subject", "the style subject"]
    assert all(len(n) <= MAX_NOTE_CHARS for n in notes), [len(n) for n in notes]
    assert "subj59" in notes[1] and "sty59" in notes[2]


def test_the_log_says_the_same_sentence_once_per_prompt(base, caplog):
    prompt = _long(80, "logged")
    with caplog.at_level(logging.WARNING, logger="sine.models"):
        base.warn_cut([("the prompt", prompt)])
        base.encode_prompts(["", prompt])
    said = [r.getMessage() for r in caplog.records if "logged79" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(prompt_notes(base.tokenizer, [("the prompt", prompt)])[0]), said


def test_the_demo_model_notes_a_picture_from_outside_its_shapes_world(base):
    """The bundled demo model turns a photo into noise: a job on one says so (as `sine edit` does);
    on one of its own shapes pictures, or with another model, nothing is said."""
    from PIL import Image

    from sine.models import load_base_model
    from sine.shapes_check import DEMO_MODEL_NOTE, DEMO_PICTURE_NOTE
    from sine.synthetic import photo_like

    demo = load_base_model(None, device="cpu")
    photo = photo_like(96, 64, seed=3)
    with Image.open(ASSETS / "dotted_star.png") as shapes:
        shapes.load()
    assert job_notes(demo, "a red hat", "hat", picture=photo) == [DEMO_PICTURE_NOTE]
    assert job_notes(demo, "a red hat", "hat", picture=shapes) == []
    assert job_notes(base, "a red hat", "hat", picture=photo) == []  # another model knows photos
    assert len(DEMO_PICTURE_NOTE) <= MAX_NOTE_CHARS and DEMO_PICTURE_NOTE in DEMO_MODEL_NOTE  # one sentence
    long = job_notes(demo, _long(40), "hat", picture=photo)
    assert long[0] == DEMO_PICTURE_NOTE and long[1].startswith("the prompt's last")
