"""CLIP tokenizer files for the shapes world: every world word is exactly one token.

The demo model's text encoder is tiny, so a word split into several sub-word pieces would waste its
capacity; with one token per word the encoder only learns word meanings and word order. The files are
the standard CLIP ones (vocab.json, merges.txt, ...) so `CLIPTokenizer.from_pretrained` loads them
like Stable Diffusion's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .world import caption_words

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MODEL_MAX_LENGTH = 32
END = "</w>"

# SINE's source-prompt words and edit words that are not part of any training caption.
EXTRA_WORDS = ("sks", "picture", "painting", "of", "photo", "make", "it", "with", "in", "style", "shape", "object")


def byte_alphabet() -> list[str]:
    """GPT-2/CLIP byte-to-unicode table: 256 printable characters standing for the 256 bytes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return [chr(c) for c in chars]


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Classic BPE on one word: repeatedly merge the adjacent pair of lowest rank."""
    parts = list(word[:-1]) + [word[-1] + END]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(parts, parts[1:], strict=False))]
        known = [(r, i) for r, i in pairs if r is not None]
        if not known:
            break
        _, i = min(known)
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2 :]
    return parts


def build_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """Merges that turn each word into one token.

    A merge appended at the end (highest rank) can never change a word that already resolves, since at
    each of that word's steps a lower-ranked pair was available; so adding the missing merge for each
    stuck word until none is stuck converges.
    """
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    todo = sorted(set(words))
    changed = True
    while changed:
        changed = False
        for word in todo:
            parts = _bpe(word, ranks)
            if len(parts) > 1:
                pair = (parts[0], parts[1])
                ranks[pair] = len(merges)
                merges.append(pair)
                changed = True
    return merges


def world_vocabulary() -> list[str]:
    return sorted(caption_words() | set(EXTRA_WORDS))


def write_tokenizer(folder: str | Path, words: Iterable[str] | None = None,
                    model_max_length: int = MODEL_MAX_LENGTH) -> Path:
    """Write the four CLIPTokenizer files into `folder` and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = list(words) if words is not None else world_vocabulary()
    alphabet = byte_alphabet()
    tokens = alphabet + [c + END for c in alphabet]
    merges = build_merges(words)
    for a, b in merges:
        tokens.append(a + b)
    tokens += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    lines = ["#version: 0.2 - shapes world"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
        "add_prefix_space": False,
        "errors": "replace",
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
