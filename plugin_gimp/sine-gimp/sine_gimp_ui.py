"""Interactive pieces: the settings dialog, the progress window with Cancel, yes/no questions.

Only used in INTERACTIVE run mode; batch and PDB callers never touch GTK.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gdk, GdkPixbuf, Gimp, GimpUi, GLib, Gtk  # noqa: E402

if TYPE_CHECKING:
    from sine_gimp_job import Progress

PREVIEW_SIDE = 192
DIALOG_CHROME_PX = 170  # the settings dialog's two button rows, margins and a window manager's title bar
# Automated GUI tests name a JSON file here with scripted answers (see autotest_plan).
AUTOTEST_ENV = "SINE_GIMP_AUTOTEST"
AUTOTEST_DELAY_MS = 300
MAIN = ("prompt", "subject", "style", "strength", "count", "style-layer", "style-file", "style-weight",
        "content-weight")
ADVANCED = ("start", "seed", "steps", "guidance", "v", "k", "method", "finetune-steps", "output-width",
            "output-height")


def autotest_plan() -> dict:
    """Scripted answers for GUI tests, read at each use: ``{"dialog": "ok"|"cancel",
    "cancel_at_step": N}`` (press Cancel once fine-tuning or sampling reaches step N; with
    ``"cancel_title_has"`` only in a progress window whose title holds that text), ``"progress_log"`` (a
    folder: each progress window appends its title and every text it shows to ``<pid>.jsonl`` there), ``"move"``
    (argument values set in the dialog before its button is pressed), ``"weights"`` (a file to write
    the style and content weights to once the dialog closes, with the dialog's and the screen's size),
    ``"expand_advanced"`` (open the Advanced settings before the screenshot).

    Empty unless $SINE_GIMP_AUTOTEST names a readable JSON file, so users never meet it.
    """
    path = os.environ.get(AUTOTEST_ENV)
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            plan = json.load(f)
    except (OSError, ValueError):
        return {}
    return plan if isinstance(plan, dict) else {}


def _answer_later(dialog: Gtk.Dialog, response: Gtk.ResponseType, screenshot: str | None = None,
                  config: Gimp.ProcedureConfig | None = None, expander: Gtk.Expander | None = None) -> None:  # fmt: skip
    """Press a dialog button from the main loop once the dialog runs (as a user would); first the plan's
    ``"move"`` values are set on the dialog's config (as its widgets would), and with ``screenshot``
    what the dialog shows is saved there (PNG)."""

    def press() -> bool:
        plan = autotest_plan()
        for name, value in (plan.get("move") or {}).items() if config is not None else ():
            config.set_property(name, value)
        if expander is not None and plan.get("expand_advanced"):
            expander.set_expanded(True)
            for _ in range(20):  # let GTK lay out the opened part and resize the window
                pump_events()
                GLib.usleep(20_000)
        pump_events()
        window = dialog.get_window()
        if screenshot and window is not None:
            shot = Gdk.pixbuf_get_from_window(window, 0, 0, window.get_width(), window.get_height())
            if shot is not None:
                shot.savev(screenshot, "png", [], [])
        dialog.response(response)
        return False

    GLib.timeout_add(AUTOTEST_DELAY_MS, press)


def run_settings_dialog(procedure: Gimp.Procedure, config: Gimp.ProcedureConfig) -> bool:
    """Show the generated dialog for the procedure's arguments; True when the user pressed OK."""
    GimpUi.init("sine-gimp")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "SINE: Edit with text")
    # What a painter sets on every edit first, strength as a slider; the engine's knobs folded away.
    dialog.get_scale_entry("strength", 1.0)
    _weights_give_way(config)
    dialog.fill_box("sine-advanced-box", list(ADVANCED))
    dialog.get_label("sine-advanced-title", "Advanced settings", False, False)
    expander = dialog.fill_expander("sine-advanced", "sine-advanced-title", False, "sine-advanced-box")
    # The form scrolls inside the dialog once it is taller than the screen allows (Advanced open on a
    # 600-px laptop screen is 830 px): OK and Cancel below it always stay on the screen.
    dialog.fill_box("sine-form", list(MAIN) + ["sine-advanced"])
    scrolled = dialog.fill_scrolled_window("sine-form-scroll", "sine-form")
    scrolled.set_policy(Gtk.PolicyType.NEVER, Gtk.PolicyType.AUTOMATIC)
    # A scrollbar drawn beside the form, not GTK's overlay one that shows only under the pointer: on an
    # 800x600 screen the open Advanced part ended at "Start" with nothing telling Seed and Steps lay below.
    scrolled.set_overlay_scrolling(False)
    _fit_to_screen(scrolled, expander)
    dialog.fill(["sine-form-scroll"])
    scripted = autotest_plan().get("dialog")
    if scripted in ("ok", "cancel"):
        _answer_later(dialog, Gtk.ResponseType.OK if scripted == "ok" else Gtk.ResponseType.CANCEL,
                      autotest_plan().get("screenshot"), config, expander)
    ok = dialog.run()
    if autotest_plan().get("weights"):  # what the two weights became, and what the dialog took (GUI tests)
        shown = {name: config.get_property(name) for name in ("style-weight", "content-weight", "prompt", "seed")}
        window, screen = dialog.get_window(), dialog.get_screen()
        bar = scrolled.get_vadjustment()
        shown.update(form_scrolls=bar.get_upper() > bar.get_page_size() + 1,
                     scrollbar_always_drawn=not scrolled.get_overlay_scrolling())
        shown.update(advanced_expanded=expander.get_expanded(), screen=[screen.get_width(), screen.get_height()],
                     window=[window.get_width(), window.get_height()] if window is not None else None)
        with open(autotest_plan()["weights"], "w", encoding="utf-8") as f:
            json.dump(shown, f)
    dialog.destroy()
    return bool(ok)


def _fit_to_screen(scrolled: Gtk.ScrolledWindow, expander: Gtk.Expander) -> None:
    """Show as much of the form as it needs, at most what the screen allows (the rest scrolls), again
    whenever the Advanced part opens or closes, the window shrinking back to fit. (GTK's
    max-content-height alone did not hold in GIMP's dialog: it still took 821 px on a 600-px screen.)"""
    limit = _form_height_limit()

    def fit(*_: object) -> bool:
        child = scrolled.get_child()
        natural = child.get_preferred_height()[1] if child is not None else limit
        scrolled.set_min_content_height(min(natural, limit))
        window = scrolled.get_toplevel()
        if isinstance(window, Gtk.Window) and window.get_realized():  # a window grows by itself, never shrinks
            window.resize(window.get_allocated_width(), 1)
        return False

    fit()
    expander.connect("notify::expanded", lambda *_: GLib.idle_add(fit))


def _form_height_limit() -> int:
    """Pixels of form the screen's work area leaves beside the dialog's buttons and title bar."""
    display = Gdk.Display.get_default()
    monitor = display.get_primary_monitor() or display.get_monitor(0) if display is not None else None
    height = monitor.get_workarea().height if monitor is not None else 768
    return max(200, height - DIALOG_CHROME_PX)


def _weights_give_way(config: Gimp.ProcedureConfig) -> None:
    """Raising the style or the content weight lowers the other, so the two stay at most 1 (the daemon's rule)."""

    def give_way(changed: str, other: str) -> None:
        value = config.get_property(changed)
        if value + config.get_property(other) > 1.0 + 1e-9:
            config.set_property(other, max(0.0, 1.0 - value))

    config.connect("notify::style-weight", lambda *_: give_way("style-weight", "content-weight"))
    config.connect("notify::content-weight", lambda *_: give_way("content-weight", "style-weight"))


def ask_yes_no(title: str, text: str) -> bool:
    """A modal question; True for Yes (the autotest plan's ``"start_daemon": "yes"|"no"`` answers it)."""
    dialog = Gtk.MessageDialog(
        message_type=Gtk.MessageType.QUESTION, buttons=Gtk.ButtonsType.YES_NO, text=title
    )
    dialog.format_secondary_text(text)
    scripted = autotest_plan().get("start_daemon")
    if scripted in ("yes", "no"):
        _answer_later(dialog, Gtk.ResponseType.YES if scripted == "yes" else Gtk.ResponseType.NO)
    answer = dialog.run()
    dialog.destroy()
    pump_events()
    return answer == Gtk.ResponseType.YES


def pump_events() -> None:
    """Let GTK draw and react to clicks while the plug-in polls the daemon."""
    while Gtk.events_pending():
        Gtk.main_iteration_do(False)


_BAR_CSS = b"progressbar progress { background-color: #4a90d9; border-color: #4a90d9; min-height: 8px; }" \
    b" progressbar trough { min-height: 8px; }"


def _make_fill_visible(bar: Gtk.ProgressBar) -> None:
    """A blue fill of 8 px that shows in GIMP's dark theme too (the theme's own is almost invisible)."""
    css = Gtk.CssProvider()
    css.load_from_data(_BAR_CSS)
    bar.get_style_context().add_provider(css, Gtk.STYLE_PROVIDER_PRIORITY_APPLICATION)


class ProgressWindow:
    """A small window with the phase, a progress bar, the daemon's preview and a Cancel button.

    GIMP's own status-bar Cancel kills a plug-in outright, so this button is the way to cancel
    the daemon job cleanly. It stays above the GIMP window the edit was started from (transient for
    it), so a click on the canvas does not bury it and its Cancel.
    """

    def __init__(self, title: str, daemon: str = "") -> None:
        """`title`: names the edit and its image (two images edited at once have a window each);
        `daemon`: a line naming the daemon's device and model kind (`daemon_summary`)."""
        self.cancelled = False
        self._title = title
        self._dialog = Gtk.Dialog(title=title)
        try:
            GimpUi.window_set_transient(self._dialog)
        except Exception:  # noqa: BLE001 - an unknown display (a script's run): a free-standing window
            pass
        self._cancel_button = self._dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        self._dialog.connect("response", self._on_cancel)
        self._dialog.connect("delete-event", self._on_delete)
        self._label = Gtk.Label(label="connecting…", xalign=0.0)
        self._bar = Gtk.ProgressBar()
        _make_fill_visible(self._bar)
        self._preview = Gtk.Image()
        self._preview.set_size_request(PREVIEW_SIDE, PREVIEW_SIDE)
        box = self._dialog.get_content_area()
        box.set_spacing(6)
        box.set_border_width(12)
        if daemon:
            box.pack_start(Gtk.Label(label=daemon, xalign=0.0), False, False, 0)
        box.pack_start(self._preview, True, True, 0)
        box.pack_start(self._label, False, False, 0)
        box.pack_start(self._bar, False, False, 0)
        self._dialog.show_all()
        pump_events()

    def set_text(self, text: str) -> None:
        self._label.set_text(text)
        pump_events()

    def pulse(self) -> None:
        """Move the bar while nothing can be counted (the daemon starting); honours a scripted Cancel."""
        self._bar.pulse()
        if autotest_plan().get("cancel_start"):
            self._cancel_button.clicked()
        pump_events()

    def _on_cancel(self, _dialog: Gtk.Dialog, _response: int) -> None:
        self.cancelled = True
        self._label.set_text("cancelling…")

    def _on_delete(self, _dialog: Gtk.Dialog, _event: object) -> bool:
        self.cancelled = True
        return True  # keep the window until the job has really stopped

    def update(self, progress: Progress) -> None:
        self._label.set_text(progress.text)
        plan = autotest_plan()
        self._bar.set_fraction(progress.fraction)
        if progress.preview is not None:
            prev = progress.preview
            pixbuf = GdkPixbuf.Pixbuf.new_from_bytes(
                GLib.Bytes.new(prev.data),
                GdkPixbuf.Colorspace.RGB,
                True,
                8,
                prev.width,
                prev.height,
                prev.width * 4,
            )
            scale = PREVIEW_SIDE / max(prev.width, prev.height)
            pixbuf = pixbuf.scale_simple(
                max(1, round(prev.width * scale)),
                max(1, round(prev.height * scale)),
                GdkPixbuf.InterpType.BILINEAR,
            )
            self._preview.set_from_pixbuf(pixbuf)
        if plan:
            self._scripted(plan, progress)
        pump_events()

    def _scripted(self, plan: dict, progress: Progress) -> None:
        """GUI tests: log what this window shows, press Cancel where the plan says (autotest_plan)."""
        folder = plan.get("progress_log")
        if isinstance(folder, str):
            with open(os.path.join(folder, f"{os.getpid()}.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps({"title": self._title, "text": progress.text}) + "\n")
        at, where = plan.get("cancel_at_step"), plan.get("cancel_title_has")
        ours = not isinstance(where, str) or where in self._title
        if ours and isinstance(at, int) and progress.phase in ("finetune", "sample") and progress.step >= at:
            self._cancel_button.clicked()

    def poll_cancel(self) -> bool:
        pump_events()
        return self.cancelled

    def close(self) -> None:
        self._dialog.destroy()
        pump_events()
