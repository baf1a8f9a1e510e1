"""What a painter should know about a job, as short sentences ("notes").

The daemon sends them with the job's events (the plug-ins show them with the result), the log and
`sine edit` print the same sentences. The first: a prompt longer than the text encoder reads
(CLIP: 75 tokens) is cut without a word by the tokenizer, so its note names the ignored words; the
bundled demo model makes noise of a picture from outside its shapes world.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from sine_protocol.defaults import STYLE
from sine_protocol.messages import MAX_NOTE_CHARS, MAX_NOTES

from .prompts import source_prompt

__all__ = ["MAX_NOTE_CHARS", "MAX_NOTES", "cut_note", "job_notes", "picture_notes", "prompt_notes"]

SHOWN_CHARS = 80  # the ignored words quoted in a note: their start and end when longer


def cut_note(tokenizer: Any, what: str, prompt: str) -> str | None:
    """The note for ``prompt`` (``what``: "the prompt", "the subject") when the encoder cannot read it
    all, else None: how many of its last words are ignored, which, and how many tokens the model reads."""
    keep = int(tokenizer.model_max_length) - 2  # without the start and end tokens

    def length(text: str) -> int:
        return len(tokenizer(text, truncation=False).input_ids) - 2

    if length(prompt) <= keep:
        return None
    words = prompt.split()
    low, high = 0, len(words) - 1  # the first word the encoder does not read whole
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if length(" ".join(words[: mid + 1])) <= keep else (low, mid)
    dropped = " ".join(words[low:])
    if len(dropped) > SHOWN_CHARS:  # whole words from both ends; one endless "word" is cut where it must
        head, tail = dropped[: SHOWN_CHARS - 22], dropped[-20:]
        head, tail = (head.rsplit(" ", 1)[0] if " " in head else head), (tail.split(" ", 1)[-1])
        dropped = f"{head} … {tail}"
    count = len(words) - low
    ignored = "last word was" if count == 1 else f"last {count} words were"
    note = f"{what}'s {ignored} ignored (this model reads {keep} tokens): “{dropped}”"
    return note if len(note) <= MAX_NOTE_CHARS else note[: MAX_NOTE_CHARS - 2] + "…”"


def prompt_notes(tokenizer: Any, prompts: Sequence[tuple[str, str]]) -> list[str]:
    """A note for each (what, text) prompt the tokenizer cuts, in order."""
    notes = [cut_note(tokenizer, what, text) for what, text in prompts]
    return [note for note in notes if note][:MAX_NOTES]


def job_prompts(prompt: str, subject: str, style: str, style_subject: str | None = None) -> list[tuple[str, str]]:
    """A job's prompts with what the painter calls them: the edit prompt, and the prompt each picture
    is fine-tuned with ("picture of a sks <subject>"), whose end is the subject's."""
    prompts = [("the prompt", prompt), ("the subject", source_prompt(subject, style))]
    if style_subject is not None:
        prompts.append(("the style subject", source_prompt(style_subject, style)))
    return prompts


def picture_notes(base: Any, picture: Image.Image) -> list[str]:
    """What the model makes of the picture: the demo model knows only its shapes world (a photo: noise)."""
    from .models import DEMO_MODEL_NAME
    from .shapes_check import DEMO_PICTURE_NOTE, looks_like_shapes_world

    if getattr(base, "model_id", None) == DEMO_MODEL_NAME and not looks_like_shapes_world(picture):
        return [DEMO_PICTURE_NOTE]
    return []


def job_notes(base: Any, prompt: str, subject: str, style: str = STYLE, style_subject: str | None = None,
              picture: Image.Image | None = None) -> list[str]:
    """The notes of a job on ``base`` (a loaded `BaseModel`): the demo model on a picture it does not
    know, then each prompt that is cut."""
    notes = picture_notes(base, picture) if picture is not None else []
    notes += prompt_notes(base.tokenizer, job_prompts(prompt, subject, style, style_subject))
    return notes[:MAX_NOTES]
