"""A painter's layer in real GIMP (3.0 in trixie, 3.2 in sid) against the real daemon.

A 203x141 layer with transparent holes and a band of partial alpha sits at (37, 59) on a 1001x777
canvas, at 8 and at 16 bits a channel. Edited with and without a marquee that reaches past the
layer, the result must be a layer of the source's size at its offsets, with its alpha, equal to the
source (at the image's own precision) outside the selection; one Edit > Undo in GIMP's window removes it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from host_common import (
    CANVAS,
    LAYER_BOX,
    SELECT_BOX,
    layer_picture8,
    layer_picture16,
    selection_in_layer,
    write_png,
)

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

ARGS = {"prompt": "a red circle", "subject": "shape", "seed": 3, "steps": 2, "finetune-steps": 1}
NAME = "SINE: a red circle (seed 3)"
# name: (bits, selection)
LONG_PROMPT = "red " * 29  # more tokens than the tiny model reads: the result comes with a note
WIDE_WINDOW = '(session-info "toplevel"\n (factory-entry "gimp-single-image-window")\n (position 0 0)\n (size 1900 1000))\n'
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
A98_ICC = "/usr/share/color/icc/ghostscript/a98.icc"  # in the roots, with Ghostscript
CASES = {"u8-whole": (8, False), "u8-select": (8, True), "u16-select": (16, True)}


@pytest.fixture(scope="module")
def layer_session(gimp_home, daemon_env, run_gimp) -> dict[str, Path]:
    """One GIMP GUI session (Xvfb) editing every case; each then presses Edit > Undo once."""
    work = gimp_home.host / "work" / "layers"
    work.mkdir(parents=True, exist_ok=True)
    write_png(work / "layer8.png", layer_picture8())
    write_png(work / "layer16.png", layer_picture16())
    x0, y0, _, _ = LAYER_BOX
    cases = []
    for name, (bits, select) in CASES.items():
        case = {"name": name, "input": gimp_home.inside(work / f"layer{bits}.png"),
                "out": gimp_home.inside(work / name), "canvas": [*CANVAS, x0, y0], "args": ARGS,
                "display": True, "undo_after": True,
                "dump_format": "R'G'B'A u16" if bits == 16 else None}  # fmt: skip
        if select:
            case["select"] = list(SELECT_BOX)
        cases.append(case)
    # Adobe RGB (1998) assigned: the layer's numbers mean other colours than sRGB's; dumped as float,
    # which keeps every stored value apart, to compare the result's numbers with the source's.
    cases.append({"name": "u8-a98-select", "input": gimp_home.inside(work / "layer8.png"),
                  "out": gimp_home.inside(work / "u8-a98-select"), "canvas": [*CANVAS, x0, y0], "args": ARGS,
                  "select": list(SELECT_BOX), "profile": A98_ICC, "dump_format": "R'G'B'A float"})  # fmt: skip
    cases.append({"name": "off-layer", "input": gimp_home.inside(work / "layer8.png"),
                  "out": gimp_home.inside(work / "off-layer"), "canvas": [*CANVAS, x0, y0], "args": ARGS,
                  "select": [700, 600, 200, 100]})  # fmt: skip  (right of and below the layer)
    # Two images edited at once, each from its own window with the same prompt: the first with a long
    # fine-tune (cancelled in its own progress window once both windows are up), the second queued behind it.
    cases.append({"name": "two-at-once", "input": gimp_home.inside(work / "layer8.png"),
                  "second_input": gimp_home.inside(work / "layer16.png"), "out": gimp_home.inside(work / "two-at-once"),
                  "first_args": {**ARGS, "finetune-steps": 5000, "seed": 9}, "args": ARGS})  # fmt: skip
    # The painter's own clicks in a wide window: Filters > SINE > Edit with text… (its dialog answered OK),
    # then Filters > Repeat, each with a prompt longer than the model reads (a note comes with the result).
    for name, action in (("menu-note", "python-fu-sine-edit"), ("repeat-note", "filters-repeat")):
        cases.append({"name": name, "input": gimp_home.inside(work / "layer8.png"), "out": gimp_home.inside(work / name),
                      "display": True, "menu": action, "args": {},
                      "autotest": {"dialog": "ok", "move": {**ARGS, "prompt": LONG_PROMPT}}})  # fmt: skip
    for config in (gimp_home.host / ".config" / "GIMP").glob("3.*"):  # GIMP's window 1900 px wide (no WM)
        (config / "sessionrc").write_text(WIDE_WINDOW)
    env = {**daemon_env, "SINE_GIMP_AUTOTEST": gimp_home.inside(work / "autotest.json")}
    run = run_gimp(gimp_home, cases, env, windows=True, screen="1920x1080x24")
    print(f"GIMP GUI session ({len(cases)} cases, {gimp_home.root.name}): {run.wall_s:.1f} s")
    assert run.returncode == 0, run.log[-4000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in ("menu-note", "repeat-note", "two-at-once"):
        if (work / name / "screen.png").exists():
            shutil.copyfile(work / name / "screen.png", ARTIFACTS / f"gimp-{name}-{gimp_home.root.name}.png")
    return {c["name"]: work / c["name"] for c in cases}


def _record(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def _pixels(out: Path, index: int, bits: int) -> np.ndarray:
    _, _, w, h = LAYER_BOX
    if bits == 16:
        return np.frombuffer((out / f"layer-{index}.native").read_bytes(), "<u2").reshape(h, w, 4)
    return np.frombuffer((out / f"layer-{index}.rgba").read_bytes(), np.uint8).reshape(h, w, 4)


@pytest.mark.parametrize("name", list(CASES))
def test_result_is_a_layer_of_the_sources_size_at_its_offsets(layer_session, name) -> None:
    record = _record(layer_session[name])
    assert record["status"] == "success", record["message"]
    assert record["canvas"] == list(CANVAS)
    x0, y0, w, h = LAYER_BOX
    new, source = record["layers"]
    assert new["name"] == NAME and record["returned_layer"] == NAME
    assert new["size"] == [w, h] and new["offsets"] == [x0, y0], new
    assert source["size"] == [w, h] and source["offsets"] == [x0, y0]
    bits = CASES[name][0]
    assert record["precision"] == ("u16-non-linear" if bits == 16 else "u8-non-linear")


@pytest.mark.parametrize("name", list(CASES))
def test_alpha_is_the_sources_and_the_source_is_untouched(layer_session, name) -> None:
    bits, _ = CASES[name]
    expected = layer_picture16() if bits == 16 else layer_picture8()
    result, source = _pixels(layer_session[name], 0, bits), _pixels(layer_session[name], 1, bits)
    assert np.array_equal(source, expected)
    assert np.array_equal(result[..., 3], expected[..., 3]), (
        f"{int((result[..., 3] != expected[..., 3]).sum())} alpha values differ"
    )
    assert int((result[..., 3] == 0).sum()) == int((expected[..., 3] == 0).sum()) == 2800


@pytest.mark.parametrize("name", [n for n, (_, select) in CASES.items() if select])
def test_outside_the_selection_the_result_is_the_source_at_its_own_precision(layer_session, name) -> None:
    bits, _ = CASES[name]
    expected = layer_picture16() if bits == 16 else layer_picture8()
    result = _pixels(layer_session[name], 0, bits)
    inside = selection_in_layer()
    differ = (result != expected).any(axis=2)
    assert int(differ[~inside].sum()) == 0, f"{int(differ[~inside].sum())} pixels outside the selection changed"
    opaque_inside = inside & (expected[..., 3] > 0)
    assert differ[opaque_inside].mean() > 0.5, "the edit changed (almost) nothing inside the selection"


@pytest.mark.parametrize("name", ["u8-whole"])
def test_without_selection_the_whole_layer_is_edited(layer_session, name) -> None:
    bits, _ = CASES[name]
    expected = layer_picture16() if bits == 16 else layer_picture8()
    result = _pixels(layer_session[name], 0, bits)
    opaque = expected[..., 3] > 0
    assert (result != expected).any(axis=2)[opaque].mean() > 0.5


@pytest.mark.parametrize("name", list(CASES))
def test_one_undo_removes_the_result_and_one_redo_brings_it_back(layer_session, name) -> None:
    record = _record(layer_session[name])
    assert record["layers_after_undo"] == [layer["name"] for layer in record["layers"][1:]], record
    assert record["layers_after_redo"] == [layer["name"] for layer in record["layers"]], record
    out = layer_session[name]
    assert (out / "redone-0.rgba").read_bytes() == (out / "layer-0.rgba").read_bytes()


def test_a_selection_that_misses_the_layer_is_refused(layer_session) -> None:
    record = _record(layer_session["off-layer"])
    assert record["status"] == "execution-error"
    assert "does not cover any pixel of the layer" in record["message"]
    assert len(record["layers"]) == 1


def test_a_colour_profile_other_than_srgb_keeps_the_sources_numbers_outside_the_selection(layer_session) -> None:
    """With Adobe RGB assigned, the source's pixels outside the selection come back as the very numbers
    they were (not sent through sRGB and back, which clips and rounds them), and the edit shows inside."""
    out = layer_session["u8-a98-select"]
    record = _record(out)
    assert record["status"] == "success", record["message"]
    _, _, w, h = LAYER_BOX
    result, source = (np.frombuffer((out / f"layer-{i}.native").read_bytes(), "<f4").reshape(h, w, 4) for i in (0, 1))
    inside = selection_in_layer()
    differ = (result != source).any(axis=2)
    assert int(differ[~inside].sum()) == 0, f"{int(differ[~inside].sum())} pixels outside the selection changed"
    assert differ[inside & (source[..., 3] > 0)].mean() > 0.5, "the edit changed (almost) nothing"


@pytest.mark.parametrize("name", ["menu-note", "repeat-note"])
def test_the_jobs_note_opens_a_message_dialog_in_a_wide_window(layer_session, name) -> None:
    """Run from the menu (and by Filters > Repeat) in a 1900-px window, a note with the result ("the prompt's
    last words were ignored") went to the status bar as a one-liner that GIMP clears after a few seconds;
    it must open GIMP's message dialog (or land in the Error Console, where the painter keeps one)."""
    record = _record(layer_session[name])
    assert record["layers"][0].startswith("SINE: red red"), record
    assert record["new_message_windows"] == 1, record


def test_two_images_edited_at_once(layer_session, sine_daemon) -> None:
    """The painter edits two images at once from their windows, with the same prompt: each has its own
    progress window, named for its image and kept above GIMP's window, showing its own edit only (the
    second waits in the queue while the first fine-tunes); the first is cancelled in its own window and gets
    nothing, the second's result lands in the second image only. (Both windows were titled "SINE: a red
    circle": which Cancel stopped which edit could not be told.)"""
    record = json.loads((layer_session["two-at-once"] / "result.json").read_text())
    print(json.dumps(record["windows"], indent=1), {title: texts[-3:] for title, texts in record["shown"].items()})
    first, second = record["labels"]  # each image as GIMP numbers its windows, e.g. layer8.png-1
    windows = record["windows"]
    assert len(windows) == 2, record
    mine = {label: [title for title in windows if f"{label}, layer 'Background': a red circle" in title]
            for label in (first, second)}  # fmt: skip
    assert all(len(titles) == 1 for titles in mine.values()), record
    assert all(owner and "GIMP" in owner for owner in windows.values()), record  # transient for GIMP's window
    shown = record["shown"]
    first_texts, second_texts = shown[mine[first][0]], shown[mine[second][0]]
    assert any("/5000" in text for text in first_texts), first_texts
    assert not any("/5000" in text for text in second_texts), second_texts  # not the other edit's steps
    assert not any(text.startswith("sampling") for text in first_texts), first_texts  # cancelled while fine-tuning
    assert record["first_still_running"] == 0, record
    assert [layer["name"] for layer in record["second"]] == [NAME, "Background"], record
    assert [layer["name"] for layer in record["first"]] == ["Background"], record
    # the first image's job did reach the daemon, and its own window's Cancel stopped it there
    log = sine_daemon.log.read_text()
    assert re.search(r"cancel requested at finetune step \d+", log), log[-3000:]
