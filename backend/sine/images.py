"""Image plumbing between PIL and the model: RGB in [-1, 1], alpha kept aside, exact output sizes.

torch is imported inside the tensor functions only: `sine edit` checks its inputs with this module
before torch loads (see `sine.preflight`).
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from sine_protocol.messages import OUTPUT_SIDE_RANGE, Limits

from .errors import BadInput, shown_path

if TYPE_CHECKING:
    import torch

MIN_SIDE, MAX_SIDE = OUTPUT_SIDE_RANGE  # the daemon's limits: the CLI takes the same pictures and sizes
MAX_INPUT_PIXELS, MAX_OUTPUT_PIXELS = Limits().max_input_pixels, Limits().max_output_pixels
FRAMES_COUNTED = 100  # an animation's or multi-page file's frames are counted this far (for a note)
EXTERNAL_READERS = frozenset({"EPS"})  # Pillow formats decoded by running another program on the file


def load_image(path: str | Path) -> Image.Image:
    """Open any Pillow-readable image as RGBA, with one-line errors for the usual failures.

    The declared size is checked before any pixel is decoded (a small file may declare 50 000 × 50 000);
    the EXIF orientation is applied, as image viewers and GIMP show the picture; 16-bit and float
    pictures are scaled to 8 bits, not clipped (a 16-bit grey PNG came out white); an animation or a
    multi-page file gives its first frame, and ``info["frames"]`` says how many it holds (see `frames_note`).
    """
    path = Path(path)
    try:
        if not path.exists():
            raise BadInput(f"no such file: {path}")
        if not path.is_file():  # a folder, a device, or a named pipe (opening one waits for a writer forever)
            raise BadInput(f"{path} is not a picture file ({'a folder' if path.is_dir() else 'not a regular file'})")
    except OSError as exc:  # a name over the system's length limit, a path through a file, ...
        raise BadInput(f"cannot open {shown_path(path)}: {exc.strerror or exc.__class__.__name__}") from None
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        head = b""
    if head.startswith(b"%!PS") or head == b"\xc5\xd0\xd3\xc6":  # PostScript, or DOS EPS with a preview
        raise BadInput(f"{path} is PostScript (EPS): not read, since Pillow reads it by running Ghostscript, an "
                       "interpreter of a programming language; export the picture as PNG")
    try:
        with warnings.catch_warnings():
            # Pillow's notes on damaged metadata (EXIF tags past the file's end) were two lines of Python
            # warning in `sine edit`'s output; the pixels read, and no metadata is used.
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            return _decoded(path)
    except Image.DecompressionBombError:  # Pillow's own guard, at twice its warning size
        raise BadInput(f"{path} declares far more pixels than the limit of {MAX_INPUT_PIXELS / 1e6:.0f} Mpx") from None
    except UnidentifiedImageError:
        if head in (b"II*\0", b"MM\0*"):  # a TIFF, but no layout Pillow decodes: float colour, mostly
            raise BadInput(f"{path}: a TIFF whose pixels Pillow cannot read (floating-point colour, as 32-bit "
                           "documents export, or a rare sample layout); export it as an 8- or 16-bit PNG") from None
        raise BadInput(f"cannot read {path} as an image (UnidentifiedImageError)") from None
    except (OSError, EOFError, SyntaxError, struct.error) as exc:
        raise BadInput(f"cannot read {path} as an image ({exc.__class__.__name__})") from None
    except ValueError as exc:  # Pillow's answer to some damaged files, and to oversized metadata chunks
        if "MAX_TEXT_CHUNK" in str(exc):
            raise BadInput(f"cannot read {path}: a metadata chunk (text or colour profile) unpacks to more than "
                           f"Pillow's limit of {PngImagePlugin.MAX_TEXT_CHUNK // 2**20} MB") from None
        raise BadInput(f"cannot read {path} as an image (damaged: {str(exc)[:80]})") from None
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow's readers answer some damaged files with TypeError, AttributeError...
        raise BadInput(f"cannot read {path} as an image (damaged: {exc.__class__.__name__})") from None


def _decoded(path: Path) -> Image.Image:
    """The picture at ``path`` (checked a regular file) as RGBA: size checked before any pixel is decoded."""
    with Image.open(path, formats=_read_formats()) as img:
        width, height = img.size
        if width * height > MAX_INPUT_PIXELS:
            raise BadInput(f"{path} is {width}×{height} ({width * height / 1e6:.0f} Mpx); the limit is "
                           f"{MAX_INPUT_PIXELS / 1e6:.0f} Mpx")
        if min(width, height) < MIN_SIDE:
            raise BadInput(f"{path} is {width}×{height}; each side must be at least {MIN_SIDE} px")
        frames = _frame_count(img)
        img.load()
        span, profile = _grey_span(img), img.info.get("icc_profile")
        picture, colour = _in_srgb(_eight_bit(ImageOps.exif_transpose(_pixels_only(img)), span), profile)
        picture = picture.convert("RGBA")
        picture.info["frames"] = frames
        if colour:
            picture.info["colour"] = colour
        return picture


METADATA_KEYS = ("exif", "xmp", "XML:com.adobe.xmp", "Raw profile type exif")  # where Pillow keeps EXIF/XMP


def _pixels_only(image: Image.Image) -> Image.Image:
    """``image`` with its EXIF read (Pillow keeps it; its orientation is applied next) and its metadata blocks
    dropped: `exif_transpose` writes them back without the orientation, and a damaged tag (text where the
    standard says a number) raised struct.error there. Only the pixels are used."""
    image.getexif()
    for key in METADATA_KEYS:
        image.info.pop(key, None)
    return image


def _frame_count(image: Image.Image) -> int:
    """How many frames or pages the file holds, up to FRAMES_COUNTED + 1 (1 when it cannot say: the first frame
    is read anyway). A TIFF is counted page by page, at most that far: Pillow's count walks every page (about
    a minute for 100 MB of tiny pages); other formats' counts read headers or skip frames without decoding."""
    frames = 1
    try:
        if not getattr(image, "is_animated", False):
            return 1
        if image.format != "TIFF":
            return min(int(image.n_frames), FRAMES_COUNTED + 1)
        while frames <= FRAMES_COUNTED:
            image.seek(frames)
            frames += 1
    except EOFError:
        pass
    except (OSError, ValueError, SyntaxError):
        frames = 1
    if image.tell() != 0:
        image.seek(0)
    return max(1, frames)


def frames_note(image: Image.Image, path: str | Path) -> str | None:
    """What to tell the user when a picture file holds more than one frame: only the first is used."""
    frames = image.info.get("frames", 1)
    if frames <= 1:
        return None
    many = f"more than {FRAMES_COUNTED}" if frames > FRAMES_COUNTED else str(frames)
    return f"note: {path} holds {many} frames (an animation or pages); only the first is used"


def picture_notes(image: Image.Image, path: str | Path) -> list[str]:
    """Everything to tell the user about how a picture was read: frames left out, colours converted."""
    notes = [frames_note(image, path)]
    if colour := image.info.get("colour"):
        notes.append(f"note: {path} {colour}")
    return [note for note in notes if note]


PROFILE_NAME_CHARS = 60  # a profile's own description, shown in a note: cut where a damaged one runs on


def _in_srgb(image: Image.Image, profile: bytes | None) -> tuple[Image.Image, str | None]:
    """``image`` converted from its embedded colour profile to sRGB, the model's and the result's space (a
    Display P3 or Adobe RGB photo read as sRGB looked dull), and what to say about it (None: nothing done).
    A profile that cannot be read or does not fit the pixels is said, and the pixels are taken as sRGB."""
    if not profile:
        return image, None
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        name = " ".join(ImageCms.getProfileDescription(source).split())[:PROFILE_NAME_CHARS] or "unnamed"
        space = source.profile.xcolor_space.strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError, UnicodeError):
        return image, "has a colour profile that cannot be read (damaged); its colours are taken as sRGB"
    if "sRGB" in name or (space == "GRAY" and image.mode in ("L", "LA", "1")):
        return image, None  # grey profiles: the tone curve only, close to sRGB's
    if space == "RGB" and image.mode in ("P", "PA", "LA", "L", "1"):
        image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
    if image.mode not in {"RGB": ("RGB", "RGBA"), "CMYK": ("CMYK",)}.get(space, ()):
        return image, (f"has a colour profile ({name}) for {space or 'unknown'} pixels, but its pixels are "
                       f"{image.mode}; its colours are taken as sRGB")
    try:
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"),
                                              outputMode="RGBA" if image.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        return image, f"has a colour profile ({name}) that cannot be applied ({exc}); its colours are taken as sRGB"
    return converted, f"is in {name} (its colour profile): read converted to sRGB, the space of the model and result"


def _read_formats() -> list[str]:
    """Every format Pillow reads except those it reads by starting another program (EPS: Ghostscript)."""
    Image.init()
    return [name for name in Image.OPEN if name not in EXTERNAL_READERS]


def _grey_span(image: Image.Image) -> tuple[int, int, bool] | None:
    """(black, white, unsigned 32-bit) of a grey picture of more than 8 bits, from the pixel type its file
    declares: the whole range of the type, as painters' programs show it (a 32-bit TIFF's 0..4 294 967 295, a
    signed one's 0..2 147 483 647, negatives black). None where the file does not say (floats, rare formats)."""
    if image.mode.startswith("I;16"):
        return 0, 65535, False
    if image.mode != "I":
        return None
    if image.format == "PPM":  # Pillow scales every PGM of more than 8 bits to 0..65535
        return 0, 65535, False
    if image.format == "TIFF":
        tags = getattr(image, "tag_v2", {})
        bits, kind = (tags.get(258) or (0,))[0], (tags.get(339) or (1,))[0]
        if bits in (8, 16, 32) and kind in (1, 2):
            top = (1 << (bits - 1 if kind == 2 else bits)) - 1
            return 0, top, bits == 32 and kind == 1
    return None


def _eight_bit(image: Image.Image, span: tuple[int, int, bool] | None = None) -> Image.Image:
    """Grey pictures of more than 8 bits (I;16*, I, F) scaled to 8-bit L; Pillow's convert() clips them.

    ``span`` (see `_grey_span`) is the range the file's pixel type declares; without one, the values decide:
    a float picture is 0..1 (highlights over 1 clipped) unless most of it lies above 1, and integers or floats
    over 255 are 16-bit."""
    if not image.mode.startswith(("I", "F")):
        return image
    # float32 and in place: a 64 Mpx 16-bit picture (the limit) peaked at 1.8 GB in float64 copies
    if span is not None and span[2]:  # Pillow reads unsigned 32-bit into signed integers: wrapped
        values = np.asarray(image).view(np.uint32).astype(np.float32)
    else:
        values = np.array(image, dtype=np.float32)
    np.nan_to_num(values, copy=False, nan=0.0)  # NaN pixels read as black
    top = float(values.max()) if values.size else 0.0
    if span is not None:
        values -= span[0]
        values *= 255.0 / (span[1] - span[0])
    elif image.mode == "F" and (top <= 1.0 or float(np.median(values[::4, ::4])) <= 1.0):  # float pictures: 0..1
        values *= 255.0
    elif image.mode.startswith("I;16") or top > 255.0:  # 16-bit range
        values /= 257.0
    np.clip(np.round(values, out=values), 0, 255, out=values)
    return Image.fromarray(values.astype(np.uint8), "L")


def mask_levels(image: Image.Image) -> Image.Image:
    """A mask picture as 8-bit levels (white = edit) laid over black: a transparent pixel is not selected,
    whatever colour it keeps (a selection saved as white on transparency selected everything)."""
    rgba = image.convert("RGBA")
    black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(black, rgba).convert("L")


def check_size(width: int, height: int) -> None:
    """An output size the daemon would take too: each side 8..16384 px, at most 64 Mpx in all."""
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise BadInput(f"output size {width}×{height} is out of range (each side {MIN_SIDE}..{MAX_SIDE} px)")
    if width * height > MAX_OUTPUT_PIXELS:
        raise BadInput(f"output size {width}×{height} is {width * height / 1e6:.0f} Mpx; the limit is "
                       f"{MAX_OUTPUT_PIXELS / 1e6:.0f} Mpx")


def flatten_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB for the model: transparent pixels are laid over `background` (diffusion has no alpha)."""
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    base = Image.new("RGB", rgba.size, background)
    base.paste(rgba, mask=rgba.getchannel("A"))
    return base


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB → (1, 3, H, W) float in [-1, 1]."""
    import torch

    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


def to_pil(pixels: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) float in [0, 1] → PIL RGB."""
    import torch

    if pixels.dim() == 4:
        pixels = pixels[0]
    arr = (pixels.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def with_source_alpha(result: Image.Image, source: Image.Image) -> Image.Image:
    """RGBA result whose alpha is the source's alpha at the result's size (opaque stays opaque)."""
    alpha = source.convert("RGBA").getchannel("A")
    if alpha.getextrema() == (255, 255):
        out = result.convert("RGBA")
    else:
        out = result.convert("RGB")
        out.putalpha(alpha.resize(result.size, Image.Resampling.BILINEAR))
    return out

