"""The style picture of multi-model guidance: a layer (of any open image) or a picture file.

Sent as it is, at its own size, as 8-bit straight RGBA (the edit's ``style`` blob); the daemon
fine-tunes and caches a second model on it.
"""

from __future__ import annotations

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio  # noqa: E402
from sine_gimp_pixels import read_layer_rgba  # noqa: E402

from sine_protocol import RGBAImage  # noqa: E402


def file_rgba(gfile: Gio.File) -> RGBAImage:
    """The visible picture of a file GIMP can open (its layers merged), as RGB(A)."""
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, gfile)
    if image is None:
        raise ValueError(f"GIMP could not open the style picture {gfile.get_parse_name()}")
    try:
        if image.get_base_type() != Gimp.ImageBaseType.RGB:
            image.convert_rgb()
        layer = image.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        return read_layer_rgba(layer)
    finally:
        image.delete()


def style_picture(layer: Gimp.Layer | None, gfile: Gio.File | None) -> RGBAImage | None:
    """The chosen style picture: the layer if one is set, else the file, else None."""
    if layer is not None:
        return read_layer_rgba(layer)
    if gfile is not None and gfile.get_path():
        return file_rgba(gfile)
    return None
