import pytest
from krita import Document, Selection
from krita_helpers import make_document, rgba_pattern, to_bgra
from sine_krita.document_io import UnsupportedDocument, add_result_layer, read_source


def test_active_layer_is_read_as_rgba_at_canvas_size(qapp):
    doc, nodes = make_document(8, 6)
    src = read_source(doc, "layer")
    assert (src.width, src.height) == (8, 6)
    assert src.rgba == rgba_pattern(8, 6, salt=0)  # Krita's BGRA converted back to RGBA
    assert src.anchor is nodes[0] and src.mask is None and src.source_name == "layer 0"


def test_layer_with_offset_content_is_read_in_canvas_coordinates(qapp):
    doc = Document(4, 4)
    node = doc.createNode("small", "paintlayer")
    node.setPixelData(bytes([1, 2, 3, 255]), 2, 1, 1, 1)  # one BGRA pixel at (2, 1)
    doc.rootNode().addChildNode(node, None)
    doc.setActiveNode(node)
    rgba = read_source(doc).rgba
    assert rgba[4 * (1 * 4 + 2) : 4 * (1 * 4 + 2) + 4] == bytes([3, 2, 1, 255])
    assert rgba.count(0) == len(rgba) - 4


def test_visible_composite_uses_the_document_projection(qapp):
    doc, _ = make_document(5, 4)
    src = read_source(doc, "visible")
    assert src.rgba == rgba_pattern(5, 4, salt=40)  # the opaque top layer hides the bottom one
    assert doc.projection_refreshes == 1


def test_selection_becomes_a_canvas_sized_mask(qapp):
    doc, _ = make_document(4, 3)
    mask = bytes([0, 255, 255, 0, 0, 128, 255, 0, 0, 0, 0, 0])
    doc.setSelection(Selection(4, 3, mask))
    assert read_source(doc).mask == mask


@pytest.mark.parametrize("model, depth", [("RGBA", "U16"), ("CMYKA", "U8"), ("GRAYA", "U8")])
def test_other_color_spaces_get_a_clear_message(qapp, model, depth):
    doc = Document(4, 4, model, depth)
    doc.rootNode().addChildNode(node := doc.createNode("x", "paintlayer"), None)
    doc.setActiveNode(node)
    with pytest.raises(UnsupportedDocument, match="Convert Image Color Space"):
        read_source(doc)


def test_an_active_mask_means_its_layer(qapp):
    doc, nodes = make_document(4, 4)
    mask = doc.createNode("transparency", "transparencymask")
    nodes[1].addChildNode(mask, None)
    doc.setActiveNode(mask)
    src = read_source(doc)
    assert src.anchor is nodes[1] and src.rgba == rgba_pattern(4, 4, salt=40)
    global_mask = doc.createNode("Selection Mask", "selectionmask")
    doc.rootNode().addChildNode(global_mask, nodes[1])
    doc.setActiveNode(global_mask)
    with pytest.raises(UnsupportedDocument, match="Select a layer"):
        read_source(doc)


def test_no_document_or_layer(qapp):
    with pytest.raises(UnsupportedDocument, match="Open an image"):
        read_source(None)
    with pytest.raises(UnsupportedDocument, match="Select a layer"):
        read_source(Document(2, 2))


def test_result_layer_goes_directly_above_the_anchor_in_one_step(qapp):
    doc, nodes = make_document(6, 4, layers=3)
    before = [bytes(n.pixelData(0, 0, 6, 4)) for n in nodes]
    result = rgba_pattern(6, 4, salt=99)
    layer = add_result_layer(doc, nodes[0], result, 6, 4, "SINE: x (seed 1)")
    assert [n.name() for n in doc.topLevelNodes()] == ["layer 0", "SINE: x (seed 1)", "layer 1", "layer 2"]
    assert layer.pixelData(0, 0, 6, 4) == to_bgra(result)
    assert doc.history == [("add", "SINE: x (seed 1)")]  # pixels were set before insertion
    assert [bytes(n.pixelData(0, 0, 6, 4)) for n in nodes] == before


def test_result_layer_inside_a_group_stays_in_that_group(qapp):
    doc = Document(2, 2)
    group = doc.createNode("group", "grouplayer")
    doc.rootNode().addChildNode(group, None)
    inner = doc.createNode("inner", "paintlayer")
    group.addChildNode(inner, None)
    layer = add_result_layer(doc, inner, bytes(16), 2, 2, "r")
    assert layer.parentNode() is group and [n.name() for n in group.childNodes()] == ["inner", "r"]


def test_wrong_result_size_is_refused(qapp):
    doc, nodes = make_document(2, 2)
    with pytest.raises(ValueError, match="expected 2x2x4"):
        add_result_layer(doc, nodes[0], bytes(12), 2, 2, "r")
    assert len(doc.topLevelNodes()) == 2


def test_deleted_source_layer_puts_the_result_on_top(qapp):
    doc, nodes = make_document(2, 2, layers=2)
    doc.rootNode()._children.remove(nodes[0])  # the user deleted the source during the edit
    nodes[0]._parent = None
    add_result_layer(doc, nodes[0], bytes(16), 2, 2, "r")
    assert [n.name() for n in doc.topLevelNodes()] == ["layer 1", "r"]


def test_closed_document_gets_a_message(qapp, monkeypatch):
    doc, nodes = make_document(2, 2)
    monkeypatch.setattr(doc, "rootNode", lambda: None)
    with pytest.raises(UnsupportedDocument, match="closed"):
        add_result_layer(doc, nodes[0], bytes(16), 2, 2, "r")
