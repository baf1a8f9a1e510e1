"""Reading the source pixels out of a Krita document and placing the result back in it.

Only Krita API calls live here; they must run on Krita's main (GUI) thread. Krita's 8-bit RGBA
buffers are B,G,R,A; conversion to the wire's RGBA happens at this boundary and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .pixels import bgra_to_rgba, rgba_to_bgra

SUPPORTED_COLOR = ("RGBA", "U8")


class UnsupportedDocument(ValueError):
    """The document or layer cannot be sent as 8-bit RGBA; the message tells the user what to do."""


@dataclass
class SourcePixels:
    """The canvas-sized source, ready for ``submit_edit``, plus where the result goes."""

    rgba: bytes
    width: int
    height: int
    mask: bytes | None
    anchor: Any  # the node the result layer is placed directly above
    source_name: str


def check_color(doc: Any, node: Any | None = None) -> None:
    """Refuse anything that is not 8-bit RGBA, with advice instead of garbage pixels."""
    for what, obj in (("document", doc), ("layer", node)):
        if obj is None:
            continue
        color = (obj.colorModel(), obj.colorDepth())
        if color != SUPPORTED_COLOR:
            raise UnsupportedDocument(
                f"SINE edits 8-bit RGBA images; this {what} is {color[0]}/{color[1]}. "
                "Use Image > Convert Image Color Space... (RGB/Alpha, 8-bit integer/channel) first."
            )


def read_source(doc: Any, source: str = "layer") -> SourcePixels:
    """Canvas-sized RGBA of the active layer (``layer``) or of the visible composite (``visible``)."""
    if doc is None:
        raise UnsupportedDocument("Open an image first.")
    width, height = int(doc.width()), int(doc.height())
    node = doc.activeNode()
    if node is not None and node.type().endswith("mask"):
        # A mask is active (e.g. after painting a transparency mask): edit the layer it belongs to.
        parent = node.parentNode()
        node = parent if parent is not None and parent.parentNode() is not None else None
    if node is None:
        raise UnsupportedDocument("Select a layer first.")
    if source == "visible":
        check_color(doc)
        doc.refreshProjection()
        bgra = bytes(doc.pixelData(0, 0, width, height))
        name = "visible image"
    else:
        check_color(doc, node)
        bgra = bytes(node.pixelData(0, 0, width, height))
        name = node.name()
    if len(bgra) != width * height * 4:
        raise UnsupportedDocument(f"Krita returned {len(bgra)} bytes for a {width}x{height} RGBA canvas.")
    return SourcePixels(bgra_to_rgba(bgra), width, height, read_selection(doc, width, height), node, name)


def read_selection(doc: Any, width: int, height: int) -> bytes | None:
    """The global selection as a canvas-sized 1-byte-per-pixel mask, or None when nothing is selected."""
    selection = doc.selection()
    if selection is None or selection.width() <= 0 or selection.height() <= 0:
        return None
    mask = bytes(selection.pixelData(0, 0, width, height))
    if len(mask) != width * height:
        raise UnsupportedDocument(f"selection mask has {len(mask)} bytes, expected {width * height}")
    if not any(mask):
        return None
    return mask


def add_result_layer(doc: Any, anchor: Any, rgba: bytes, width: int, height: int, name: str) -> Any:
    """Add a new paint layer holding ``rgba`` at (0, 0), directly above ``anchor``.

    The pixels go into the detached layer first and the layer is inserted last, so the user's
    document changes in one step (one undo entry: "add layer") and no source layer is touched.
    """
    if len(rgba) != width * height * 4:
        raise ValueError(f"result has {len(rgba)} bytes, expected {width}x{height}x4")
    root = doc.rootNode()
    if root is None:  # Krita's wrapper of a closed document answers None
        raise UnsupportedDocument("The document was closed before the result arrived; nothing was added.")
    layer = doc.createNode(name, "paintlayer")
    layer.setPixelData(rgba_to_bgra(rgba), 0, 0, width, height)
    parent = anchor.parentNode() if anchor is not None else None
    if parent is None:  # the source layer was deleted meanwhile: put the result on top
        parent, anchor = root, None
    parent.addChildNode(layer, anchor)
    doc.refreshProjection()
    return layer
