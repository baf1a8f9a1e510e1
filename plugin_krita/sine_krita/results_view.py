"""The docker's results area: the last press's results as thumbnails with Apply / Discard each,
and a short history of the session's results for the active document, each of which can be
applied again (Apply again, or a double-click).

Widgets only: what Apply and Discard do is the panel's (it owns the document); the state of each
result lives in ``sine_protocol.results`` (ResultChoices, ResultHistory).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import qt_compat as qt

THUMB_SIDE = 80  # one row of cards, scrolled sideways: the docker grows by one row whatever the count
HISTORY_ICON = 32
HISTORY_ROWS = 4  # visible rows before the list scrolls


def pixmap_of(image: Any, side: int) -> Any:
    """A QPixmap of an RGBAImage scaled to fit ``side``."""
    qimage = qt.qimage_from_rgba(image.data, image.width, image.height)
    return qt.QPixmap.fromImage(qimage).scaled(side, side, qt.KEEP_ASPECT, qt.SMOOTH)


class ResultCard(qt.QWidget):
    """One result: its thumbnail (click to preview), its seed, Apply and Discard."""

    def __init__(self, index: int, seed: int, thumbnail: Any, parent: Any = None) -> None:
        super().__init__(parent)
        self.index = index
        box = qt.QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(2)
        self.thumb = qt.QToolButton(self)
        self.thumb.setIcon(qt.QIcon(pixmap_of(thumbnail, THUMB_SIDE)))
        self.thumb.setIconSize(qt.QSize(THUMB_SIDE, THUMB_SIDE))
        self.thumb.setToolTip(f"result {index + 1}, seed {seed}: click to see it larger")
        self.thumb.setText(f"seed {seed}")
        self.thumb.setToolButtonStyle(qt.TOOL_BUTTON_TEXT_UNDER_ICON)
        box.addWidget(self.thumb, 0, qt.ALIGN_CENTER)
        row = qt.QHBoxLayout()
        row.setSpacing(2)
        self.apply_button = qt.QToolButton(self)
        self.apply_button.setText("Apply")
        self.apply_button.setToolTip("add this result as a new layer above the source")
        self.discard_button = qt.QToolButton(self)
        self.discard_button.setText("Discard")
        self.discard_button.setToolTip("forget this result; the document is not touched")
        row.addWidget(self.apply_button)
        row.addWidget(self.discard_button)
        box.addLayout(row)

    def mark_applied(self) -> None:
        self.apply_button.setText("Applied")
        self.apply_button.setEnabled(False)
        self.discard_button.setVisible(False)


class ResultsView(qt.QWidget):
    """Result cards in a grid, plus a collapsible history list."""

    def __init__(
        self,
        on_apply: Callable[[int], None],
        on_discard: Callable[[int], None],
        on_show: Callable[[int], None],
        on_reapply: Callable[[int], None],
        parent: Any = None,
    ) -> None:
        super().__init__(parent)
        self._on_apply, self._on_discard, self._on_show = on_apply, on_discard, on_show
        self._on_reapply = on_reapply
        self._reapplicable: list[bool] = []
        self.cards: list[ResultCard] = []
        root = qt.QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        self.title = qt.QLabel("", self)
        root.addWidget(self.title)
        self._strip = qt.QScrollArea(self)
        self._strip.setWidgetResizable(True)
        self._strip.setVerticalScrollBarPolicy(qt.SCROLLBAR_OFF)
        self._strip.setHorizontalScrollBarPolicy(qt.SCROLLBAR_AS_NEEDED)
        self._grid_host = qt.QWidget(self._strip)
        self._grid = qt.QGridLayout(self._grid_host)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(4)
        self._strip.setWidget(self._grid_host)
        root.addWidget(self._strip)
        self.history_toggle = qt.QToolButton(self)
        self.history_toggle.setText("History")
        self.history_toggle.setCheckable(True)
        root.addWidget(self.history_toggle)
        self.history_list = qt.QListWidget(self)
        self.history_list.setIconSize(qt.QSize(HISTORY_ICON, HISTORY_ICON))
        self.history_list.setMaximumHeight(HISTORY_ROWS * (HISTORY_ICON + 6) + 6)
        self.history_list.setWordWrap(True)  # the state ends the label: wrap it in a narrow docker, never cut it
        self.history_list.setHorizontalScrollBarPolicy(qt.SCROLLBAR_OFF)
        self.history_list.itemDoubleClicked.connect(lambda item: self._on_reapply(self.history_list.row(item)))
        self.history_list.currentRowChanged.connect(self._history_row_changed)
        self.history_apply_button = qt.QPushButton("Apply again", self)
        self.history_apply_button.setToolTip("add the chosen result as a new layer above its source layer")
        self.history_apply_button.setEnabled(False)
        self.history_apply_button.clicked.connect(lambda _=False: self._on_reapply(self.history_list.currentRow()))
        self.history_list.setVisible(False)
        self.history_apply_button.setVisible(False)
        self.history_toggle.toggled.connect(self.history_list.setVisible)
        self.history_toggle.toggled.connect(self.history_apply_button.setVisible)
        root.addWidget(self.history_list)
        root.addWidget(self.history_apply_button)
        self.title.setVisible(False)
        self._strip.setVisible(False)
        self.history_toggle.setVisible(False)

    def show_choices(self, choices: Any) -> None:
        """One card per result still pending or applied (None: no cards)."""
        for card in self.cards:
            self._grid.removeWidget(card)
            card.setParent(None)
            card.deleteLater()
        self.cards = []
        if choices is None:
            self.title.setVisible(False)
            self._strip.setVisible(False)
            return
        for position, choice in enumerate(choices.choices):
            card = ResultCard(choice.index, choice.seed, choice.thumbnail, self._grid_host)
            index = position
            card.apply_button.clicked.connect(lambda _=False, i=index: self._on_apply(i))
            card.discard_button.clicked.connect(lambda _=False, i=index: self._on_discard(i))
            card.thumb.clicked.connect(lambda _=False, i=index: self._on_show(i))
            self._grid.addWidget(card, 0, position)
            self.cards.append(card)
        card_height = self.cards[0].sizeHint().height() if self.cards else 0
        self._strip.setFixedHeight(card_height + self._strip.horizontalScrollBar().sizeHint().height() + 6)
        self.update_states(choices)

    def update_states(self, choices: Any) -> None:
        """Applied cards say so; discarded ones disappear."""
        waiting = 0
        for card, choice in zip(self.cards, choices.choices, strict=True):
            if choice.state == "applied":
                card.mark_applied()
            elif choice.state == "discarded":
                card.setVisible(False)
            else:
                waiting += 1
        shown = any(not card.isHidden() for card in self.cards)
        self.title.setText(f"Results: {waiting} waiting, Apply the ones to keep" if waiting else "Results")
        self.title.setVisible(shown)
        self._strip.setVisible(shown)

    def show_history(self, entries: list[Any]) -> None:
        """The active document's history (newest first)."""
        row = self.history_list.currentRow()
        self.history_list.clear()
        self._reapplicable = [entry.can_reapply for entry in entries]
        for entry in entries:
            label = entry.label() if entry.can_reapply else f"{entry.label()} (no longer kept)"
            item = qt.QListWidgetItem(label)
            item.setToolTip(f"{label}\ndouble-click (or Apply again) to add it as a layer again")
            if entry.thumbnail is not None:
                item.setIcon(qt.QIcon(pixmap_of(entry.thumbnail, HISTORY_ICON)))
            self.history_list.addItem(item)
        if 0 <= row < len(entries):
            self.history_list.setCurrentRow(row)
        self._history_row_changed(self.history_list.currentRow())
        self.history_toggle.setText(f"History ({len(entries)})")
        self.history_toggle.setVisible(bool(entries))
        if not entries:
            self.history_toggle.setChecked(False)
            self.history_list.setVisible(False)
            self.history_apply_button.setVisible(False)

    def _history_row_changed(self, row: int) -> None:
        self.history_apply_button.setEnabled(0 <= row < len(self._reapplicable) and self._reapplicable[row])
