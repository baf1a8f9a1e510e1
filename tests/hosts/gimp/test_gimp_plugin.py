"""The GIMP plug-in end to end: real GIMP 3 (each root of the host matrix) → installed plug-in → real `sine daemon`.

One gimp-console session runs the procedure non-interactively on three cases (a layer at an offset
on a larger canvas; a rectangle selection; the layer's mask active instead of the layer); a second, short session points the plug-in at a closed
port. The pixels GIMP stored are compared byte for byte with what the daemon returns to a client
on the host for the same request: the daemon caches the fine-tuned weights, so the host's request
is a cache hit producing the same result (the host asks once before GIMP, which warms the cache,
and once after, so both compared results come from the same cached weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

W, H = 64, 48
CANVAS = (80, 60, 10, 6)  # width, height, source layer offset x, y
SELECT = (8, 8, 24, 16)  # x, y, w, h
MASK_BOX = (4, 6, 40, 30)  # what the source's layer mask shows, in the "mask" case
EDIT = {"prompt": "a red circle", "subject": "shape", "style": "photo", "seed": 7}
SAMPLING = {"steps": 3, "w": 7.5, "v": 0.7, "k": 400}
FINETUNE = {"method": "lora", "steps": 2}
INVERT = "gegl:invert-gamma"
GIMP_ARGS = {
    **EDIT,
    "steps": SAMPLING["steps"],
    "guidance": SAMPLING["w"],
    "v": SAMPLING["v"],
    "k": SAMPLING["k"],
    "method": FINETUNE["method"],
    "finetune-steps": FINETUNE["steps"],
}


def source_rgb() -> bytes:
    """A 64×48 picture with distinct pixels everywhere (so misplaced pixels show)."""
    return bytes(v for y in range(H) for x in range(W) for v in (x * 4, y * 5, (x * 7 + y * 3) % 256))


def rgba_of(rgb: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(rgb), 3):
        out += rgb[i : i + 3] + b"\xff"
    return bytes(out)


def inverted(rgba: bytes) -> bytes:
    """What GIMP's Colors > Invert (gegl:invert-gamma) shows of an 8-bit RGBA picture: 255 - v, alpha kept."""
    return bytes(v if i % 4 == 3 else 255 - v for i, v in enumerate(rgba))


def rect_mask(w: int, h: int, x0: int, y0: int, rw: int, rh: int) -> bytes:
    return bytes(255 if x0 <= x < x0 + rw and y0 <= y < y0 + rh else 0 for y in range(h) for x in range(w))


def daemon_result(daemon, width: int, height: int, rgba: bytes, mask: bytes | None) -> bytes:
    """The daemon's answer to the request the plug-in should have sent, asked from the host."""
    from sine_protocol import Mask, RGBAImage

    client = daemon.client()
    try:
        rid = client.submit_edit(
            RGBAImage(width, height, rgba),
            EDIT["prompt"],
            subject=EDIT["subject"],
            style=EDIT["style"],
            seed=EDIT["seed"],
            sampling=SAMPLING,
            finetune=FINETUNE,
            output_size=(width, height),
            mask=Mask(width, height, mask) if mask is not None else None,
        )
        for event in client.events(rid, timeout=300):
            if event.type == "result":
                return event.image.data
            assert event.type not in ("error", "cancelled"), event.header
    finally:
        client.close()
    raise AssertionError("daemon sent no result")


@dataclass
class Case:
    """One plug-in run inside GIMP: what was asked, what GIMP recorded, and the expected pixels."""

    name: str
    out: Path
    sent: bytes  # the layer's own RGBA, what the plug-in should send
    expected: bytes  # the daemon's result for that request (asked from the host)
    canvas: tuple[int, int]

    @property
    def record(self) -> dict:
        return json.loads((self.out / "result.json").read_text())

    def layer_bytes(self, index: int) -> bytes:
        return (self.out / f"layer-{index}.rgba").read_bytes()


@pytest.fixture(scope="module")
def gimp_session(sine_daemon, gimp_home, daemon_env, run_gimp) -> dict[str, Case]:
    """Warm the cache from the host, run both cases in one GIMP session, ask the daemon again."""
    work = gimp_home.host / "work"
    png = work / "in.png"
    Image.frombytes("RGB", (W, H), source_rgb()).save(png)
    rgba = rgba_of(source_rgb())
    inputs = {
        "offset": (rgba, None, (W, H)),  # the layer itself, not the canvas around it
        "selection": (rgba, rect_mask(W, H, *SELECT), (W, H)),
        "mask": (rgba, None, (W, H)),  # the layer's mask active, not the layer: the layer is edited
        "group": (rgba, None, (W, H)),  # a layer group holding the source: what the group shows is edited
        "deep": (rgba, None, (W, H)),  # the source three groups deep in 50 layers, hidden ones above
        # an editable (non-destructive) Invert filter on the source, or on the group holding it: the
        # painter sees the inverted picture, and that is what is edited
        "filtered": (inverted(rgba), rect_mask(W, H, *SELECT), (W, H)),
        "filtered-group": (inverted(rgba), None, (W, H)),
    }
    for sent, mask, (w, h) in inputs.values():
        daemon_result(sine_daemon, w, h, sent, mask)  # warm the weight cache
    cases = [
        {"name": "offset", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "offset"),
         "canvas": list(CANVAS), "args": GIMP_ARGS},
        {"name": "selection", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "selection"),
         "select": list(SELECT), "args": GIMP_ARGS, "source_look": {"opacity": 55.0, "mode": "multiply"}},
        {"name": "mask", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "mask"),
         "drawable": "mask", "mask_box": list(MASK_BOX), "args": GIMP_ARGS},
        {"name": "group", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "group"),
         "drawable": "group", "args": GIMP_ARGS},
        {"name": "noted", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "noted"),
         "args": {**GIMP_ARGS, "prompt": LONG_PROMPT}},  # the fine-tune is cached: only sampling runs
        {"name": "deep", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "deep"),
         "drawable": "deep", "args": GIMP_ARGS},
        {"name": "text", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "text"),
         "drawable": "text", "args": GIMP_ARGS},
        {"name": "filtered", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "filtered"),
         "select": list(SELECT), "filter": INVERT, "locks": ["content", "position", "alpha"], "args": GIMP_ARGS},
        {"name": "filtered-group", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "filtered-group"),
         "drawable": "group", "filter": INVERT, "args": GIMP_ARGS},
        *({"name": kind, "input": gimp_home.inside(png), "out": gimp_home.inside(work / kind), "drawable": kind,
           "args": GIMP_ARGS} for kind in ("link", "vector")),  # GIMP 3.2's new layer kinds
    ]  # fmt: skip
    run = run_gimp(gimp_home, cases, daemon_env)
    print(f"GIMP session ({len(cases)} edits): {run.wall_s:.1f} s")
    assert run.returncode == 0, run.log[-4000:]
    (work / "noted" / "gimp.log").write_text(run.log)
    return {
        name: Case(name, work / name, sent, daemon_result(sine_daemon, w, h, sent, mask), (w, h))
        for name, (sent, mask, (w, h)) in inputs.items()
    }


@pytest.mark.parametrize("name", ["offset", "selection", "mask", "group"])
def test_edit_succeeds_and_returns_the_new_layer(gimp_session: dict[str, Case], name: str) -> None:
    record = gimp_session[name].record
    assert record["status"] == "success", record["message"]
    assert record["returned_layer"] == record["layers"][0]["name"]
    assert record["layers"][0]["name"] == "SINE: a red circle (seed 7)"


def test_result_layer_has_the_sources_size_and_offsets_above_it(gimp_session: dict[str, Case]) -> None:
    record = gimp_session["offset"].record
    cw, ch, ox, oy = CANVAS
    assert record["canvas"] == [cw, ch]
    new, source = record["layers"]
    assert new["size"] == [W, H] and new["offsets"] == [ox, oy]
    assert source["size"] == [W, H] and source["offsets"] == [ox, oy]


@pytest.mark.parametrize("name", ["offset", "selection", "mask", "group"])
def test_result_pixels_equal_the_daemons_output(gimp_session: dict[str, Case], name: str) -> None:
    case = gimp_session[name]
    got = case.layer_bytes(0)
    assert len(got) == case.canvas[0] * case.canvas[1] * 4
    assert got == case.expected, (
        f"{sum(a != b for a, b in zip(got, case.expected, strict=True))} bytes differ"
    )


@pytest.mark.parametrize("name", ["offset", "selection", "mask", "group"])
def test_source_layer_is_untouched(gimp_session: dict[str, Case], name: str) -> None:
    assert gimp_session[name].layer_bytes(1) == rgba_of(source_rgb())


def test_the_sources_layer_mask_comes_with_the_result(gimp_session: dict[str, Case]) -> None:
    """The result shows what the source's mask lets through, no more: the mask is copied onto it (without
    it, what the mask hid came back in the layer above)."""
    case = gimp_session["mask"]
    new, source = case.record["layers"]
    assert source["has_mask"] and new["has_mask"], case.record["layers"]
    mask = (case.out / "layer-1.mask").read_bytes()
    assert mask == rect_mask(W, H, *MASK_BOX)
    assert (case.out / "layer-0.mask").read_bytes() == mask


def test_pixels_outside_the_selection_are_the_source(gimp_session: dict[str, Case]) -> None:
    case = gimp_session["selection"]
    result, source = case.layer_bytes(0), rgba_of(source_rgb())
    mask = rect_mask(W, H, *SELECT)
    outside = [i for i in range(W * H) if mask[i] == 0]
    inside = [i for i in range(W * H) if mask[i] == 255]
    assert all(result[4 * i : 4 * i + 4] == source[4 * i : 4 * i + 4] for i in outside)
    assert any(result[4 * i : 4 * i + 3] != source[4 * i : 4 * i + 3] for i in inside), (
        "the edit changed nothing"
    )


def test_the_result_shows_as_the_source_does(gimp_session: dict[str, Case]) -> None:
    """A source at 55 % opacity in Multiply mode: the result layer takes both, so what lies outside the
    selection looks as before (at 100 % Normal over it, the painter's picture changed everywhere)."""
    new, source = gimp_session["selection"].record["layers"]
    assert (source["opacity"], source["mode"]) == (55.0, "multiply"), source
    assert (new["opacity"], new["mode"]) == (source["opacity"], source["mode"]), new


def test_xcf_and_layer_pngs_are_written(gimp_session: dict[str, Case]) -> None:
    case = gimp_session["offset"]
    assert (case.out / "edited.xcf").read_bytes()[:9] == b"gimp xcf "
    with Image.open(case.out / "layer-0.png") as im:
        assert im.size == (W, H)


LONG_PROMPT = " ".join(f"word{i}" for i in range(50))  # ~100 tokens; the tiny model reads 30


def test_a_cut_prompt_is_told_with_the_result(gimp_session: dict[str, Case]) -> None:
    """A non-interactive run says what the daemon noted (the prompt's ignored words) with its result."""
    out = gimp_session["offset"].out.parent / "noted"
    record = json.loads((out / "result.json").read_text())
    assert record["status"] == "success", record
    lines = (out / "gimp.log").read_text().splitlines()
    said = [i for i, line in enumerate(lines) if "SINE added layer" in line]
    assert len(said) == 1, lines
    note = lines[said[0] + 1]  # a message of two lines (one line would go to a wide window's status bar)
    assert note.startswith("Note: the prompt's last") and "word49" in note, lines[said[0] :]


def test_refusals_are_fast_and_clear(gimp_home, run_gimp, closed_endpoint: str) -> None:
    """No daemon at the endpoint → error status naming it, quickly; a grayscale image → calling error."""
    work = gimp_home.host / "work"
    png = work / "in-err.png"
    Image.frombytes("RGB", (W, H), source_rgb()).save(png)
    cases = [
        {"name": "no-daemon", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "no-daemon"),
         "args": GIMP_ARGS},
        {"name": "grayscale", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "grayscale"),
         "grayscale": True, "args": GIMP_ARGS},
        {"name": "other-image", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "other-image"),
         "drawable": "other-image", "args": GIMP_ARGS},
        {"name": "floating", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "floating"),
         "drawable": "floating", "args": GIMP_ARGS},
        {"name": "channel", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "channel"),
         "drawable": "channel", "args": GIMP_ARGS},
        {"name": "two-layers", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "two-layers"),
         "drawable": "two-layers", "args": GIMP_ARGS},
    ]  # fmt: skip
    run = run_gimp(gimp_home, cases, {"SINE_ENDPOINT": closed_endpoint}, timeout_s=120)
    assert run.returncode == 0, run.log[-4000:]
    record = json.loads((work / "no-daemon" / "result.json").read_text())
    assert record["status"] == "execution-error"
    assert "SINE daemon is not running" in record["message"] and closed_endpoint in record["message"]
    assert record["elapsed_s"] < 10, record
    assert [layer["name"] for layer in record["layers"]] == ["Background"]
    gray = json.loads((work / "grayscale" / "result.json").read_text())
    assert gray["status"] == "calling-error" and "RGB" in gray["message"], gray
    assert len(gray["layers"]) == 1
    # A script passing a layer of another image: refused in words (its pixels went into this image's new
    # layer). A floating selection (a paste not yet anchored): refused with what to do (its result went
    # under the paste, hidden by it). Both before any daemon is asked.
    other = json.loads((work / "other-image" / "result.json").read_text())
    assert other["status"] == "calling-error" and "another image" in other["message"], other
    assert [layer["name"] for layer in other["layers"]] == ["Background"]
    floating = json.loads((work / "floating" / "result.json").read_text())
    assert floating["status"] == "calling-error" and "floating selection" in floating["message"], floating
    assert "Anchor" in floating["message"] and len(floating["layers"]) == 2, floating
    # A channel selected in the Channels dialog was told "Select exactly one layer", which a painter who sees a
    # layer highlighted in the Layers dialog cannot act on; two layers were told the same. Each is named.
    channel = json.loads((work / "channel" / "result.json").read_text())
    assert channel["status"] == "calling-error" and "channel" in channel["message"], channel
    assert "Painter's channel" in channel["message"] and "Layers dialog" in channel["message"], channel
    two = json.loads((work / "two-layers" / "result.json").read_text())
    assert two["status"] == "calling-error" and "2 layers" in two["message"], two
    assert [layer["name"] for layer in channel["layers"]] == ["Background"], channel


def test_missing_model_is_reported_clearly(modelless_daemon, gimp_home, gimp_env, run_gimp) -> None:
    work = gimp_home.host / "work"
    png = work / "in-nomodel.png"
    Image.frombytes("RGB", (W, H), source_rgb()).save(png)
    case = {"name": "no-model", "input": gimp_home.inside(png), "out": gimp_home.inside(work / "no-model"),
            "args": GIMP_ARGS}  # fmt: skip
    env = gimp_env(modelless_daemon, gimp_home, "sine-config-nomodel")
    run = run_gimp(gimp_home, [case], env, timeout_s=120)
    assert run.returncode == 0, run.log[-4000:]
    record = json.loads((work / "no-model" / "result.json").read_text())
    assert record["status"] == "execution-error"
    assert record["message"].startswith("The daemon has no usable model."), record["message"]
    assert "[model_missing]" in record["message"]
    assert len(record["layers"]) == 1


def test_a_layer_group_is_edited_as_it_shows_and_its_result_goes_above_it(gimp_session: dict[str, Case]) -> None:
    """The group's projection is sent; the result is a plain layer beside the group (not inside it)."""
    new, group = gimp_session["group"].record["layers"]
    assert new["name"] == "SINE: a red circle (seed 7)" and group["name"] == "group", gimp_session["group"].record
    assert new["size"] == group["size"] == [W, H]


def test_a_source_deep_in_a_50_layer_stack(gimp_session: dict[str, Case]) -> None:
    """50 layers, 10 hidden opaque ones on top, the source three groups deep: its own pixels are sent, the
    result lands in its group directly above it, nothing else moves or changes."""
    case = gimp_session["deep"]
    record = case.record
    assert record["status"] == "success", record["message"]
    print(f"deep stack edit: {record['elapsed_s']} s in GIMP")
    tree = record["tree"]
    assert [item["name"] for item in tree[:10]] == [f"hidden {i}" for i in range(9, -1, -1)]
    assert not any(item["visible"] for item in tree[:10])
    outer = tree[10]
    assert outer["name"] == "outer" and [c["name"] for c in tree[11:]] == [f"bottom {i}" for i in range(10)]
    middle = outer["children"][0]
    inner = middle["children"][0]
    assert [c["name"] for c in inner["children"]] == ["above 2", "above 1", "above 0", "SINE: a red circle (seed 7)",
                                                      "Background", "below 0", "below 1", "below 2"]  # fmt: skip
    assert inner["children"][3]["kind"] == "layer"
    assert [c["name"] for c in outer["children"][1:]] == [f"outer {i}" for i in range(10)]
    assert [c["name"] for c in middle["children"][1:]] == [f"middle {i}" for i in range(10)]
    assert (case.out / "deep-result.rgba").read_bytes() == case.expected
    assert (case.out / "deep-source.rgba").read_bytes() == rgba_of(source_rgb())


def test_a_text_layer_as_the_source_stays_a_text_layer(gimp_session: dict[str, Case]) -> None:
    """The painter runs the filter on a text layer: the result is a pixel layer of the text's size and
    place, with its alpha; the text layer keeps its text and its pixels (no conversion to pixels)."""
    out = gimp_session["offset"].out.parent / "text"
    record = json.loads((out / "result.json").read_text())
    assert record["status"] == "success", record["message"]
    new, text, _background = record["layers"]
    assert new["name"] == "SINE: a red circle (seed 7)" and new["kind"] == "layer", record["layers"]
    assert text["kind"] == "text" and text["text"] == "SINE text", text
    assert new["size"] == text["size"] and new["offsets"] == text["offsets"] == [6, 8], record["layers"]
    before = (out / "source-before.rgba").read_bytes()
    assert (out / "layer-1.rgba").read_bytes() == before
    result = (out / "layer-0.rgba").read_bytes()
    assert result[3::4] == before[3::4]  # the text's own alpha: the letters' shape


@pytest.mark.parametrize("name", ["filtered", "filtered-group"])
def test_a_source_with_a_non_destructive_filter_is_edited_as_it_shows(gimp_session: dict[str, Case], name: str) -> None:
    """An editable filter (Invert) in the source's (or its group's) Fx list: what the painter sees is the
    filtered picture, so that is what is sent and what the result holds, a plain layer without filters;
    outside the selection it is the filtered source, so the picture there looks as before (the source's
    unfiltered pixels were sent, and came back unfiltered over the inverted source). The source keeps its
    filter and its own pixels; a locked source (pixels, position, alpha) gives an unlocked result."""
    case = gimp_session[name]
    record = case.record
    assert record["status"] == "success", record["message"]
    new, source = record["layers"][:2]
    assert new["kind"] == "layer" and new["filters"] == [] and new["locks"] == [], new
    assert source["filters"] == ["painter's filter"], source
    assert new["size"] == source["size"] == [W, H] and new["offsets"] == source["offsets"], record["layers"]
    got = case.layer_bytes(0)
    assert got == case.expected, f"{sum(a != b for a, b in zip(got, case.expected, strict=True))} bytes differ"
    if name == "filtered":
        assert source["locks"] == ["content", "position", "alpha"], source
        x, y, w, h = SELECT  # the painter's selection as it was, and no channel left behind
        assert record["selection_after"] == [True, x, y, x + w, y + h] and record["channels_after"] == 0, record
        assert case.layer_bytes(1) == rgba_of(source_rgb())  # its own (unfiltered) pixels, untouched
        mask = rect_mask(W, H, *SELECT)
        assert all(got[4 * i : 4 * i + 4] == case.sent[4 * i : 4 * i + 4] for i in range(W * H) if mask[i] == 0)


@pytest.mark.parametrize("kind", ["link", "vector"])
def test_a_link_or_vector_layer_as_the_source_gives_a_pixel_layer(gimp_session: dict[str, Case], kind: str) -> None:
    """GIMP 3.2's link layer (the picture file linked) and vector layer (an ellipse path filled): the result
    is a plain pixel layer of the source's size at its place, with its alpha; the source keeps its kind and
    its pixels. The link layer shows the file's pixels: its result is the daemon's answer for them."""
    out = gimp_session["offset"].out.parent / kind
    record = json.loads((out / "result.json").read_text())
    if record["status"] == "unsupported":
        pytest.skip(f"GIMP {record['gimp']} has no link or vector layers")
    assert record["status"] == "success", record["message"]
    new, source = record["layers"][:2]
    assert new["kind"] == "layer" and source["kind"] == kind, record["layers"]
    assert new["size"] == source["size"] and new["offsets"] == source["offsets"], record["layers"]
    before = (out / "source-before.rgba").read_bytes()
    assert (out / "layer-1.rgba").read_bytes() == before
    result = (out / "layer-0.rgba").read_bytes()
    assert result[3::4] == before[3::4] and result != before
    if kind == "link":
        assert before == rgba_of(source_rgb()) and result == gimp_session["offset"].expected
