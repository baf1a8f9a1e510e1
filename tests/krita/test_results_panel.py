"""Several results per press in the docker (fake Krita, real ZeroMQ stand-in daemon): thumbnails,
Apply / Discard each, the per-document history, and the style layer and strength in the request."""

from __future__ import annotations

import time

import pytest
from krita import Krita
from krita_helpers import make_document, rgba_pattern, to_bgra
from krita_standin import fake_results, wait_for
from sine_krita.panel import SinePanel

from sine_protocol.frames import RGBAImage

W, H = 16, 12


@pytest.fixture
def panel(qapp, standin, process_events):
    doc, _ = make_document(W, H, layers=2)
    Krita.instance().setActiveDocument(doc)
    p = SinePanel(Krita.instance().activeDocument)
    assert wait_for(lambda: p.connected, 10, process_events), p.connection_label.text()
    yield p
    p.shutdown()
    p.deleteLater()


def _edit(panel, process_events, **settings):
    panel.apply_settings(settings)
    panel.edit_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events), panel.progress_text
    assert panel.state == "done", panel.last_error


def _expected(count: int) -> list[bytes]:
    return [r.data for r in fake_results(RGBAImage(W, H, rgba_pattern(W, H)), None, (W, H), count)]


def test_an_animated_layer_says_which_frame_was_edited(panel, process_events):
    """Krita reads an animated layer at the current frame; the result is a plain layer, shown on every
    frame (it covered frame 0 with an edit of frame 5 without a word): the status line says so."""
    doc = Krita.instance().activeDocument()
    doc.activeNode().is_animated, doc.time = True, 5
    _edit(panel, process_events, prompt="frame", seed=1)
    text = panel.message_label.text()
    assert "frame 5 of the animated layer 'layer 0'" in text and "shows on every frame" in text, text
    doc.activeNode().is_animated = False
    _edit(panel, process_events, prompt="still", seed=1)
    assert "frame" not in panel.message_label.text()


def test_three_results_wait_as_thumbnails_and_touch_nothing(panel, standin, process_events):
    doc = Krita.instance().activeDocument()
    _edit(panel, process_events, prompt="recolour", seed=4, count=3)
    assert [r for r in standin.requests if r.type == "edit"][-1].header["count"] == 3
    assert doc.history == [] and len(doc.topLevelNodes()) == 2  # nothing placed before the painter chooses
    cards = panel.results_view.cards
    assert len(cards) == 3 and all(card.isVisibleTo(panel) for card in cards)
    assert [card.thumb.text() for card in cards] == ["seed 4", "seed 5", "seed 6"]
    assert all(not card.thumb.icon().isNull() for card in cards)
    assert "3 results" in panel.message_label.text()
    assert not panel.preview_label.isVisibleTo(panel)  # the thumbnails take its place...
    cards[2].thumb.click()
    assert panel.preview_label.isVisibleTo(panel)  # ...until one is clicked to be seen larger
    assert panel.preview_label.pixmap().toImage().pixelColor(0, 0).red() == _expected(3)[2][0]


def test_apply_one_of_three_makes_its_layer_and_discard_leaves_nothing(panel, process_events):
    doc = Krita.instance().activeDocument()
    _edit(panel, process_events, prompt="recolour", seed=4, count=3)
    cards = panel.results_view.cards
    cards[1].apply_button.click()
    names = [n.name() for n in doc.topLevelNodes()]
    assert names == ["layer 0", "SINE: recolour (seed 5)", "layer 1"]
    assert doc.topLevelNodes()[1].pixelData(0, 0, W, H) == to_bgra(_expected(3)[1])
    assert doc.history == [("add", "SINE: recolour (seed 5)")]  # one undoable step, like a single result
    assert not cards[1].apply_button.isEnabled() and cards[1].apply_button.text() == "Applied"

    cards[0].discard_button.click()
    cards[2].discard_button.click()
    assert doc.history == [("add", "SINE: recolour (seed 5)")]  # discarding added nothing
    assert [n.name() for n in doc.topLevelNodes()] == names
    assert not cards[0].isVisibleTo(panel) and not cards[2].isVisibleTo(panel)
    assert panel.choices.pending() == []
    assert all(c.image is None for c in panel.choices.choices)  # no pixels kept of any of them
    assert panel.last_error == ""


def test_applying_twice_is_refused_and_says_so(panel, process_events):
    doc = Krita.instance().activeDocument()
    _edit(panel, process_events, prompt="twice", count=2)
    panel.apply_result(0)
    panel.apply_result(0)
    assert "already applied" in panel.last_error
    assert len(doc.topLevelNodes()) == 3


def test_history_lists_the_sessions_results_per_document(panel, process_events):
    first = Krita.instance().activeDocument()
    _edit(panel, process_events, prompt="first", seed=1, count=2, strength=0.5)
    panel.apply_result(0)
    panel.discard_result(1)
    view = panel.results_view
    labels = [view.history_list.item(i).text() for i in range(view.history_list.count())]
    assert labels == ["first (seed 1, strength 0.50): applied", "first (seed 2, strength 0.50): discarded"]
    assert view.history_toggle.text() == "History (2)"

    other, _ = make_document(W, H, layers=1)
    Krita.instance().setActiveDocument(other)
    panel.refresh_history()
    assert view.history_list.count() == 0 and not view.history_toggle.isVisibleTo(panel)
    _edit(panel, process_events, prompt="second", seed=9, count=1, strength=1.0)
    labels = [view.history_list.item(i).text() for i in range(view.history_list.count())]
    assert labels == ["second (seed 9, strength 1.00): applied"]  # one result: applied at once, as before
    Krita.instance().setActiveDocument(first)
    panel.refresh_history()
    assert view.history_list.count() == 2


def test_a_new_press_discards_the_results_still_waiting(panel, process_events):
    doc = Krita.instance().activeDocument()
    _edit(panel, process_events, prompt="one", count=3)
    old = panel.choices
    _edit(panel, process_events, prompt="two", count=2)
    assert [c.state for c in old.choices] == ["discarded"] * 3
    assert len(panel.results_view.cards) == 2 and doc.history == []


def test_style_layer_and_its_weight_are_sent(panel, standin, process_events):
    doc = Krita.instance().activeDocument()
    panel.style_layer_combo.showPopup()  # the list is filled from the document when it opens
    panel.style_layer_combo.hidePopup()
    offered = [panel.style_layer_combo.itemText(i) for i in range(panel.style_layer_combo.count())]
    assert offered == ["none", "layer 1", "layer 0"]  # top of the stack first
    assert not panel.style_weight_spin.isEnabled()
    _edit(panel, process_events, prompt="in that style", style_layer="layer 1", style_weight=0.4)
    sent = [r for r in standin.requests if r.type == "edit"][-1]
    assert sent.edit.style_image is not None
    assert sent.edit.style_image.data == rgba_pattern(W, H, salt=40)  # layer 1's pixels, as RGBA
    assert sent.header["sampling"]["style_weight"] == 0.4
    assert panel.style_weight_spin.isEnabled()
    assert len(doc.topLevelNodes()) == 3


def test_a_missing_style_layer_is_explained(panel, process_events):
    with pytest.raises(ValueError, match="no layer"):
        panel.select_style_layer("gone")
    panel.apply_settings({"prompt": "x", "style_layer": "layer 0"})
    doc = Krita.instance().activeDocument()
    doc.rootNode()._children.pop(0)  # the painter deleted that layer meanwhile
    doc.setActiveNode(doc.topLevelNodes()[0])
    panel.edit_button.click()
    assert "no layer 'layer 0'" in panel.last_error and panel.state == "idle"


def test_switching_documents_shows_that_documents_history(qapp, standin, process_events):
    from krita import Window
    from sine_krita.docker import DOCKER_ID

    app = Krita.instance()
    first, _ = make_document(W, H)
    app.setActiveDocument(first)
    window = Window()  # kept: the docker lives inside its main window
    dock = [f for f in app.dock_factories if f.id == DOCKER_ID][0].create(window)
    try:
        assert wait_for(lambda: dock.panel.connected, 10, process_events)
        _edit(dock.panel, process_events, prompt="here", count=2)
        view = dock.panel.results_view
        assert view.history_list.count() == 2
        app.setActiveDocument(make_document(W, H)[0])
        dock.canvasChanged(None)  # what Krita calls when another view gets the focus
        assert view.history_list.count() == 0
        app.setActiveDocument(first)
        dock.canvasChanged(None)
        assert view.history_list.count() == 2
    finally:
        dock.panel.shutdown()


def _short_docker(height: int, width: int = 300):
    """A panel for a new active document inside a scroll area `width` x `height` px, as docked."""
    from sine_krita import qt_compat as qt

    doc, _ = make_document(W, H)
    Krita.instance().setActiveDocument(doc)
    scroll = qt.QScrollArea()
    scroll.setWidgetResizable(True)
    panel = SinePanel(Krita.instance().activeDocument)
    scroll.setWidget(panel)
    scroll.resize(width, height)
    scroll.show()
    return scroll, panel


def _shown(scroll, widget, panel) -> bool:
    """Whether all of ``widget`` lies in the visible part of the scrolling panel."""
    from sine_krita import qt_compat as qt

    top = widget.mapTo(panel, qt.QtCore.QPoint(0, 0)).y()
    shown = scroll.verticalScrollBar().value()
    return shown <= top and top + widget.height() <= shown + scroll.viewport().height()


def test_a_short_docker_keeps_cancel_in_view_while_it_edits_and_then_shows_the_outcome(
    qapp, standin, process_events
):
    """Docked on an 800x600 screen the panel shows ~100 px. The status line scrolls into view, but while
    the edit runs Cancel and the progress bar must stay in sight (scrolled to the line below them,
    Cancel was cut in half); once it ends, the outcome line is what shows."""
    scroll, panel = _short_docker(100)
    standin.step_s = 0.2
    try:
        assert wait_for(lambda: panel.connected, 10, process_events)
        panel.advanced_toggle.setChecked(True)
        panel.apply_settings({"prompt": "slow"})
        for _ in range(5):
            process_events()
        scroll.ensureWidgetVisible(panel.edit_button, 0, 0)  # the painter scrolls down to Edit
        panel.edit_button.click()
        assert wait_for(lambda: panel.progress_text.startswith("fine-tuning"), 10, process_events)
        for _ in range(10):
            process_events()
            time.sleep(0.02)
        assert _shown(scroll, panel.cancel_button, panel) and _shown(scroll, panel.progress, panel)
        panel.cancel_button.click()
        assert wait_for(lambda: panel.state == "cancelled", 10, process_events)
        assert wait_for(lambda: _shown(scroll, panel.message_label, panel), 5, process_events)
    finally:
        panel.shutdown()
        scroll.deleteLater()


def test_the_thumbnails_are_scrolled_into_view_in_a_short_docker(qapp, standin, process_events):
    from sine_krita import qt_compat as qt

    scroll, panel = _short_docker(200)  # far shorter than the panel
    try:
        assert wait_for(lambda: panel.connected, 10, process_events)
        assert scroll.verticalScrollBar().value() == 0
        _edit(panel, process_events, prompt="scroll", count=3)
        assert wait_for(lambda: panel.state == "done", 30, process_events)

        def results_top_shown() -> bool:  # after the status line's scroll, the thumbnails' (they win)
            top = panel.results_view.mapTo(panel, qt.QtCore.QPoint(0, 0)).y()
            shown = scroll.verticalScrollBar().value()
            return shown > 0 and shown <= top < shown + scroll.viewport().height()

        assert wait_for(results_top_shown, 5, process_events)
        for _ in range(10):  # and they stay on screen: no later scroll takes them away
            process_events()
            time.sleep(0.03)
        assert results_top_shown()
    finally:
        panel.shutdown()
        scroll.deleteLater()


def _history_labels(panel) -> list[str]:
    view = panel.results_view.history_list
    return [view.item(i).text() for i in range(view.count())]


def test_a_history_entry_is_applied_again_after_its_card_was_discarded_or_applied(panel, process_events):
    doc = Krita.instance().activeDocument()
    _edit(panel, process_events, prompt="again", seed=4, count=3, strength=1.0)  # the label names it
    cards = panel.results_view.cards
    cards[1].apply_button.click()
    cards[0].discard_button.click()
    cards[2].discard_button.click()
    _edit(panel, process_events, prompt="later", seed=30, count=2)  # a new press replaces the cards
    assert _history_labels(panel)[2:] == ["again (seed 4, strength 1.00): discarded",
                                          "again (seed 5, strength 1.00): applied",
                                          "again (seed 6, strength 1.00): discarded"]  # fmt: skip
    view = panel.results_view
    view.history_toggle.setChecked(True)
    assert not view.history_apply_button.isEnabled()  # nothing chosen yet
    view.history_list.setCurrentRow(4)  # seed 6, discarded
    assert view.history_apply_button.isEnabled()
    view.history_apply_button.click()
    assert panel.last_error == ""
    names = [n.name() for n in doc.topLevelNodes()]
    assert names == ["layer 0", "SINE: again (seed 6)", "SINE: again (seed 5)", "layer 1"]  # above the source
    assert doc.topLevelNodes()[1].pixelData(0, 0, W, H) == to_bgra(_expected(3)[2])
    assert doc.history[-1] == ("add", "SINE: again (seed 6)") and len(doc.history) == 2  # one step
    assert "Added layer 'SINE: again (seed 6)'" in panel.message_label.text()
    assert _history_labels(panel)[4] == "again (seed 6, strength 1.00): discarded, applied again"
    # The applied one can be applied a second time, by double-click.
    view.history_list.itemDoubleClicked.emit(view.history_list.item(3))
    assert doc.topLevelNodes()[1].name() == "SINE: again (seed 5)"
    assert doc.topLevelNodes()[1].pixelData(0, 0, W, H) == to_bgra(_expected(3)[1])


def test_a_history_entry_whose_source_layer_is_gone_lands_on_top_and_says_so(panel, process_events):
    doc = Krita.instance().activeDocument()
    _edit(panel, process_events, prompt="orphan", seed=2, count=2)
    panel.results_view.cards[0].discard_button.click()
    doc.topLevelNodes()[0].remove()  # the painter deleted the source layer
    panel.reapply_history(1)  # seed 3, still waiting as a card: applied as its card would be
    assert panel.choices.choices[1].state == "applied" and not panel.results_view.cards[1].apply_button.isEnabled()
    panel.reapply_history(0)
    assert [n.name() for n in doc.topLevelNodes()] == ["layer 1", "SINE: orphan (seed 3)", "SINE: orphan (seed 2)"]
    assert "source layer 'layer 0' is gone" in panel.message_label.text()
    assert panel.last_error == ""


def test_a_history_entry_without_its_pixels_any_more_is_explained(panel, process_events):
    doc = Krita.instance().activeDocument()
    panel.history.max_bytes = 0  # only the newest press keeps its pixels
    _edit(panel, process_events, prompt="old", seed=1, count=1)
    _edit(panel, process_events, prompt="new", seed=2, count=1)
    layers = len(doc.topLevelNodes())
    panel.results_view.history_list.setCurrentRow(1)
    assert not panel.results_view.history_apply_button.isEnabled()
    panel.reapply_history(1)
    assert "no longer kept" in panel.last_error and len(doc.topLevelNodes()) == layers


def test_content_weight_goes_with_the_style_layer_and_the_two_stay_within_one(panel, standin, process_events):
    from sine_protocol import defaults

    spin = panel.content_weight_spin
    assert not spin.isEnabled() and spin.value() == pytest.approx(1 - defaults.V)
    _edit(panel, process_events, prompt="plain")
    assert "content_weight" not in [r for r in standin.requests if r.type == "edit"][-1].header["sampling"]
    panel.apply_settings({"style_layer": "layer 1"})
    assert spin.isEnabled()
    panel.style_weight_spin.setValue(0.8)  # the painter raises the style: the content gives way
    assert spin.value() == pytest.approx(0.2)
    spin.setValue(0.9)  # and the other way round
    assert panel.style_weight_spin.value() == pytest.approx(0.1)
    _edit(panel, process_events, prompt="in that style", content_weight=0.55, style_weight=0.35)
    sampling = [r for r in standin.requests if r.type == "edit"][-1].header["sampling"]
    assert sampling["content_weight"] == 0.55 and sampling["style_weight"] == 0.35
    panel.apply_settings({"style_layer": "none"})
    assert not spin.isEnabled()


def test_a_short_docker_shows_prompt_edit_and_status_without_scrolling(qapp, standin, process_events):
    """Docked on an 800x600 screen Krita gives the panel ~100 px: the painter must see where to type,
    the Edit button and the status there, before scrolling (they sat below eight rows of settings)."""
    scroll, panel = _short_docker(100, width=262)  # Krita's docked width on an 800x600 screen
    try:
        assert wait_for(lambda: panel.connected, 10, process_events)
        for _ in range(5):
            process_events()
        assert scroll.verticalScrollBar().value() == 0
        for widget in (panel.prompt_edit, panel.edit_button, panel.progress):
            assert _shown(scroll, widget, panel), widget.objectName() or type(widget).__name__
        # The bar has the whole row: its text ("fine-tuning 120/400, ~2 min 05 s left") is clipped, not
        # elided, and beside Cancel (140 px of 248) most of it was cut off.
        assert panel.progress.width() >= panel.width() - 12, (panel.progress.width(), panel.width())
        text = "sampling 30/100, ~1 min 05 s left"
        assert panel.progress.fontMetrics().horizontalAdvance(text) < panel.progress.width() - 8
    finally:
        panel.shutdown()
        scroll.deleteLater()


def test_choices_applied_after_switching_documents_go_to_the_edited_one(panel, process_events):
    """Three results wait as cards; the painter opens another picture, then presses Apply on a card: the
    layer goes into the picture that was edited (its source is there), not into the one now shown."""
    first = Krita.instance().activeDocument()
    before = len(first.topLevelNodes())
    _edit(panel, process_events, prompt="cards", count=3)
    other, _ = make_document(W, H, layers=1)
    Krita.instance().setActiveDocument(other)
    panel.apply_result(1)
    assert len(first.topLevelNodes()) == before + 1 and len(other.topLevelNodes()) == 1, panel.last_error


def test_a_card_applied_after_its_document_was_closed_says_the_document_was_closed(panel, process_events):
    """Three results wait as cards; the painter closes that picture and presses Apply on a card: told that
    the picture was closed (it said 'The image was resized during the edit (16x12, now 0x0)', Krita's
    closed document answering 0 for its size), nothing added anywhere, and the next edit works."""
    first = Krita.instance().activeDocument()
    _edit(panel, process_events, prompt="cards", count=3)
    first.close()
    other, _ = make_document(W, H, layers=1)
    Krita.instance().setActiveDocument(other)
    panel.apply_result(0)
    assert panel.last_error == "The document of this result was closed; nothing was added.", panel.last_error
    assert len(other.topLevelNodes()) == 1 and panel.edit_button.isEnabled()
    _edit(panel, process_events, prompt="again", count=1)
    assert [n.name() for n in other.topLevelNodes()] == ["layer 0", "SINE: again (seed 0)"], (panel.message_label.text(), [n.name() for n in first.topLevelNodes()])
