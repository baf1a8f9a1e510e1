"""The "SINE Edit" panel: the form, the progress display and the edit's life cycle.

It is a plain QWidget (the docker only wraps it), so the automation hook and the unit tests drive
the very same widgets and slots a user clicks. Socket work is delegated to :class:`DaemonLink`
(its own thread); Krita's API is only touched here, on the GUI thread, when reading the source and
placing the result. Every slot catches its exceptions and shows them in the status line, because an
uncaught exception in Krita opens a modal dialog.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable
from typing import Any

from sine_protocol.messages import (
    SLOW_STEP_S,
    bounded_notes,
    daemon_error_text,
    daemon_summary,
    part_text,
    step_fraction,
    still_working,
    with_notes,
)

from . import qt_compat as qt
from .daemon_link import LINK_FAILED, DaemonLink, LinkEvent, daemon_installed, describe_error
from .document_io import (
    SourcePixels,
    UnsupportedDocument,
    add_result_layer,
    check_canvas,
    read_source,
    result_pixels,
)
from .results_view import ResultsView
from .settings import (
    DEFAULT_CONTENT_WEIGHT,
    DEFAULT_GUIDANCE,
    DEFAULT_K,
    DEFAULT_STEPS,
    DEFAULT_STRENGTH,
    DEFAULT_STYLE_WEIGHT,
    DEFAULT_V,
    MAX_COUNT,
    METHODS,
    STARTS,
    STYLES,
    EditSettings,
    progress_text,
    remembered_values,
    restored_values,
)
from .style_layer import layer_names, read_style

POLL_MS = 50
REPROBE_MS = 5000  # while no daemon answers
HEARTBEAT_MS = 15000  # while connected: notice a daemon that went away
STARTING_PROBE_MS = 1000
STARTING_GRACE_S = 90.0  # how long "Start daemon" waits before saying it failed
PREVIEW_SIDE = 128
STRENGTH_TICKS = 100  # the slider counts hundredths
BAR_TICKS = 1000  # the progress bar counts thousandths of a phase, so it moves within a step's tiles
MIN_STRENGTH_TICK = 5
# Scrolling a part into view waits this long: the chain of layout requests a longer text (or new
# thumbnails) sets off has to settle first, or the scroll goes to where the part used to be.
REVEAL_MS = 50
NO_STYLE = "none"


def guarded(slot: Callable[..., Any]) -> Callable[..., Any]:
    """Catch everything a slot raises and show it in the panel instead of Krita's modal dialog."""

    @functools.wraps(slot)
    def wrapper(self: SinePanel, *args: Any) -> Any:
        try:
            return slot(self, *args)
        except Exception as exc:
            traceback.print_exc()
            self.show_error(describe_error(exc))
            return None

    return wrapper


class SinePanel(qt.QWidget):
    """Prompt form + Edit/Cancel + progress, preview and daemon status."""

    def __init__(
        self,
        document_provider: Callable[[], Any],
        link: DaemonLink | None = None,
        start_daemon: Callable[[], Any] | None = None,
        parent: Any = None,
        store: Any = None,
    ) -> None:
        """``store`` keeps the form between sessions: ``load() -> dict[str, str]`` and ``save(dict)``."""
        super().__init__(parent)
        self._document_provider = document_provider
        self.link = link if link is not None else DaemonLink()
        self._start_daemon = start_daemon
        self.state = "idle"  # idle | running | done | error | cancelled
        self.last_error = ""
        self.last_layer: Any = None
        self.last_result_header: dict[str, Any] = {}
        self.connected = False
        self.device = ""
        self.progress_text = "idle"
        self.progress_log: list[str] = []  # phase texts of the current edit (automation, tests)
        self.bar_log: list[float | None] = []  # the bar's fraction at each of them (None: busy indicator)
        self._job_doc: Any = None
        self._job_source: SourcePixels | None = None
        self._job_settings: EditSettings | None = None
        self._starting_until = 0.0
        self._progress_at, self._progress_base = 0.0, ""  # when the last progress came, and its text
        self._ticket = -1  # the link's ticket of the edit this panel waits for
        self._doc_closed = False  # the running edit's document was closed (its job is being cancelled)
        from sine_protocol.results import ResultHistory

        self.choices: Any = None  # ResultChoices of the last press (sine_protocol.results)
        self.history = ResultHistory()
        self._build_ui()
        self._store = store
        self.restore_form()
        self._timer = qt.QTimer(self)
        self._timer.timeout.connect(self._on_tick)
        self._reprobe = qt.QTimer(self)
        self._reprobe.timeout.connect(self.probe)
        self.link.start()
        self._timer.start(POLL_MS)
        self.probe()

    # ---- widgets ---------------------------------------------------------------------
    def _build_ui(self) -> None:
        root = qt.QVBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        root.setSpacing(4)
        self.prompt_edit = qt.QLineEdit(self)
        self.prompt_edit.setPlaceholderText("what to change, e.g. wearing a red hat")
        self.prompt_edit.setToolTip("the edit: what to change in the picture")
        # What the painter needs at every press comes first: docked on an 800x600 screen Krita gives
        # the panel ~100 px, and these two rows are what shows there without scrolling. Cancel takes
        # Edit's place while an edit runs; the bar keeps a row of its own (its text is clipped, not elided).
        top_row = qt.QHBoxLayout()
        self.edit_button = qt.QPushButton("Edit", self)
        self.edit_button.setToolTip("edit the picture as the prompt says (a new layer above the source)")
        self.edit_button.clicked.connect(self.start_edit)
        self.cancel_button = qt.QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_edit)
        top_row.addWidget(self.prompt_edit, 1)
        top_row.addWidget(self.edit_button)
        top_row.addWidget(self.cancel_button)
        root.addLayout(top_row)
        self.progress = qt.QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        root.addWidget(self.progress)
        self.message_label = qt.QLabel("", self)
        self.message_label.setWordWrap(True)
        self.message_label.setTextFormat(qt.RICH_TEXT_OFF)
        self.message_label.setTextInteractionFlags(qt.TEXT_SELECTABLE)
        root.addWidget(self.message_label)
        self.preview_label = qt.QLabel(self)
        self.preview_label.setFixedSize(PREVIEW_SIDE, PREVIEW_SIDE)
        self.preview_label.setAlignment(qt.ALIGN_CENTER)
        self.preview_label.setToolTip("live preview of the edit")
        self.preview_label.setVisible(False)  # takes room only once there is something to show
        root.addWidget(self.preview_label, 0, qt.ALIGN_CENTER)

        self.results_view = ResultsView(self.apply_result, self.discard_result, self.show_result,
                                        self.reapply_history, self)
        root.addWidget(self.results_view)

        status_row = qt.QHBoxLayout()
        self.connection_label = qt.QLabel("daemon: checking...", self)
        self.connection_label.setWordWrap(True)
        self.connection_label.setTextFormat(qt.RICH_TEXT_OFF)
        self.start_button = qt.QPushButton("Start daemon", self)
        self.start_button.setVisible(False)
        self.start_button.clicked.connect(self.start_daemon)
        status_row.addWidget(self.connection_label, 1)
        status_row.addWidget(self.start_button)
        root.addLayout(status_row)

        form = _form()
        self.subject_edit = qt.QLineEdit(self)
        self.subject_edit.setPlaceholderText("what the picture shows, e.g. dog")
        self.style_combo = qt.QComboBox(self)
        self.style_combo.addItems(list(STYLES))
        self.source_combo = qt.QComboBox(self)
        self.source_combo.addItem("Active layer", "layer")
        self.source_combo.addItem("Visible image", "visible")
        form.addRow("Subject", self.subject_edit)
        form.addRow("Style", self.style_combo)
        form.addRow("Source", self.source_combo)
        strength_row = qt.QHBoxLayout()
        self.strength_slider = qt.QSlider(qt.HORIZONTAL, self)
        self.strength_slider.setRange(MIN_STRENGTH_TICK, STRENGTH_TICKS)
        self.strength_slider.setPageStep(10)
        self.strength_slider.setToolTip("how much may change: 1.00 starts from pure noise (SINE), lower keeps more "
                                        "of the source")
        self.strength_label = qt.QLabel("", self)
        self.strength_slider.valueChanged.connect(lambda tick: self.strength_label.setText(f"{tick / 100:.2f}"))
        self.strength_slider.setValue(round(DEFAULT_STRENGTH * STRENGTH_TICKS))
        self.strength_label.setText(f"{self.strength_slider.value() / 100:.2f}")
        strength_row.addWidget(self.strength_slider, 1)
        strength_row.addWidget(self.strength_label)
        form.addRow("Strength", strength_row)
        self.count_spin = _spin(self, 1, MAX_COUNT, 1)
        self.count_spin.setToolTip("how many results (seeds) to choose from")
        form.addRow("Results", self.count_spin)
        style_row = qt.QHBoxLayout()
        self.style_layer_combo = _RefreshingCombo(self._refresh_style_layers, self)
        self.style_layer_combo.addItem(NO_STYLE, "")
        self.style_layer_combo.setToolTip("another layer whose colours and style the edit should take")
        self.style_weight_spin = _dspin(self, 0.0, 1.0, DEFAULT_STYLE_WEIGHT, 0.05)
        self.style_weight_spin.setToolTip("weight of the style layer's model (style + content weight at most 1)")
        self.content_weight_spin = _dspin(self, 0.0, 1.0, DEFAULT_CONTENT_WEIGHT, 0.05)
        self.content_weight_spin.setToolTip("weight of the source's own model beside the style layer's: higher "
                                            "keeps more of the picture (default 1 − v, the engine's)")
        self.style_weight_spin.valueChanged.connect(lambda x: _give_way(self.content_weight_spin, x))
        self.content_weight_spin.valueChanged.connect(lambda x: _give_way(self.style_weight_spin, x))
        self.style_layer_combo.currentIndexChanged.connect(lambda _i: self._style_chosen())
        style_row.addWidget(self.style_layer_combo, 1)
        style_row.addWidget(self.style_weight_spin)
        form.addRow("Style from", style_row)
        form.addRow("Content weight", self.content_weight_spin)
        self._style_chosen()
        root.addLayout(form)

        self.advanced_toggle = qt.QToolButton(self)
        self.advanced_toggle.setText("Advanced settings")
        self.advanced_toggle.setCheckable(True)
        root.addWidget(self.advanced_toggle)
        self.advanced = qt.QWidget(self)
        adv = _form(self.advanced)
        adv.setContentsMargins(0, 0, 0, 0)
        self.seed_spin = _spin(self, 0, 2**31 - 1, 0)
        self.steps_spin = _spin(self, 1, 1000, DEFAULT_STEPS)
        self.guidance_spin = _dspin(self, 0.0, 30.0, DEFAULT_GUIDANCE, 0.5)
        self.v_spin = _dspin(self, 0.0, 1.0, DEFAULT_V, 0.05)
        self.k_spin = _spin(self, 0, 1000, DEFAULT_K)
        self.method_combo = qt.QComboBox(self)
        self.method_combo.addItems(list(METHODS))
        self.finetune_spin = _spin(self, 0, 20000, 0, special="auto")
        self.start_combo = qt.QComboBox(self)
        self.start_combo.addItems(list(STARTS))
        self.start_combo.setToolTip("below strength 1: start from the source noised at random (noise) or from its "
                                    "own noise found by DDIM inversion (inversion)")
        self.width_spin = _spin(self, 0, 8192, 0, special="same")
        self.height_spin = _spin(self, 0, 8192, 0, special="same")
        size_row = qt.QHBoxLayout()
        size_row.addWidget(self.width_spin)
        size_row.addWidget(qt.QLabel("x", self))
        size_row.addWidget(self.height_spin)
        adv.addRow("Seed", self.seed_spin)
        adv.addRow("Sampling steps", self.steps_spin)
        adv.addRow("Guidance w", self.guidance_spin)
        adv.addRow("v (pre-trained)", self.v_spin)
        adv.addRow("K (guided above)", self.k_spin)
        adv.addRow("Start (strength < 1)", self.start_combo)
        adv.addRow("Fine-tune", self.method_combo)
        adv.addRow("Fine-tune steps", self.finetune_spin)
        adv.addRow("Output size", size_row)
        self.advanced.setVisible(False)
        self.advanced_toggle.toggled.connect(self.advanced.setVisible)
        root.addWidget(self.advanced)

        root.addStretch(1)

    # ---- reading the form ------------------------------------------------------------
    def current_settings(self) -> EditSettings:
        """The edit the form currently describes."""
        finetune_steps = self.finetune_spin.value() or None
        width, height = self.width_spin.value(), self.height_spin.value()
        return EditSettings(
            prompt=self.prompt_edit.text(),
            subject=self.subject_edit.text(),
            style=self.style_combo.currentText(),
            seed=self.seed_spin.value(),
            steps=self.steps_spin.value(),
            guidance=self.guidance_spin.value(),
            v=self.v_spin.value(),
            k=self.k_spin.value(),
            method=self.method_combo.currentText(),
            finetune_steps=finetune_steps,
            output_width=width or None,
            output_height=height or None,
            source=self.source_combo.currentData() or "layer",
            strength=self.strength_slider.value() / STRENGTH_TICKS,
            start=self.start_combo.currentText(),
            count=self.count_spin.value(),
            style_layer=self.style_layer_combo.currentData() or "",
            style_weight=self.style_weight_spin.value(),
            content_weight=self.content_weight_spin.value(),
        )

    def apply_settings(self, values: dict[str, Any]) -> None:
        """Fill the form from a dict of EditSettings field names (automation, saved presets)."""
        setters: dict[str, Callable[[Any], None]] = {
            "prompt": self.prompt_edit.setText,
            "subject": self.subject_edit.setText,
            "style": lambda s: _select(self.style_combo, s),
            "source": lambda s: self.source_combo.setCurrentIndex(self.source_combo.findData(s)),
            "seed": self.seed_spin.setValue,
            "steps": self.steps_spin.setValue,
            "guidance": self.guidance_spin.setValue,
            "v": self.v_spin.setValue,
            "k": self.k_spin.setValue,
            "method": lambda s: _select(self.method_combo, s),
            "finetune_steps": lambda n: self.finetune_spin.setValue(n or 0),
            "output_width": lambda n: self.width_spin.setValue(n or 0),
            "output_height": lambda n: self.height_spin.setValue(n or 0),
            "strength": lambda x: self.strength_slider.setValue(round(float(x) * STRENGTH_TICKS)),
            "start": lambda s: _select(self.start_combo, s),
            "count": self.count_spin.setValue,
            "style_layer": self.select_style_layer,
            "style_weight": self.style_weight_spin.setValue,
            "content_weight": self.content_weight_spin.setValue,
        }
        for key, value in values.items():
            if key not in setters:
                raise KeyError(f"unknown setting {key!r}")
            setters[key](value)

    def restore_form(self) -> None:
        """Fill the form from the store (the last session's values); a field it cannot use keeps its default."""
        if self._store is None:
            return
        try:
            self.apply_settings(restored_values(self._store.load()))
        except Exception:  # a damaged store must never cost the painter the docker
            traceback.print_exc()

    def remember_form(self) -> None:
        """Keep the form in the store, for the next session."""
        if self._store is None:
            return
        try:
            self._store.save(remembered_values(self.current_settings()))
        except Exception:
            traceback.print_exc()

    # ---- actions ---------------------------------------------------------------------
    @guarded
    def start_edit(self, *_: Any) -> None:
        """Read the source from the document and hand the edit to the daemon thread."""
        if self.state == "running":
            self.show_message("An edit is already running.")
            return
        self.remember_form()
        settings = self.current_settings()
        settings.validate()
        doc = self._document_provider()
        source = read_source(doc, settings.source)
        from sine_protocol import Mask, RGBAImage

        kwargs = settings.submit_kwargs((source.width, source.height))
        kwargs["image"] = RGBAImage(source.width, source.height, source.rgba)
        if source.mask is not None:
            kwargs["mask"] = Mask(source.width, source.height, source.mask)
        if settings.style_layer:
            style_w, style_h, style_rgba = read_style(doc, settings.style_layer)
            kwargs["style_image"] = RGBAImage(style_w, style_h, style_rgba)
        if self.choices is not None:  # a new press replaces the results still waiting
            self.choices.discard_pending()
            self.choices = None
            self.results_view.show_choices(None)
            self.refresh_history()
        self._job_doc, self._job_source, self._job_settings = doc, source, settings
        self._doc_closed = False
        self.last_layer = None
        self.last_error = ""
        self.progress_log, self.bar_log = [], []
        self.preview_label.clear()
        self.preview_label.setVisible(False)
        self._set_running(True)
        self._set_progress("sending", None, None)
        where = "selection of " if source.mask is not None else ""
        self.show_message(f"Editing {where}{source.source_name} ({source.width}x{source.height})...")
        self._ticket = self.link.submit(kwargs)

    @guarded
    def cancel_edit(self, *_: Any) -> None:
        if self.state != "running":
            return
        self.link.cancel()
        self.show_message("Cancelling...")

    @guarded
    def start_daemon(self, *_: Any) -> None:
        """Launch the installed daemon and keep probing until it answers."""
        starter = self._start_daemon
        if starter is None:
            from sine_protocol.launch import start_daemon as starter
        starter()
        self._starting_until = time.monotonic() + STARTING_GRACE_S
        self.start_button.setVisible(False)
        self.connection_label.setText("daemon: starting...")
        self._reprobe.start(STARTING_PROBE_MS)

    def probe(self) -> None:
        """Ask the daemon who it is (answered asynchronously)."""
        self.link.probe()

    def shutdown(self) -> None:
        """Keep the form, stop timers and the socket thread (docker destroyed, Krita quitting)."""
        self.remember_form()
        self._timer.stop()
        self._reprobe.stop()
        self.link.stop()

    # ---- events from the daemon thread -----------------------------------------------
    @guarded
    def _on_tick(self) -> None:
        self._show_long_step()
        if self.state == "running" and not self._doc_closed and _closed(self._job_doc):
            # The painter closed the picture: the daemon need not finish an edit nobody can receive.
            self._doc_closed = True
            self.link.cancel()
            self.show_message("The document was closed: cancelling the edit...")
        for event in self.link.drain():
            try:
                self.handle_event(event)
            except Exception as exc:
                traceback.print_exc()
                if self.state == "running":
                    self.link.cancel()  # don't leave the daemon working for an edit nobody waits for
                    self._finish("error", f"could not use the daemon's answer: {describe_error(exc)}")
                else:
                    self.show_error(describe_error(exc))

    def handle_event(self, event: LinkEvent) -> None:
        """Update the panel (and on ``result`` the document) for one daemon event."""
        header = event.header
        if event.kind == "connected":
            self.connected = True
            self.device = str(header.get("device", "?"))
            text = daemon_summary(header)
            self.start_button.setVisible(False)
            self._starting_until = 0.0
            interval = HEARTBEAT_MS
            if header.get("model_error"):
                text += f"; model error: {header['model_error']}"
            elif header.get("model_ready") is False:
                text += "; loading the model..."
                interval = 2000  # update the line once the model is ready
            self.connection_label.setText(text)
            self._reprobe.start(interval)
        elif event.kind == "unavailable":
            self.connected = False
            if time.monotonic() < self._starting_until:
                self.connection_label.setText("daemon: starting... (not answering yet)")
                return
            startable = bool(header.get("installed")) and daemon_installed()
            hint = "press Start daemon" if startable else "start it with `sine daemon` in a terminal"
            self.connection_label.setText(f"not connected: {event.message}; {hint}.")
            self.start_button.setVisible(startable)
            self._reprobe.start(REPROBE_MS)
        elif self.state != "running" or event.ticket != self._ticket:
            return  # late events of an edit that already ended here
        elif event.kind == "accepted":
            position = header.get("queue_position")
            self._set_progress("queued", None, None, extra=f" (position {position})" if position else "")
        elif event.kind == "progress":
            self._set_progress(
                str(header.get("phase", "")), header.get("step"), header.get("total"), header.get("eta_s"),
                extra=part_text(header),  # " · tile 5/24": inside a big layer's minutes-long step
                header=header,
            )
            if notes := bounded_notes(header.get("notes")):  # e.g. a cut prompt: worth knowing before the result
                self.show_message(f"Note: {'; '.join(notes)}.")
            if event.image is not None:
                self.show_preview(event.image)
        elif event.kind == "cancelled" or (event.kind == "result" and self._doc_closed):
            self._finish("cancelled", CLOSED_MESSAGE if self._doc_closed else "Cancelled; the document is unchanged.")
        elif event.kind == "result":
            self._place_result(event)
        elif event.kind == "error":
            code = str(header.get("code", "error"))
            if code == LINK_FAILED:  # the link's own words: the daemon gone or out of reach
                self._finish("error", event.message)
            else:  # a daemon's error reply: what to do first, its words after
                self._finish("error", daemon_error_text(code, event.message, "press Edit again"))

    def _place_result(self, event: LinkEvent) -> None:
        """One result: a layer at once, as before. Several: thumbnails to apply or discard."""
        from sine_protocol.results import ResultChoices

        source, settings, doc = self._job_source, self._job_settings, self._job_doc
        if source is None or settings is None or self.state != "running":
            return
        if not event.results:
            raise ValueError("the result carried no image")
        choices = ResultChoices(event.results, context=(doc, source, settings))
        self.last_result_header = dict(event.header)
        timings = event.header.get("timings") or {}
        total = timings.get("total_s")
        took = f" in {total:.1f} s" if isinstance(total, int | float) else ""
        cached = " (cached fine-tune)" if event.header.get("cache_hit") else ""
        held = len(source.rgba) + len(source.native) + len(source.mask or b"")  # kept with the pixels, to apply again
        self.history.add(doc, choices, settings.prompt.strip(), settings.strength, context_bytes=held)
        if len(choices) == 1:
            where = _where(source)  # the source layer may have been deleted during the edit
            try:
                self.last_layer = choices.apply(0, functools.partial(self._make_layer, doc, source, settings))
            except UnsupportedDocument as exc:  # e.g. the image was resized meanwhile: said as it is
                self.refresh_history()
                self._finish("error", str(exc))
                return
            self.show_preview(event.results[0].image)
            message = f"Added layer '{self.last_layer.name()}'{where}{took}{cached}."
        else:
            self.choices = choices
            self.results_view.show_choices(choices)
            self.preview_label.setVisible(False)  # the thumbnails are the preview; a click shows one larger
            message = f"{len(choices)} results{took}{cached}: Apply the ones to keep, Discard the others."
        self.refresh_history()
        self._finish("done", with_notes(message, bounded_notes(event.header.get("notes"))))
        if len(choices) > 1:  # once the layout has made room for them; after the message's scroll, so they win
            qt.QTimer.singleShot(REVEAL_MS, self._scroll_to_results)

    def _make_layer(self, doc: Any, source: SourcePixels, settings: EditSettings, result: Any) -> Any:
        """The result layer of one image, placed as every SINE result is (above the source)."""
        check_canvas(doc, source)
        image = result.image
        rgba = image.data
        if (image.width, image.height) != (source.width, source.height):
            # Rendered at a custom output size: the new layer still covers the source's rectangle exactly.
            rgba = qt.scale_rgba(rgba, image.width, image.height, source.width, source.height)
        name = settings.layer_name(result.seed)
        return add_result_layer(doc, source.anchor, result_pixels(source, rgba), source.x, source.y,
                                source.width, source.height, name, source.look)  # fmt: skip

    # ---- the results of a press --------------------------------------------------------
    @guarded
    def apply_result(self, index: int) -> None:
        """Make result ``index`` of the last press a layer, exactly as a single result is placed."""
        if self.choices is None:
            return
        doc, source, settings = self.choices.context
        where = _where(source)
        layer = self.choices.apply(index, functools.partial(self._make_layer, doc, source, settings))
        self.last_layer = layer
        self.results_view.update_states(self.choices)
        self.refresh_history()
        self.show_message(f"Added layer '{layer.name()}'{where}.")

    @guarded
    def reapply_history(self, row: int) -> None:
        """Make history entry ``row`` (of the active document, newest first) a layer again, exactly as
        its card's Apply did: above its source layer, or on top when that layer is gone."""
        doc = self._document_provider()
        entries = self.history.entries(doc) if doc is not None else []
        if not 0 <= row < len(entries):
            return
        entry = entries[row]
        if self.choices is not None and entry.choice in self.choices.choices and entry.state == "pending":
            self.apply_result(self.choices.choices.index(entry.choice))  # still a card: its own Apply
            return
        if not entry.can_reapply:
            raise ValueError("That result is no longer kept (the history keeps the pixels of the newest results "
                             "only): run the edit again.")
        _doc, source, settings = entry.context
        where = _where(source)
        from sine_protocol.results import EditResult

        layer = self._make_layer(doc, source, settings, EditResult(0, entry.seed, entry.image))
        entry.applied_again += 1
        self.last_layer = layer
        self.refresh_history()
        self.show_message(f"Added layer '{layer.name()}' again{where}.")

    @guarded
    def discard_result(self, index: int) -> None:
        """Forget result ``index``: nothing of it reaches the document."""
        if self.choices is None:
            return
        self.choices.discard(index)
        self.results_view.update_states(self.choices)
        self.refresh_history()
        left = len(self.choices.pending())
        self.show_message(f"Discarded result {index + 1}; {left} still waiting." if left else
                          f"Discarded result {index + 1}.")

    @guarded
    def show_result(self, index: int) -> None:
        """Show result ``index`` in the preview box."""
        if self.choices is not None and self.choices.choices[index].image is not None:
            self.show_preview(self.choices.choices[index].image)

    def _scroll_to_results(self) -> None:
        """In a docker that scrolls (a short screen), bring the new thumbnails into view."""
        self._scroll_to(self.results_view)

    def _scroll_to_message(self) -> None:
        self._scroll_to(self.message_label)

    def _scroll_to(self, part: Any) -> None:
        widget = self.parentWidget()
        while widget is not None and not isinstance(widget, qt.QScrollArea):
            widget = widget.parentWidget()
        if widget is not None:
            widget.ensureWidgetVisible(part, 0, 4)

    def refresh_history(self) -> None:
        """Show the active document's history (call when the active document may have changed)."""
        doc = self._document_provider()
        self.results_view.show_history(self.history.entries(doc) if doc is not None else [])

    # ---- the style layer choice --------------------------------------------------------
    def _refresh_style_layers(self) -> None:
        """Offer the active document's layers (kept current each time the list opens)."""
        combo = self.style_layer_combo
        current = combo.currentData() or ""
        names = layer_names(self._document_provider())
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(NO_STYLE, "")
        for name in names:
            combo.addItem(name, name)
        index = combo.findData(current) if current in names else 0
        combo.setCurrentIndex(max(index, 0))
        combo.blockSignals(False)
        self._style_chosen()

    def _style_chosen(self) -> None:
        """The weights mean something only with a style layer."""
        chosen = bool(self.style_layer_combo.currentData())
        self.style_weight_spin.setEnabled(chosen)
        self.content_weight_spin.setEnabled(chosen)

    def select_style_layer(self, name: str) -> None:
        """Choose the style layer by name ("" or "none": no style picture)."""
        self._refresh_style_layers()
        if name in ("", NO_STYLE):
            self.style_layer_combo.setCurrentIndex(0)
            return
        index = self.style_layer_combo.findData(name)
        if index < 0:
            raise ValueError(f"there is no layer {name!r} to take the style from")
        self.style_layer_combo.setCurrentIndex(index)

    # ---- display helpers -------------------------------------------------------------
    def _set_running(self, running: bool) -> None:
        self.state = "running" if running else self.state
        self.edit_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.edit_button.setVisible(not running)  # one place for both: the prompt keeps its width
        self.cancel_button.setVisible(running)

    def _set_progress(
        self, phase: str, step: Any, total: Any, eta: Any = None, extra: str = "", header: dict[str, Any] | None = None
    ) -> None:
        """Show a phase's step in the line and, with ``header`` (the progress event), how far it is in the
        bar: a big layer's step reports its tiles, so the bar moves within the step as GIMP's does."""
        text = progress_text(phase, step, total, eta) + extra
        self._progress_at, self._progress_base = time.monotonic(), text
        if isinstance(total, int) and total > 0 and isinstance(step, int):
            self.progress.setRange(0, BAR_TICKS)
            self.progress.setValue(round(step_fraction(header or {"step": step, "total": total}) * BAR_TICKS))
        else:
            self.progress.setRange(0, 0)  # busy indicator
        self.progress.setFormat(text)
        self.progress_text = text
        if len(self.progress_log) < 1000:
            self.progress_log.append(text)
            maximum = self.progress.maximum()
            self.bar_log.append(self.progress.value() / maximum if maximum else None)

    def _show_long_step(self) -> None:
        """One step without news for SLOW_STEP_S (a big layer's tiled sampling step: minutes): the line
        says how long it has worked, so the painter sees the edit is alive."""
        waited = time.monotonic() - self._progress_at
        if self.state != "running" or waited < SLOW_STEP_S:
            return
        text = still_working(self._progress_base, waited)
        if text != self.progress_text:
            self.progress.setFormat(text)
            self.progress_text = text

    def _finish(self, state: str, message: str) -> None:
        self.state = state
        self.edit_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.edit_button.setVisible(True)
        self.cancel_button.setVisible(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if state == "done" else 0)
        self.progress.setFormat({"done": "done", "cancelled": "cancelled"}.get(state, "failed"))
        self._job_doc = self._job_source = None
        if state == "error":
            self.show_error(message)
        else:
            self.show_message(message)

    def show_message(self, text: str) -> None:
        self.message_label.setStyleSheet("")
        self.message_label.setText(text)
        # Docked on a short screen the panel shows ~100 px: the line appears below Edit, out of sight.
        qt.QTimer.singleShot(REVEAL_MS, self._scroll_to_message)

    def show_error(self, text: str) -> None:
        self.last_error = text
        if self.state == "running":
            self.state = "error"
            self.edit_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
        self.message_label.setStyleSheet("color: #d04040;")
        self.message_label.setText(text)
        qt.QTimer.singleShot(REVEAL_MS, self._scroll_to_message)

    def show_preview(self, image: Any) -> None:
        qimage = qt.qimage_from_rgba(image.data, image.width, image.height)
        pixmap = qt.QPixmap.fromImage(qimage).scaled(PREVIEW_SIDE, PREVIEW_SIDE, qt.KEEP_ASPECT, qt.SMOOTH)
        self.preview_label.setPixmap(pixmap)
        self.preview_label.setVisible(True)


CLOSED_MESSAGE = "The document was closed: the edit was cancelled; nothing was added."


def _closed(doc: Any) -> bool:
    """Whether ``doc`` was closed (Krita's wrapper of a closed document has no root node)."""
    return doc is not None and doc.rootNode() is None


def _where(source: SourcePixels) -> str:
    """How a result is placed, for the status line: nothing to say while its source layer exists."""
    anchor = source.anchor
    if anchor is None:  # the visible image: on top by design
        return ""
    if anchor.parentNode() is not None:
        if source.frame is None:
            return ""
        # Krita's API makes no keyframe for it: the painter must know it covers the other frames too.
        return (f" (frame {source.frame} of the animated layer '{source.source_name}'; the new layer is not "
                "animated: it shows on every frame)")  # fmt: skip
    return f" on top: the source layer '{source.source_name}' is gone"


def _give_way(other: Any, value: float) -> None:
    """Lower the other weight so style + content stay at most 1 (the daemon refuses more)."""
    if value + other.value() > 1.0 + 1e-9:
        other.setValue(max(0.0, 1.0 - value))


def _form(parent: Any = None) -> Any:
    """A form whose labels move above their fields when the docker is narrow."""
    form = qt.QFormLayout(parent) if parent is not None else qt.QFormLayout()
    form.setRowWrapPolicy(qt.WRAP_LONG_ROWS)
    form.setFieldGrowthPolicy(qt.ALL_FIELDS_GROW)
    return form


class _RefreshingCombo(qt.QComboBox):
    """A combo box that refills itself just before its list opens."""

    def __init__(self, refresh: Callable[[], None], parent: Any = None) -> None:
        super().__init__(parent)
        self._refresh = refresh

    def showPopup(self) -> None:  # noqa: N802 (Qt's name)
        try:
            self._refresh()
        except Exception:
            traceback.print_exc()
        super().showPopup()


def _spin(parent: Any, low: int, high: int, value: int, special: str = "") -> Any:
    box = qt.QSpinBox(parent)
    box.setRange(low, high)
    box.setValue(value)
    if special:
        box.setSpecialValueText(special)
    return box


def _dspin(parent: Any, low: float, high: float, value: float, step: float) -> Any:
    box = qt.QDoubleSpinBox(parent)
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(2)
    box.setValue(value)
    return box


def _select(combo: Any, text: str) -> None:
    index = combo.findText(text)
    if index < 0:
        raise ValueError(f"{text!r} is not one of the choices")
    combo.setCurrentIndex(index)
