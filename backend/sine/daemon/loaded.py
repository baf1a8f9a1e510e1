"""The last few loaded fine-tunes, kept in memory under a byte budget (least recently used goes first).

A second edit of the same picture then skips the disk cache (reading, hashing and merging the
weights) and starts sampling at once. Lives on the worker thread only.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any

from sine.cache import parse_size

log = logging.getLogger("sine.daemon.loaded")

BUDGET_ENV = "SINE_LOADED_BUDGET"
DEFAULT_LOADED_BUDGET = 4 * 1000**3  # two SD1.5 fine-tuned UNets in fp16 (1.7 GB each)


def loaded_budget() -> int:
    """$SINE_LOADED_BUDGET (e.g. 2GB; 0 turns the memory cache off), else the default."""
    value = os.environ.get(BUDGET_ENV)
    return parse_size(value) if value else DEFAULT_LOADED_BUDGET


class LoadedFinetunes:
    """Cache key → loaded fine-tune (anything with `memory_bytes()`), LRU under `budget_bytes`."""

    def __init__(self, budget_bytes: int | None = None) -> None:
        self.budget_bytes = loaded_budget() if budget_bytes is None else budget_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    def get(self, key: str) -> Any | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, tuned: Any) -> None:
        """Keep `tuned`, dropping the least recently used ones to stay in budget (one too big is not kept)."""
        size = int(tuned.memory_bytes())
        self._items.pop(key, None)
        if size > self.budget_bytes:
            return
        while self._items and self.bytes + size > self.budget_bytes:
            old, _ = self._items.popitem(last=False)
            log.info("loaded fine-tunes: dropped %s (budget %d bytes)", old[:12], self.budget_bytes)
        self._items[key] = (tuned, size)

    def clear(self) -> None:
        self._items.clear()

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items
