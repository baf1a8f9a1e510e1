"""SINE's prompts: the fine-tuned model learns the source image as "a sks <subject>"."""

from __future__ import annotations

from sine_protocol.defaults import STYLE, STYLES


def source_prompt(subject: str, style: str = STYLE) -> str:
    """`picture of a sks dog` for photos, `painting of a sks dog` for paintings (the paper's wording)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, not {style!r}")
    noun = "picture" if style == "photo" else "painting"
    subject = " ".join(subject.split())
    return f"{noun} of a sks {subject}".rstrip()
