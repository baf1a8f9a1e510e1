"""The demo tokenizer: standard CLIP files in which every world word is one token."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import CLIPTokenizer

from sine.shapes.tokenizer import MODEL_MAX_LENGTH, world_vocabulary, write_tokenizer
from sine.shapes.world import random_scene


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> CLIPTokenizer:
    folder = write_tokenizer(tmp_path_factory.mktemp("tok"))
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        assert (Path(folder) / name).is_file()
    return CLIPTokenizer.from_pretrained(folder)


def test_every_world_word_is_one_token(tokenizer: CLIPTokenizer) -> None:
    words = world_vocabulary()
    assert {"picture", "painting", "of", "a", "sks", "circle", "star", "striped"} <= set(words)
    ids = {}
    for word in words:
        pieces = tokenizer(word, add_special_tokens=False).input_ids
        assert len(pieces) == 1, (word, tokenizer.convert_ids_to_tokens(pieces))
        ids[word] = pieces[0]
    assert len(set(ids.values())) == len(words)
    assert tokenizer.unk_token_id not in ids.values()


def test_captions_fit_and_pad(tokenizer: CLIPTokenizer) -> None:
    assert tokenizer.model_max_length == MODEL_MAX_LENGTH
    for seed in range(200):
        text = "picture of " + random_scene(seed).caption()
        ids = tokenizer(text).input_ids
        assert len(ids) == len(text.split()) + 2 <= MODEL_MAX_LENGTH
    batch = tokenizer(["a red circle", ""], padding="max_length", max_length=MODEL_MAX_LENGTH).input_ids
    assert batch[0][:3] == [tokenizer.bos_token_id] + [tokenizer.convert_tokens_to_ids(w + "</w>") for w in ("a", "red")]
    assert batch[1][0] == tokenizer.bos_token_id and batch[1][1] == tokenizer.eos_token_id


def test_unknown_words_do_not_crash(tokenizer: CLIPTokenizer) -> None:
    ids = tokenizer("a zebra wearing a hat!", padding="max_length", max_length=MODEL_MAX_LENGTH,
                    truncation=True).input_ids
    assert len(ids) == MODEL_MAX_LENGTH
    assert all(0 <= i < len(tokenizer) for i in ids)
