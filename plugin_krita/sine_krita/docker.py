"""The dockable "SINE Edit" window: a Krita DockWidget that wraps :class:`SinePanel`.

Krita creates one docker per main window; the module keeps a list of live panels so the
Extension's menu actions (and the automation hook) can find the one of the active window.
"""

from __future__ import annotations

import traceback
import weakref
from typing import Any

from krita import DockWidget, Krita

from . import qt_compat as qt
from .panel import SinePanel
from .placement import floating_frame

DOCKER_ID = "sine_edit_docker"
TITLE = "SINE Edit"

SETTINGS_GROUP = "sine_edit"  # the docker's form in kritarc, kept between Krita sessions

_panels: list[weakref.ref[SinePanel]] = []


class KritaSettingsStore:
    """The panel's form in Krita's own settings (kritarc), one entry a field."""

    def load(self) -> dict[str, str]:
        from .settings import REMEMBERED

        app = Krita.instance()
        missing = "<unset>"  # readSetting's default: a field never written
        values = {name: app.readSetting(SETTINGS_GROUP, name, missing) for name in REMEMBERED}
        return {name: value for name, value in values.items() if value != missing}

    def save(self, values: dict[str, str]) -> None:
        app = Krita.instance()
        for name, value in values.items():
            app.writeSetting(SETTINGS_GROUP, name, value)


def live_panels() -> list[SinePanel]:
    """Panels whose docker still exists, oldest first."""
    alive = [ref() for ref in _panels]
    _panels[:] = [weakref.ref(p) for p in alive if p is not None]
    return [p for p in alive if p is not None]


def active_document() -> Any:
    return Krita.instance().activeDocument()


class SineDocker(DockWidget):
    """Docker shell; the logic lives in the panel."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(TITLE)
        # The panel scrolls inside the docker, so the docker fits any screen (768 px high too) and
        # shares its column with Krita's other dockers; nothing falls off the bottom.
        self.scroll = qt.QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(qt.NO_FRAME)
        self.scroll.setHorizontalScrollBarPolicy(qt.SCROLLBAR_AS_NEEDED)
        self.panel = SinePanel(self.shown_document, parent=self.scroll, store=KritaSettingsStore())
        self.scroll.setWidget(self.panel)
        self.setWidget(self.scroll)
        _panels.append(weakref.ref(self.panel))
        self.topLevelChanged.connect(self._floated)
        app = Krita.instance()
        notifier = app.notifier() if hasattr(app, "notifier") else None
        if notifier is not None and hasattr(notifier, "applicationClosing"):
            notifier.applicationClosing.connect(self.panel.shutdown)

    def shown_document(self) -> Any:
        """The document of this docker's own window's active view; Krita's active document when that
        window shows none. With two windows, Krita's active document can be the other window's (the
        window has not taken the focus, or this docker floats as a window of its own)."""
        own = main_window_of(self)
        for window in Krita.instance().windows():
            if own is not None and window.qwindow() is own:
                view = window.activeView()
                doc = view.document() if view is not None else None
                if doc is not None:
                    return doc
        return active_document()

    def _floated(self, floating: bool) -> None:
        if floating:  # once Qt has made it a window of its own
            qt.QTimer.singleShot(0, self._fit_floating)

    def _fit_floating(self) -> None:
        """Grow the floating docker to show the whole panel, within its screen (see floating_frame)."""
        try:
            if not self.isFloating():
                return
            frame, inner, viewport = self.frameGeometry(), self.geometry(), self.scroll.viewport()
            hint = self.panel.sizeHint()
            bar = self.scroll.verticalScrollBar().sizeHint().width()
            wanted = (hint.width() + bar + frame.width() - viewport.width(),
                      hint.height() + frame.height() - viewport.height())  # fmt: skip
            handle = self.windowHandle()
            screen = handle.screen() if handle is not None else None
            area = (screen or qt.QtGui.QGuiApplication.primaryScreen()).availableGeometry()
            x, y, w, h = floating_frame((frame.x(), frame.y(), frame.width(), frame.height()), wanted,
                                        (area.x(), area.y(), area.width(), area.height()))  # fmt: skip
            # setGeometry places the inside; the window manager's frame goes around it
            self.setGeometry(x + inner.x() - frame.x(), y + inner.y() - frame.y(),
                             w - (frame.width() - inner.width()), h - (frame.height() - inner.height()))  # fmt: skip
        except Exception:  # never let a docker callback reach Krita's modal error dialog
            traceback.print_exc()

    def canvasChanged(self, canvas: Any) -> None:  # noqa: N802 (Krita's API name)
        """Another view got the focus: show that document's history (the panel reads the active
        document itself when Edit is pressed)."""
        try:
            self.panel.refresh_history()
        except Exception:  # never let a docker callback reach Krita's modal error dialog
            traceback.print_exc()


def main_window_of(widget: Any) -> Any:
    """The main window (QMainWindow) a widget belongs to, following parents: a floating docker is a
    window of its own, so Qt's isAncestorOf says no, but its parent is still its main window."""
    while widget is not None and not isinstance(widget, qt.QtWidgets.QMainWindow):
        widget = widget.parentWidget()
    return widget


def panel_for(qwindow: Any = None) -> SinePanel | None:
    """The panel inside ``qwindow`` (a main window's QMainWindow), else the newest live one."""
    panels = live_panels()
    if qwindow is not None:
        for panel in reversed(panels):
            if main_window_of(panel) is qwindow:
                return panel
    return panels[-1] if panels else None
