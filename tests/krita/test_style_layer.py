"""The "Style from layer" choice against the fake Krita: which layers are offered, what is read."""

from __future__ import annotations

import pytest
from krita import Document
from krita_helpers import make_document, rgba_pattern
from sine_krita.document_io import UnsupportedDocument
from sine_krita.style_layer import layer_names, read_style


def test_layers_are_offered_top_first_with_group_children():
    doc, nodes = make_document(8, 6, layers=2)
    group = doc.createNode("group", "grouplayer")
    child = doc.createNode("inside", "paintlayer")
    group.addChildNode(child, None)
    doc.rootNode().addChildNode(group, nodes[1])
    doc.rootNode().addChildNode(doc.createNode("mask", "transparencymask"), None)
    assert layer_names(doc) == ["group", "inside", "layer 1", "layer 0"]
    assert layer_names(None) == []


def test_the_style_is_the_layers_own_rectangle_as_rgba():
    doc, _ = make_document(8, 6, layers=2)
    assert read_style(doc, "layer 1") == (8, 6, rgba_pattern(8, 6, salt=40))
    with pytest.raises(UnsupportedDocument, match="no layer 'gone'"):
        read_style(doc, "gone")


def test_a_16_bit_style_layer_is_sent_at_8_bits_and_an_empty_one_is_refused():
    doc = Document(5, 4, "RGBA", "U16")
    node = doc.createNode("deep", "paintlayer")
    # B, G, R, A at 16 bits: 0x1234 -> 0x12 (the high byte), little-endian as Krita hands them out.
    node.setPixelData(bytes.fromhex("3412" "7856" "bc9a" "ffff") * 2, 1, 1, 2, 1)
    doc.rootNode().addChildNode(node, None)
    doc.rootNode().addChildNode(doc.createNode("empty", "paintlayer"), None)
    assert read_style(doc, "deep") == (2, 1, bytes([0x9A, 0x56, 0x12, 0xFF]) * 2)
    with pytest.raises(UnsupportedDocument, match="empty"):
        read_style(doc, "empty")
