# Fed to: gimp-console-3.0 -i --batch-interpreter python-fu-eval -b - --quit < batch_sine_edit.py
# python-fu-eval reads this from stdin (its globals already hold Gimp, Gegl, Gio; imported again for clarity).
#
# Runs the SINE plug-in NON-INTERACTIVELY on every case of the JSON file named by $SINE_GIMP_CASES
# (one GIMP session for all of them) and leaves, per case, in case["out"]:
#   result.json         status, error message, elapsed seconds, the layers (name, size, offsets)
#   edited.xcf          the image with all its layers
#   layer-<i>.rgba/.png each layer's own pixels: raw "R'G'B'A u8" bytes (exact) and a PNG (to look at)
#   layer-<i>.native    with case["dump_format"] (e.g. "R'G'B'A u16"), the pixels in that format too
# A case with "drawable": "mask" gives the source a layer mask showing case["mask_box"] and runs on that
# mask; layer-<i>.mask holds a layer's mask.
# A case with "drawable": "group" puts the source into a layer group and runs on the group.
# A case with "drawable": "other-image" passes a layer of another image, "floating" a floating selection.
# A case with "drawable": "channel" passes a new channel, "two-layers" the source and a copy of it.
# A case with "drawable": "text" adds a text layer on top and runs on it (its pixels before: source-before.rgba).
# A case with "drawable": "deep" builds a 50-layer image (hidden layers on top, the source three groups deep)
# and runs on the source; "tree" in result.json is the whole stack after the edit.
# A case with "repeat" runs WITH_LAST_VALS (Filters > Repeat), its "args" left as they are.
# A case with "menu" (an action's name) and "display" presses that menu item in the image's window instead
# (over the session D-Bus; the plug-in's dialog answers from case["autotest"]) and records how many message
# dialogs opened (new_message_windows) and a screenshot (screen.png).
# A case with "profile" (an ICC file's path) assigns that colour profile to the image first.
# A case with "source_look" gives the source an opacity and a layer mode first; every layer's are recorded.
# A case with "second_input" edits two images at once, each from its own window's menu: the first with
# case["first_args"], the second with case["args"] while the first runs; then the first is cancelled in its
# own progress window. result.json holds both images' layers ("first", "second"), the progress windows seen
# while both ran ("windows": title -> the window each is transient for) and what each showed ("shown").
# A case with "display" opens an image window (GUI GIMP without -i); with "undo_after" it then
# presses GIMP's own Edit > Undo once (the edit-undo action, over the session D-Bus) and records
# the layers left ("layers_after_undo"), then Edit > Redo once ("layers_after_redo", redone-0.rgba).
# The host-side test checks everything; this script only records.
import json
import os
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio, GLib  # noqa: E402

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


def press_undo(action="edit-undo"):
    """Edit > Undo (or Redo) in the GUI, as a painter's Ctrl+Z: GIMP exports its actions on the session bus."""
    bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
    bus.call_sync("org.gimp.GIMP.UI", "/org/gimp/GIMP", "org.gtk.Actions", "Activate",
                  GLib.Variant("(sava{sv})", (action, [], {})), None, Gio.DBusCallFlags.NONE, 10000, None)


def wait_for_layer_count(image, before):
    deadline = time.monotonic() + 10
    while len(image.get_layers()) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # a second step, had there been one, would not run by itself: one press only


def arg_value(image, key, value):
    """JSON case arguments to PDB values: *-file keys are paths, style-layer names a layer of the image."""
    if key.endswith("-file"):
        return Gio.File.new_for_path(value)
    if key == "style-layer":
        return next(layer for layer in image.get_layers() if layer.get_name() == value)
    return value


def xwininfo(*args):
    import subprocess

    return subprocess.run(["xwininfo", *args], capture_output=True, text=True).stdout


def message_windows():
    """The message dialogs on screen (GIMP titles them "<procedure> Message"). xwininfo (x11-utils, in the
    roots with xvfb) rather than xdotool, which the roots do not have: the cases using this died on it."""
    import re

    named = re.findall(r'^\s*(0x[0-9a-f]+) "[^"\n]*Message":', xwininfo("-root", "-tree"), re.MULTILINE)
    return [wid for wid in named if "Map State: IsViewable" in xwininfo("-id", wid)]


def save_screen(path):
    """The whole screen as a PNG, as a painter would see it."""
    gi.require_version("Gdk", "3.0")
    from gi.repository import Gdk

    Gdk.init([])
    root = Gdk.get_default_root_window()
    Gdk.pixbuf_get_from_window(root, 0, 0, root.get_width(), root.get_height()).savev(path, "png", [], [])


def run_from_menu(case, image):
    """Activate a menu's action over the session D-Bus, as the painter's click (GIMP's own window runs the
    plug-in, its progress and messages in that window), wait for the result layer, then record the message
    dialogs that opened and the screen."""
    out = case["out"]
    with open(os.environ["SINE_GIMP_AUTOTEST"], "w") as f:
        json.dump(case.get("autotest", {}), f)
    Gimp.displays_flush()
    time.sleep(1)
    before, dialogs = len(image.get_layers()), message_windows()
    t0 = time.monotonic()
    press_undo(case["menu"])  # "python-fu-sine-edit" (Filters > SINE > Edit with text…) or "filters-repeat"
    deadline = time.monotonic() + float(case.get("timeout_s", 120))
    while len(image.get_layers()) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(float(case.get("look_after_s", 1.5)))
    record = {"elapsed_s": round(time.monotonic() - t0, 3), "layers": [layer.get_name() for layer in image.get_layers()],
              "new_message_windows": len(set(message_windows()) - set(dialogs))}  # fmt: skip
    save_screen(os.path.join(out, "screen.png"))
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(record, f, indent=1)
    print("SINE-CASE", case["name"], record)


def kind_of(item):
    if item.is_group_layer():
        return "group"
    for kind in ("link", "vector"):  # GIMP 3.2's link and vector layers
        if getattr(item, f"is_{kind}_layer", lambda: False)():
            return kind
    return "text" if item.is_text_layer() else "layer"


def stack_tree(items):
    """The layer stack as nested lists: name, kind, visibility, children."""
    return [{"name": item.get_name(), "kind": kind_of(item), "visible": item.get_visible(),
             **({"children": stack_tree(item.get_children())} if item.is_group_layer() else {})}
            for item in items]  # fmt: skip


def nested_layers(items):
    for item in items:
        yield item
        if item.is_group_layer():
            yield from nested_layers(item.get_children())


def new_group(image, name):
    try:
        return Gimp.GroupLayer.new(image, name)
    except TypeError:  # an API without the name
        group = Gimp.GroupLayer.new(image)
        group.set_name(name)
        return group


def build_deep_stack(image, source):
    """50 layers: 10 hidden opaque ones on top, then outer > middle > inner groups (10 fillers each in outer and
    middle; 3 above and 3 below the source in inner), 10 fillers at the bottom. Returns the source."""
    w, h = image.get_width(), image.get_height()

    def plain(name, parent, position, visible=True):
        layer = Gimp.Layer.new(image, name, w, h, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
        image.insert_layer(layer, parent, position)
        layer.set_visible(visible)
        return layer

    for i in range(10):
        plain(f"bottom {i}", None, len(image.get_layers()))
    outer = new_group(image, "outer")
    image.insert_layer(outer, None, 0)
    middle = new_group(image, "middle")
    image.insert_layer(middle, outer, 0)
    inner = new_group(image, "inner")
    image.insert_layer(inner, middle, 0)
    for i in range(10):
        plain(f"outer {i}", outer, len(outer.get_children()))
        plain(f"middle {i}", middle, len(middle.get_children()))
    image.reorder_item(source, inner, 0)
    for i in range(3):
        plain(f"above {i}", inner, 0)
        plain(f"below {i}", inner, len(inner.get_children()))
    for i in range(10):
        hidden = plain(f"hidden {i}", None, 0, visible=False)
        hidden.fill(Gimp.FillType.FOREGROUND)  # opaque: it would hide the edit if it were shown
    return source


def sine_processes():
    """How many SINE plug-in processes run now (GIMP starts one for each call)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                count += b"sine-gimp.py" in f.read()
        except OSError:
            pass
    return count


def layer_records(image, out, stem):
    records = []
    for i, layer in enumerate(image.get_layers()):
        records.append({"name": layer.get_name(), "size": [layer.get_width(), layer.get_height()]})
        dump_layer(layer, os.path.join(out, f"{stem}-{i}"))
    return records


def progress_windows():
    """The SINE progress windows on screen: {title: title of the window it is transient for, or None}."""
    import re

    found = {}
    for wid, title in re.findall(r'^\s*(0x[0-9a-f]+) "(SINE: [^"\n]*)":', xwininfo("-root", "-tree"), re.MULTILINE):
        if title == "SINE: Edit with text" or "Map State: IsViewable" not in xwininfo("-id", wid):
            continue  # the settings dialog, or a window not shown
        import subprocess

        owner = re.search(r"window id # (0x[0-9a-f]+)", subprocess.run(
            ["xprop", "-id", wid, "WM_TRANSIENT_FOR"], capture_output=True, text=True).stdout)  # fmt: skip
        named = re.search(r'"([^"\n]*)"', xwininfo("-id", owner.group(1))) if owner else None
        found[title] = named.group(1) if named else None
    return found


def wait_until(ready, seconds):
    deadline = time.monotonic() + seconds
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.2)
    return ready()


def write_plan(plan):
    with open(os.environ["SINE_GIMP_AUTOTEST"], "w") as f:
        json.dump(plan, f)


def run_two_at_once(case):
    """Two images, each edited from its own window's menu, the first still fine-tuning when the second is
    asked for (queued behind it): record both progress windows, then Cancel the first in its own window."""
    out = case["out"]
    first = Gimp.file_load(RUN, Gio.File.new_for_path(case["input"]))
    second = Gimp.file_load(RUN, Gio.File.new_for_path(case["second_input"]))
    Gimp.Display.new(second)
    Gimp.Display.new(first)  # the newest window is the active one: the menu acts on its image
    first.clean_all()
    second.clean_all()
    logs = os.path.join(out, "progress")
    os.makedirs(logs, exist_ok=True)
    write_plan({"dialog": "ok", "progress_log": logs, "move": case["first_args"]})
    Gimp.displays_flush()
    time.sleep(1)
    press_undo("python-fu-sine-edit")  # Filters > SINE > Edit with text… in the first image's window
    wait_until(lambda: len(progress_windows()) == 1, 30)
    write_plan({"dialog": "ok", "progress_log": logs, "move": case["args"]})
    Gimp.Display.new(second)  # the second image's window, now the active one
    Gimp.displays_flush()
    time.sleep(1)
    press_undo("python-fu-sine-edit")
    wait_until(lambda: len(progress_windows()) == 2, 30)
    time.sleep(1.0)  # both windows show what their edit does (the second waits in the daemon's queue)
    windows = progress_windows()
    save_screen(os.path.join(out, "screen.png"))
    labels = [f"{image.get_name()}-{image.get_id()}" for image in (first, second)]
    write_plan({"progress_log": logs, "cancel_at_step": 0, "cancel_title_has": labels[0]})  # the first's Cancel
    deadline = time.monotonic() + float(case.get("timeout_s", 120))
    while sine_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    shown = {}
    for name in os.listdir(logs):
        with open(os.path.join(logs, name)) as f:
            lines = [json.loads(line) for line in f]
        shown[lines[0]["title"]] = [line["text"] for line in lines]
    record = {"labels": labels, "windows": windows, "shown": shown, "first_still_running": sine_processes(),
              "first": layer_records(first, out, "first"), "second": layer_records(second, out, "second")}  # fmt: skip
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(record, f, indent=1)
    print("SINE-CASE", case["name"], record)


def run_case(case):
    out = case["out"]
    if case.get("second_input"):
        run_two_at_once(case)
        return
    image = Gimp.file_load(RUN, Gio.File.new_for_path(case["input"]))
    source = image.get_layers()[0]
    if case.get("canvas"):  # grow the canvas so the source layer sits at an offset
        cw, ch, ox, oy = case["canvas"]
        image.resize(cw, ch, ox, oy)
    if case.get("profile"):  # assign an ICC profile (the numbers stay, their meaning changes)
        image.set_color_profile(Gimp.ColorProfile.new_from_file(Gio.File.new_for_path(case["profile"])))
    if case.get("grayscale"):
        image.convert_grayscale()
    if case.get("select"):
        x, y, w, h = case["select"]
        image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, w, h)
    for extra in case.get("extra_layers", []):  # [name, path]: another picture as a layer at the bottom
        loaded = Gimp.file_load_layer(RUN, image, Gio.File.new_for_path(extra[1]))
        loaded.set_name(extra[0])
        image.insert_layer(loaded, None, len(image.get_layers()))
    look = case.get("source_look") or {}  # how the source shows: {"opacity": 0..100, "mode": "multiply"}
    if "opacity" in look:
        source.set_opacity(float(look["opacity"]))
    if "mode" in look:
        source.set_mode(getattr(Gimp.LayerMode, look["mode"].upper()))
    drawable = source
    if case.get("drawable") == "mask":  # the painter clicked the layer's mask thumbnail: the mask is active
        source.add_alpha()  # the mask shows the layer inside case["mask_box"] only
        image.select_rectangle(Gimp.ChannelOps.REPLACE, *case["mask_box"])
        drawable = source.create_mask(Gimp.AddMaskType.SELECTION)
        source.add_mask(drawable)
        Gimp.Selection.none(image)
    if case.get("drawable") == "group":  # the painter picked a layer group holding the source
        try:
            group = Gimp.GroupLayer.new(image, "group")
        except TypeError:  # an API without the name
            group = Gimp.GroupLayer.new(image)
        image.insert_layer(group, None, 0)
        image.reorder_item(source, group, 0)
        drawable = group
    if case.get("drawable") == "text":  # the painter typed a text and runs the filter on its text layer
        drawable = Gimp.TextLayer.new(image, "SINE text", Gimp.context_get_font(), 20.0, Gimp.Unit.pixel())
        image.insert_layer(drawable, None, 0)
        drawable.set_offsets(6, 8)
        dump_layer(drawable, os.path.join(case["out"], "source-before"))
    if case.get("drawable") in ("link", "vector"):  # GIMP 3.2: a layer linked to a file, or drawn from a path
        if not hasattr(Gimp, "LinkLayer"):
            with open(os.path.join(out, "result.json"), "w") as f:
                json.dump({"status": "unsupported", "gimp": Gimp.version()}, f)
            return
        if case["drawable"] == "link":
            drawable = Gimp.LinkLayer.new(image, Gio.File.new_for_path(case["input"]))
        else:
            outline = Gimp.Path.new(image, "outline")
            image.insert_path(outline, None, 0)
            outline.bezier_stroke_new_ellipse(32, 24, 20, 14, 0)
            drawable = Gimp.VectorLayer.new(image, outline)
        image.insert_layer(drawable, None, 0)
        dump_layer(drawable, os.path.join(case["out"], "source-before"))
    if case.get("drawable") == "deep":
        drawable = build_deep_stack(image, source)
    if case.get("drawable") == "other-image":  # a script's slip: a layer of another open image
        other = Gimp.file_load(RUN, Gio.File.new_for_path(case["input"]))
        drawable = other.get_layers()[0]
    if case.get("drawable") == "floating":  # the painter pasted a part and runs the filter on the paste
        image.select_rectangle(Gimp.ChannelOps.REPLACE, 2, 2, 8, 8)
        Gimp.edit_copy([source])
        pasted = Gimp.edit_paste(source, False)
        drawable = pasted[0] if isinstance(pasted, (list, tuple)) else pasted
        Gimp.Selection.none(image)
    drawables = [drawable]
    if case.get("drawable") == "channel":  # the painter last clicked a channel in the Channels dialog
        drawable = Gimp.Channel.new(image, "Painter's channel", image.get_width(), image.get_height(), 50.0,
                                    Gegl.Color.new("red"))
        image.insert_channel(drawable, None, 0)
        drawables = [drawable]
    if case.get("drawable") == "two-layers":  # the painter shift-clicked a second layer
        second = Gimp.Layer.new_from_drawable(source, image)
        image.insert_layer(second, None, 0)
        drawables = [source, second]
    if case.get("filter"):  # a non-destructive filter left editable in the drawable's Fx list (GIMP 3)
        selected = Gimp.Selection.save(image)  # over the whole layer (one made with a selection covers that only)
        Gimp.Selection.none(image)
        drawable.append_filter(Gimp.DrawableFilter.new(drawable, case["filter"], "painter's filter"))
        image.select_item(Gimp.ChannelOps.REPLACE, selected)
        image.remove_channel(selected)
    for lock in case.get("locks", []):  # "content", "position", "alpha": the Layers dock's lock toggles
        getattr(drawable, f"set_lock_{lock}")(True)
    display = Gimp.Display.new(image) if case.get("display") else None
    if display is not None:
        image.clean_all()
    run_mode = RUN
    if case.get("repeat"):  # Filters > Repeat "Edit with text": the last edit's values, no dialog
        run_mode = Gimp.RunMode.WITH_LAST_VALS
    if case.get("interactive"):  # the plug-in's dialogs answer from the autotest file
        run_mode = Gimp.RunMode.INTERACTIVE
        with open(os.environ["SINE_GIMP_AUTOTEST"], "w") as f:
            json.dump(case.get("autotest", {}), f)
    if case.get("menu"):  # the painter picks Filters > SINE > Edit with text… (or Filters > Repeat) in the window
        run_from_menu(case, image)
        return
    proc = Gimp.get_pdb().lookup_procedure("python-fu-sine-edit")
    assert proc is not None, "python-fu-sine-edit is not registered (plug-in folder / exec bit / vendoring?)"
    cfg = proc.create_config()
    cfg.set_property("run-mode", run_mode)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", drawables)
    for key, value in case["args"].items():
        cfg.set_property(key, arg_value(image, key, value))
    t0 = time.monotonic()
    res = proc.run(cfg)
    elapsed = time.monotonic() - t0
    status = res.index(0)
    record = {
        "status": status.value_nick,
        "elapsed_s": round(elapsed, 3),
        "message": res.index(1) if status != Gimp.PDBStatusType.SUCCESS and res.length() > 1 else None,
        "returned_layer": None,
        "canvas": [image.get_width(), image.get_height()] if image.is_valid() else None,
        "precision": image.get_precision().value_nick if image.is_valid() else None,
        "gimp": Gimp.version(),
        "selection_after": list(Gimp.Selection.bounds(image))[1:] if image.is_valid() else None,
        "channels_after": len(image.get_channels()) if image.is_valid() else None,
        "layers": [],
    }
    if status == Gimp.PDBStatusType.SUCCESS:
        record["returned_layer"] = res.index(1).get_name()
    if not image.is_valid():  # the image was closed during the edit (case "close_image_at_step")
        record["image_closed"] = True
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump(record, f, indent=1)
        print("SINE-CASE", case["name"], record["status"], record["elapsed_s"], record["message"])
        return
    for i, layer in enumerate(image.get_layers()):
        _, ox, oy = layer.get_offsets()
        mask = layer.get_mask()
        record["layers"].append(
            {"name": layer.get_name(), "size": [layer.get_width(), layer.get_height()], "offsets": [ox, oy],
             "visible": layer.get_visible(), "has_mask": mask is not None,
             "opacity": round(layer.get_opacity(), 3), "mode": layer.get_mode().value_nick,
             "kind": kind_of(layer), **({"text": layer.get_text()} if layer.is_text_layer() else {}),
             "filters": [f.get_name() for f in layer.get_filters()],
             "locks": [k for k in ("content", "position", "alpha") if getattr(layer, f"get_lock_{k}")()]}
        )
        if mask is not None:  # its layer mask, one byte a pixel
            rect = Gegl.Rectangle.new(0, 0, mask.get_width(), mask.get_height())
            with open(os.path.join(out, f"layer-{i}.mask"), "wb") as f:
                f.write(bytes(mask.get_buffer().get(rect, 1.0, "Y u8", Gegl.AbyssPolicy.NONE)))
        dump_layer(layer, os.path.join(out, f"layer-{i}"), case.get("dump_format"))
    if case.get("drawable") == "deep":  # the stack, and the result and source wherever they are in it
        record["tree"] = stack_tree(image.get_layers())
        for layer in nested_layers(image.get_layers()):
            if layer.get_name().startswith("SINE:"):
                dump_layer(layer, os.path.join(out, "deep-result"))
        dump_layer(drawable, os.path.join(out, "deep-source"))
    save(image, os.path.join(out, "edited.xcf"))
    if case.get("undo_after"):
        Gimp.displays_flush()
        before = len(image.get_layers())
        press_undo()
        wait_for_layer_count(image, before)
        record["layers_after_undo"] = [layer.get_name() for layer in image.get_layers()]
        press_undo("edit-redo")  # Edit > Redo: the result back, as it was
        wait_for_layer_count(image, len(image.get_layers()))
        record["layers_after_redo"] = [layer.get_name() for layer in image.get_layers()]
        redone = image.get_layers()[0]
        w, h = redone.get_width(), redone.get_height()
        raw = redone.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, RGBA, Gegl.AbyssPolicy.NONE)
        with open(os.path.join(out, "redone-0.rgba"), "wb") as f:
            f.write(bytes(raw))
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(record, f, indent=1)
    print("SINE-CASE", case["name"], record["status"], record["elapsed_s"], record["message"])
    if display is not None:
        display.delete()
    image.delete()


with open(os.environ["SINE_GIMP_CASES"]) as f:
    cases = json.load(f)
for case in cases:
    run_case(case)
