"""Several results of one edit, as the plug-ins handle them.

One ``edit`` with ``count`` > 1 answers with one ``result`` event carrying one ``image`` blob per
seed (the header's ``results`` list says which index has which seed). The plug-ins turn that into
:class:`EditResult` objects; the Krita docker keeps them as :class:`ResultChoices` until the painter
applies or discards each one, and a short :class:`ResultHistory` per document of what the session
produced, whose newest entries keep their pixels (within a byte budget) so they can be applied
again. Host-independent (no Qt, no Krita, no GIMP), so both plug-ins and the tests share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .frames import RGBAImage, make_preview
from .messages import Event

PENDING, APPLIED, DISCARDED = "pending", "applied", "discarded"
HISTORY_LIMIT = 12  # results kept per document in a session's history
HISTORY_DOCUMENTS = 16  # documents whose history is kept (the least recently used one is forgotten)
HISTORY_BYTES = 256 * 2**20  # pixels kept to apply again, all documents together (older: thumbnail only)
THUMBNAIL_SIDE = 96


@dataclass(frozen=True)
class EditResult:
    """One picture of a ``result`` event: its position in the request and the seed that made it."""

    index: int
    seed: int
    image: RGBAImage


def results_of(event: Event) -> list[EditResult]:
    """Every image of a ``result`` event in order, each with its seed.

    Seeds come from the header's ``results`` list (``{"index", "seed"}`` per image); a daemon that
    sends none (a single result) gives ``seed`` for the first and ``seed + i`` for the others, the
    rule the daemon uses for the seeds of several results.
    """
    images = [
        RGBAImage(desc["width"], desc["height"], data)
        for desc, data in event.blobs
        if desc.get("role") == "image" and desc.get("format") == "rgba8"
    ]
    listed = event.header.get("results")
    seeds: dict[int, int] = {}
    if isinstance(listed, list):
        for entry in listed:
            if isinstance(entry, dict) and type(entry.get("index")) is int and type(entry.get("seed")) is int:
                seeds[entry["index"]] = entry["seed"]
    first = event.header.get("seed", 0)
    first = first if type(first) is int else 0
    return [EditResult(i, seeds.get(i, (first + i) % 2**32), image) for i, image in enumerate(images)]


@dataclass
class Choice:
    """One result waiting for the painter. ``image`` is dropped once it is applied or discarded;
    ``placed`` is what applying made (a layer)."""

    index: int
    seed: int
    image: RGBAImage | None
    thumbnail: RGBAImage | None = None
    state: str = PENDING
    placed: Any = None


class ResultChoices:
    """The results of one press of Edit, each applied or discarded on its own.

    ``context`` is whatever the host needs to place a result (document, source, settings). Applying
    calls the host's ``place`` with the result and keeps what it returns; discarding only forgets the
    pixels here, so nothing of a discarded result is left in the document (the session's
    :class:`ResultHistory` may keep them, within its budget, to apply later).
    """

    def __init__(self, results: list[EditResult], context: Any = None, thumbnail_side: int = THUMBNAIL_SIDE) -> None:
        if not results:
            raise ValueError("the daemon sent no result image")
        self.context = context
        self.choices = [Choice(r.index, r.seed, r.image, make_preview(r.image, thumbnail_side)) for r in results]

    def __len__(self) -> int:
        return len(self.choices)

    def pending(self) -> list[int]:
        """Indexes of the results still waiting for Apply or Discard."""
        return [i for i, c in enumerate(self.choices) if c.state == PENDING]

    def apply(self, index: int, place: Callable[[EditResult], Any]) -> Any:
        """Place result ``index`` with the host's ``place``; its pixels are dropped once placed."""
        choice = self._waiting(index)
        assert choice.image is not None
        choice.placed = place(EditResult(choice.index, choice.seed, choice.image))  # raises: stays pending
        choice.state, choice.image = APPLIED, None
        return choice.placed

    def discard(self, index: int) -> None:
        """Forget result ``index`` (its thumbnail stays for the history)."""
        choice = self._waiting(index)
        choice.state, choice.image = DISCARDED, None

    def discard_pending(self) -> None:
        """Discard every result still waiting (a new edit replaces them)."""
        for index in self.pending():
            self.discard(index)

    def _waiting(self, index: int) -> Choice:
        if not 0 <= index < len(self.choices):
            raise IndexError(f"there is no result {index + 1}")
        choice = self.choices[index]
        if choice.state != PENDING:
            raise ValueError(f"result {index + 1} was already {choice.state}")
        return choice


@dataclass
class HistoryEntry:
    """One result of the session: what was asked, its seed, what became of it, a thumbnail."""

    prompt: str
    seed: int
    strength: float | None
    state: str
    thumbnail: RGBAImage | None = None
    choice: Choice | None = field(default=None, repr=False)
    image: RGBAImage | None = field(default=None, repr=False)  # kept to apply again, until the budget drops it
    context: Any = field(default=None, repr=False)  # the press's context (how the host places it)
    press: int = 0  # which add() made it (its entries share one context)
    context_bytes: int = 0  # what the context holds, as the host counts it
    applied_again: int = 0  # times the host placed it again from the history

    @property
    def can_reapply(self) -> bool:
        """Whether the pixels are still kept (else only the thumbnail and the label are)."""
        return self.image is not None

    def drop_pixels(self) -> None:
        self.image = self.context = None

    def label(self) -> str:
        strength = "" if self.strength is None else f", strength {self.strength:.2f}"
        again = ", applied again" if self.applied_again else ""
        return f"{self.prompt} (seed {self.seed}{strength}): {self.state}{again}"

    def refresh(self) -> None:
        """Follow the state of the choice this entry was made from."""
        if self.choice is not None:
            self.state = self.choice.state


class ResultHistory:
    """Per document, the newest ``limit`` results of this session (newest first), for at most
    ``documents`` documents.

    Each entry keeps its result's pixels and its press's context so it can be applied again; all
    documents together keep at most ``max_bytes`` of them, newest presses first (the newest press
    always), older entries keep only their thumbnail. Documents are told apart with ``==`` (Krita's
    Python wrappers of one document compare equal but are new objects on every call), so any
    object with a sensible ``==`` works as the key.
    """

    def __init__(self, limit: int = HISTORY_LIMIT, max_bytes: int = HISTORY_BYTES,
                 documents: int = HISTORY_DOCUMENTS) -> None:  # fmt: skip
        self.limit = limit
        self.max_bytes = max_bytes
        self.documents = documents
        self._docs: list[tuple[Any, list[HistoryEntry]]] = []
        self._presses = 0

    def add(self, doc: Any, choices: ResultChoices, prompt: str, strength: float | None = None,
            context_bytes: int = 0) -> None:  # fmt: skip
        """Record every result of one press for ``doc`` (``context_bytes``: what its context holds)."""
        entries = self._entries_of(doc, create=True)
        self._docs.sort(key=lambda pair: pair[1] is entries)  # the most recently used document last
        del self._docs[: -self.documents]
        self._presses += 1
        for choice in reversed(choices.choices):
            entries.insert(0, HistoryEntry(prompt, choice.seed, strength, choice.state, choice.thumbnail, choice,
                                           choice.image, choices.context, self._presses, context_bytes))  # fmt: skip
        del entries[self.limit :]
        self._trim()

    def kept_bytes(self) -> int:
        """Pixels and contexts the history holds now, as ``max_bytes`` counts them."""
        total, seen = 0, set()
        for entry in self._kept():
            total += _cost(entry, seen)
            seen.add(entry.press)
        return total

    def _kept(self) -> list[HistoryEntry]:
        """Every entry still holding pixels, newest press first."""
        return sorted((e for _, entries in self._docs for e in entries if e.can_reapply), key=lambda e: -e.press)

    def _trim(self) -> None:
        """Drop the pixels of the oldest entries beyond ``max_bytes`` (never the newest press's)."""
        total, seen = 0, set()
        for entry in self._kept():
            cost = _cost(entry, seen)
            if entry.press != self._presses and total + cost > self.max_bytes:
                entry.drop_pixels()
                continue
            total += cost
            seen.add(entry.press)

    def entries(self, doc: Any) -> list[HistoryEntry]:
        """The document's history, newest first, states brought up to date."""
        entries = self._entries_of(doc, create=False)
        for entry in entries:
            entry.refresh()
        return list(entries)

    def forget(self, doc: Any) -> None:
        """Drop a document's history (its document was closed)."""
        self._docs = [(d, e) for d, e in self._docs if not _same(d, doc)]

    def _entries_of(self, doc: Any, create: bool) -> list[HistoryEntry]:
        for known, entries in self._docs:
            if _same(known, doc):
                return entries
        entries: list[HistoryEntry] = []
        if create:
            self._docs.append((doc, entries))
        return entries


def _cost(entry: HistoryEntry, seen: set[int]) -> int:
    """An entry's pixels, plus its press's context unless another entry of the press was counted."""
    assert entry.image is not None
    return len(entry.image.data) + (0 if entry.press in seen else entry.context_bytes)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # a wrapper of a closed document may refuse to compare
        return a is b
