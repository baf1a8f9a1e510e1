"""Small builders shared by the Krita unit tests."""

from __future__ import annotations

from krita import Document, Node


def rgba_pattern(width: int, height: int, salt: int = 0) -> bytes:
    """Distinct, non-symmetric RGBA pixels (so a channel swap or flip is always visible)."""
    out = bytearray()
    for y in range(height):
        for x in range(width):
            out += bytes([(x * 37 + salt) % 256, (y * 53 + 11) % 256, (x * y + 101 + salt) % 256, 255])
    return bytes(out)


def to_bgra(rgba: bytes) -> bytes:
    out = bytearray(rgba)
    out[0::4], out[2::4] = rgba[2::4], rgba[0::4]
    return bytes(out)


def make_document(width: int = 8, height: int = 6, layers: int = 2) -> tuple[Document, list[Node]]:
    """A document with ``layers`` full-canvas paint layers; the bottom one is active."""
    doc = Document(width, height)
    nodes = []
    below = None
    for i in range(layers):
        node = doc.createNode(f"layer {i}", "paintlayer")
        node.setPixelData(to_bgra(rgba_pattern(width, height, salt=40 * i)), 0, 0, width, height)
        doc.rootNode().addChildNode(node, below)
        below = node
        nodes.append(node)
    doc.setActiveNode(nodes[0])
    doc.history.clear()
    return doc, nodes
