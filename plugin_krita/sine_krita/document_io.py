"""Reading the source pixels out of a Krita document and placing the result back in it.

Only Krita API calls live here; they must run on Krita's main (GUI) thread. What is sent is the
active layer's own rectangle (its bounds), the selection clipped to it, and the result lands on a
new paint layer over exactly that rectangle, with the source's alpha. Krita's RGBA buffers are
B,G,R,A at the layer's depth; 16-bit layers are sent to the model at 8 bits and the result is
written back at 16, with the source's own pixels outside the selection (sine_protocol.layer_pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .pixels import (
    FLOAT_CODES,
    float_native_to_rgba8,
    linear_native_to_rgba8,
    native_to_rgba8,
    rgba8_to_float_native,
    rgba8_to_linear_native,
    rgba8_to_native,
)

# RGBA depths the plug-in reads and writes back (outside the selection byte for byte); others are refused.
CHANNEL_BYTES = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}


def to_rgba8(native: bytes, depth: str, linear: bool) -> bytes:
    """Krita B,G,R,A at ``depth`` to the wire's 8-bit sRGB-encoded RGBA."""
    if depth in FLOAT_CODES:
        return float_native_to_rgba8(native, depth, linear)
    return (linear_native_to_rgba8 if linear else native_to_rgba8)(native, CHANNEL_BYTES[depth])


def from_rgba8(rgba: bytes, depth: str, linear: bool) -> bytes:
    """The wire's 8-bit RGBA to Krita B,G,R,A at ``depth`` (the inverse of :func:`to_rgba8`)."""
    if depth in FLOAT_CODES:
        return rgba8_to_float_native(rgba, depth, linear)
    return (rgba8_to_linear_native if linear else rgba8_to_native)(rgba, CHANNEL_BYTES[depth])


# Layers Krita draws from something else (shapes, another layer, a generator, a file, its children):
# their own pixelData is empty or one channel (a group's is empty in Krita 5.3, its composite in 5.2),
# so what the painter sees of them is read from their projection.
DRAWN_LAYERS = ("vectorlayer", "clonelayer", "filllayer", "filelayer", "grouplayer")
# A filter layer changes the layers below it and has nothing of its own to edit: its pixelData is its
# one-channel selection (refused as "Krita returned 600 bytes for 30x20 RGBA pixels").
FILTER_LAYER = "filterlayer"


def not_editable(node: Any) -> str | None:
    """Why ``node`` cannot be an edit's source, in words with what to choose instead; None when it can."""
    if node.type() == FILTER_LAYER:
        return (f"The layer '{node.name()}' is a filter layer: it changes the layers below it and has no pixels "
                "of its own. Select the layer to edit, or set Source to 'Visible image' to edit what the "
                "filter shows.")
    return None


def linear_light(profile: str) -> bool:
    """Whether a Krita profile name (its description) marks a linear tone curve: Krita's own linear
    profiles end in "-g10.icc" (sRGB, Rec2020, ACEScg ... "elle" profiles; sRGB-elle-V2-g10.icc is its
    default for new 16-bit documents) or say "linear". Their values are sRGB-encoded for the model
    and decoded again in the result (read as they are, the edit came back washed out)."""
    name = profile.lower()
    return name.endswith("-g10.icc") or "linear" in name


@dataclass(frozen=True)
class LayerLook:
    """How a layer is drawn over what lies below it. The result layer takes its source's, so that
    outside the selection the picture looks as before (a result at 100 % Normal over a source at 40 %
    or in Multiply changed the picture everywhere)."""

    opacity: int = 255
    blending: str = "normal"
    inherit_alpha: bool = False

    @classmethod
    def of(cls, node: Any) -> LayerLook:
        return cls(int(node.opacity()), str(node.blendingMode()), bool(node.inheritAlpha()))

    def give_to(self, node: Any) -> None:
        node.setOpacity(self.opacity)
        node.setBlendingMode(self.blending)
        node.setInheritAlpha(self.inherit_alpha)


class UnsupportedDocument(ValueError):
    """The document or layer cannot be edited as it is; the message tells the user what to do."""


@dataclass
class SourcePixels:
    """The source rectangle, ready for ``submit_edit``, plus where and how the result goes."""

    rgba: bytes  # 8-bit RGBA, what the model sees
    width: int
    height: int
    mask: bytes | None  # the selection over the rectangle (None: no selection)
    anchor: Any  # the node the result layer is placed directly above; None: on top of the document
    source_name: str
    x: int = 0
    y: int = 0
    native: bytes = b""  # the source's own B,G,R,A bytes at its depth
    channel_bytes: int = 1
    linear: bool = False  # linear-light values (see linear_light): sRGB-encoded in ``rgba``
    look: LayerLook | None = None  # the source layer's; None for the visible image (a composite)
    frame: int | None = None  # the animation frame read, when the source layer is animated
    canvas: tuple[int, int] | None = None  # the document's size when it was read
    depth: str = ""  # Krita's colour depth ("U8", "U16", "F16", "F32"); "" as channel_bytes says (integer)


CLOSED_DOCUMENT = "The document of this result was closed; nothing was added."


def check_canvas(doc: Any, source: SourcePixels) -> None:
    """Refuse to place a result in a document resized since its source was read (a canvas resize moves
    the layer, a scale or crop changes it): at the source's old rectangle it would sit off the layer. A closed
    document is said as such (its wrapper answers 0x0, which read as a resize)."""
    if doc.rootNode() is None:
        raise UnsupportedDocument(CLOSED_DOCUMENT)
    now = (int(doc.width()), int(doc.height()))
    if source.canvas is not None and now != source.canvas:
        raise UnsupportedDocument(
            f"The image was resized during the edit ({source.canvas[0]}x{source.canvas[1]}, now {now[0]}x{now[1]}): "
            "the result would not sit on its layer, so it was not added. Undo the resize and apply it from the "
            "History, or edit again."
        )


def check_color(doc: Any, node: Any | None = None) -> int:
    """Bytes per channel of the RGBA document (and layer); refuses anything else with advice."""
    depths = []
    for what, obj in (("document", doc), ("layer", node)):
        if obj is None:
            continue
        model, depth = obj.colorModel(), obj.colorDepth()
        if model != "RGBA" or depth not in CHANNEL_BYTES:
            raise UnsupportedDocument(
                f"SINE edits RGBA images of 8 or 16 bits per channel (integer) or 16 or 32 (float); this {what} is "
                f"{model}/{depth}. "
                "Use Image > Convert Image Color Space... (RGB/Alpha) first."
            )
        depths.append(depth)
    if len(set(depths)) > 1:
        raise UnsupportedDocument(
            f"The layer is {depths[1]} but the document is {depths[0]}: convert the layer to the document's "
            "depth first (Layer > Convert > Convert Layer Color Space...)."
        )
    return CHANNEL_BYTES[depths[0]]


def read_source(doc: Any, source: str = "layer", node: Any = None) -> SourcePixels:
    """The active layer's (or ``node``'s) own rectangle (``layer``) or the canvas-sized visible composite
    (``visible``)."""
    if doc is None:
        raise UnsupportedDocument("Open an image first.")
    node = node if node is not None else doc.activeNode()
    if node is not None and node.type().endswith("mask"):
        # A mask is active (e.g. after painting a transparency mask): edit the layer it belongs to.
        parent = node.parentNode()
        if parent is None or parent.parentNode() is None:  # the global selection mask, shown in the Layers docker
            if source != "visible":
                raise UnsupportedDocument(
                    f"The global selection mask '{node.name()}' is active in the Layers docker: click the layer to "
                    "edit (the selection still marks the area to change), or edit the 'Visible image'.")
        node = parent
    if node is None and source != "visible":
        raise UnsupportedDocument("Select a layer first.")
    refused = None if source == "visible" else not_editable(node)
    if refused:
        raise UnsupportedDocument(refused)
    if source == "visible":
        channel = check_color(doc)
        x, y, width, height = 0, 0, int(doc.width()), int(doc.height())
        doc.refreshProjection()
        native = bytes(doc.pixelData(x, y, width, height))
        name = "visible image"
    else:
        channel = check_color(doc, node)
        bounds = node.bounds()
        x, y, width, height = bounds.x(), bounds.y(), bounds.width(), bounds.height()
        if width <= 0 or height <= 0:
            raise UnsupportedDocument(f"The layer '{node.name()}' is empty: paint something on it first.")
        if node.type() in DRAWN_LAYERS or any(child.type().endswith("mask") for child in node.childNodes()):
            # A layer's masks (transparency, filter) change what the painter sees of it: read that.
            native = bytes(node.projectionPixelData(x, y, width, height))
        else:
            native = bytes(node.pixelData(x, y, width, height))
        name = node.name()
    if len(native) != width * height * 4 * channel:
        raise UnsupportedDocument(f"Krita returned {len(native)} bytes for {width}x{height} RGBA pixels.")
    mask = read_selection(doc, x, y, width, height)
    linear = linear_light((doc if source == "visible" else node).colorProfile())
    depth = str((doc if source == "visible" else node).colorDepth())
    rgba = to_rgba8(native, depth, linear)
    from sine_protocol.frames import nothing_visible  # the vendored copy (see vendor.py)

    if nothing_visible(rgba):  # fully transparent, or hidden by its mask
        raise UnsupportedDocument(f"The {'' if source == 'visible' else 'layer '}'{name}' has nothing visible: "
                                  "paint on it, or show what its mask hides.")
    look = None if source == "visible" else LayerLook.of(node)
    # The visible image's result goes on top of every layer: above the active one, the layers over it
    # hid the edit where they are opaque (and a group's opacity or mode changed the rest).
    anchor = None if source == "visible" else node
    # An animated layer's pixels are those of the current frame (the result is a plain layer).
    frame = int(doc.currentTime()) if source != "visible" and node.animated() else None
    canvas = (int(doc.width()), int(doc.height()))
    return SourcePixels(rgba, width, height, mask, anchor, name, x, y, native, channel, linear, look, frame, canvas,
                        depth)  # fmt: skip


def read_selection(doc: Any, x: int, y: int, width: int, height: int) -> bytes | None:
    """The global selection over the rectangle, one byte a pixel, or None when nothing is selected.

    A selection that misses the rectangle is refused: it would edit nothing.
    """
    selection = doc.selection()
    if selection is None or selection.width() <= 0 or selection.height() <= 0:
        return None
    mask = bytes(selection.pixelData(x, y, width, height))
    if len(mask) != width * height:
        raise UnsupportedDocument(f"selection mask has {len(mask)} bytes, expected {width * height}")
    if not mask.strip(b"\0"):
        raise UnsupportedDocument(
            "The selection does not cover any pixel of the layer: select part of it, or Select > Deselect "
            "to edit all of it."
        )
    return mask


def result_pixels(source: SourcePixels, rgba: bytes) -> bytes:
    """The new layer's B,G,R,A bytes at the source's depth: the 8-bit result where the selection
    is on (everywhere without one), the source's own pixels where it is off, its alpha everywhere."""
    from sine_protocol.layer_pixels import composite_native  # the vendored copy (see vendor.py)

    channel = source.channel_bytes
    depth = source.depth or {1: "U8", 2: "U16"}[channel]
    return composite_native(source.native, from_rgba8(rgba, depth, source.linear), source.mask, 4 * channel,
                            3 * channel, channel)  # fmt: skip


def add_result_layer(doc: Any, anchor: Any, pixels: bytes, x: int, y: int, width: int, height: int,
                     name: str, look: LayerLook | None = None) -> Any:  # fmt: skip
    """Add a new paint layer holding ``pixels`` (B,G,R,A at the document's depth) over the rectangle
    (x, y, width, height), directly above ``anchor`` (None: on top of the document), drawn with ``look``
    (the source layer's).

    The pixels go into the detached layer first and the layer is inserted last, so the user's
    document changes in one step (one undo entry: "add layer") and no source layer is touched.
    """
    if len(pixels) % (width * height * 4) or not pixels:
        raise ValueError(f"result has {len(pixels)} bytes, expected {width}x{height}x4 channels")
    root = doc.rootNode()
    if root is None:  # Krita's wrapper of a closed document answers None
        raise UnsupportedDocument(CLOSED_DOCUMENT)
    layer = doc.createNode(name, "paintlayer")
    layer.setPixelData(pixels, x, y, width, height)
    if look is not None:
        look.give_to(layer)
    parent = anchor.parentNode() if anchor is not None else None
    if parent is None:  # the source layer was deleted meanwhile: put the result on top
        parent, anchor = root, None
    parent.addChildNode(layer, anchor)
    doc.refreshProjection()
    return layer
