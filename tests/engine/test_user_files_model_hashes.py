"""Loading a model remembers the hashes of its big files (model_hashes.json) in the weight-cache folder. That
folder may be one the user named (SINE_CACHE_DIR): the memo must never land in a folder of the user's files, and
a memo written before the daemon first opened its cache must not make the daemon refuse the folder as not its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sine.cache import WeightCache
from sine.models import load_base_model
from tests.installer.conftest import snapshot

BIG = 17 << 20  # hashes of files of 16 MiB and more are remembered


@pytest.fixture
def big_model(tiny_folder: Path, tmp_path: Path) -> Path:
    """The tiny model with one file big enough for its hash to be remembered (diffusers ignores it)."""
    folder = Path(shutil.copytree(tiny_folder, tmp_path / "big-model"))
    with open(folder / "padding.bin", "wb") as handle:
        handle.truncate(BIG)
    return folder


def test_a_model_load_keeps_out_of_a_folder_of_the_users(big_model: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "documents"
    mine.mkdir()
    (mine / "model_hashes.json").write_text("my own notes on model hashes\n")
    (mine / "letter.txt").write_text("dear\n")
    before = snapshot(mine)
    monkeypatch.setenv("SINE_CACHE_DIR", str(mine))
    load_base_model(big_model, device="cpu")
    assert snapshot(mine) == before


def test_the_daemons_cache_opens_after_a_model_was_loaded_first(big_model: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`sine edit` (no cache of its own) before the first daemon start: its memo made the new cache folder
    non-empty and unmarked, and the daemon then refused it as a folder of the user's."""
    fresh = tmp_path / "home" / ".cache" / "sine-edit"
    monkeypatch.setenv("SINE_CACHE_DIR", str(fresh))
    first = load_base_model(big_model, device="cpu")
    WeightCache(fresh)  # what the daemon opens at start
    assert load_base_model(big_model, device="cpu").revision == first.revision


def test_a_cache_folder_holding_an_older_versions_hash_memo_is_still_the_caches(tmp_path: Path) -> None:
    """Older versions wrote the memo into a cache folder not yet marked: the daemon refused that folder."""
    folder = tmp_path / "sine-edit"
    folder.mkdir()
    (folder / "model_hashes.json").write_text('{"/m/unet.safetensors|17825792|1": "ab"}')
    WeightCache(folder)
    assert (folder / ".sine-cache").is_file() and (folder / "model_hashes.json").is_file()
