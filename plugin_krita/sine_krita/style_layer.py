"""The "Style from layer" choice: which layers of the document can give the style, and their pixels.

The style picture of multi-model guidance is another layer of the open document, sent as it is
(its own bounds, straight RGBA) in the edit's ``style`` blob; the daemon fine-tunes and caches a
second model on it. Krita API calls only, on the GUI thread.
"""

from __future__ import annotations

from typing import Any

from .document_io import CHANNEL_BYTES, UnsupportedDocument, linear_light, to_rgba8

# Node types whose pixels can be a picture (masks, filters and fills are not).
PICTURE_TYPES = ("paintlayer", "grouplayer", "filelayer", "vectorlayer", "clonelayer")


def picture_layers(doc: Any) -> list[Any]:
    """Every picture layer of ``doc``, top of the stack first, groups before their children."""
    if doc is None:
        return []
    out: list[Any] = []

    def walk(nodes: list[Any]) -> None:
        for node in reversed(list(nodes)):  # Krita lists children bottom first
            if node.type() in PICTURE_TYPES:
                out.append(node)
            if node.type() == "grouplayer":
                walk(node.childNodes())

    walk(doc.topLevelNodes())
    return out


def layer_names(doc: Any) -> list[str]:
    """Names to offer in the combo box (a name used twice is offered once: the topmost layer)."""
    names: list[str] = []
    for node in picture_layers(doc):
        if node.name() not in names:
            names.append(node.name())
    return names


def find_layer(doc: Any, name: str) -> Any:
    """The topmost picture layer called ``name``."""
    for node in picture_layers(doc):
        if node.name() == name:
            return node
    raise UnsupportedDocument(f"There is no layer '{name}' in this document any more: choose the style layer again.")


def read_style(doc: Any, name: str) -> tuple[int, int, bytes]:
    """(width, height, 8-bit RGBA) of the layer's own rectangle: the style picture as the painter sees it."""
    node = find_layer(doc, name)
    model, depth = node.colorModel(), node.colorDepth()
    if model != "RGBA" or depth not in CHANNEL_BYTES:
        raise UnsupportedDocument(
            f"The style layer '{name}' is {model}/{depth}; convert it to RGBA "
            "(Layer > Convert > Convert Layer Color Space...) or choose another layer."
        )
    channel = CHANNEL_BYTES[depth]
    bounds = node.bounds()
    x, y, width, height = bounds.x(), bounds.y(), bounds.width(), bounds.height()
    if width <= 0 or height <= 0:
        raise UnsupportedDocument(f"The style layer '{name}' is empty: choose a layer with a picture on it.")
    native = bytes(node.pixelData(x, y, width, height))
    if len(native) != width * height * 4 * channel:
        raise UnsupportedDocument(f"Krita returned {len(native)} bytes for the {width}x{height} style layer.")
    return width, height, to_rgba8(native, depth, linear_light(node.colorProfile()))
