import pytest
from krita import Document, Selection
from krita_helpers import make_document, rgba_pattern, to_bgra
from sine_krita.document_io import UnsupportedDocument, add_result_layer, read_source, result_pixels


def test_active_layer_is_read_as_rgba_at_canvas_size(qapp):
    doc, nodes = make_document(8, 6)
    src = read_source(doc, "layer")
    assert (src.width, src.height) == (8, 6)
    assert src.rgba == rgba_pattern(8, 6, salt=0)  # Krita's BGRA converted back to RGBA
    assert src.anchor is nodes[0] and src.mask is None and src.source_name == "layer 0"


def _small_layer_doc(depth: str = "U8") -> tuple[Document, object, bytes]:
    """A 7x6 canvas with a 3x2 layer at (2, 1) whose middle top pixel is transparent."""
    doc = Document(7, 6, "RGBA", depth)
    node = doc.createNode("small", "paintlayer")
    cb = 2 if depth == "U16" else 1
    pixels = bytearray()
    for i in range(6):
        for c in range(4):
            value = 0 if (c == 3 and i == 1) else (255 if c == 3 else 40 * i + 9 * c + 1)
            pixels += (value * 257 + 3 * (c < 3)).to_bytes(2, "little") if cb == 2 else bytes([value])
    node.setPixelData(bytes(pixels), 2, 1, 3, 2)
    doc.rootNode().addChildNode(node, None)
    doc.setActiveNode(node)
    return doc, node, bytes(pixels)


def test_a_layer_smaller_than_the_canvas_is_read_as_its_own_rectangle(qapp):
    doc, node, pixels = _small_layer_doc()
    src = read_source(doc)
    assert (src.x, src.y, src.width, src.height) == (2, 1, 3, 2)
    assert src.rgba == to_bgra(pixels) and src.native == pixels and src.channel_bytes == 1


def test_the_selection_is_clipped_to_the_layer(qapp):
    doc, _, _ = _small_layer_doc()
    canvas = bytes(255 if x >= 3 else 0 for y in range(6) for x in range(7))  # reaches past the layer
    doc.setSelection(Selection(7, 6, canvas))
    assert read_source(doc).mask == bytes([0, 255, 255, 0, 255, 255])
    doc.setSelection(Selection(7, 6, bytes(255 if x == 6 else 0 for y in range(6) for x in range(7))))
    with pytest.raises(UnsupportedDocument, match="does not cover any pixel of the layer"):
        read_source(doc)


def test_16_bit_result_keeps_the_sources_16_bits_outside_the_selection_and_its_alpha(qapp):
    doc, node, pixels = _small_layer_doc("U16")
    doc.setSelection(Selection(7, 6, bytes(255 if x == 4 else 0 for y in range(6) for x in range(7))))
    src = read_source(doc)
    assert src.channel_bytes == 2 and src.mask == bytes([0, 0, 255, 0, 0, 255])
    assert src.rgba[:4] == bytes([pixels[5], pixels[3], pixels[1], 255])  # high bytes, R and B swapped
    out = result_pixels(src, bytes([7, 8, 9, 255]) * 6)
    for i in range(6):
        px, sp = out[8 * i : 8 * i + 8], pixels[8 * i : 8 * i + 8]
        assert px[6:] == sp[6:]  # alpha: the source's, 16 bits
        if i in (2, 5):  # selected: the 8-bit result, widened exactly (v * 257), B,G,R order
            assert px[:6] == bytes([9, 9, 8, 8, 7, 7])
        else:
            assert px == sp
    layer = add_result_layer(doc, node, out, 2, 1, 3, 2, "r")
    assert layer.pixelData(2, 1, 3, 2) == out and layer.bounds().x() == 2


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


@pytest.mark.parametrize("model, depth", [("CMYKA", "U8"), ("GRAYA", "U8"), ("RGBA", "F64")])
def test_other_color_spaces_get_a_clear_message(qapp, model, depth):
    doc = Document(4, 4, model, depth)
    doc.rootNode().addChildNode(node := doc.createNode("x", "paintlayer"), None)
    doc.setActiveNode(node)
    with pytest.raises(UnsupportedDocument, match="Convert Image Color Space"):
        read_source(doc)


@pytest.mark.parametrize("profile", ["sRGB-elle-V2-g10.icc", "ACEScg-elle-V4-g10.icc", "scRGB (linear)"])
def test_a_linear_light_layer_is_sent_srgb_encoded_and_the_result_decoded(qapp, profile):
    """Krita's default 16-bit profile is linear: read as they were, its values came back washed out."""
    import struct

    doc = Document(2, 1, "RGBA", "U16", profile)
    doc.rootNode().addChildNode(node := doc.createNode("x", "paintlayer"), None)
    node.setPixelData(struct.pack("<8H", 0, 32768, 65535, 65535, 0, 0, 0, 65535), 0, 0, 2, 1)  # B,G,R,A x2
    doc.setActiveNode(node)
    source = read_source(doc)
    assert source.linear and source.rgba == bytes((255, 188, 0, 255, 0, 0, 0, 255))
    placed = struct.unpack("<8H", result_pixels(source, bytes((255, 188, 0, 255, 255, 255, 255, 255))))
    assert placed[0] == 0 and abs(placed[1] - 32768) < 200 and placed[2] == 65535 and placed[4:] == (65535,) * 4


@pytest.mark.parametrize("profile", ["sRGB-elle-V2-srgbtrc.icc", "sRGB built-in", "Rec2020-elle-V4-srgbtrc.icc",
                                     "ClayRGB-elle-V2-g22.icc"])  # fmt: skip
def test_srgb_like_profiles_are_sent_as_they_are(qapp, profile):
    doc = Document(4, 4, "RGBA", "U8", profile)
    doc.rootNode().addChildNode(node := doc.createNode("x", "paintlayer"), None)
    node.setPixelData(bytes(range(64)), 0, 0, 4, 4)
    doc.setActiveNode(node)
    source = read_source(doc)
    assert not source.linear and source.rgba == to_bgra(bytes(range(64)))  # the same swap both ways


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
    # named as the painter sees it in the Layers docker, with what to click (it said "Select a layer first.")
    with pytest.raises(UnsupportedDocument, match="The global selection mask 'Selection Mask' is active in the "
                                                  "Layers docker: click the layer to edit"):
        read_source(doc)
    assert read_source(doc, "visible").anchor is None  # the visible image needs no layer


def test_a_filter_layer_is_refused_in_words_and_the_visible_image_is_still_edited(qapp):
    """A filter layer has no pixels of its own (real Krita: its pixelData is its one-channel selection,
    see the real-Krita probe); a mask on it means it too."""
    doc, nodes = make_document(4, 4)
    fil = doc.createNode("levels", "filterlayer")
    doc.rootNode().addChildNode(fil, nodes[1])
    mask = doc.createNode("transparency", "transparencymask")
    fil.addChildNode(mask, None)
    for active in (fil, mask):
        doc.setActiveNode(active)
        with pytest.raises(UnsupportedDocument, match="'levels' is a filter layer: .* 'Visible image'"):
            read_source(doc)
    assert read_source(doc, "visible").anchor is None


def test_no_document_or_layer(qapp):
    with pytest.raises(UnsupportedDocument, match="Open an image"):
        read_source(None)
    with pytest.raises(UnsupportedDocument, match="Select a layer"):
        read_source(Document(2, 2))


def test_result_layer_goes_directly_above_the_anchor_in_one_step(qapp):
    doc, nodes = make_document(6, 4, layers=3)
    before = [bytes(n.pixelData(0, 0, 6, 4)) for n in nodes]
    result = rgba_pattern(6, 4, salt=99)
    layer = add_result_layer(doc, nodes[0], to_bgra(result), 0, 0, 6, 4, "SINE: x (seed 1)")
    assert [n.name() for n in doc.topLevelNodes()] == ["layer 0", "SINE: x (seed 1)", "layer 1", "layer 2"]
    assert layer.pixelData(0, 0, 6, 4) == to_bgra(result)
    assert doc.history == [("add", "SINE: x (seed 1)")]  # pixels were set before insertion
    assert [bytes(n.pixelData(0, 0, 6, 4)) for n in nodes] == before


def test_the_result_layer_is_drawn_as_the_source_layer_is(qapp):
    """Opacity 40 %, Multiply, inherit alpha: the result takes them, so outside the selection the picture
    looks as before (at 100 % Normal it covered what the source let through). The visible image is
    a composite: its result is a plain layer."""
    doc, nodes = make_document(6, 4, layers=2)
    nodes[0].setOpacity(102)
    nodes[0].setBlendingMode("multiply")
    nodes[0].setInheritAlpha(True)
    src = read_source(doc, "layer")
    layer = add_result_layer(doc, src.anchor, src.native, 0, 0, 6, 4, "r", src.look)
    assert (layer.opacity(), layer.blendingMode(), layer.inheritAlpha()) == (102, "multiply", True)
    assert doc.history == [("add", "r")]  # still one step: the look is set before the layer goes in
    visible = read_source(doc, "visible")
    plain = add_result_layer(doc, visible.anchor, visible.native, 0, 0, 6, 4, "v", visible.look)
    assert (plain.opacity(), plain.blendingMode(), plain.inheritAlpha()) == (255, "normal", False)


def test_the_visible_images_result_goes_on_top_of_every_layer(qapp):
    """Above the active layer, the layers over it hid the edit of the visible image where opaque."""
    doc, nodes = make_document(6, 4, layers=3)
    group = doc.createNode("group", "grouplayer")  # the active layer sits in a group at 40 %
    doc.rootNode().addChildNode(group, nodes[0])
    inner = doc.createNode("inner", "paintlayer")
    group.addChildNode(inner, None)
    group.setOpacity(102)
    doc.setActiveNode(inner)
    visible = read_source(doc, "visible")
    layer = add_result_layer(doc, visible.anchor, visible.native, 0, 0, 6, 4, "v", visible.look)
    assert layer.parentNode() is doc.rootNode() and doc.topLevelNodes()[-1] is layer


def test_result_layer_inside_a_group_stays_in_that_group(qapp):
    doc = Document(2, 2)
    group = doc.createNode("group", "grouplayer")
    doc.rootNode().addChildNode(group, None)
    inner = doc.createNode("inner", "paintlayer")
    group.addChildNode(inner, None)
    layer = add_result_layer(doc, inner, bytes(16), 0, 0, 2, 2, "r")
    assert layer.parentNode() is group and [n.name() for n in group.childNodes()] == ["inner", "r"]


def test_wrong_result_size_is_refused(qapp):
    doc, nodes = make_document(2, 2)
    with pytest.raises(ValueError, match="expected 2x2x4"):
        add_result_layer(doc, nodes[0], bytes(12), 0, 0, 2, 2, "r")
    assert len(doc.topLevelNodes()) == 2


def test_deleted_source_layer_puts_the_result_on_top(qapp):
    doc, nodes = make_document(2, 2, layers=2)
    doc.rootNode()._children.remove(nodes[0])  # the user deleted the source during the edit
    nodes[0]._parent = None
    add_result_layer(doc, nodes[0], bytes(16), 0, 0, 2, 2, "r")
    assert [n.name() for n in doc.topLevelNodes()] == ["layer 1", "r"]


def test_closed_document_gets_a_message(qapp, monkeypatch):
    doc, nodes = make_document(2, 2)
    monkeypatch.setattr(doc, "rootNode", lambda: None)
    with pytest.raises(UnsupportedDocument, match="closed"):
        add_result_layer(doc, nodes[0], bytes(16), 0, 0, 2, 2, "r")


def test_a_layer_with_nothing_visible_is_refused_in_words(qapp):
    # a transparency mask that hides all of it: the edit came back as an empty layer, without a word
    doc = Document(7, 6, "RGBA", "U8")
    node = doc.createNode("hidden", "paintlayer")
    node.setPixelData(bytes([90, 80, 70, 255]) * 6, 2, 1, 3, 2)
    node.addChildNode(doc.createNode("mask", "transparencymask"), None)
    node.projectionPixelData = lambda x, y, w, h: bytes(4 * w * h)  # how Krita draws it: nothing
    doc.rootNode().addChildNode(node, None)
    doc.setActiveNode(node)
    with pytest.raises(UnsupportedDocument, match="'hidden' has nothing visible"):
        read_source(doc)


@pytest.mark.parametrize("depth, code", [("F16", "e"), ("F32", "f")])
@pytest.mark.parametrize("profile", ["sRGB-elle-V2-g10.icc", "Rec2020-elle-V4-g10.icc", "sRGB-elle-V2-srgbtrc.icc"])
def test_a_float_layer_keeps_its_own_values_outside_the_selection(qapp, depth, code, profile):
    """RGBA 16/32-bit float documents were refused. The model sees them 8-bit sRGB-encoded (linear ones by
    the sRGB curve; HDR values above 1 and below 0 clipped); the result comes back in the document's float
    values inside the selection, and outside it every byte is the source's (2.5 and -0.25 included)."""
    import struct

    doc = Document(3, 1, "RGBA", depth, profile)
    doc.rootNode().addChildNode(node := doc.createNode("x", "paintlayer"), None)
    values = (0.0, 0.5, 1.0, 1.0, 2.5, -0.25, 0.2140, 0.75, 0.0, 0.0, 0.0, 1.0)  # B,G,R,A x3
    native = struct.pack(f"<12{code}", *values)
    node.setPixelData(native, 0, 0, 3, 1)
    doc.setActiveNode(node)
    doc.setSelection(Selection(3, 1, bytes((0, 0, 255))))  # only the last pixel is selected
    source = read_source(doc)
    linear = profile.endswith("-g10.icc")
    assert source.native == native and source.mask == bytes((0, 0, 255))
    half = 188 if linear else 128  # sRGB(0.5) = 0.735
    expected = (255, half, 0, 255, 127 if linear else 55, 0, 255, 191)
    slack = 0 if depth == "F16" else 1  # F32 goes through a table of its top 16 bits: within a level
    assert all(abs(a - b) <= slack for a, b in zip(source.rgba[:8], expected, strict=True)), list(source.rgba)
    placed = result_pixels(source, bytes((1, 2, 3, 4, 5, 6, 7, 8, 255, 188, 0, 9)))
    assert len(placed) == len(native) and placed[: 8 * len(code) * 2] == native[: 8 * len(code) * 2]
    last = struct.unpack(f"<4{code}", placed[8 * struct.calcsize(code) :])
    assert last[3] == 1.0 and last[2] == 1.0 and last[0] == 0.0  # B, R; alpha the source's
    assert last[1] == pytest.approx(0.5 if linear else 188 / 255, abs=0.003)
