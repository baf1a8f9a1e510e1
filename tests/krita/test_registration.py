"""Plugin registration against the fake ``krita`` module, and the Qt compatibility layer."""

from __future__ import annotations

import sys

import sine_krita
from krita import Krita, Window
from krita_helpers import make_document
from krita_standin import wait_for
from sine_krita import qt_compat as qt
from sine_krita.docker import DOCKER_ID, SineDocker, panel_for
from sine_krita.extension import SineExtension


def test_docker_and_extension_are_registered(qapp):
    app = Krita.instance()
    assert sine_krita.__name__ == "sine_krita"
    factories = [f for f in app.dock_factories if f.id == DOCKER_ID]
    assert len(factories) == 1 and factories[0].cls is SineDocker
    assert any(isinstance(e, SineExtension) for e in app.extensions)


def test_actions_have_names_shortcuts_and_drive_the_panel(qapp, standin, process_events):
    app = Krita.instance()
    window = Window()
    dock = [f for f in app.dock_factories if f.id == DOCKER_ID][0].create(window)
    try:
        assert dock.windowTitle() == "SINE Edit"
        extension = next(e for e in app.extensions if isinstance(e, SineExtension))
        extension.createActions(window)
        qwindow = window.qwindow()
        window.forget()  # as Krita does once createActions returned: the shortcut did nothing (a traceback)
        edit, cancel = window.actions["sine_edit"], window.actions["sine_cancel"]
        assert edit.text() == "SINE: Edit" and cancel.text() == "SINE: Cancel"
        assert edit.shortcut().toString() == "Ctrl+Alt+Shift+E"
        assert not cancel.shortcut().isEmpty()
        assert panel_for(qwindow) is dock.panel
        doc, _ = make_document(16, 16)
        app.setActiveDocument(doc)
        dock.panel.apply_settings({"prompt": "from the menu"})
        dock.hide()
        edit.trigger()
        assert dock.isVisibleTo(qwindow)
        assert wait_for(lambda: dock.panel.state != "running", 10, process_events)
        assert dock.panel.state == "done", dock.panel.last_error
        assert [n.name() for n in doc.topLevelNodes()][1] == "SINE: from the menu (seed 0)"
    finally:
        dock.panel.shutdown()


def test_each_windows_docker_edits_the_document_its_window_shows(qapp, standin, process_events):
    """Two Krita windows, each with its docker. The second's Edit edited the first window's document
    (Krita's active one: the window had not taken the focus, or the docker floated as a window of its
    own), and with the docker floating, the menu action drove another window's panel."""
    app = Krita.instance()
    factory = [f for f in app.dock_factories if f.id == DOCKER_ID][0]
    first, second = Window(), Window()
    doc1, _ = make_document(16, 16)
    doc2, _ = make_document(16, 16)
    first.shown, second.shown = doc1, doc2
    app.setActiveDocument(doc1)
    dock1, dock2 = factory.create(first), factory.create(second)
    try:
        dock2.setFloating(True)
        assert panel_for(second.qwindow()) is dock2.panel and panel_for(first.qwindow()) is dock1.panel
        dock2.panel.apply_settings({"prompt": "second window"})
        dock2.panel.edit_button.click()
        assert wait_for(lambda: dock2.panel.state != "running", 10, process_events)
        assert dock2.panel.state == "done", dock2.panel.last_error
        assert [n.name() for n in doc2.topLevelNodes()][1] == "SINE: second window (seed 0)"
        assert len(doc1.topLevelNodes()) == 2
    finally:
        dock1.panel.shutdown()
        dock2.panel.shutdown()


def test_qt_binding_is_the_one_krita_uses(qapp, monkeypatch):
    assert qt.BINDING == "PyQt6" and "PyQt5.QtCore" not in sys.modules
    assert qt.binding_of_krita() == "PyQt6"  # read from the (fake) krita module's class hierarchy

    qobject5 = type("QObject", (), {"__module__": "PyQt5.QtCore"})  # how Krita 5's classes look
    krita5 = type(sys)("krita")
    krita5.Krita = type("Krita", (qobject5,), {"__module__": "krita"})
    monkeypatch.setitem(sys.modules, "krita", krita5)
    assert qt.binding_of_krita() == "PyQt5"
    monkeypatch.delitem(sys.modules, "krita")
    assert qt.binding_of_krita() is None


def test_qimage_round_trip_keeps_straight_rgba(qapp):
    data = bytes([255, 0, 0, 255, 0, 255, 0, 128, 0, 0, 255, 0, 9, 8, 7, 255])
    image = qt.qimage_from_rgba(data, 2, 2)
    assert image.pixelColor(1, 0).green() == 255 and image.pixelColor(1, 0).alpha() == 128
    assert qt.qimage_to_rgba(image) == data
    scaled = qt.scale_rgba(bytes([10, 20, 30, 255] * 4), 2, 2, 4, 3)
    assert scaled == bytes([10, 20, 30, 255] * 12)


def test_vendor_folder_goes_first_on_sys_path(tmp_path, monkeypatch):
    from sine_krita.vendor import ensure_vendor_path

    monkeypatch.setattr(sys, "path", ["/somewhere", str(tmp_path / "_vendor")])
    assert ensure_vendor_path(str(tmp_path / "_vendor")) is False  # not there: path untouched
    (tmp_path / "_vendor").mkdir()
    assert ensure_vendor_path(str(tmp_path / "_vendor")) is True
    assert sys.path == [str(tmp_path / "_vendor"), "/somewhere"]
