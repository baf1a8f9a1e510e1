#!/usr/bin/env python3
"""GIMP 3 plug-in "Filters > SINE > Edit with text...": edit a layer with a text prompt via the SINE daemon.

This file only registers the procedure and wires GIMP to the helpers beside it; the work is in
sine_gimp_job (talking to the daemon), sine_gimp_pixels (GEGL buffers) and sine_gimp_ui (dialogs).
"""

from __future__ import annotations

import os
import sys
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
# The installer vendors sine_protocol into _vendor/: it must win over anything else on sys.path.
sys.path[:0] = [os.path.join(_HERE, "_vendor"), _HERE]

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
import sine_gimp_args  # noqa: E402
from gi.repository import Gimp, GLib, GObject  # noqa: E402

PROC_NAME = "python-fu-sine-edit"


def _split_run_args(rest: tuple) -> tuple[list, Gimp.ProcedureConfig]:
    """Find drawables and config whatever the GIMP version's run() signature.

    GIMP 3.0/3.2 pass (drawables, config, data); the 2.99 series passed (n_drawables, drawables,
    config, data). Looking at the types instead of the positions covers both.
    """
    config = next(a for a in rest if isinstance(a, Gimp.ProcedureConfig))
    drawables = next((a for a in rest if isinstance(a, (list, tuple))), None)
    return list(drawables or []), config


def _fail(procedure: Gimp.Procedure, status: Gimp.PDBStatusType, message: str) -> Gimp.ValueArray:
    sys.stderr.write(f"sine-gimp: {message}\n")
    return procedure.new_return_values(status, GLib.Error(message))


def _connect(interactive: bool):
    """A client to a live daemon; in interactive mode offers to start an installed daemon."""
    from sine_gimp_job import DaemonNotRunning, connect, start_daemon_and_connect

    from sine_protocol import paths

    try:
        return connect()
    except DaemonNotRunning:
        if not interactive or not os.path.exists(paths.daemon_command_file()):
            raise
        import sine_gimp_ui

        if not sine_gimp_ui.ask_yes_no(
            "The SINE daemon is not running.",
            "Start it now? The first start loads the model and can take a minute.",
        ):
            raise
        Gimp.progress_set_text("SINE: starting the daemon")
        # A window with a moving bar and Cancel while it starts; the log path only if it fails.
        window = sine_gimp_ui.ProgressWindow("SINE: starting the daemon")
        window.set_text("Starting the SINE daemon (the first start loads the model)…")
        try:
            return start_daemon_and_connect(should_cancel=window.poll_cancel, idle=window.pulse)
        finally:
            window.close()


def _edit(
    image: Gimp.Image, source: Gimp.Layer, config: Gimp.ProcedureConfig, interactive: bool
) -> Gimp.Layer:
    """Read pixels, run the job with progress, write the result; returns the new layer."""
    import sine_gimp_pixels as px
    from sine_gimp_job import EditCancelled, EditFailed, run_edit_results
    from sine_gimp_style import style_picture

    from sine_protocol.messages import daemon_summary, with_notes

    request = sine_gimp_args.request_from_config(config)
    if not request.prompt.strip():
        raise EditFailed("Write an edit prompt first (what should change in the picture).", "bad_request")
    with px.as_seen(image, source) as seen:  # with its non-destructive filters, as the painter sees it
        pixels = px.read_layer_rgba(seen)
    out_size = request.output_size(pixels.width, pixels.height)
    same_size = out_size == pixels.size
    # A selection only means something when the result lies over the layer; it is clipped to it.
    mask = px.read_selection_mask(image, source) if same_size else None
    if mask is not None and not mask.data.strip(b"\0"):
        raise EditFailed(
            "The selection does not cover any pixel of the layer: select part of the layer, "
            "or Select > None to edit all of it.",
            "bad_request",
        )
    try:
        style_image = style_picture(config.get_property("style-layer"), config.get_property("style-file"))
    except Exception as exc:  # an unreadable file: say which, before anything is sent
        raise EditFailed(f"Could not read the style picture: {exc}", "bad_request") from exc

    window = None
    Gimp.progress_init("SINE: connecting to the daemon")
    try:
        client = _connect(interactive)
        try:
            summary = daemon_summary(client.hello())  # where it runs, and the model's kind
        except Exception:  # noqa: BLE001 - the edit request below reports what is wrong, with advice
            summary = ""
        Gimp.progress_set_text(f"SINE: {summary or 'connected'}")
        if interactive:
            import sine_gimp_ui

            window = sine_gimp_ui.ProgressWindow(_window_title(request.prompt, image, source), summary)

        plan = sine_gimp_ui.autotest_plan() if interactive else {}
        close_at, scale_at = plan.get("close_image_at_step"), plan.get("scale_image_at_step")
        notes: list[str] = []  # what the daemon says the painter should know (e.g. a cut prompt)

        def on_notes(sent: list[str]) -> None:
            notes[:] = sent

        def on_progress(progress) -> None:
            if isinstance(close_at, int) and progress.step >= close_at and image.is_valid():
                image.delete()  # GUI tests: the painter closes the image while the edit runs
            if isinstance(scale_at, int) and progress.step >= scale_at and source.get_width() == pixels.width:
                image.scale(max(1, pixels.width // 2), max(1, pixels.height // 2))  # GUI tests: Image > Scale Image
            if window is not None:
                window.update(progress)
            Gimp.progress_set_text(with_notes(f"SINE: {progress.text}", notes))
            Gimp.progress_update(progress.fraction)

        def should_cancel() -> bool:
            # The painter may close the image (or delete the layer) while the daemon works: stop its job.
            return (window is not None and window.poll_cancel()) or _gone(image, source) is not None

        try:
            results = run_edit_results(
                client,
                request,
                pixels,
                mask,
                on_progress=on_progress,
                should_cancel=should_cancel,
                style_image=style_image,
                on_notes=on_notes,
            )
        except EditCancelled as exc:
            gone = _gone(image, source)
            if gone is None:
                raise
            raise EditCancelled(gone) from exc
        finally:
            client.close()
    finally:
        if window is not None:
            window.close()
        Gimp.progress_end()

    gone = _gone(image, source)
    if gone is not None:  # closed between the daemon's last message and now
        raise EditCancelled(gone)
    now = (source.get_width(), source.get_height())
    if same_size and now != pixels.size:  # Image > Scale Image or a crop while the daemon worked
        raise EditFailed(
            f"The layer '{source.get_name()}' changed size during the edit ({pixels.width}x{pixels.height}, now "
            f"{now[0]}x{now[1]}): the result would not fit it, so it was not added. Edit it again.",
            "bad_request",
        )
    # Several results: one layer each, the first on top and the only one shown (the others are a click
    # on their eye away), all added in one undo step.
    layers = []
    if same_size:
        image.undo_group_start()
        try:
            for result in results:
                name = px.result_layer_name(request.prompt, result.seed)
                layer = px.add_result_layer(image, source, result.image, mask, name)
                layer.set_visible(result.index == 0)
                layers.append(layer)
        finally:
            image.undo_group_end()
    else:
        for result in results:  # another size: each result opens as a new image
            name = px.result_layer_name(request.prompt, result.seed)
            new_image, layer = px.new_image_with_result(result.image, name)
            layers.append(layer)
            if interactive:
                Gimp.Display.new(new_image)
    Gimp.displays_flush()
    if notes:  # with the finished result: GIMP's message dialog (its Error Console where open; stderr in batch)
        # More than one line on purpose: GIMP puts a one-line message that fits into the image window's
        # status bar, and clears it there after a few seconds (a wide window: the painter never saw it).
        Gimp.message("\n".join([f"SINE added layer '{layers[0].get_name()}'.", *(f"Note: {n}." for n in notes)]))
    return layers[0]


def _window_title(prompt: str, image: Gimp.Image, source: Gimp.Layer) -> str:
    """The progress window's title: the edit and where it goes. Two images edited at once (or two
    layers of one) have a window each: by the prompt alone they looked alike, and the painter could
    not tell which Cancel stopped which edit. The image as GIMP numbers its windows (name-ID), first:
    a long prompt is cut as in the result layer's name."""
    from sine_gimp_pixels import short_prompt

    return f"SINE: {image.get_name()}-{image.get_id()}, layer '{source.get_name()}': {short_prompt(prompt)}"


def _gone(image: Gimp.Image, source: Gimp.Layer) -> str | None:
    """Why the result has nowhere to go (the image closed, the layer deleted), or None."""
    if not image.is_valid():
        return "The image was closed during the edit; its SINE job was cancelled."
    if not source.is_valid():
        return "The layer was deleted during the edit; its SINE job was cancelled."
    return None


def _not_editable(image: Gimp.Image, layer: Gimp.Layer) -> str | None:
    """Why this layer cannot be the source (a script's layer of another image, a paste not yet
    anchored), or None."""
    if layer.get_image() != image:
        return f"The layer '{layer.get_name()}' belongs to another image: pass the image it is in."
    if layer.is_floating_sel():
        # its result would go under the paste, hidden by it
        return ("The layer is a floating selection (a paste not yet anchored): Layer > Anchor Layer, or "
                "Layer > To New Layer, then edit that layer.")
    return None


def _not_one_layer(drawables: list) -> str:
    """What was selected instead of one layer, in the dialog's words: a channel clicked last in the Channels
    dialog is what GIMP calls active, while the Layers dialog still shows a layer highlighted."""
    channels = [d for d in drawables if isinstance(d, Gimp.Channel)]
    if channels:
        return (f"The channel '{channels[0].get_name()}' is selected (Channels dialog), and SINE edits a layer: "
                "click the layer in the Layers dialog, then run the filter again. To edit only the channel's "
                "area, use Channel to Selection first.")
    if len(drawables) > 1:
        return (f"{len(drawables)} layers are selected: click the one layer to edit in the Layers dialog, "
                "then run the filter again.")
    return "Select exactly one layer to edit with SINE (click it in the Layers dialog)."


def run(procedure: Gimp.Procedure, run_mode: Gimp.RunMode, image: Gimp.Image, *rest) -> Gimp.ValueArray:
    drawables, config = _split_run_args(rest)
    if not drawables:
        drawables = list(image.get_selected_drawables())
    # A layer mask is active when the painter last clicked its thumbnail: edit the layer it belongs to.
    drawables = [Gimp.Layer.from_mask(d) if isinstance(d, Gimp.LayerMask) else d for d in drawables]
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        return _fail(procedure, Gimp.PDBStatusType.CALLING_ERROR, _not_one_layer(drawables))
    refused = _not_editable(image, drawables[0])
    if refused:
        return _fail(procedure, Gimp.PDBStatusType.CALLING_ERROR, refused)
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        return _fail(
            procedure,
            Gimp.PDBStatusType.CALLING_ERROR,
            "SINE edits RGB images: use Image > Mode > RGB first.",
        )
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    if interactive:
        import sine_gimp_ui

        if not sine_gimp_ui.run_settings_dialog(procedure, config):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    try:
        from sine_gimp_job import EditCancelled, EditFailed, internal_error_message
    except ImportError as exc:
        return _fail(
            procedure,
            Gimp.PDBStatusType.EXECUTION_ERROR,
            f"The SINE plug-in is incomplete ({exc}); reinstall it with the sine-edit installer.",
        )
    try:
        layer = _edit(image, drawables[0], config, interactive)
    except EditCancelled as exc:
        return _fail(procedure, Gimp.PDBStatusType.CANCEL, str(exc))
    except EditFailed as exc:
        return _fail(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, str(exc))
    except Exception as exc:  # never leave GIMP with a dead plug-in and no word why
        traceback.print_exc()
        return _fail(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, internal_error_message(exc))
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    values.remove(1)
    values.insert(1, GObject.Value(Gimp.Layer, layer))
    return values


class SineEdit(Gimp.PlugIn):
    """Registers the one procedure."""

    def do_query_procedures(self) -> list[str]:
        return [PROC_NAME]

    def do_set_i18n(self, name: str) -> bool:
        return False

    def do_create_procedure(self, name: str) -> Gimp.Procedure:
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("RGB*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("Edit with text…")
        procedure.add_menu_path("<Image>/Filters/SINE/")
        procedure.set_documentation(
            "Edit a layer from a text prompt with SINE",
            "Sends the selected layer and the part of the selection over it to the local SINE daemon, "
            "which fine-tunes on the picture and samples the edit; the result lands on a new layer "
            "of the layer's size and place, directly above it, with the layer's transparency. "
            "Needs the sine-edit daemon (`sine daemon`).",
            name,
        )
        procedure.set_attribution("sine-edit", "sine-edit", "2026")
        sine_gimp_args.declare_arguments(procedure)
        return procedure


Gimp.main(SineEdit.__gtype__, sys.argv)
