"""Unattended end-to-end run for the real-Krita test (``SINE_KRITA_AUTOTEST=job.json``).

The job file says which image to open (optionally on a larger canvas, ``"canvas": [w, h, x, y]``,
so the layer sits at an offset) and what to type into the panel. The run then goes through the
panel's own code path (its widgets are filled and its Edit button clicked), waits for the result
layer, and writes what the host-side test checks: a result JSON, the saved ``.kra``, raw dumps of
every node in its own pixel format (``bgra8``, ``bgra16`` or one byte a pixel for masks, any
canvas size) and PNGs, and a screenshot of the window with the docker. Each stage is a QTimer
callback because Krita only sets the active node once the event loop has run.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

from krita import InfoObject, Krita, Selection

from . import qt_compat as qt
from .docker import DOCKER_ID, panel_for
from .settings import EditSettings, remembered_values, restored_values

TICK_MS = 100


class AutoTest(qt.QObject):
    """State machine: open -> wait for layer -> show docker -> wait for daemon -> edit -> save -> quit."""

    def __init__(self, job_path: str) -> None:
        super().__init__()
        with open(job_path, encoding="utf-8") as f:
            self.job: dict[str, Any] = json.load(f)
        self.out_dir: str = self.job["out_dir"]
        os.makedirs(self.out_dir, exist_ok=True)
        self.report: dict[str, Any] = {"ok": False, "stage": "start", "progress_seen": []}
        self._started = False
        self._deadline = 0.0
        self._doc: Any = None
        self._panel: Any = None
        self._t0 = time.monotonic()
        self._last_tick = 0.0
        self._chosen = False

    def on_window_created(self) -> None:
        if not self._started:
            self._started = True
            qt.QTimer.singleShot(500, self._guard(self._open))

    def _guard(self, step: Any) -> Any:
        def run() -> None:
            try:
                step()
            except Exception:
                self._finish(traceback.format_exc())

        return run

    def _later(self, step: Any, ms: int = TICK_MS) -> None:
        qt.QTimer.singleShot(ms, self._guard(step))

    def _timed_out(self, what: str) -> bool:
        if time.monotonic() > self._deadline:
            self._finish(f"timed out waiting for {what}")
            return True
        return False

    # ---- stages ------------------------------------------------------------------
    def _open(self) -> None:
        app = Krita.instance()
        self.report.update(stage="open", krita=app.version(), python=sys.version.split()[0], qt=qt.BINDING)
        app.setBatchmode(True)
        doc = app.openDocument(self.job["input"])
        if doc is None:
            raise RuntimeError(f"could not open {self.job['input']}")
        doc.setBatchmode(True)
        canvas = self.job.get("canvas")
        if canvas:  # [w, h, x, y]: a larger canvas with the opened layer at (x, y)
            doc.resizeImage(-int(canvas[2]), -int(canvas[3]), int(canvas[0]), int(canvas[1]))
            doc.waitForDone()
        window = app.activeWindow()
        qwindow = window.qwindow()
        screen = qt.QtGui.QGuiApplication.primaryScreen()
        if screen is not None:  # no window manager under Xvfb: size the window to the screen
            qwindow.setGeometry(screen.availableGeometry())
        window.addView(doc)
        app.setActiveDocument(doc)
        self._doc = doc
        self._deadline = time.monotonic() + 30
        self._later(self._wait_active)

    def _wait_active(self) -> None:
        if self._doc.activeNode() is None:
            if not self._timed_out("the active layer"):
                self._later(self._wait_active)
            return
        if self.job.get("profile_probes") and "profile_probes" not in self.report:
            self._probe_profiles()
        if self.job.get("source_probes") and "source_probes" not in self.report:
            self._add_probe_layers()
            return
        self.report["stage"] = "docker"
        look = self.job.get("source_look")  # {"opacity": 0..255, "blending": "multiply", "inherit_alpha": true}
        if look:
            node = self._doc.activeNode()
            node.setOpacity(int(look.get("opacity", 255)))
            node.setBlendingMode(look.get("blending", "normal"))
            node.setInheritAlpha(bool(look.get("inherit_alpha", False)))
            node.setLocked(bool(look.get("locked", False)))  # the painter locked the layer against painting
        self.report["active_node"] = self._doc.activeNode().name()
        self.report["canvas"] = [self._doc.width(), self._doc.height()]
        self._dump_layers("before")
        box = self.job.get("selection")
        if box:  # [x, y, w, h]: a rectangular selection, as if drawn with the marquee tool
            selection = Selection()
            selection.select(int(box[0]), int(box[1]), int(box[2]), int(box[3]), 255)
            self._doc.setSelection(selection)
            mask = bytes(self._doc.selection().pixelData(0, 0, self._doc.width(), self._doc.height()))
            with open(os.path.join(self.out_dir, "selection.a8"), "wb") as f:
                f.write(mask)
            self.report["selection_bytes"] = len(mask)
        win = Krita.instance().activeWindow()
        for dock in win.dockers():
            if dock.objectName() == DOCKER_ID:
                dock.setVisible(True)
                dock.raise_()
        self._panel = panel_for(win.qwindow())
        if self._panel is None:
            raise RuntimeError("the SINE Edit docker was not created")
        self._deadline = time.monotonic() + float(self.job.get("connect_timeout_s", 60))
        self._later(self._wait_connected)

    def _probe_profiles(self) -> None:
        """How the panel reads a 16-bit RGBA layer of green 32768 (half of full scale) in a document of
        each of ``profile_probes`` (profile names; "": Krita's default)."""
        from .document_io import read_source

        app, probes = Krita.instance(), {}
        for profile in self.job["profile_probes"]:
            doc = app.createDocument(8, 8, "profile probe", "RGBA", "U16", profile, 72.0)
            try:
                layer = doc.createNode("probe", "paintlayer")
                doc.rootNode().addChildNode(layer, None)
                layer.setPixelData((b"\0\0\0\x80\0\0\xff\xff") * 64, 0, 0, 8, 8)  # B,G,R,A little-endian
                doc.waitForDone()
                source = read_source(doc, "layer", layer)
                probes[profile] = {"profile": doc.colorProfile(), "rgba": list(source.rgba[:4])}
            except Exception as exc:
                probes[profile] = {"profile": doc.colorProfile(), "error": str(exc)}
            finally:
                doc.close()
        self.report["profile_probes"] = probes

    def _add_probe_layers(self) -> None:
        """Layers Krita draws from something else, each over ``source_probes``' box [x, y, w, h] in one
        colour: a vector layer (a rectangle shape), a fill layer (colour, over a selection of the box)
        and a clone of the vector layer; a paint layer of that green whose transparency mask hides its
        left half; a group holding a paint layer of that green; a filter layer (invert) over the box. Read as the panel reads a source once Krita has drawn them."""
        doc, (x, y, w, h) = self._doc, self.job["source_probes"]
        self._active_before_probes = doc.activeNode()
        root = doc.rootNode()
        vector = doc.createVectorLayer("probe vector")
        root.addChildNode(vector, None)
        vector.addShapesFromSvg(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{doc.width()}pt" height="{doc.height()}pt" '
            f'viewBox="0 0 {doc.width()} {doc.height()}"><rect x="{x}" y="{y}" width="{w}" height="{h}" '
            'fill="#20a040"/></svg>'
        )
        color = InfoObject()
        color.setProperty("color", qt.QtGui.QColor(0x20, 0xA0, 0x40))
        box = Selection()
        box.select(x, y, w, h, 255)
        fill = doc.createFillLayer("probe fill", "color", color, box)
        root.addChildNode(fill, None)
        clone = doc.createCloneLayer("probe clone", vector)
        root.addChildNode(clone, None)
        masked = doc.createNode("probe masked", "paintlayer")  # the same green, its left half masked out
        root.addChildNode(masked, None)
        masked.setPixelData(bytes((0x40, 0xA0, 0x20, 255)) * (w * h), x, y, w, h)
        mask = doc.createTransparencyMask("probe mask")
        masked.addChildNode(mask, None)
        mask.setPixelData(bytes(0 if col < w // 2 else 255 for _row in range(h) for col in range(w)), x, y, w, h)
        group = doc.createGroupLayer("probe group")  # a group holding a layer of that green
        root.addChildNode(group, None)
        # Both at 40 %: what is read must not carry it, since their result takes their opacity again.
        masked.setOpacity(102)
        group.setOpacity(102)
        inside = doc.createNode("probe inside", "paintlayer")
        group.addChildNode(inside, None)
        inside.setPixelData(bytes((0x40, 0xA0, 0x20, 255)) * (w * h), x, y, w, h)
        adjust = Krita.instance().filter("invert")  # a filter layer: it changes the layers below, no pixels
        fil = doc.createFilterLayer("probe filter", adjust, box)
        root.addChildNode(fil, None)
        doc.waitForDone()
        self._later(lambda: self._read_probe_layers([vector, fill, clone, masked, group, fil]), 1000)

    def _read_probe_layers(self, nodes: list[Any]) -> None:
        from .document_io import read_source

        self._doc.refreshProjection()
        self._doc.waitForDone()
        probes = {}
        for node in nodes:
            try:
                source = read_source(self._doc, "layer", node)
                cx, cy = source.width // 2, source.height // 2
                probes[node.type()] = {"box": [source.x, source.y, source.width, source.height],
                                       "center": list(source.rgba[4 * (cy * source.width + cx):][:4]),
                                       "left": list(source.rgba[4 * (cy * source.width + cx // 2):][:4])}  # fmt: skip
            except Exception as exc:
                probes[node.type()] = {"error": str(exc)}
        for node in reversed(nodes):
            node.remove()
        self._doc.setActiveNode(self._active_before_probes)  # a new mask took the focus
        self._doc.waitForDone()
        self.report["source_probes"] = probes
        self._later(self._wait_active)

    def _wait_connected(self) -> None:
        panel = self._panel
        # With "expect_daemon": false (error-path tests) any answer to the probe will do.
        answered = panel.connected or (
            not self.job.get("expect_daemon", True) and "not connected" in panel.connection_label.text()
        )
        if not answered:
            if not self._timed_out(f"the daemon ({panel.connection_label.text()})"):
                self._later(self._wait_connected, 200)
            return
        self.report["stage"] = "edit"
        self.report["connection"] = panel.connection_label.text()
        self.report["start_button_shown"] = not panel.start_button.isHidden()
        self._panel.advanced_toggle.setChecked(bool(self.job.get("show_advanced", True)))
        # What the docker restored from kritarc (the last session's form); then, unless the job keeps it,
        # the defaults, so each run sends exactly its own settings whatever an earlier run left.
        self.report["form_at_start"] = remembered_values(self._panel.current_settings())
        if not self.job.get("keep_form"):
            self._panel.apply_settings(restored_values(remembered_values(EditSettings(prompt=""))))
        self._panel.apply_settings(self.job["settings"])
        self._measure_docker(None)  # where the docker's parts are as the painter first sees them
        self.report["docker_at_edit"] = self.report.pop("docker")
        if self.job.get("scroll_to_edit"):  # on a short screen the painter scrolls down until Edit shows
            viewport = self._panel.parentWidget()
            scroll = viewport.parentWidget() if viewport is not None else None
            if isinstance(scroll, qt.QScrollArea):
                scroll.ensureWidgetVisible(self._panel.edit_button, 0, 0)
        self._panel.edit_button.click()  # the user's path: the button's clicked signal
        self.report["edit_clicked_s"] = round(time.monotonic() - self._t0, 2)
        self._deadline = time.monotonic() + float(self.job.get("edit_timeout_s", 300))
        self._later(self._wait_result)

    def _wait_result(self) -> None:
        panel = self._panel
        now = time.monotonic()
        if self._last_tick:  # how long Krita's event loop went without running this 50 ms timer
            gap_ms = round((now - self._last_tick) * 1000)
            self.report["max_event_gap_ms"] = max(self.report.get("max_event_gap_ms", 0), gap_ms)
        self._last_tick = now
        seen = self.report["progress_seen"]
        if not seen or seen[-1] != panel.progress_text:
            seen.append(panel.progress_text)
        if panel.state == "running":
            if not self._timed_out("the edit result"):
                self._later(self._wait_result, 50)
            return
        self.report.update(
            stage="save",
            panel_state=panel.state,
            panel_message=panel.message_label.text(),
            panel_error=panel.last_error,
            progress_log=list(panel.progress_log),
            bar_log=list(panel.bar_log),
            result_header={k: v for k, v in panel.last_result_header.items() if k != "blobs"},
        )
        if panel.state != self.job.get("expect_state", "done"):
            self._finish(
                f"edit ended in state {panel.state}: {panel.last_error or panel.message_label.text()}"
            )
            return
        if panel.state != "done":  # an expected failure: nothing to save, but show it
            self._dump_layers("after")
            self._later(self._screenshot, 500)
            return
        if self.job.get("apply_index") is not None and not self._chosen:
            # Several results: the painter looks at the thumbnails, applies one, discards the others.
            self._chosen = True
            self._later(self._choose, 1000)  # let the docker paint its thumbnails first
            return
        self._save()

    def _choose(self) -> None:
        panel = self._panel
        cards = panel.results_view.cards
        self.report["result_cards"] = [card.thumb.text() for card in cards]
        self.report["layers_before_apply"] = [node.name() for node in self._doc.topLevelNodes()]
        shot = self.job.get("choices_screenshot")
        if shot:
            self.report["choices_screenshot"] = bool(Krita.instance().activeWindow().qwindow().grab().save(shot, "PNG"))
        chosen = int(self.job["apply_index"])
        cards[chosen].apply_button.click()  # the user's path: the card's buttons
        for index, card in enumerate(cards):
            if index != chosen:
                card.discard_button.click()
        self.report["panel_message"] = panel.message_label.text()
        self.report["panel_error"] = panel.last_error
        self.report["choice_states"] = [choice.state for choice in panel.choices.choices]
        self.report["applied_layer"] = panel.last_layer.name() if panel.last_layer is not None else None
        history = panel.results_view.history_list
        self.report["history"] = [history.item(i).text() for i in range(history.count())]
        if self.job.get("history_apply_row") is not None:
            self._later(self._apply_from_history, 500)
            return
        self._later(self._save, 500)

    def _apply_from_history(self) -> None:
        """The painter opens the history, picks an entry and presses Apply again."""
        panel = self._panel
        view = panel.results_view
        view.history_toggle.setChecked(True)
        view.history_list.setCurrentRow(int(self.job["history_apply_row"]))
        self.report["history_apply_enabled"] = view.history_apply_button.isEnabled()
        view.history_apply_button.click()
        self.report["history_apply_message"] = panel.message_label.text()
        self.report["panel_error"] = panel.last_error
        self.report["reapplied_layer"] = panel.last_layer.name() if panel.last_layer is not None else None
        self._later(self._save, 500)

    def _save(self) -> None:
        doc = self._doc
        doc.waitForDone()
        self._dump_layers("after")
        self.report["export_png"] = bool(
            doc.exportImage(os.path.join(self.out_dir, "composite.png"), InfoObject())
        )
        self.report["save_kra"] = bool(doc.saveAs(os.path.join(self.out_dir, "result.kra")))
        doc.waitForDone()
        zoom = Krita.instance().action("zoom_to_fit")
        if zoom is not None:
            zoom.trigger()
        self._later(self._screenshot, 1000)  # let the docker repaint its final state

    def _screenshot(self) -> None:
        shot = self.job.get("screenshot")
        if shot:
            window = Krita.instance().activeWindow().qwindow()
            self.report["screenshot"] = bool(window.grab().save(shot, "PNG"))
        self._measure_docker(self.job.get("docker_shot"))
        if self.job.get("float_shot") and "floating" not in self.report:
            # The painter pulls the docker off the window's edge: it floats, a window of its own.
            self._dock().setFloating(True)
            self._later(self._measure_floating, 1000)
            return
        self._after_screens()

    def _dock(self) -> Any:
        return next(d for d in Krita.instance().activeWindow().dockers() if d.objectName() == DOCKER_ID)

    def _measure_floating(self) -> None:
        """The floating docker's frame on the screen, how much of the panel shows without scrolling,
        and a picture of it."""
        dock, panel = self._dock(), self._panel
        frame, screen = dock.frameGeometry(), qt.QtGui.QGuiApplication.primaryScreen().availableGeometry()
        viewport = panel.parentWidget()
        self.report["floating"] = {
            "floating": dock.isFloating(),
            "frame": [frame.x(), frame.y(), frame.width(), frame.height()],
            "available": [screen.x(), screen.y(), screen.width(), screen.height()],
            "viewport": [viewport.width(), viewport.height()],
            "panel": [panel.width(), panel.height()],
        }
        self.report["float_shot"] = bool(dock.grab().save(self.job["float_shot"], "PNG"))
        dock.setFloating(False)  # docked again, as Krita then keeps it for the next start (the next session's)
        self._after_screens()

    def _after_screens(self) -> None:
        if self._panel.state == "done" and self.job.get("check_undo", True):
            # One Edit > Undo must take the whole result away (it was added in one step).
            Krita.instance().action("edit_undo").trigger()
            self._later(self._after_undo, 500)
            return
        self._finish(None)

    def _after_undo(self) -> None:
        self._doc.waitForDone()
        self.report["layers_after_undo"] = [node.name() for node in self._doc.topLevelNodes()]
        Krita.instance().action("edit_redo").trigger()  # and Edit > Redo brings it all back
        self._later(self._after_redo, 500)

    def _after_redo(self) -> None:
        self._doc.waitForDone()
        width, height = self._doc.width(), self._doc.height()
        self.report["layers_after_redo"] = [
            {"name": node.name(), "look": [node.opacity(), node.blendingMode(), node.inheritAlpha()],
             "same_pixels": bytes(node.pixelData(0, 0, width, height)) == self._dumped(node.name())}
            for node in self._doc.topLevelNodes()
        ]  # fmt: skip
        if self.job.get("second_window"):
            self._later(self._open_second_window)
            return
        self._after_second_window()

    def _after_second_window(self) -> None:
        if self.job.get("more_edits"):
            self._later(self._start_more_edit)
            return
        self._finish(None)

    # ---- more edits, each in a new document ----------------------------------------------
    def _start_more_edit(self) -> None:
        """The next of ``more_edits``: a new document ({"name", "size": [w, h], "depth": "U8" | "U16" | "F16"
        | "F32", "profile": "" (Krita's default), "selection": [x, y, w, h], "settings": {...}, "shot": path})
        holding one paint layer of a varied opaque pattern, edited with the same docker. The bar widget is
        watched as the painter sees it (a big layer's steps come in tiles); the layer's bytes are dumped."""
        plan, app = self.job["more_edits"][len(self.report.setdefault("more_edits", {}))], Krita.instance()
        width, height = plan["size"]
        depth = plan.get("depth", "U8")
        doc = app.createDocument(width, height, plan["name"], "RGBA", depth, plan.get("profile", ""), 72.0)
        if plan.get("file_layer"):  # a file layer showing the job's input picture (Layer > New > File Layer)
            layer = doc.createFileLayer("source", self.job["input"], "None")
            doc.rootNode().addChildNode(layer, None)
        else:
            layer = doc.createNode("source", "paintlayer")
            if plan.get("deep"):
                _bury(doc, layer)
            else:
                doc.rootNode().addChildNode(layer, None)
            layer.setPixelData(_pattern(width, height, depth), 0, 0, width, height)
        app.activeWindow().addView(doc)
        app.setActiveDocument(doc)
        doc.setActiveNode(layer)
        box = plan.get("selection")
        if box:
            selection = Selection()
            selection.select(int(box[0]), int(box[1]), int(box[2]), int(box[3]), 255)
            doc.setSelection(selection)
        doc.waitForDone()
        self._more_doc, self._more_layer, self._bar_seen, self._bar_shot = doc, layer, [], False
        self._dump_node(plan["name"], "source-before", layer)
        self._deadline = time.monotonic() + 30
        self._later(self._press_more_edit, 500)

    def _press_more_edit(self) -> None:
        """Once Krita shows the new document with its layer active (it sets that from its event loop)."""
        doc = self._more_doc
        active = doc.activeNode()
        plan = self.job["more_edits"][len(self.report["more_edits"])]
        if plan.get("global_mask_active"):  # Select > Show Global Selection Mask, its node clicked in the docker
            if active is None or active.type() != "selectionmask":
                self._activate_global_mask(plan)
                return
        elif active is None or active.name() != self._more_layer.name():
            if not self._timed_out("the new document's layer"):
                doc.setActiveNode(self._more_layer)
                self._later(self._press_more_edit, 200)
            return
        self._panel.apply_settings(plan["settings"])
        self._tree_before = _tree(doc.rootNode())
        look = plan.get("source_state") or {}  # the painter hid the layer, locked its alpha...
        if "visible" in look:
            self._more_layer.setVisible(bool(look["visible"]))
        if "alpha_locked" in look:
            self._more_layer.setAlphaLocked(bool(look["alpha_locked"]))
        self._panel.edit_button.click()
        self._pressed_at = time.monotonic()
        if plan.get("resize_during"):  # Image > Resize Canvas while the daemon works
            doc.resizeImage(*(int(v) for v in plan["resize_during"]))
            doc.waitForDone()
        self._deadline = time.monotonic() + float(self.job.get("edit_timeout_s", 300))
        self._later(self._watch_more_edit, 20)

    def _activate_global_mask(self, plan: dict[str, Any]) -> None:
        """Make the document's global selection mask its active node, as a painter does by showing it (Select >
        Show Global Selection Mask) and clicking it in the Layers docker; then press Edit (_press_more_edit)."""
        app, doc = Krita.instance(), self._more_doc
        action = app.action("show-global-selection-mask")
        if action is not None and action.isCheckable() and not action.isChecked():
            action.trigger()
        masks = [node for node in doc.topLevelNodes() if node.type() == "selectionmask"]
        if masks:
            doc.setActiveNode(masks[0])
        if not self._timed_out(f"the global selection mask of {plan['name']} (masks: {len(masks)})"):
            self._later(self._press_more_edit, 200)

    def _watch_more_edit(self) -> None:
        """What the bar widget shows (its text, value and maximum) each time it changes; a picture of the
        docker the first time the bar stands inside a step (a tile's text)."""
        panel, bar = self._panel, self._panel.progress
        plan = self.job["more_edits"][len(self.report["more_edits"])]
        seen = [bar.format(), bar.value(), bar.maximum()]
        if not self._bar_seen or self._bar_seen[-1] != seen:
            self._bar_seen.append(seen)
        if plan.get("shot") and not self._bar_shot and "tile" in seen[0] and 0 < seen[1] < seen[2]:
            self._bar_shot = bool(self._dock().grab().save(plan["shot"], "PNG"))
        if panel.state == "running" and not self._timed_out(f"the edit of {plan['name']}"):
            self._later(self._watch_more_edit, 20)
            return
        doc, name = self._more_doc, plan["name"]
        doc.waitForDone()
        nodes = doc.topLevelNodes()
        self._dump_node(name, "source-after", self._more_layer)
        if panel.last_layer is not None:
            self._dump_node(name, "result", panel.last_layer)
        box = plan.get("selection")
        if box:
            bounds = self._more_layer.bounds()
            mask = bytes(doc.selection().pixelData(bounds.x(), bounds.y(), bounds.width(), bounds.height()))
            with open(os.path.join(self.out_dir, f"{name}-selection.a8"), "wb") as f:
                f.write(mask)
        self.report["more_edits"][name] = {
            "state": panel.state, "error": panel.last_error, "message": panel.message_label.text(),
            "bar_seen": self._bar_seen, "shot": self._bar_shot, "profile": doc.colorProfile(),
            "depth": doc.colorDepth(), "progress_log": list(panel.progress_log), "bar_log": list(panel.bar_log),
            "types": [node.type() for node in nodes],
            "layers": [node.name() for node in nodes], "tree_before": self._tree_before, "tree": _tree(doc.rootNode()),
            "canvas": [doc.width(), doc.height()],
            "visible": {node.name(): node.visible() for node in nodes},
            "seconds": round(time.monotonic() - self._pressed_at, 2),
        }  # fmt: skip
        if plan.get("global_mask_active"):  # the next documents' layers as before: the mask hidden again
            action = Krita.instance().action("show-global-selection-mask")
            if action is not None and action.isCheckable() and action.isChecked():
                action.trigger()
        if plan.get("deep") and panel.state == "done":  # one Edit > Undo takes the result away, Redo brings it
            Krita.instance().action("edit_undo").trigger()
            self._later(self._more_undone, 500)
            return
        self._next_more_edit()

    def _more_undone(self) -> None:
        doc = self._more_doc
        doc.waitForDone()
        edit = self.report["more_edits"][self.job["more_edits"][len(self.report["more_edits"]) - 1]["name"]]
        edit["tree_after_undo"] = _tree(doc.rootNode())
        Krita.instance().action("edit_redo").trigger()
        self._later(self._more_redone, 500)

    def _more_redone(self) -> None:
        self._more_doc.waitForDone()
        edit = self.report["more_edits"][self.job["more_edits"][len(self.report["more_edits"]) - 1]["name"]]
        edit["tree_after_redo"] = _tree(self._more_doc.rootNode())
        self._next_more_edit()

    def _next_more_edit(self) -> None:
        if len(self.report["more_edits"]) < len(self.job["more_edits"]):
            self._later(self._start_more_edit)
            return
        if self.job.get("edit_without_document"):
            self._later(self._close_every_document)
            return
        self._finish(None)

    def _close_every_document(self) -> None:
        """The painter closes every picture, then presses the Edit shortcut (Tools > Scripts > SINE: Edit)."""
        for doc in Krita.instance().documents():
            doc.setModified(False)
            doc.close()
        self._later(self._edit_without_document, 1000)

    def _edit_without_document(self) -> None:
        panel, action = self._panel, Krita.instance().action("sine_edit")
        panel.last_error = ""
        action.trigger()
        by_shortcut = panel.last_error
        panel.last_error = ""
        panel.edit_button.click()  # and the docker's own Edit button
        self.report["without_document"] = {"documents": len(Krita.instance().documents()), "state": panel.state,
                                           "shortcut_enabled": action.isEnabled(), "by_shortcut": by_shortcut,
                                           "error": panel.last_error}  # fmt: skip
        self._finish(None)

    def _dump_node(self, edit: str, what: str, node: Any) -> None:
        """A node's own bytes over its bounds (B,G,R,A at its depth), as ``<edit>-<what>.raw``."""
        bounds = node.bounds()
        data = bytes(node.pixelData(bounds.x(), bounds.y(), bounds.width(), bounds.height()))
        with open(os.path.join(self.out_dir, f"{edit}-{what}.raw"), "wb") as f:
            f.write(data)

    # ---- a second window ----------------------------------------------------------------
    def _open_second_window(self) -> None:
        """The painter opens the image again in a second window (Window > New Window) and edits it there
        with that window's docker, while Krita's active document stays the first window's."""
        app = Krita.instance()
        self._win2 = app.openWindow()
        self._win2.qwindow().show()
        self._doc2 = app.openDocument(self.job["input"])
        self._win2.addView(self._doc2)
        for dock in self._win2.dockers():
            if dock.objectName() == DOCKER_ID:
                dock.setVisible(True)
        self._first_layers = [node.name() for node in self._doc.topLevelNodes()]
        self._deadline = time.monotonic() + 60
        self._later(self._second_edit, 1500)

    def _second_edit(self) -> None:
        panel = panel_for(self._win2.qwindow())
        if panel is None or panel is self._panel or not panel.connected:
            if not self._timed_out("the second window's docker"):
                self._later(self._second_edit, 200)
            return
        self._panel2 = panel
        self.report["second_window"] = {"active_is_first": Krita.instance().activeDocument() == self._doc}
        panel.apply_settings({**self.job["settings"], "prompt": "second window"})
        panel.edit_button.click()
        self._later(self._second_done)

    def _second_done(self) -> None:
        panel = self._panel2
        if panel.state == "running":
            if not self._timed_out("the second window's edit"):
                self._later(self._second_done, 100)
            return
        self.report["second_window"].update(
            state=panel.state, error=panel.last_error, first_before=self._first_layers,
            first=[node.name() for node in self._doc.topLevelNodes()],
            second=[node.name() for node in self._doc2.topLevelNodes()],
        )  # fmt: skip
        panel.shutdown()
        self._after_second_window()

    def _dumped(self, name: str) -> bytes | None:
        """The raw dump of the node called ``name`` after the edit (None if there was none)."""
        entry = next((e for e in self.report.get("layers_after", []) if e["name"] == name), None)
        if entry is None:
            return None
        with open(entry["raw"], "rb") as f:
            return f.read()

    def _measure_docker(self, shot: str | None) -> None:
        """Where the docker sits on the screen and whether every part of the panel can be scrolled
        into view; with ``shot``, side by side: the docker as shown, the docker scrolled to the
        bottom, and the whole panel it scrolls through."""
        panel = self._panel
        viewport = panel.parentWidget()
        scroll = viewport.parentWidget() if viewport is not None else None
        dock = self._dock()
        screen = qt.QtGui.QGuiApplication.primaryScreen().geometry()
        corner = dock.mapToGlobal(qt.QtCore.QPoint(0, 0))
        bar = scroll.verticalScrollBar() if isinstance(scroll, qt.QScrollArea) else None
        parts = {}
        for name in ("prompt_edit", "content_weight_spin", "advanced", "edit_button", "progress", "message_label",
                     "connection_label"):  # fmt: skip
            widget = getattr(panel, name)
            top = widget.mapTo(panel, qt.QtCore.QPoint(0, 0)).y()
            parts[name] = {"top": top, "bottom": top + widget.height(), "visible": widget.isVisible()}
        self.report["docker"] = {
            "screen": [screen.width(), screen.height()],
            "dock": [corner.x(), corner.y(), dock.width(), dock.height()],
            "scroll_area": isinstance(scroll, qt.QScrollArea),
            "viewport_height": viewport.height() if viewport is not None else None,
            "scroll_max": bar.maximum() if bar is not None else 0,
            "scroll_value": bar.value() if bar is not None else 0,
            "panel": [panel.width(), panel.height()],
            "panel_min_width": panel.minimumSizeHint().width(),
            "parts": parts,
        }
        if not shot or scroll is None:
            return
        top = dock.grab()
        if bar is not None:
            bar.setValue(bar.maximum())
        bottom = dock.grab()
        if bar is not None:
            bar.setValue(0)
        whole = panel.grab()
        shots = [top, bottom, whole]
        both = qt.QPixmap(sum(p.width() for p in shots) + 16, max(p.height() for p in shots))
        both.fill(qt.QtGui.QColor(40, 40, 40))
        painter = qt.QtGui.QPainter(both)
        x = 0
        for pixmap in shots:
            painter.drawPixmap(x, 0, pixmap)
            x += pixmap.width() + 8
        painter.end()
        self.report["docker_shot"] = bool(both.save(shot, "PNG"))

    # ---- output --------------------------------------------------------------------
    def _dump_layers(self, tag: str) -> None:
        """Raw canvas-sized bytes of every top-level node in its own format, plus a PNG each to look at.

        Paint layers give B,G,R,A at their depth; the global selection mask one byte a pixel, so
        nothing here assumes 4 bytes a pixel (a 1001x777 selection is 777,777 bytes).
        """
        doc = self._doc
        width, height = doc.width(), doc.height()
        layers = []
        for index, node in enumerate(doc.topLevelNodes()):
            base = os.path.join(self.out_dir, f"{tag}-{index}")
            data = bytes(node.pixelData(0, 0, width, height))
            with open(base + ".raw", "wb") as f:
                f.write(data)
            bounds = node.bounds()
            entry = {
                "index": index,
                "name": node.name(),
                "type": node.type(),
                "depth": node.colorDepth(),
                "bounds": [bounds.x(), bounds.y(), bounds.width(), bounds.height()],
                "raw": base + ".raw",
                "format": _format(len(data), width * height),
                "look": [node.opacity(), node.blendingMode(), node.inheritAlpha()],
                "locked": node.locked(),
            }
            try:
                entry["png"] = bool(
                    node.save(
                        base + ".png",
                        doc.xRes(),
                        doc.yRes(),
                        InfoObject(),
                        qt.QtCore.QRect(0, 0, width, height),
                    )
                )
            except Exception as exc:  # the PNG is for humans; the raw dump is what is checked
                entry["png_error"] = repr(exc)
            layers.append(entry)
        self.report[f"layers_{tag}"] = layers
        doc.refreshProjection()
        data = bytes(doc.pixelData(0, 0, width, height))
        with open(os.path.join(self.out_dir, f"{tag}-visible.raw"), "wb") as f:
            f.write(data)
        self.report[f"visible_{tag}_format"] = _format(len(data), width * height)

    def _finish(self, error: str | None) -> None:
        self.report["ok"] = error is None
        if error:
            self.report["error"] = error
        self.report["total_s"] = round(time.monotonic() - self._t0, 2)
        with open(os.path.join(self.out_dir, "result.json"), "w", encoding="utf-8") as f:
            json.dump(self.report, f, indent=1)
        sys.stderr.write("SINE_KRITA_RESULT " + json.dumps({"ok": self.report["ok"], "error": error}) + "\n")
        sys.stderr.flush()
        qt.QTimer.singleShot(0, self._quit)

    def _quit(self) -> None:
        app = Krita.instance()
        if self._panel is not None:
            self._panel.shutdown()
        for doc in app.documents():
            doc.setModified(False)  # no "save changes?" dialog
        qt.QTimer.singleShot(15000, lambda: os._exit(3))  # if a dialog still blocks the shutdown
        app.action("file_quit").trigger()


def _bury(doc: Any, source: Any) -> None:
    """50 layers around ``source``: 10 hidden opaque ones on top, then groups outer > middle > inner (10
    filler layers each in outer and middle; 3 above and 3 below the source in inner), 10 at the bottom."""
    root, width, height = doc.rootNode(), doc.width(), doc.height()

    def plain(name: str, parent: Any, above: Any = None, visible: bool = True, opaque: bool = False) -> Any:
        node = doc.createNode(name, "paintlayer")
        parent.addChildNode(node, above)
        if opaque:
            node.setPixelData(bytes((0, 0, 255, 255)) * (width * height), 0, 0, width, height)
        node.setVisible(visible)
        return node

    below = root.childNodes()[0]  # Krita's "Background"
    for i in range(9, -1, -1):
        plain(f"bottom {i}", root, below)
    outer = doc.createGroupLayer("outer")
    root.addChildNode(outer, root.childNodes()[-1])
    middle = doc.createGroupLayer("middle")
    outer.addChildNode(middle, None)
    inner = doc.createGroupLayer("inner")
    middle.addChildNode(inner, None)
    for i in range(10):  # below the group they share their parent with
        plain(f"outer {i}", outer)
        plain(f"middle {i}", middle)
    for i in range(3):
        plain(f"below {i}", inner, inner.childNodes()[-1] if inner.childNodes() else None)
    inner.addChildNode(source, inner.childNodes()[-1])
    for i in range(3):
        plain(f"above {i}", inner, inner.childNodes()[-1])
    for i in range(10):
        plain(f"hidden {i}", root, root.childNodes()[-1], visible=False, opaque=True)


def _tree(node: Any) -> list[Any]:
    """The layer stack under ``node``, bottom first: names, and [name, children] for groups."""
    return [[child.name(), _tree(child)] if child.type() == "grouplayer" else child.name()
            for child in node.childNodes()]  # fmt: skip


def _pattern(width: int, height: int, depth: str = "U8") -> bytes:
    """Opaque B,G,R,A pixels at ``depth`` that vary across the picture (a flat one is a trivial edit);
    at 16 bits and in float the low bits vary too, so a rounding through 8 bits would show."""
    import struct

    values = [((x * 5) % 256 / 255, (y * 3) % 256 / 255, (x + y) % 256 / 255, 1.0)
              for y in range(height) for x in range(width)]  # fmt: skip
    if depth == "U8":
        return bytes(round(v * 255) for pixel in values for v in pixel)
    if depth == "U16":
        return struct.pack(f"<{4 * len(values)}H", *(min(65535, round(v * 65535) + (i % 7) * (v < 1))
                                                      for i, pixel in enumerate(values) for v in pixel))
    return struct.pack(f"<{4 * len(values)}{'e' if depth == 'F16' else 'f'}", *(v for pixel in values for v in pixel))


def _format(size: int, pixels: int) -> str:
    """What a raw dump holds, from its bytes per pixel."""
    return {1: "a8", 4: "bgra8", 8: "bgra16", 16: "bgra32f"}.get(size // max(1, pixels), f"{size}B")
