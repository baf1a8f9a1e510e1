"""Pixels in and out of GIMP through GEGL buffers, in the layer's own space.

What is sent is the layer itself (its size, its pixels, the selection over it) and what comes back
lands on a new layer of the same size at the same offsets, so a layer smaller than the canvas
stays that size and covers nothing it did not cover before. The model works at 8 bit sRGB; the
result is written at the image's own precision and in its colour space, the source's own numbers
outside the selection and its alpha everywhere (sine_protocol.layer_pixels).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp  # noqa: E402

from sine_protocol import Mask, RGBAImage  # noqa: E402
from sine_protocol.layer_pixels import composite_native  # noqa: E402

# 8-bit non-linear (sRGB) RGBA, straight alpha: what the wire's rgba8 means.
RGBA_FORMAT = "R'G'B'A u8"
# Selection coverage is linear: 255 = fully selected.
MASK_FORMAT = "Y u8"
MASK_COPY_FORMAT = "Y float"  # a layer mask copied at any image precision without loss
LAYER_NAME_PROMPT_CHARS = 40
_TRC_MODEL = {"linear": "RGBA", "non-linear": "R'G'B'A", "perceptual": "R~G~B~A"}
_CHANNEL_BYTES = {"u8": 1, "u16": 2, "u32": 4, "half": 2, "float": 4, "double": 8}


def native_format(image: Gimp.Image, drawable: Gimp.Drawable) -> tuple[str, int]:
    """The babl RGBA format of the image's precision in the drawable's own colour space (e.g.
    ``R'G'B'A u16`` for sRGB, ``R'G'B'A u8-space-…`` for an image with Adobe RGB assigned) and its bytes
    per channel. A name without a space means sRGB: the source's numbers read that way go through sRGB
    and back, which shifts them by rounding and clips the colours outside sRGB."""
    kind, _, trc = image.get_precision().value_nick.partition("-")  # e.g. "u16-non-linear"
    space = Babl.format_get_space(drawable.get_format())
    return Babl.get_name(Babl.format_with_space(f"{_TRC_MODEL[trc]} {kind}", space)), _CHANNEL_BYTES[kind]


def _whole(drawable: Gimp.Drawable) -> Gegl.Rectangle:
    return Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())


def _has_filters(drawable: Gimp.Drawable) -> bool:
    """Whether non-destructive filters (GIMP 3's Fx list) change how the drawable shows. A group's
    buffer already holds its children's filters; its own are not in it, nor are a layer's in its."""
    get_filters = getattr(drawable, "get_filters", None)  # GIMP 3.0 and later
    return bool(get_filters and get_filters())


def _unlock(layer: Gimp.Layer) -> None:
    for lock in ("set_lock_content", "set_lock_position", "set_lock_alpha", "set_lock_visibility"):
        if hasattr(layer, lock):
            getattr(layer, lock)(False)


def _copy_without_selection(image: Gimp.Image, source: Gimp.Layer, scratch: Gimp.Image) -> Gimp.Layer:
    """A copy of the source (its filters with it) for ``scratch``, made while the painter's image has no
    selection: a copy of a position-locked layer made with a selection gets filters that cover the
    selection only (its pixels merged to a layer of the selection's size). The selection is put back
    as it was, outside the undo history (frozen), so the painter's image ends as it began."""
    if Gimp.Selection.is_empty(image):
        return Gimp.Layer.new_from_drawable(source, scratch)
    image.undo_freeze()
    try:
        saved = Gimp.Selection.save(image)
        Gimp.Selection.none(image)
        try:
            return Gimp.Layer.new_from_drawable(source, scratch)
        finally:
            image.select_item(Gimp.ChannelOps.REPLACE, saved)
            image.remove_channel(saved)
    finally:
        image.undo_thaw()


@contextmanager
def as_seen(image: Gimp.Image, source: Gimp.Layer) -> Iterator[Gimp.Drawable]:
    """The source as the painter sees it: with its non-destructive filters (GIMP 3) applied, without its
    opacity, mode and layer mask (the result takes those as they are). A source without filters is
    itself; one with filters is what a temporary image of its precision and colour profile holding
    a copy of it shows (GIMP renders the filters there), removed when done. The source and the
    painter's image are never changed (nothing here enters its undo history)."""
    if not _has_filters(source):
        yield source
        return
    scratch = Gimp.Image.new_with_precision(
        source.get_width(), source.get_height(), Gimp.ImageBaseType.RGB, image.get_precision()
    )
    try:
        scratch.undo_disable()
        profile = image.get_color_profile()
        if profile is not None:
            scratch.set_color_profile(profile)
        copy = _copy_without_selection(image, source, scratch)
        scratch.insert_layer(copy, None, 0)
        _unlock(copy)
        if copy.get_mask() is not None:
            copy.remove_mask(Gimp.MaskApplyMode.DISCARD)
        copy.set_offsets(0, 0)
        copy.set_opacity(100.0)
        copy.set_mode(Gimp.LayerMode.NORMAL)
        copy.set_visible(True)
        if copy.is_group():
            copy = scratch.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        else:
            copy.merge_filters()
        yield copy
    finally:
        scratch.delete()


def read_layer_rgba(drawable: Gimp.Drawable) -> RGBAImage:
    """The drawable's own pixels at its own size, as 8-bit RGBA (what the model sees)."""
    data = drawable.get_buffer().get(_whole(drawable), 1.0, RGBA_FORMAT, Gegl.AbyssPolicy.NONE)
    return RGBAImage(drawable.get_width(), drawable.get_height(), bytes(data))


def read_selection_mask(image: Gimp.Image, drawable: Gimp.Drawable) -> Mask | None:
    """The selection over the drawable's rectangle (clipped to the layer), or None when nothing is
    selected. A selection that misses the layer gives an all-zero mask."""
    if Gimp.Selection.is_empty(image):
        return None
    _, off_x, off_y = drawable.get_offsets()
    w, h = drawable.get_width(), drawable.get_height()
    rect = Gegl.Rectangle.new(off_x, off_y, w, h)
    data = image.get_selection().get_buffer().get(rect, 1.0, MASK_FORMAT, Gegl.AbyssPolicy.NONE)
    return Mask(w, h, bytes(data))


def short_prompt(prompt: str) -> str:
    """The prompt on one line, cut to LAYER_NAME_PROMPT_CHARS (a name or a window title)."""
    text = " ".join(prompt.split())
    if len(text) > LAYER_NAME_PROMPT_CHARS:
        text = text[: LAYER_NAME_PROMPT_CHARS - 1] + "…"
    return text


def result_layer_name(prompt: str, seed: int) -> str:
    """Layer name that tells which edit made it: the prompt (shortened) and the seed."""
    return f"SINE: {short_prompt(prompt)} (seed {seed})"


def _fill_layer(layer: Gimp.Layer, pixels: RGBAImage) -> None:
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, pixels.width, pixels.height), RGBA_FORMAT, pixels.data)
    buffer.flush()
    layer.update(0, 0, pixels.width, pixels.height)


def add_result_layer(
    image: Gimp.Image, source: Gimp.Layer, pixels: RGBAImage, mask: Mask | None, name: str
) -> Gimp.Layer:
    """Insert the result as a new layer just above ``source``, of its size at its offsets, drawn as it
    is (opacity, layer mode), as one undo step; written at the image's precision with the source's pixels outside ``mask`` and the
    source's alpha everywhere.

    The source layer is never written to, so the user's pixels survive whatever happens here.
    """
    _, off_x, off_y = source.get_offsets()
    fmt, channel = native_format(image, source)
    image.undo_group_start()
    try:
        layer = Gimp.Layer.new(
            image, name, pixels.width, pixels.height, Gimp.ImageType.RGBA_IMAGE, source.get_opacity(),
            source.get_mode(),
        )
        _show_as(source, layer)
        image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
        layer.set_offsets(off_x, off_y)
        rect = _whole(layer)
        buffer = layer.get_buffer()
        buffer.set(rect, RGBA_FORMAT, pixels.data)  # GEGL converts the 8-bit result to the layer's format
        result = bytes(buffer.get(rect, 1.0, fmt, Gegl.AbyssPolicy.NONE))
        with as_seen(image, source) as seen:  # outside the selection: what the painter saw there
            own = bytes(seen.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.NONE))
        buffer.set(rect, fmt, composite_native(own, result, mask.data if mask else None, 4 * channel,
                                               3 * channel, channel))  # fmt: skip
        buffer.flush()
        _copy_layer_mask(source, layer)
        layer.update(0, 0, pixels.width, pixels.height)
    finally:
        image.undo_group_end()
    return layer


def _show_as(source: Gimp.Layer, layer: Gimp.Layer) -> None:
    """Give ``layer`` the way the source is drawn over what lies below (its opacity and mode were set
    at creation): outside the selection the result then looks exactly as the source did."""
    layer.set_blend_space(source.get_blend_space())
    layer.set_composite_space(source.get_composite_space())
    layer.set_composite_mode(source.get_composite_mode())


def _copy_layer_mask(source: Gimp.Layer, layer: Gimp.Layer) -> None:
    """Give ``layer`` a copy of the source's layer mask (and whether it applies), so the result shows
    what the source showed: without it, what the mask hid would come back in the layer above."""
    mask = source.get_mask()
    if mask is None:
        return
    copy = layer.create_mask(Gimp.AddMaskType.WHITE)
    layer.add_mask(copy)
    rect = Gegl.Rectangle.new(0, 0, mask.get_width(), mask.get_height())
    buffer = copy.get_buffer()
    buffer.set(rect, MASK_COPY_FORMAT, mask.get_buffer().get(rect, 1.0, MASK_COPY_FORMAT, Gegl.AbyssPolicy.NONE))
    buffer.flush()
    layer.set_apply_mask(source.get_apply_mask())


def new_image_with_result(pixels: RGBAImage, name: str) -> tuple[Gimp.Image, Gimp.Layer]:
    """A new RGB image holding the result, for outputs whose size differs from the layer's."""
    image = Gimp.Image.new(pixels.width, pixels.height, Gimp.ImageBaseType.RGB)
    image.undo_disable()
    layer = Gimp.Layer.new(
        image, name, pixels.width, pixels.height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL
    )
    image.insert_layer(layer, None, 0)
    _fill_layer(layer, pixels)
    image.undo_enable()
    return image, layer
