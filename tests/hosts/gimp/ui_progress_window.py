# Run by the root's python3 under xvfb-run, with the installed plug-in folder and its _vendor on
# PYTHONPATH: drives the plug-in's ProgressWindow in the real GTK 3 of the GIMP 3 host, presses
# its Cancel button and prints one JSON line for the host-side test.
import json
import sys

import gi

gi.require_version("Gtk", "3.0")
import sine_gimp_ui  # noqa: E402
from gi.repository import Gtk  # noqa: E402
from sine_gimp_job import Progress  # noqa: E402

from sine_protocol import RGBAImage  # noqa: E402

window = sine_gimp_ui.ProgressWindow("SINE: test", "daemon 0.1.0 on CPU; model SDXL, ε-prediction, 1024 px")
preview = RGBAImage(32, 16, bytes([200, 30, 30, 255]) * (32 * 16))
window.update(Progress("sample", 30, 100, "sampling 30/100", 0.3, preview))
shown = {
    "label": window._label.get_text(),
    "fraction": round(window._bar.get_fraction(), 3),
    "preview": [window._preview.get_pixbuf().get_width(), window._preview.get_pixbuf().get_height()],
    "cancelled_before": window.poll_cancel(),
    "texts": [c.get_text() for c in window._dialog.get_content_area().get_children() if isinstance(c, Gtk.Label)],
}
cancel_button = window._dialog.get_widget_for_response(Gtk.ResponseType.CANCEL)
cancel_button.clicked()
shown["cancelled_after"] = window.poll_cancel()
window.close()
print("UI-RESULT " + json.dumps(shown))
sys.stdout.flush()
