"""The SINE Edit docker in a real Krita (5.2 in trixie, 5.3 in sid; Xvfb) against the real daemon.

Krita opens a PNG; the plugin's automation hook (SINE_KRITA_AUTOTEST) shows the docker, fills the
panel and clicks its Edit button, waits for the result layer, saves a .kra, dumps every layer and
takes a screenshot. Here on the host we check the saved document, that the new layer holds exactly
the daemon's own output for the same request, and that the source layer is byte-identical.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from host_common import (
    CANVAS,
    LAYER_BOX,
    REPO,
    SELECT_BOX,
    free_port,
    kill_once_working,
    layer_picture8,
    layer_picture16,
    lib_sh,
    running_daemon,
    selection_in_layer,
    write_png,
)

from sine_protocol import Mask, RGBAImage
from sine_protocol.defaults import STEPS as DEFAULT_STEPS
from sine_protocol.defaults import STRENGTH

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

ARTIFACTS = REPO / "tests" / "artifacts"
DOCS_IMAGES = REPO / "docs" / "images"
WIDTH, HEIGHT = 96, 64
SETTINGS = {
    "prompt": "make the circle green",
    "subject": "circle",
    "style": "photo",
    "seed": 7,
    "steps": 6,
    "guidance": 7.5,
    "v": 0.7,
    "k": 400,
    "method": "lora",
    "finetune_steps": 4,
}


def make_source_png(path: Path) -> bytes:
    """A red circle on a blue-to-yellow gradient (RGB PNG); returns its RGBA bytes."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (WIDTH, HEIGHT))
    for x in range(WIDTH):
        ImageDraw.Draw(image).line([(x, 0), (x, HEIGHT)], fill=(x * 2, x * 2, 255 - x * 2))
    ImageDraw.Draw(image).ellipse([20, 12, 60, 52], fill=(220, 30, 30))
    image.save(path)
    return image.convert("RGBA").tobytes()


def make_gray_png(path: Path) -> bytes:
    from PIL import Image

    image = Image.new("L", (WIDTH, HEIGHT), 128)
    image.save(path)
    return image.tobytes()


SQUARE = (50, 30, 30, 20)  # x, y, w, h of the top layer in the layered document


def make_layered_ora(path: Path) -> bytes:
    """An OpenRaster file: the PNG source at the bottom, an opaque green square layer at an offset
    on top. Returns the visible composite (exact: the square is fully opaque)."""
    from PIL import Image

    bottom = path.with_name("bottom.png")
    composite = bytearray(make_source_png(bottom))
    x0, y0, w, h = SQUARE
    top = Image.new("RGBA", (w, h), (40, 200, 60, 255))
    for y in range(y0, y0 + h):
        for x in range(x0, x0 + w):
            composite[4 * (y * WIDTH + x) : 4 * (y * WIDTH + x) + 4] = bytes((40, 200, 60, 255))
    stack = (
        f'<?xml version="1.0" encoding="UTF-8"?><image w="{WIDTH}" h="{HEIGHT}" version="0.0.3"><stack>'
        f'<layer name="square" src="data/square.png" x="{x0}" y="{y0}" opacity="1.000" visibility="visible"/>'
        f'<layer name="picture" src="data/picture.png" x="0" y="0" opacity="1.000" visibility="visible"/>'
        "</stack></image>"
    )
    import io

    def png(image) -> bytes:
        buf = io.BytesIO()
        image.save(buf, "PNG")
        return buf.getvalue()

    with Image.open(bottom) as b:
        bottom_png = png(b.convert("RGBA"))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "image/openraster")  # first and stored, as ORA requires
        z.writestr("stack.xml", stack, zipfile.ZIP_DEFLATED)
        z.writestr("data/square.png", png(top), zipfile.ZIP_DEFLATED)
        z.writestr("data/picture.png", bottom_png, zipfile.ZIP_DEFLATED)
        z.writestr("mergedimage.png", png(Image.frombytes("RGBA", (WIDTH, HEIGHT), bytes(composite))))
    return bytes(composite)


def daemon_edit(daemon, source: bytes, settings: dict[str, Any], mask: bytes | None = None):
    """The daemon's own answer to the request the panel sends for ``settings``."""
    client = daemon.client()
    try:
        rid = client.submit_edit(
            RGBAImage(WIDTH, HEIGHT, source), settings["prompt"], subject=settings["subject"],
            style=settings["style"], seed=settings["seed"],
            sampling={"steps": settings["steps"], "w": settings["guidance"], "v": settings["v"], "k": settings["k"]},
            finetune={"method": settings["method"], "steps": settings["finetune_steps"], "patch": True},
            output_size=(WIDTH, HEIGHT), mask=Mask(WIDTH, HEIGHT, mask) if mask else None,
        )  # fmt: skip
        return client.wait_result(rid, timeout=180)
    finally:
        client.close()


def kra_layers(kra: Path) -> tuple[tuple[int, int], list[dict[str, str]]]:
    """Canvas size and top-level layer attributes from the saved .kra's maindoc.xml."""
    with zipfile.ZipFile(kra) as z:
        root = ET.fromstring(z.read("maindoc.xml"))
    image = next(el for el in root.iter() if el.tag.endswith("IMAGE"))
    layers = next(el for el in image if el.tag.endswith("layers"))
    return (int(image.get("width")), int(image.get("height"))), [dict(el.attrib) for el in layers]


@dataclass
class Run:
    report: dict[str, Any]
    out: Path
    source: bytes
    shot: Path
    seconds: float

    def raw(self, layer: dict[str, Any]) -> bytes:
        """A node's canvas-sized dump: RGBA for 8-bit layers, Krita's own bytes otherwise."""
        data = (self.out / Path(layer["raw"]).name).read_bytes()
        return bgra8_to_rgba(data) if layer["format"] == "bgra8" else data

    def pixels(self, layer: dict[str, Any]) -> np.ndarray:
        """A paint layer's dump as an (h, w, 4) R,G,B,A array of uint8 or uint16."""
        data = (self.out / Path(layer["raw"]).name).read_bytes()
        w, h = self.report["canvas"]
        dtype = {"bgra8": np.uint8, "bgra16": np.dtype("<u2")}[layer["format"]]
        return np.frombuffer(data, dtype).reshape(h, w, 4)[..., [2, 1, 0, 3]]


def bgra8_to_rgba(data: bytes) -> bytes:
    out = bytearray(data)
    out[0::4], out[2::4] = data[2::4], data[0::4]
    return bytes(out)


def run_panel_job(
    home, daemon, name: str, settings: dict[str, Any], selection: list[int] | None = None, image: str = "png",
    endpoint: str | None = None, screen: str = "1280x960x24", **job_extra: Any,
) -> Run:
    """Run Krita once with the automation job; returns its report (asserting it finished).

    ``image``: "png" (the source PNG), "ora" (OpenRaster with an offset layer on top; ``source`` is
    then the visible composite), "gray" (an 8-bit grayscale PNG, which the panel must refuse) or
    "layer8" / "layer16" (host_common's 203x141 layer with holes, to be put on a larger canvas with
    ``canvas=[w, h, x, y]``; nothing is warmed, ``source`` is the PNG's bytes).
    """
    work = home.host / name
    work.mkdir()
    if image in ("layer8", "layer16"):
        image_file = work / "source.png"
        write_png(image_file, layer_picture8() if image == "layer8" else layer_picture16())
        source, endpoint = image_file.read_bytes(), endpoint or daemon.endpoint
    elif image == "ora":
        image_file, source = work / "source.ora", make_layered_ora(work / "source.ora")
    elif image == "gray":
        image_file, source = work / "source.png", make_gray_png(work / "source.png")
    else:
        image_file, source = work / "source.png", make_source_png(work / "source.png")
    out, shot, job = work / "out", work / "krita-panel.png", work / "job.json"
    job.write_text(json.dumps({
        "input": home.inside(image_file), "out_dir": home.inside(out), "screenshot": home.inside(shot),
        "settings": settings, "selection": selection, "connect_timeout_s": 60, "edit_timeout_s": 240,
        "choices_screenshot": home.inside(work / "krita-choices.png"), **job_extra,
    }))  # fmt: skip
    home.chown()
    if endpoint is None:
        # Warm the fine-tune cache: a fresh fine-tune and a cached one may differ in the last bit,
        # so the panel's edit and the reference edit must both be cache hits to compare exactly.
        daemon_edit(daemon, source, settings)

    env = {"KHOME": home.path, "KJOB": home.inside(job), "KENDPOINT": endpoint or daemon.endpoint, "KSCREEN": screen}
    snippet = (
        'RC_ENV=(SINE_KRITA_AUTOTEST="$KJOB" SINE_ENDPOINT="$KENDPOINT"); '
        'in_root "$KHOME" timeout -k 10 400 xvfb-run -a -s "-screen 0 ${KSCREEN}" krita --nosplash'
    )
    t0 = time.monotonic()
    done = lib_sh(home.root, snippet, env, timeout=430)
    lost_display = ("could not connect to display", "no Qt platform plugin could be initialized")
    if any(text in done.stdout + done.stderr for text in lost_display) and not (out / "result.json").exists():
        # Xvfb lost a start-up race (seen under load, and when two roots' Xvfb pick the same display
        # number: each chroot has its own /tmp for xvfb-run -a's lock files): retry once
        done = lib_sh(home.root, snippet, env, timeout=430)
    seconds = time.monotonic() - t0
    log = done.stdout + done.stderr
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"krita-{name}.log").write_text(log)
    report_file = out / "result.json"
    assert report_file.exists(), f"no result from Krita (rc={done.returncode}, {seconds:.0f} s):\n{log[-4000:]}"
    report = json.loads(report_file.read_text())
    (ARTIFACTS / f"krita-{name}.json").write_text(json.dumps(report, indent=1))
    if shot.exists():
        shutil.copyfile(shot, ARTIFACTS / f"krita-{name}.png")
    if (work / "krita-choices.png").exists():
        shutil.copyfile(work / "krita-choices.png", ARTIFACTS / f"krita-{name}-choices.png")
    assert report["ok"], f"{report.get('error')}\n{log[-3000:]}"
    print(f"{name}: krita run {seconds:.1f} s, edit clicked at {report['edit_clicked_s']} s, "
          f"done at {report['total_s']} s, longest event-loop gap {report.get('max_event_gap_ms')} ms")  # fmt: skip
    return Run(report, out, source, shot, seconds)


PROFILE_SELECTION = [10, 10, 40, 30]
# Documents in other spaces than sRGB and at other depths (the name says its depth and profile): each is
# edited, the source's own numbers kept outside the selection (float ones were refused).
PROFILE_EDITS = {
    "u16-rec2020-linear": ("U16", "Rec2020-elle-V4-g10.icc"),
    "u16-widergb": ("U16", "WideRGB-elle-V2-g22.icc"),
    "u16-adobe": ("U16", "ClayRGB-elle-V2-g22.icc"),
    "u8-adobe": ("U8", "ClayRGB-elle-V2-g22.icc"),
    "f16-linear": ("F16", "sRGB-elle-V2-g10.icc"),
    "f32-rec2020": ("F32", "Rec2020-elle-V4-g10.icc"),
}


def assert_profile_edit(run: Run, name: str) -> None:
    """One of PROFILE_EDITS, edited in its own document with a selection: the document kept its profile;
    outside the selection the result is the source's bytes exactly, inside it changed, alpha kept."""
    edit = run.report["more_edits"][name]
    depth, profile = PROFILE_EDITS[name]
    assert (edit["depth"], edit["profile"]) == (depth, profile), edit
    before = (run.out / f"{name}-source-before.raw").read_bytes()
    assert (run.out / f"{name}-source-after.raw").read_bytes() == before, name
    layers = [name for name in edit["layers"] if name != "Selection Mask"]
    assert edit["state"] == "done" and layers == ["Background", "source", f"SINE: {name} (seed 7)"], edit
    dtype = {"U8": np.uint8, "U16": np.dtype("<u2"), "F16": np.dtype("<f2"), "F32": np.dtype("<f4")}[depth]
    width, height = 80, 60
    source = np.frombuffer(before, dtype).reshape(height, width, 4)
    result = np.frombuffer((run.out / f"{name}-result.raw").read_bytes(), dtype).reshape(height, width, 4)
    selected = np.frombuffer((run.out / f"{name}-selection.a8").read_bytes(), np.uint8).reshape(height, width) > 0
    differ = (result != source).any(axis=2)
    assert int(differ[~selected].sum()) == 0, f"{name}: {int(differ[~selected].sum())} pixels outside changed"
    assert differ[selected].mean() > 0.5, f"{name}: the edit changed (almost) nothing"
    assert np.array_equal(result[..., 3], source[..., 3]), name


def group_of(tree: list[Any], path: list[str]) -> list[Any]:
    """The children of the group at ``path`` (names from the top level down) in an autotest tree."""
    for name in path:
        tree = next(item[1] for item in tree if isinstance(item, list) and item[0] == name)
    return tree


def assert_deep_edit(run: Run) -> None:
    """The source three groups deep among 50 layers, 10 hidden opaque ones on top: the result lands in its
    group right above it, nothing else moves, and one undo removes it (redo brings it back)."""
    edit = run.report["more_edits"]["deep"]
    assert edit["state"] == "done", edit
    print(f"deep: edit of a layer in a 50-layer document took {edit['seconds']} s")
    before, after = edit["tree_before"], edit["tree"]
    inner_before, inner = group_of(before, ["outer", "middle", "inner"]), group_of(after, ["outer", "middle", "inner"])
    at = inner_before.index("source")
    assert inner == [*inner_before[: at + 1], "SINE: deep (seed 7)", *inner_before[at + 1 :]], (inner_before, inner)
    def without(tree: list[Any]) -> list[Any]:
        return [[item[0], without(item[1])] if isinstance(item, list) else item for item in tree
                if item != "SINE: deep (seed 7)"]  # fmt: skip
    assert without(after) == before
    assert edit["tree_after_undo"] == before and edit["tree_after_redo"] == after, edit
    flat = json.dumps(before)
    assert flat.count('"') // 2 == 50 + 1, flat  # 50 layers (3 of them groups) and Krita's Background
    source = (run.out / "deep-source-before.raw").read_bytes()
    assert (run.out / "deep-source-after.raw").read_bytes() == source
    result = np.frombuffer((run.out / "deep-result.raw").read_bytes(), np.uint8).reshape(60, 80, 4)
    assert (result != np.frombuffer(source, np.uint8).reshape(60, 80, 4)).any(axis=2).mean() > 0.5


def assert_edit_in_view(docker: dict[str, Any], screen_width: int) -> None:
    """Docked on a 600-px-high screen Krita gives the panel ~100 px: before any scrolling the painter
    sees the prompt, Edit and the progress line (they sat below eight rows of settings); Cancel takes
    Edit's place while an edit runs, and the bar keeps the whole width for its text."""
    assert docker["screen"] == [screen_width, 600] and docker["scroll_value"] == 0, docker
    assert docker["viewport_height"] < 300, docker  # docked in the crowded column, not floated
    for name in ("prompt_edit", "edit_button", "progress"):
        part = docker["parts"][name]
        assert part["visible"] and part["bottom"] <= docker["viewport_height"], (name, docker)


STEP_TEXT = re.compile(r"(?:fine-tuning|sampling|decoding) (\d+)/(\d+)(?:, ~[^·]*)?(?: · (?:\w+ )*tile (\d+)/(\d+))?$")


def assert_bar_follows_the_parts(report: dict[str, Any], moves_inside: bool = True) -> None:
    """Krita's bar stood still inside a step while its text counted the tiles ("sampling 0/6 · tile 2/4"):
    it must sit at (step + part/parts)/total of its phase, as GIMP's does, and (``moves_inside``) move
    with the tiles."""
    bars = list(zip(report["progress_log"], report["bar_log"], strict=True))
    inside = []
    for text, bar in bars:
        if found := STEP_TEXT.match(text):
            step, total, part, parts = (int(n) if n else 0 for n in found.groups())
            expected = (step + (part / parts if parts and step < total else 0)) / total
            assert bar == pytest.approx(expected, abs=0.001), (text, bar, bars)
            inside += [bar] if part else []
    assert not moves_inside or len(set(inside)) > 1, f"no move inside a step: {bars}"


def new_layer(run: Run, settings: dict[str, Any], bounds: list[int] | None = None, on_top: bool = False,
              ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:  # fmt: skip
    """(source layer before, source layer after, new layer), checking the new one sits right above the
    source (``on_top``: above every layer, as the visible image's result does)."""
    # Krita lists the global selection as a top-level "selectionmask" node: not a layer.
    before = [layer for layer in run.report["layers_before"] if layer["type"] != "selectionmask"]
    after = [layer for layer in run.report["layers_after"] if layer["type"] != "selectionmask"]
    assert len(after) == len(before) + 1
    index = next(layer["index"] for layer in before if layer["name"] == run.report["active_node"])
    new = after[-1] if on_top else after[[layer["index"] for layer in after].index(index) + 1]
    assert new["name"] == f"SINE: {settings['prompt']} (seed {settings['seed']})"
    assert new["type"] == "paintlayer" and new["bounds"] == (bounds or [0, 0, WIDTH, HEIGHT])
    # One undo step removes the result entirely: it was added as a single step.
    assert [name for name in run.report["layers_after_undo"] if name != "Selection Mask"] == [
        layer["name"] for layer in before
    ]
    # One redo brings it back: every layer as it was after the edit, pixels and look included.
    redone = [layer for layer in run.report["layers_after_redo"] if layer["name"] != "Selection Mask"]
    assert [layer["name"] for layer in redone] == [layer["name"] for layer in after], redone
    assert all(layer["same_pixels"] for layer in redone), redone
    assert [layer["look"] for layer in redone] == [layer["look"] for layer in after], redone
    return before[index], after[index], new


def kritarc_group(home, group: str, values: dict[str, str] | None = None) -> dict[str, str]:
    """The entries of one [group] of the HOME's kritarc; with ``values``, first replace the group by them."""
    rc = home.host / ".config" / "kritarc"
    lines, entries, inside = rc.read_text().splitlines(), {}, False
    kept = []
    for line in lines:
        if line.startswith("["):
            inside = line.strip() == f"[{group}]"
        if inside and "=" in line:
            key, value = line.split("=", 1)
            entries[key] = value
        if not inside:
            kept.append(line)
    if values is not None:
        rc.write_text("\n".join([*kept, "", f"[{group}]", *(f"{k}={v}" for k, v in values.items())]) + "\n")
        home.chown()
        return values
    return entries


def test_docker_edit_in_real_krita(krita_home, sine_daemon):
    """The whole edit on a 1280x768 screen, Advanced open; the docker must fit and show everything.
    The form the last Krita session left in kritarc comes back, and this session's is kept there."""
    remembered = {"prompt": "a remembered prompt", "strength": "0.35", "count": "2", "source": "visible",
                  "style": "painting", "finetune_steps": "", "steps": "oops"}  # fmt: skip
    kritarc_group(krita_home, "sine_edit", remembered)
    docker_shot = krita_home.host / "docker-768.png"
    tiled_shot = krita_home.host / "docker-tiled.png"
    quick = {**SETTINGS, "steps": 2, "finetune_steps": 1, "strength": 1.0}
    more = [{"name": "tiled", "size": [400, 300], "shot": krita_home.inside(tiled_shot),
             "settings": {**quick, "prompt": "tiled", "steps": 3}},
            {"name": "deep", "size": [80, 60], "deep": True, "settings": {**quick, "prompt": "deep"}},
            {"name": "resized", "size": [80, 60], "resize_during": [-8, -4, 100, 70],
             "settings": {**quick, "prompt": "resized"}},
            {"name": "file", "size": [WIDTH, HEIGHT], "file_layer": True, "settings": {**quick, "prompt": "file"}},
            {"name": "hidden", "size": [80, 60], "source_state": {"visible": False, "alpha_locked": True},
             "settings": {**quick, "prompt": "hidden"}},
            *({"name": f"global-mask-{source}", "size": [80, 60], "selection": PROFILE_SELECTION,
               "global_mask_active": True, "settings": {**quick, "prompt": f"global {source}", "source": source}}
              for source in ("visible", "layer")),  # "layer" last: the edits after it read their layer
            *({"name": name, "size": [80, 60], "depth": depth, "profile": profile, "selection": PROFILE_SELECTION,
               "settings": {**quick, "prompt": name}} for name, (depth, profile) in PROFILE_EDITS.items())]  # fmt: skip
    run = run_panel_job(krita_home, sine_daemon, "edit", SETTINGS, screen="1280x768x24",
                        docker_shot=krita_home.inside(docker_shot), more_edits=more,
                        edit_without_document=True)  # fmt: skip
    report = run.report
    at_start = report["form_at_start"]
    assert {k: at_start[k] for k in remembered if k != "steps"} == {k: v for k, v in remembered.items() if k != "steps"}
    assert at_start["steps"] == str(DEFAULT_STEPS)  # the damaged entry fell back to the default
    kept = kritarc_group(krita_home, "sine_edit")
    # the last press's form: the last of the edits after the first one
    assert kept["prompt"] == more[-1]["settings"]["prompt"] and kept["count"] == "1" and kept["source"] == "layer"
    assert kept["seed"] == str(SETTINGS["seed"]) and kept["method"] == SETTINGS["method"]
    assert report["connection"].startswith("daemon ") and " on cpu" in report["connection"].lower()
    # Krita's event loop kept running while the daemon worked (the 50 ms poll timer never starved).
    assert report["max_event_gap_ms"] < 1000, report["max_event_gap_ms"]
    seen = " | ".join(report["progress_log"])
    run_steps = round(SETTINGS["steps"] * STRENGTH)  # the docker's default strength runs that share of the steps
    assert f"sampling {run_steps}/{run_steps}" in seen, seen
    assert_bar_follows_the_parts(report, moves_inside=False)  # 96x64: each step is one quick call
    # Then a 400x300 layer, sampled in tiles: Krita's own bar widget moves inside a step with them.
    big = report["more_edits"]["tiled"]
    assert big["state"] == "done" and big["layers"] == ["Background", "source", "SINE: tiled (seed 7)"], big
    assert_bar_follows_the_parts(big)
    partway = [(text, value / top) for text, value, top in big["bar_seen"] if "tile" in text and 0 < value < top]
    assert partway, big["bar_seen"]
    assert big["shot"] is True
    shutil.copyfile(tiled_shot, ARTIFACTS / f"krita-docker-tiled-{krita_home.root.name}.png")
    for name in PROFILE_EDITS:
        assert_profile_edit(run, name)
    assert_deep_edit(run)
    # The canvas resized while the daemon worked: the result is refused in words, not put 8 px off its layer.
    resized = report["more_edits"]["resized"]
    assert resized["state"] == "error" and resized["canvas"] == [100, 70], resized
    assert "resized during the edit (80x60, now 100x70)" in resized["error"], resized
    assert resized["layers"] == ["Background", "source"], resized
    hidden = report["more_edits"]["hidden"]
    assert hidden["state"] == "done", hidden
    # The global selection mask shown and clicked in the Layers docker (it was "Select a layer first.", and the
    # visible image was refused the same): a layer edit says what to click, the visible image is edited.
    masked = report["more_edits"]["global-mask-layer"]
    assert "SINE: global layer (seed 7)" not in masked["layers"], masked  # refused before sending: state kept
    assert masked["error"].startswith("The global selection mask '") and "click the layer" in masked["error"], masked
    visible = report["more_edits"]["global-mask-visible"]
    assert visible["state"] == "done" and "SINE: global visible (seed 7)" in visible["layers"], visible
    # Then every picture closed and the Edit shortcut pressed: told in words, in the docker.
    alone = report["without_document"]
    assert alone["documents"] == 0 and alone["error"] == "Open an image first." and alone["state"] != "running", alone
    # Krita disables the shortcut's action without a document; where it runs, it says the same
    assert alone["by_shortcut"] == ("Open an image first." if alone["shortcut_enabled"] else ""), alone
    # A file layer (the source PNG, linked) as the source: what it shows is edited into a paint layer above.
    linked = report["more_edits"]["file"]
    assert linked["state"] == "done" and linked["types"] == ["paintlayer", "filelayer", "paintlayer"], linked
    result = np.frombuffer((run.out / "file-result.raw").read_bytes(), np.uint8)
    assert len(result) == WIDTH * HEIGHT * 4 and bgra8_to_rgba(result.tobytes()) != run.source, linked
    src_before, src_after, new = new_layer(run, SETTINGS)

    # The saved .kra has that layer at (0, 0) of a canvas of the source's size.
    size, kra = kra_layers(run.out / "result.kra")
    assert size == (WIDTH, HEIGHT)
    kra_new = [layer for layer in kra if layer.get("name") == new["name"]]
    assert len(kra_new) == 1 and kra_new[0].get("x") == "0" and kra_new[0].get("y") == "0"

    # Its pixels are exactly what the daemon gives for the same request.
    assert report["result_header"]["cache_hit"] is True
    result = daemon_edit(sine_daemon, run.source, SETTINGS)
    assert result.header["cache_hit"] is True and result.image.size == (WIDTH, HEIGHT)
    assert run.raw(new) == result.image.data
    assert run.raw(new) != run.source

    # The source layer is untouched: equal to the PNG, before and after the edit.
    assert run.raw(src_before) == run.source and run.raw(src_after) == run.source

    # A screenshot of the window with the docker, for people (and the README).
    assert report.get("screenshot") is True and run.shot.stat().st_size > 20_000
    from PIL import Image

    with Image.open(run.shot) as im:
        assert im.width >= 800 and im.height >= 600
    shutil.copyfile(run.shot, ARTIFACTS / "krita-panel.png")

    # The docker fits the 768-px screen; everything in it can be scrolled into view; narrow is fine.
    docker = report["docker"]
    assert docker["screen"] == [1280, 768]
    x, y, w, h = docker["dock"]
    assert y >= 0 and y + h <= 768, docker
    assert docker["scroll_area"] and docker["viewport_height"] + docker["scroll_max"] >= docker["panel"][1]
    for name, part in docker["parts"].items():
        assert part["visible"] and part["bottom"] <= docker["panel"][1], (name, docker)
    assert docker["panel_min_width"] <= 260, docker  # usable at Krita's narrow docker width
    assert report["docker_shot"] is True
    with Image.open(docker_shot) as im:
        assert im.height == max(h, docker["panel"][1]) and im.width >= 3 * 150
    # the picture in the docs: regenerated by this test only when asked, so a test run leaves the
    # checkout as it found it (SINE_UPDATE_DOCS_IMAGES=1 .venv/bin/python -m pytest tests/hosts/krita)
    if krita_home.root.name == "trixie" and os.environ.get("SINE_UPDATE_DOCS_IMAGES") == "1":
        shutil.copyfile(docker_shot, DOCS_IMAGES / "krita-docker-768.png")


def test_selection_edit_in_real_krita(krita_home, sine_daemon):
    # 41 tokens, more than the tiny model reads (30): the docker's line says which words were ignored.
    settings = {**SETTINGS, "prompt": "make the circle blue ::: ;;; ((( ))) [[[ ]]] {{{ }}}", "seed": 3}
    box = [24, 8, 40, 40]
    # how the painter set the layer up, locked against painting too (the result is a new layer: allowed)
    look = {"opacity": 102, "blending": "multiply", "inherit_alpha": True, "locked": True}
    run = run_panel_job(krita_home, sine_daemon, "selection", settings, selection=box, source_look=look,
                        second_window=True)  # fmt: skip
    _, src_after, new = new_layer(run, settings)
    # The result is drawn as the source is, so outside the selection the picture looks as before.
    assert src_after["look"] == [102, "multiply", True] and new["look"] == src_after["look"], new
    assert src_after["locked"] is True and new["locked"] is False, (src_after, new)

    # Krita's selection arrives as a canvas-sized, one-byte-per-pixel mask of the marquee.
    mask = (run.out / "selection.a8").read_bytes()
    inside = {(x, y) for y in range(box[1], box[1] + box[3]) for x in range(box[0], box[0] + box[2])}
    expected_mask = bytes(255 if (x, y) in inside else 0 for y in range(HEIGHT) for x in range(WIDTH))
    assert mask == expected_mask

    # The layer is the daemon's composite for that mask: outside the selection the source, exactly.
    pixels = run.raw(new)
    assert pixels == daemon_edit(sine_daemon, run.source, settings, mask).image.data
    outside = [i for i in range(WIDTH * HEIGHT) if not mask[i]]
    assert all(pixels[4 * i : 4 * i + 4] == run.source[4 * i : 4 * i + 4] for i in outside)
    assert any(pixels[4 * i : 4 * i + 4] != run.source[4 * i : 4 * i + 4] for i in range(WIDTH * HEIGHT) if mask[i])
    assert run.raw(src_after) == run.source
    message = run.report["panel_message"]
    assert message.startswith("Added layer") and "— the prompt's last" in message and "{{{ }}}”" in message, message

    # Then the image opened again in a second window, edited with that window's docker: the result
    # lands in the second window's document (it went into the first's, Krita's active document).
    second = run.report["second_window"]
    assert second["active_is_first"] is True and second["state"] == "done", second
    assert second["second"] == ["Background", "SINE: second window (seed 3)"], second
    assert second["first"] == second["first_before"], second


def test_visible_image_of_a_layered_document(krita_home, sine_daemon):
    settings = {**SETTINGS, "prompt": "make the square red", "seed": 5}
    probe_box = [10, 8, 30, 20]  # where the vector, fill and clone layers draw their green
    run = run_panel_job(krita_home, sine_daemon, "visible", {**settings, "source": "visible"}, image="ora",
                        source_probes=probe_box)  # fmt: skip
    report = run.report
    # A vector, fill or clone layer as the source: the panel reads what Krita draws of it, at its bounds
    # (their own pixelData is empty or one channel: "Krita returned 0 bytes for 30x20 RGBA pixels").
    for kind in ("vectorlayer", "filllayer", "clonelayer", "grouplayer"):  # a group's pixelData is empty in 5.3
        probe = report["source_probes"][kind]
        assert probe.get("center") == [0x20, 0xA0, 0x40, 255], (kind, probe)
        x, y, w, h = probe["box"]  # the layer's bounds: a shape's take a pixel of antialiasing around it
        assert abs(x - probe_box[0]) <= 1 and abs(y - probe_box[1]) <= 1, (kind, probe)
        assert abs(w - probe_box[2]) <= 2 and abs(h - probe_box[3]) <= 2, (kind, probe)
    # A filter layer has no pixels of its own (its pixelData is its one-channel selection): refused in
    # words naming the kind and what to choose instead, not "Krita returned 600 bytes for ... pixels".
    refused = report["source_probes"]["filterlayer"].get("error", "")
    assert "'probe filter' is a filter layer" in refused and "Visible image" in refused, refused
    # The paint layer with a mask and the group are at 40 % opacity: read at full strength (center alpha
    # 255 above), since their result layer takes the 40 % itself.
    # A paint layer with a transparency mask is read as the painter sees it: the masked-out half is
    # transparent (read without its mask, the result layer above it would show what the mask hides).
    masked = report["source_probes"]["paintlayer"]
    assert masked["box"] == probe_box and masked["center"] == [0x20, 0xA0, 0x40, 255], masked
    assert masked["left"][3] == 0, masked
    names = [layer["name"] for layer in report["layers_before"]]
    assert names == ["picture", "square"], names
    square = report["layers_before"][1]
    assert square["bounds"] == list(SQUARE)  # the offset layer kept its place

    # The panel sent the visible composite (what Krita shows), not the active layer alone.
    assert bgra8_to_rgba((run.out / "before-visible.raw").read_bytes()) == run.source
    # Its result goes on top of every layer, so the edit shows everywhere: above the active layer (the
    # bottom one here) the opaque square hid the edited square.
    _, src_after, new = new_layer(run, settings, on_top=True)
    assert run.raw(new) == daemon_edit(sine_daemon, run.source, settings).image.data
    # Neither source layer changed.
    after_by_name = {layer["name"]: layer for layer in report["layers_after"]}
    for layer in report["layers_before"]:
        assert run.raw(layer) == run.raw(after_by_name[layer["name"]]), layer["name"]


def test_no_daemon_and_grayscale_image_are_explained(krita_home, sine_daemon):
    """Nothing listens at the endpoint (but the daemon is installed), and the image is grayscale."""
    daemon_json = krita_home.host / ".config" / "sine-edit" / "daemon.json"
    daemon_json.write_text(json.dumps({"argv": ["/bin/false"]}))
    float_shot = krita_home.host / "docker-floating-800.png"
    try:
        run = run_panel_job(
            krita_home, sine_daemon, "errors", SETTINGS, image="gray", endpoint=f"tcp://127.0.0.1:{free_port()}",
            expect_daemon=False, expect_state="idle",  # refused before anything was sent
            screen="800x600x24", float_shot=krita_home.inside(float_shot),  # a small screen; the docker floated
            profile_probes=["sRGB-elle-V2-g10.icc", "ACEScg-elle-V4-g10.icc", "sRGB-elle-V2-srgbtrc.icc",
                            "ClayRGB-elle-V2-g22.icc", ""],  # "": Krita's default for a new 16-bit document
        )  # fmt: skip
    finally:
        daemon_json.unlink()
    report = run.report
    assert report["connection"].startswith("not connected: daemon not reachable")
    assert report["start_button_shown"] is True
    assert "RGBA images of 8 or 16 bits" in report["panel_error"] and "GRAYA/U8" in report["panel_error"]
    assert_edit_in_view(report["docker_at_edit"], 800)
    # Docked on that screen the panel shows ~100 px at a time: the refusal scrolls into view (it appeared
    # below the Edit button, out of sight, and the painter saw nothing happen).
    docker = report["docker"]
    top, bottom = docker["scroll_value"], docker["scroll_value"] + docker["viewport_height"]
    message = docker["parts"]["message_label"]
    assert docker["viewport_height"] < 200 and top <= message["top"] and message["bottom"] <= bottom, docker
    # Floated on an 800x600 screen, the docker grows to show the panel (Advanced open: as much as the
    # screen holds) and stays on the screen; it kept its docked size, 116 px high, Edit out of sight.
    floating = report["floating"]
    x, y, w, h = floating["frame"]
    ax, ay, aw, ah = floating["available"]
    assert floating["floating"] and ax <= x and ay <= y and x + w <= ax + aw and y + h <= ay + ah, floating
    assert floating["viewport"][1] >= min(floating["panel"][1], ah - 80), floating
    assert report["float_shot"] is True
    shutil.copyfile(float_shot, ARTIFACTS / f"krita-docker-floating-800-{krita_home.root.name}.png")
    # A linear-light profile, Krita's default for a new 16-bit document among them, reaches the model
    # sRGB-encoded (linear 0.5 is sRGB 188); read as they were, its values came back washed out.
    probes = report["profile_probes"]
    assert all(probe["profile"] == name for name, probe in probes.items() if name), probes
    assert probes[""]["profile"] == "sRGB-elle-V2-g10.icc", probes[""]
    for name in ("sRGB-elle-V2-g10.icc", "ACEScg-elle-V4-g10.icc", ""):
        assert probes[name].get("rgba") == [0, 188, 0, 255], (name, probes[name])
    for name in ("sRGB-elle-V2-srgbtrc.icc", "ClayRGB-elle-V2-g22.icc"):
        assert probes[name].get("rgba") == [0, 128, 0, 255], (name, probes[name])


def test_a_daemon_killed_mid_edit_is_told_in_the_docker(krita_home, sine_daemon, tmp_path):
    """The daemon dies mid-edit (SIGKILL, as the kernel's out-of-memory killer does) while a real Krita waits on
    it: the docker says at once, in words, that it stopped, that nothing was added and where its log is; the
    document keeps its layers, and Krita goes on (the automation finishes, the docker leaves 'running')."""
    from sine.tiny_models import make_tiny_sd

    token = krita_home.host / ".config" / "sine-edit" / "token"
    kept = token.read_bytes()
    with running_daemon(tmp_path, make_tiny_sd(tmp_path / "model")) as doomed:
        token.write_bytes(doomed.token_file.read_bytes())
        killed = kill_once_working(doomed)
        try:
            run = run_panel_job(krita_home, doomed, "killed", {**SETTINGS, "finetune_steps": 20000, "seed": 9},
                                endpoint=doomed.endpoint, expect_state="error")  # fmt: skip
        finally:
            token.write_bytes(kept)
    report = run.report
    assert killed, "the daemon never ran the docker's job"
    error = report["panel_error"]
    # told on the closed connection ("stopped during the edit"), not after the 30 s silence ("stopped answering")
    assert error.startswith("The SINE daemon stopped during the edit"), error
    assert "nothing was added" in error and "daemon.log" in error and "Press Edit again" in error, error
    assert "Traceback" not in error and "Errno" not in error and "lost the connection" not in error.lower(), error
    before, after = report["layers_before"], report["layers_after"]
    assert [layer["name"] for layer in after] == [layer["name"] for layer in before], after
    assert all(run.raw(b) == run.raw(a) for b, a in zip(before, after, strict=True)), "a layer changed"
    assert report["max_event_gap_ms"] < 1000, report["max_event_gap_ms"]
    shutil.copyfile(run.shot, ARTIFACTS / f"krita-killed-{krita_home.root.name}.png")


LAYER_SETTINGS = {**SETTINGS, "prompt": "make it red", "seed": 4, "steps": 2, "finetune_steps": 1}


@pytest.mark.parametrize("name, bits, select", [("u8-whole", 8, False), ("u8-select", 8, True),
                                                ("u16-select", 16, True)])  # fmt: skip
def test_an_offset_layer_smaller_than_the_canvas(krita_home, sine_daemon, name, bits, select):
    """203x141 at (37, 59) on 1001x777 (odd sizes, with and without a selection reaching past the
    layer, 8 and 16 bits): a new layer of the source's bounds, its alpha, the source outside the
    selection at the image's precision; one undo removes it."""
    x0, y0, w, h = LAYER_BOX
    screen = "1024x600x24" if name == "u8-whole" else "1280x960x24"  # a netbook's screen, docked
    run = run_panel_job(krita_home, sine_daemon, f"layer-{name}", LAYER_SETTINGS, image=f"layer{bits}",
                        selection=list(SELECT_BOX) if select else None, canvas=[*CANVAS, x0, y0],
                        screen=screen)  # fmt: skip
    report = run.report
    if name == "u8-whole":
        assert_edit_in_view(report["docker_at_edit"], 1024)
        assert_bar_follows_the_parts(report, moves_inside=False)  # 203x141: too quick for a part event
    assert report["canvas"] == list(CANVAS)
    before, after, new = new_layer(run, LAYER_SETTINGS, bounds=[x0, y0, w, h])
    assert before["bounds"] == [x0, y0, w, h] and before["depth"] == ("U16" if bits == 16 else "U8")
    assert new["depth"] == before["depth"]
    if select:  # the selection mask node is dumped too (one byte a pixel: 777,777 bytes)
        mask = (run.out / "selection.a8").read_bytes()
        assert len(mask) == CANVAS[0] * CANVAS[1]

    expected = layer_picture16() if bits == 16 else layer_picture8()
    source_before, source_after, result = run.pixels(before), run.pixels(after), run.pixels(new)
    for canvas_pixels in (source_before, source_after, result):  # nothing outside the layer's rectangle
        outside_box = np.ones(canvas_pixels.shape[:2], bool)
        outside_box[y0 : y0 + h, x0 : x0 + w] = False
        assert not canvas_pixels[outside_box].any()
    src, res = source_after[y0 : y0 + h, x0 : x0 + w], result[y0 : y0 + h, x0 : x0 + w]
    assert np.array_equal(src, expected) and np.array_equal(source_before, source_after)
    assert np.array_equal(res[..., 3], expected[..., 3]), f"{int((res[..., 3] != expected[..., 3]).sum())} alpha differ"
    differ = (res != expected).any(axis=2)
    inside = selection_in_layer() if select else np.ones((h, w), bool)
    assert int(differ[~inside].sum()) == 0, f"{int(differ[~inside].sum())} pixels outside the selection changed"
    assert differ[inside & (expected[..., 3] > 0)].mean() > 0.5, "the edit changed (almost) nothing"


def daemon_edits(daemon, source: bytes, settings: dict[str, Any]) -> list[bytes]:
    """The daemon's images for the panel's request with strength, start and count."""
    client = daemon.client()
    try:
        sampling = {"steps": settings["steps"], "w": settings["guidance"], "v": settings["v"], "k": settings["k"],
                    "strength": settings["strength"], "start": settings.get("start", "noise")}  # fmt: skip
        rid = client.submit_edit(
            RGBAImage(WIDTH, HEIGHT, source), settings["prompt"], subject=settings["subject"],
            style=settings["style"], seed=settings["seed"], sampling=sampling,
            finetune={"method": settings["method"], "steps": settings["finetune_steps"], "patch": True},
            output_size=(WIDTH, HEIGHT), count=settings["count"],
        )  # fmt: skip
        return [image.data for image in client.wait_result(rid, timeout=180).images]
    finally:
        client.close()


def test_docker_applies_one_of_three_results(krita_home, sine_daemon):
    """Three results at strength 0.5 on a 1280x768 screen: the painter applies the second, discards the
    others, then applies the third again from the History."""
    settings = {**SETTINGS, "prompt": "make the circle purple", "seed": 20, "count": 3, "strength": 0.5}
    docker_shot = krita_home.host / "docker-three.png"  # the whole panel, History open: for people to look at
    run = run_panel_job(krita_home, sine_daemon, "three", settings, screen="1280x768x24", apply_index=1,
                        history_apply_row=2, docker_shot=krita_home.inside(docker_shot))  # fmt: skip
    assert run.report["docker_shot"] is True
    shutil.copyfile(docker_shot, ARTIFACTS / f"krita-docker-three-{krita_home.root.name}.png")
    report = run.report
    before = [layer["name"] for layer in report["layers_before"]]
    assert report["result_cards"] == ["seed 20", "seed 21", "seed 22"]
    assert report["layers_before_apply"] == before  # nothing in the document until the painter chooses
    assert report["choice_states"] == ["discarded", "applied", "discarded"]
    assert [r["seed"] for r in report["result_header"]["results"]] == [20, 21, 22]

    after = report["layers_after"]
    # The discarded third result, applied again from the History, sits directly above the source too.
    assert report["history_apply_enabled"] is True and report["panel_error"] == ""
    assert report["reapplied_layer"] == "SINE: make the circle purple (seed 22)"
    assert [layer["name"] for layer in after] == [before[0], "SINE: make the circle purple (seed 22)",
                                                  "SINE: make the circle purple (seed 21)", *before[1:]]  # fmt: skip
    again, new = after[1], after[2]
    assert all(layer["type"] == "paintlayer" and layer["bounds"] == [0, 0, WIDTH, HEIGHT] for layer in (again, new))
    # The applied layer is exactly the daemon's second image for the same request, strength 0.5 included:
    # at strength 1.0 the same seed gives another picture, so the slider's value reached the daemon.
    expected = daemon_edits(sine_daemon, run.source, settings)
    assert len(expected) == 3 and run.raw(new) == expected[1]
    assert run.raw(again) == expected[2]  # the History kept the discarded result's own pixels
    assert run.raw(new) != daemon_edits(sine_daemon, run.source, {**settings, "strength": 1.0})[1]
    assert run.raw(after[0]) == run.source
    # Discarded results left nothing until applied again; that is one undo step.
    assert [name for name in report["layers_after_undo"] if name != "Selection Mask"] == [
        before[0], "SINE: make the circle purple (seed 21)", *before[1:]]
    assert report["history"] == [
        f"make the circle purple (seed {seed}, strength 0.50): {state}"
        for seed, state in ((20, "discarded"), (21, "applied"), (22, "discarded"))
    ]
    assert report.get("choices_screenshot") is True


def test_style_from_layer_reaches_the_daemon(krita_home, sine_daemon, tmp_path):
    """"Style from layer" = the square layer of a two-layer document: its own pixels and both weights are sent."""
    settings = {**SETTINGS, "prompt": "paint it in that colour", "seed": 4, "source": "visible",
                "style_layer": "square", "style_weight": 0.4, "content_weight": 0.5}  # fmt: skip
    x0, y0, w, h = SQUARE
    style = RGBAImage(w, h, bytes((40, 200, 60, 255)) * (w * h))  # the square layer at its own bounds
    client_settings = {**settings, "count": 1, "strength": 1.0}

    def with_style(style_image: RGBAImage | None, content_weight: float | None = None) -> bytes:
        client = sine_daemon.client()
        try:
            sampling = {"steps": settings["steps"], "w": settings["guidance"], "v": settings["v"], "k": settings["k"],
                        "strength": 1.0, "start": "noise"}  # fmt: skip
            if style_image is not None:
                sampling["style_weight"] = settings["style_weight"]
            if content_weight is not None:
                sampling["content_weight"] = content_weight
            rid = client.submit_edit(
                RGBAImage(WIDTH, HEIGHT, source), settings["prompt"], subject=settings["subject"],
                style=settings["style"], seed=settings["seed"], sampling=sampling,
                finetune={"method": settings["method"], "steps": settings["finetune_steps"], "patch": True},
                output_size=(WIDTH, HEIGHT), style_image=style_image,
            )  # fmt: skip
            return client.wait_result(rid, timeout=180).image.data
        finally:
            client.close()

    source = make_layered_ora(tmp_path / "same.ora")  # the document's composite, to warm both fine-tunes
    with_style(style)
    run = run_panel_job(krita_home, sine_daemon, "style", client_settings, image="ora")
    assert run.source == source
    _, _, new = new_layer(run, settings, on_top=True)  # the visible image's result: on top
    # Exactly the daemon's answer with that style picture and both weights; the content weight's 0.5
    # reached it (the engine's default, 1 - v, gives another picture).
    assert run.raw(new) == with_style(style, settings["content_weight"])
    assert run.raw(new) != with_style(style)
    assert run.raw(new) != with_style(None)
