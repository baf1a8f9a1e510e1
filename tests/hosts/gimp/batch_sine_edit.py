# Fed to: gimp-console-3.0 -i --batch-interpreter python-fu-eval -b - --quit < batch_sine_edit.py
# python-fu-eval reads this from stdin (its globals already hold Gimp, Gegl, Gio; imported again for clarity).
#
# Runs the SINE plug-in NON-INTERACTIVELY on every case of the JSON file named by $SINE_GIMP_CASES
# (one GIMP session for all of them) and leaves, per case, in case["out"]:
#   result.json         status, error message, elapsed seconds, the layers (name, size, offsets)
#   edited.xcf          the image with all its layers
#   layer-<i>.rgba/.png each layer's own pixels: raw "R'G'B'A u8" bytes (exact) and a PNG (to look at)
#   layer-<i>.native    with case["dump_format"] (e.g. "R'G'B'A u16"), the pixels in that format too
# With case["undo"] (GUI sessions only) the image is then shown and Ctrl+Z pressed in GIMP's window
# (xdotool), and the layers left afterwards are recorded as "layers_after_undo".
# The host-side test checks everything; this script only records.
import json
import os
import subprocess
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

RGBA = "R'G'B'A u8"
RUN = Gimp.RunMode.NONINTERACTIVE


def save(image, path):
    Gimp.file_save(RUN, image, Gio.File.new_for_path(path), None)


def dump_layer(layer, stem, native=None):
    w, h = layer.get_width(), layer.get_height()
    raw = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, RGBA, Gegl.AbyssPolicy.NONE)
    with open(stem + ".rgba", "wb") as f:
        f.write(bytes(raw))
    if native:
        raw = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, native, Gegl.AbyssPolicy.NONE)
        with open(stem + ".native", "wb") as f:
            f.write(bytes(raw))
    single = Gimp.Image.new(w, h, Gimp.ImageBaseType.RGB)
    copy = Gimp.Layer.new_from_drawable(layer, single)
    single.insert_layer(copy, None, 0)
    copy.set_offsets(0, 0)
    save(single, stem + ".png")
    single.delete()


def run_case(case):
    out = case["out"]
    image = Gimp.file_load(RUN, Gio.File.new_for_path(case["input"]))
    source = image.get_layers()[0]
    if case.get("canvas"):  # grow the canvas so the source layer sits at an offset
        cw, ch, ox, oy = case["canvas"]
        image.resize(cw, ch, ox, oy)
    if case.get("grayscale"):
        image.convert_grayscale()
    if case.get("select"):
        x, y, w, h = case["select"]
        image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, w, h)
    run_mode = RUN
    if case.get("interactive"):  # the plug-in's dialogs answer from the autotest file
        run_mode = Gimp.RunMode.INTERACTIVE
        with open(os.environ["SINE_GIMP_AUTOTEST"], "w") as f:
            json.dump(case.get("autotest", {}), f)
    proc = Gimp.get_pdb().lookup_procedure("python-fu-sine-edit")
    assert proc is not None, "python-fu-sine-edit is not registered (plug-in folder / exec bit / vendoring?)"
    cfg = proc.create_config()
    cfg.set_property("run-mode", run_mode)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [source])
    for key, value in case["args"].items():
        cfg.set_property(key, value)
    t0 = time.monotonic()
    res = proc.run(cfg)
    elapsed = time.monotonic() - t0
    status = res.index(0)
    record = {
        "status": status.value_nick,
        "elapsed_s": round(elapsed, 3),
        "message": res.index(1) if status != Gimp.PDBStatusType.SUCCESS and res.length() > 1 else None,
        "returned_layer": None,
        "canvas": [image.get_width(), image.get_height()],
        "precision": image.get_precision().value_nick,
        "gimp": Gimp.version(),
        "layers": [],
    }
    if status == Gimp.PDBStatusType.SUCCESS:
        record["returned_layer"] = res.index(1).get_name()
    for i, layer in enumerate(image.get_layers()):
        _, ox, oy = layer.get_offsets()
        record["layers"].append(
            {"name": layer.get_name(), "size": [layer.get_width(), layer.get_height()], "offsets": [ox, oy]}
        )
        dump_layer(layer, os.path.join(out, f"layer-{i}"), case.get("dump_format"))
    save(image, os.path.join(out, "edited.xcf"))
    if case.get("undo") and status == Gimp.PDBStatusType.SUCCESS:
        record["layers_after_undo"] = undo_in_gui(image)
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(record, f, indent=1)
    print("SINE-CASE", case["name"], record["status"], record["elapsed_s"], record["message"])
    image.delete()


def _xdo(*args):
    done = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.split()


def press_in_image_window(keys):
    """Close GIMP's Welcome dialog if it is up, focus the image window, press ``keys`` there."""
    for wid in _xdo("search", "--onlyvisible", "--name", "Welcome to GIMP"):
        _xdo("windowfocus", "--sync", wid, "key", "Escape")
    time.sleep(0.5)
    for wid in _xdo("search", "--onlyvisible", "--name", "GIMP$"):
        name = subprocess.run(["xdotool", "getwindowname", wid], capture_output=True, text=True).stdout
        if not name.startswith("Welcome"):
            _xdo("windowfocus", "--sync", wid, "key", "--clearmodifiers", keys)
            return name.strip()
    return None


def undo_in_gui(image):
    """Show the image, press Ctrl+Z once in its window as a user would, return the layer names left."""
    display = Gimp.Display.new(image)
    Gimp.displays_flush()
    before = [layer.get_name() for layer in image.get_layers()]
    names = before
    time.sleep(2.0)  # let the window map
    if press_in_image_window("ctrl+z"):
        for _ in range(40):
            time.sleep(0.25)
            names = [layer.get_name() for layer in image.get_layers()]
            if names != before:
                break
    display.delete()
    return names


with open(os.environ["SINE_GIMP_CASES"]) as f:
    cases = json.load(f)
for case in cases:
    run_case(case)
