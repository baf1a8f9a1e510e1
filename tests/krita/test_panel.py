"""The panel end to end against a real ZeroMQ stand-in daemon (real sockets, real SineClient)."""

from __future__ import annotations

import time

import pytest
from krita import Krita, Selection
from krita_helpers import make_document, rgba_pattern, to_bgra
from krita_standin import fake_edit, wait_for
from sine_krita.daemon_link import DaemonLink
from sine_krita.panel import SinePanel

from sine_protocol.frames import Mask, RGBAImage
from sine_protocol.messages import daemon_error_text


@pytest.fixture
def panel(qapp, standin):
    doc, nodes = make_document(16, 12, layers=2)
    Krita.instance().setActiveDocument(doc)
    p = SinePanel(Krita.instance().activeDocument)
    yield p
    p.shutdown()
    p.deleteLater()


def _connected(panel, process_events):
    assert wait_for(lambda: panel.connected, 10, process_events), panel.connection_label.text()


def test_connection_line_names_the_device_and_model_kind(panel, process_events):
    _connected(panel, process_events)
    assert panel.connection_label.text() == "daemon standin on stand-in cpu; model SDXL, ε-prediction, 1024 px"
    assert not panel.start_button.isVisible()


def test_request_is_built_from_the_widgets(panel, standin, process_events):
    _connected(panel, process_events)
    panel.apply_settings({"prompt": "make it blue", "subject": "cat", "style": "painting", "seed": 9,
                          "steps": 12, "guidance": 6.0, "v": 0.5, "k": 250, "method": "full",
                          "finetune_steps": 30, "strength": 0.6, "start": "inversion"})
    panel.edit_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events), panel.progress_text
    assert panel.state == "done", panel.last_error
    edit = [r for r in standin.requests if r.type == "edit"][-1]
    assert edit.header["prompt"] == "make it blue" and edit.header["subject"] == "cat"
    assert edit.header["style"] == "painting" and edit.header["seed"] == 9
    assert edit.header["sampling"] == {"steps": 12, "w": 6.0, "v": 0.5, "k": 250, "strength": 0.6,
                                       "start": "inversion"}
    assert "count" not in edit.header and edit.edit.style_image is None  # one result, no style picture
    assert edit.header["finetune"] == {"method": "full", "steps": 30, "patch": True}
    assert edit.edit.output == (16, 12)
    assert edit.edit.image.data == rgba_pattern(16, 12, salt=0)  # the wire gets RGBA, not Krita's BGRA


def test_edit_adds_the_result_layer_above_the_active_one(panel, process_events):
    _connected(panel, process_events)
    doc = Krita.instance().activeDocument()
    source = doc.topLevelNodes()[0]
    source_before = bytes(source.pixelData(0, 0, 16, 12))
    panel.apply_settings({"prompt": "invert", "seed": 5})
    assert not panel.preview_label.isVisibleTo(panel)  # no empty box before the first preview
    panel.edit_button.click()
    assert not panel.edit_button.isEnabled() and panel.cancel_button.isEnabled()

    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "done", panel.last_error
    names = [n.name() for n in doc.topLevelNodes()]
    assert names == ["layer 0", "SINE: invert (seed 5)", "layer 1"]
    expected = fake_edit(RGBAImage(16, 12, rgba_pattern(16, 12)), None, (16, 12)).data
    assert doc.topLevelNodes()[1].pixelData(0, 0, 16, 12) == to_bgra(expected)
    assert bytes(source.pixelData(0, 0, 16, 12)) == source_before
    assert doc.history == [("add", "SINE: invert (seed 5)")]
    log = panel.progress_log
    assert log[0] == "sending" and log[1].startswith("queued")
    assert log.index("fine-tuning 1/3") < log.index("fine-tuning 3/3") < log.index("sampling 4/4")
    assert not panel.preview_label.pixmap().isNull() and panel.preview_label.isVisibleTo(panel)
    assert panel.edit_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_the_tiles_of_a_long_sampling_step_show_in_the_progress_line(panel, standin, process_events):
    """A big layer's step reports its tiles (`part`/`parts`): the line moves inside the step."""
    standin.tiles = 3
    _connected(panel, process_events)
    panel.apply_settings({"prompt": "tiled"})
    panel.edit_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "done", panel.last_error
    log = panel.progress_log
    assert log.index("sampling 0/4 · tile 1/3") < log.index("sampling 0/4 · tile 3/3") < log.index("sampling 1/4")
    assert "sampling 3/4 · tile 2/3" in log and "fine-tuning 1/3" in log  # no tiles outside sampling


def test_the_bar_moves_with_the_tiles_inside_a_step(panel, standin, process_events):
    """Only the text moved inside a tiled step ("sampling 0/4 · tile 1/3"); the bar stood still for the
    step's minutes. It now moves as GIMP's does (`step_fraction`): a third of a step per tile."""
    standin.tiles = 3
    _connected(panel, process_events)
    panel.apply_settings({"prompt": "tiled bar"})
    panel.edit_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "done", panel.last_error
    bar = dict(zip(panel.progress_log, panel.bar_log, strict=True))
    tiles = [bar[f"sampling 0/4 · tile {part}/3"] for part in (1, 2, 3)]
    assert tiles == pytest.approx([1 / 12, 2 / 12, 3 / 12], abs=0.002), bar
    assert bar["sampling 1/4"] == pytest.approx(0.25, abs=0.002) and bar["sampling 4/4"] == 1.0, bar
    assert bar["fine-tuning 1/3"] == pytest.approx(1 / 3, abs=0.002) and bar["sending"] is None, bar


def test_selection_is_sent_as_mask(panel, standin, process_events):
    _connected(panel, process_events)
    doc = Krita.instance().activeDocument()
    mask = bytes([255 if x < 8 else 0 for y in range(12) for x in range(16)])
    doc.setSelection(Selection(16, 12, mask))
    panel.apply_settings({"prompt": "left half"})
    panel.edit_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "done", panel.last_error
    sent = [r for r in standin.requests if r.type == "edit"][-1].edit
    assert sent.mask is not None and sent.mask.data == mask
    expected = fake_edit(RGBAImage(16, 12, rgba_pattern(16, 12)), Mask(16, 12, mask), (16, 12)).data
    assert panel.last_layer.pixelData(0, 0, 16, 12) == to_bgra(expected)


def test_custom_output_size_still_covers_the_layer(panel, standin, process_events):
    _connected(panel, process_events)
    panel.apply_settings({"prompt": "bigger", "output_width": 32, "output_height": 24})
    panel.edit_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "done", panel.last_error
    assert [r for r in standin.requests if r.type == "edit"][-1].edit.output == (32, 24)
    assert len(bytes(panel.last_layer.pixelData(0, 0, 16, 12))) == 16 * 12 * 4
    assert panel.last_layer.bounds().width() == 16


def _start_a_slow_edit(panel, standin, process_events, step_s: float = 0.2):
    """An edit of the active document, now fine-tuning step by step (``step_s`` each); that document."""
    standin.step_s = step_s
    _connected(panel, process_events)
    doc = Krita.instance().activeDocument()
    panel.apply_settings({"prompt": "slow"})
    panel.edit_button.click()
    assert wait_for(lambda: panel.progress_text.startswith("fine-tuning"), 10, process_events)
    return doc


def test_cancel_leaves_the_document_unchanged(panel, standin, process_events):
    doc = _start_a_slow_edit(panel, standin, process_events)
    panel.cancel_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "cancelled"
    assert len(doc.topLevelNodes()) == 2 and doc.history == []
    assert any(r.type == "cancel" for r in standin.requests)


def test_closing_the_document_cancels_its_edit(panel, standin, process_events):
    """The painter closes the picture mid-edit: the daemon stops working for it, the panel says so calmly
    (not "could not use the daemon's answer") and the next edit in another document works."""
    doc = _start_a_slow_edit(panel, standin, process_events)
    doc.close()
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "cancelled", panel.message_label.text()
    assert panel.message_label.text() == "The document was closed: the edit was cancelled; nothing was added."
    assert panel.last_error == "" and any(r.type == "cancel" for r in standin.requests)
    other, _ = make_document(16, 12)
    Krita.instance().setActiveDocument(other)
    standin.step_s = 0.0
    panel.edit_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "done", panel.last_error
    assert len(other.topLevelNodes()) == 3


def test_daemon_error_is_shown(panel, standin, process_events):
    standin.fail_with = "out_of_memory"
    _connected(panel, process_events)
    panel.apply_settings({"prompt": "too big"})
    panel.edit_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "error"
    # advice in words first, as GIMP says it (it said "out_of_memory: stand-in failure"), the daemon's words after
    assert panel.message_label.text() == daemon_error_text("out_of_memory", "stand-in failure", "press Edit again")
    assert panel.last_error.startswith("The daemon ran out of GPU memory.") and "stand-in failure" in panel.last_error
    assert len(Krita.instance().activeDocument().topLevelNodes()) == 2


NOTE = "the prompt's last 12 words were ignored (this model reads 75 tokens): “over the hills”"


def test_the_jobs_notes_reach_the_status_line(panel, standin, process_events):
    """What the engine says about a job (a cut prompt) is shown while it runs and with its result."""
    standin.notes = [NOTE]
    standin.step_s = 0.05
    _connected(panel, process_events)
    panel.apply_settings({"prompt": "invert", "seed": 5})
    panel.edit_button.click()
    assert wait_for(lambda: NOTE in panel.message_label.text(), 10, process_events), panel.message_label.text()
    assert panel.state == "running"  # said before the fine-tune ends, not only after
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "done", panel.last_error
    assert panel.message_label.text() == f"Added layer 'SINE: invert (seed 5)' in 0.0 s — {NOTE}."
    standin.notes = []
    panel.edit_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.message_label.text() == "Added layer 'SINE: invert (seed 5)' in 0.0 s."  # no note: none shown


def test_empty_prompt_and_unsupported_document_are_reported_not_raised(panel, process_events):
    panel.apply_settings({"prompt": ""})
    panel.edit_button.click()
    assert "prompt" in panel.last_error and panel.state == "idle"
    doc = Krita.instance().activeDocument()
    doc._color = ("CMYKA", "U8")
    doc.topLevelNodes()[0].color = ("CMYKA", "U8")
    panel.apply_settings({"prompt": "x"})
    panel.edit_button.click()
    assert "RGBA images of 8 or 16 bits" in panel.last_error and panel.edit_button.isEnabled()


def test_no_daemon_shows_why_and_offers_start(qapp, monkeypatch, tmp_path, process_events):
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "daemon.json").write_text('{"argv": ["true"]}')
    monkeypatch.setenv("SINE_CONFIG_DIR", str(config))
    monkeypatch.setenv("SINE_ENDPOINT", "tcp://127.0.0.1:9")  # nothing listens on the discard port
    started = []
    p = SinePanel(lambda: None, link=DaemonLink(), start_daemon=lambda: started.append(time.time()))
    try:
        assert wait_for(lambda: "not connected" in p.connection_label.text(), 15, process_events)
        assert p.start_button.isVisibleTo(p) and not p.connected
        p.start_button.click()
        assert started and not p.start_button.isVisibleTo(p)
        assert p.connection_label.text() == "daemon: starting..."
        # Still nobody there: it keeps probing quietly instead of offering the button again.
        assert wait_for(lambda: "not answering yet" in p.connection_label.text(), 15, process_events)
        assert not p.start_button.isVisibleTo(p)
    finally:
        p.shutdown()


def test_daemon_going_away_is_noticed(panel, standin, process_events):
    _connected(panel, process_events)
    standin.close()
    panel.probe()  # what the heartbeat timer does every few seconds
    assert wait_for(lambda: not panel.connected, 15, process_events)
    assert panel.connection_label.text().startswith("not connected: ")


def test_edit_without_a_daemon_fails_cleanly(qapp, monkeypatch, tmp_path, process_events):
    monkeypatch.setenv("SINE_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("SINE_ENDPOINT", "tcp://127.0.0.1:9")
    doc, _ = make_document(16, 12)
    p = SinePanel(lambda: doc)
    try:
        p.apply_settings({"prompt": "anything"})
        p.edit_button.click()
        assert wait_for(lambda: p.state != "running", 15, process_events)
        assert p.state == "error" and p.last_error.startswith("could not send the edit: daemon not reachable")
        assert p.edit_button.isEnabled() and not p.cancel_button.isEnabled()
        assert len(doc.topLevelNodes()) == 2
    finally:
        p.shutdown()


def test_failure_placing_the_result_is_shown_and_the_next_edit_works(panel, monkeypatch, process_events):
    _connected(panel, process_events)
    doc = Krita.instance().activeDocument()

    def broken(name, node_type):
        raise RuntimeError("Krita refused to create the layer")

    with monkeypatch.context() as m:
        m.setattr(doc, "createNode", broken)
        panel.apply_settings({"prompt": "first"})
        panel.edit_button.click()
        assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "error"
    assert panel.last_error == "could not use the daemon's answer: Krita refused to create the layer"
    assert len(doc.topLevelNodes()) == 2
    panel.apply_settings({"prompt": "second"})
    panel.edit_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert panel.state == "done", panel.last_error
    assert [n.name() for n in doc.topLevelNodes()] == ["layer 0", "SINE: second (seed 0)", "layer 1"]


def test_an_unreachable_daemon_is_described_in_words_once():
    from sine_krita.daemon_link import describe_error

    from sine_protocol.errors import DaemonUnavailable

    exc = DaemonUnavailable("daemon not reachable at tcp://127.0.0.1:9 — start it with `sine daemon` or from the "
                            "plugin ([Errno 111] Connection refused)")  # fmt: skip
    assert describe_error(exc) == "daemon not reachable at tcp://127.0.0.1:9"


def test_a_long_step_shows_that_the_daemon_is_still_working(panel, standin, process_events, monkeypatch):
    """On a 3000x2000 layer one sampling step took 113 s without an event (bench/progress_gaps.py): the bar
    read "sampling 0/1" all along. After SLOW_STEP_S without news the line says how long it has worked."""
    import sine_krita.panel as panel_module

    monkeypatch.setattr(panel_module, "SLOW_STEP_S", 0.5)
    doc = _start_a_slow_edit(panel, standin, process_events, step_s=2.5)
    assert wait_for(lambda: "working" in panel.progress_text, 2.2, process_events), panel.progress_text
    assert panel.progress.format() == panel.progress_text and panel.progress_text.count("/") == 1
    panel.cancel_button.click()
    assert wait_for(lambda: panel.state != "running", 10, process_events)
    assert len(doc.topLevelNodes()) == 2


def test_a_result_is_not_placed_where_the_layer_was_before_the_image_was_resized(panel, standin, process_events):
    """The painter resizes the canvas while the daemon works (the layer moves 4 px right, 2 down): the result
    landed at the layer's old place, 4 px off its source. It is now refused in words, kept in the History."""
    doc = _start_a_slow_edit(panel, standin, process_events)
    doc.resizeImage(-4, -2, 24, 16)
    assert wait_for(lambda: panel.state != "running", 15, process_events)
    assert panel.state == "error" and len(doc.topLevelNodes()) == 2, [n.name() for n in doc.topLevelNodes()]
    assert "resized during the edit (16x12, now 24x16)" in panel.last_error, panel.last_error
    assert "History" in panel.last_error and not panel.last_error.startswith("could not"), panel.last_error
    assert doc.history == [("resize", "24x16")]
    assert len(panel.history.entries(doc)) == 1  # kept: undo the resize and apply it from there
    # Applied again from the History while the canvas is still resized: the same refusal, nothing added.
    panel.reapply_history(0)
    assert "resized" in panel.last_error and len(doc.topLevelNodes()) == 2


def test_a_result_lands_in_its_own_document_after_the_painter_switched_to_another(panel, standin, process_events):
    doc = _start_a_slow_edit(panel, standin, process_events)
    other, _ = make_document(16, 12)
    Krita.instance().setActiveDocument(other)  # the painter looks at another picture while it runs
    assert wait_for(lambda: panel.state != "running", 15, process_events)
    assert panel.state == "done", panel.last_error
    assert len(doc.topLevelNodes()) == 3 and len(other.topLevelNodes()) == 2
