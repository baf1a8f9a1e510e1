"""The docker's form comes back after Krita restarts: it is kept in Krita's own settings (kritarc)."""

from __future__ import annotations

from krita import Krita, Window
from krita_helpers import make_document
from krita_standin import wait_for
from sine_krita.docker import DOCKER_ID
from sine_krita.settings import DEFAULT_STRENGTH

FORM = {"prompt": "wearing a red hat", "subject": "dog", "style": "painting", "strength": 0.6, "count": 3,
        "seed": 12, "steps": 9, "method": "full", "finetune_steps": 25, "source": "visible"}  # fmt: skip


_windows: list[Window] = []  # kept alive: a docker lives as long as its main window


def _docker():
    _windows.append(Window())
    return [f for f in Krita.instance().dock_factories if f.id == DOCKER_ID][0].create(_windows[-1])


def test_form_comes_back_in_a_new_docker_after_an_edit(qapp, standin, process_events):
    app = Krita.instance()
    app.settings.clear()
    doc, _ = make_document(16, 12)
    app.setActiveDocument(doc)
    first = _docker()
    try:
        first.panel.apply_settings(FORM)
        first.panel.edit_button.click()
        assert wait_for(lambda: first.panel.state != "running", 10, process_events)
        assert first.panel.state == "done", first.panel.last_error
    finally:
        first.panel.shutdown()
    again = _docker()  # Krita started again: a new docker reads kritarc
    try:
        settings = again.panel.current_settings()
        for key, value in FORM.items():
            assert getattr(settings, key) == value, key
    finally:
        again.panel.shutdown()


def test_changes_without_an_edit_are_kept_when_krita_closes(qapp):
    app = Krita.instance()
    app.settings.clear()
    first = _docker()
    first.panel.apply_settings({"prompt": "not sent yet", "strength": 0.3})
    app.notifier().applicationClosing.emit()  # Krita quitting: the docker's panel shuts down
    again = _docker()
    try:
        assert again.panel.prompt_edit.text() == "not sent yet"
        assert again.panel.strength_slider.value() == 30
    finally:
        again.panel.shutdown()


def test_a_damaged_setting_falls_back_to_the_default(qapp):
    app = Krita.instance()
    app.settings.clear()
    app.writeSetting("sine_edit", "strength", "lots")
    app.writeSetting("sine_edit", "prompt", "still here")
    panel = _docker().panel
    try:
        assert panel.prompt_edit.text() == "still here"
        assert panel.current_settings().strength == DEFAULT_STRENGTH
    finally:
        panel.shutdown()
