"""Pixels in and out of GIMP through GEGL buffers, in canvas space.

The daemon works on the whole picture, so the source layer is sent at canvas size (transparent
where the layer does not reach) and the result comes back as a canvas-size layer at (0, 0).
"""

from __future__ import annotations

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

from sine_protocol import Mask, RGBAImage  # noqa: E402

# 8-bit non-linear (sRGB) RGBA, straight alpha: what the wire's rgba8 means.
RGBA_FORMAT = "R'G'B'A u8"
# Selection coverage is linear: 255 = fully selected.
MASK_FORMAT = "Y u8"
LAYER_NAME_PROMPT_CHARS = 40


def read_canvas_rgba(image: Gimp.Image, drawable: Gimp.Drawable) -> RGBAImage:
    """The drawable's own pixels placed at its offsets on a transparent canvas-size buffer.

    A drawable's buffer is in layer coordinates, so reading the canvas rectangle shifted by the
    layer's offsets, with the NONE abyss, yields exactly that composition (zeros outside).
    """
    cw, ch = image.get_width(), image.get_height()
    _, off_x, off_y = drawable.get_offsets()
    rect = Gegl.Rectangle.new(-off_x, -off_y, cw, ch)
    data = drawable.get_buffer().get(rect, 1.0, RGBA_FORMAT, Gegl.AbyssPolicy.NONE)
    return RGBAImage(cw, ch, bytes(data))


def read_selection_mask(image: Gimp.Image) -> Mask | None:
    """The selection as an a8 mask at canvas size, or None when nothing is selected."""
    if Gimp.Selection.is_empty(image):
        return None
    cw, ch = image.get_width(), image.get_height()
    rect = Gegl.Rectangle.new(0, 0, cw, ch)
    data = image.get_selection().get_buffer().get(rect, 1.0, MASK_FORMAT, Gegl.AbyssPolicy.NONE)
    return Mask(cw, ch, bytes(data))


def result_layer_name(prompt: str, seed: int) -> str:
    """Layer name that tells which edit made it: the prompt (shortened) and the seed."""
    text = " ".join(prompt.split())
    if len(text) > LAYER_NAME_PROMPT_CHARS:
        text = text[: LAYER_NAME_PROMPT_CHARS - 1] + "…"
    return f"SINE: {text} (seed {seed})"


def _fill_layer(layer: Gimp.Layer, pixels: RGBAImage) -> None:
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, pixels.width, pixels.height), RGBA_FORMAT, pixels.data)
    buffer.flush()
    layer.update(0, 0, pixels.width, pixels.height)


def add_result_layer(image: Gimp.Image, source: Gimp.Layer, pixels: RGBAImage, name: str) -> Gimp.Layer:
    """Insert the result as a new layer just above ``source`` at (0, 0), as one undo step.

    The source layer is never written to, so the user's pixels survive whatever happens here.
    """
    image.undo_group_start()
    try:
        layer = Gimp.Layer.new(
            image, name, pixels.width, pixels.height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL
        )
        image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
        layer.set_offsets(0, 0)
        _fill_layer(layer, pixels)
    finally:
        image.undo_group_end()
    return layer


def new_image_with_result(pixels: RGBAImage, name: str) -> tuple[Gimp.Image, Gimp.Layer]:
    """A new RGB image holding the result, for outputs whose size differs from the canvas."""
    image = Gimp.Image.new(pixels.width, pixels.height, Gimp.ImageBaseType.RGB)
    image.undo_disable()
    layer = Gimp.Layer.new(
        image, name, pixels.width, pixels.height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL
    )
    image.insert_layer(layer, None, 0)
    _fill_layer(layer, pixels)
    image.undo_enable()
    return image, layer
