"""SINE Edit for Krita: a docker panel that sends the current layer to the local SINE daemon.

Loaded by Krita's Python plugin manager (``sine_krita.desktop``). Registration only: the vendored
protocol goes first on ``sys.path``, then the docker factory and the Extension are added.
"""

from __future__ import annotations

import os
import sys
import traceback

from .vendor import ensure_vendor_path

ensure_vendor_path()


def _install_fail_fast_hook() -> None:
    """In automated runs an uncaught exception must end Krita, not open a modal dialog that hangs Xvfb."""

    def hook(etype: type[BaseException], value: BaseException, tb: object) -> None:
        traceback.print_exception(etype, value, tb)
        sys.stderr.write("SINE_KRITA_FATAL uncaught Python exception, exiting 70\n")
        sys.stderr.flush()
        os._exit(70)

    sys.excepthook = hook


def _register() -> None:
    from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita

    from .docker import DOCKER_ID, SineDocker
    from .extension import SineExtension

    app = Krita.instance()
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, SineDocker))
    app.addExtension(SineExtension(app))


if os.environ.get("SINE_KRITA_AUTOTEST"):
    _install_fail_fast_hook()
_register()
