"""Menu actions "SINE: Edit" and "SINE: Cancel" (Tools > Scripts, with shortcuts).

They drive the docker's panel of the window they were triggered in, showing the docker first if
the user had closed it, so keyboard users get the same code path as the Edit button.
"""

from __future__ import annotations

import os
from typing import Any

from krita import Extension, Krita

from . import qt_compat as qt
from .docker import DOCKER_ID, panel_for

EDIT_SHORTCUT = "Ctrl+Alt+Shift+E"
CANCEL_SHORTCUT = "Ctrl+Alt+Shift+X"


class SineExtension(Extension):
    """Registers the actions; with ``SINE_KRITA_AUTOTEST`` set it also runs the automation job."""

    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self._autotest: Any = None

    def setup(self) -> None:
        job = os.environ.get("SINE_KRITA_AUTOTEST")
        if job:
            from .autotest import AutoTest

            self._autotest = AutoTest(job)
            Krita.instance().notifier().windowCreated.connect(self._autotest.on_window_created)

    def createActions(self, window: Any) -> None:  # noqa: N802 (Krita's API name; abstract, must exist)
        # Krita deletes the ``window`` wrapper once this returns (the shortcut then met "wrapped C/C++ object
        # of type Window has been deleted" and did nothing): keep its main window, a QMainWindow that lives on.
        qwindow = window.qwindow()
        edit = window.createAction("sine_edit", "SINE: Edit", "tools/scripts")
        edit.setShortcut(qt.QKeySequence(EDIT_SHORTCUT))
        edit.triggered.connect(lambda *_: self._run(qwindow, "start_edit"))
        cancel = window.createAction("sine_cancel", "SINE: Cancel", "tools/scripts")
        cancel.setShortcut(qt.QKeySequence(CANCEL_SHORTCUT))
        cancel.triggered.connect(lambda *_: self._run(qwindow, "cancel_edit"))

    def _run(self, qwindow: Any, method: str) -> None:
        try:
            for dock in qwindow.findChildren(qt.QDockWidget):
                if dock.objectName() == DOCKER_ID and not dock.isVisible():
                    dock.setVisible(True)
                    dock.raise_()
            panel = panel_for(qwindow)
            if panel is not None:
                getattr(panel, method)()
        except Exception:  # an uncaught exception would open Krita's modal error dialog
            import traceback

            traceback.print_exc()
