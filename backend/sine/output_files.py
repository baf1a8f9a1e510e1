"""Where `sine edit` writes, checked before any work: a user's file is never replaced by surprise.

`--out` must name a picture format Pillow writes, must not be one of the inputs, and must not exist unless
`--overwrite` is given; `--weights` must be a new or empty folder, or one that holds a saved fine-tune.
Writes go through a temporary file (replaced atomically) or an exclusive create, so an interrupted write
never leaves half a picture where a finished one was. Imports only Pillow: it runs before torch loads.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sine_protocol.paths import read_small_file

from .errors import BadInput

DEFAULT_SUFFIX = ".png"
SMALL_FILE_BYTES = 1 << 20  # finetune.json, summary.json: a few settings or names
FINETUNE_FILE = "finetune.json"  # what FineTuned.save writes beside its tensors (sine.finetune)
FINETUNE_TENSORS = ("unet_lora.safetensors", "text_encoder_lora.safetensors", "unet.safetensors",
                    "text_encoder.safetensors")


@dataclass(frozen=True)
class OutputPlan:
    """The checked output files of one `sine edit` and how to encode them."""

    paths: list[Path]
    format: str  # Pillow's format name, e.g. PNG
    mode: str  # RGBA, or RGB for formats without transparency (JPEG)
    overwrite: bool


def output_paths(out: Path, count: int) -> list[Path]:
    """OUT for one result; OUT-1.png … OUT-N.png (the suffix kept) for several. No suffix: .png."""
    if not out.suffix:
        out = out.with_name(out.name + DEFAULT_SUFFIX)
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, count + 1)]


def _writable_mode(fmt: str) -> str | None:
    """RGBA or RGB, whichever Pillow can write in `fmt` (a 1-pixel trial in memory); None if neither."""
    for mode in ("RGBA", "RGB"):
        try:
            Image.new(mode, (1, 1)).save(io.BytesIO(), format=fmt)
        except (OSError, ValueError, KeyError):
            continue
        return mode
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _refuse_broken_links(path: Path, flag: str, folder: bool = False) -> None:
    """A symbolic link loop in the path, or a folder that is a link to nothing, failed only when the result
    was written (after the work) or as a traceback: refused up front."""
    for part in (path, *path.parents):
        try:
            os.stat(part)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BadInput(f"{flag} {path}: {part} is a symbolic link loop") from None
    if folder and path.is_symlink() and not path.exists():
        raise BadInput(f"{flag} {path} is a symbolic link to {os.readlink(path)}, which does not exist;"
                       " name a new folder")


def _writable_folder(path: Path, flag: str) -> None:
    """The nearest existing folder above `path` is a folder we may write in (missing ones are created)."""
    parent = path.parent.absolute()
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BadInput(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{flag} {path}: cannot write in {parent} (permission denied)")


def plan_outputs(out: str, count: int, overwrite: bool, inputs: list[Path]) -> OutputPlan:
    """Check `--out` before any work; raises BadInput naming the file and what is accepted."""
    given = Path(out).expanduser()
    if out.endswith(("/", os.sep)) and not given.is_dir():  # Path drops the slash: results/ → results.png
        raise BadInput(f"--out {out} names a folder; give a file name in it, e.g. {given / ('edit' + DEFAULT_SUFFIX)}")
    _refuse_broken_links(given, "--out")
    if given.is_dir():
        raise BadInput(f"--out {given} is a folder; give a file name, e.g. {given / ('edit' + DEFAULT_SUFFIX)}")
    if given.exists() and not given.is_file():  # /dev/full: not a place to write beside as full.png
        raise BadInput(f"--out {given} is not a regular file; choose another --out")
    paths = output_paths(given, count)
    suffix = paths[0].suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    mode = _writable_mode(fmt) if fmt in Image.SAVE else None
    if fmt is None or mode is None:
        raise BadInput(f"--out {out}: cannot write {suffix} pictures; use .png (or .webp, .tif, .jpg)")
    for path in paths:
        if any(_same_file(path, source) for source in inputs):
            raise BadInput(f"--out {path} is one of the input pictures; sine edit never replaces an input: "
                           "choose another --out")
        if path.is_dir():
            raise BadInput(f"--out {path} is a folder; give a file name, e.g. {path / ('edit' + DEFAULT_SUFFIX)}")
        if path.exists() and not path.is_file():  # a pipe or device: replacing it is never what was meant
            raise BadInput(f"--out {path} is not a regular file; choose another --out")
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise BadInput(f"--out {path} already exists; pass --overwrite to replace it, or choose another --out")
        _writable_folder(path, "--out")
    return OutputPlan(paths, fmt, mode, overwrite)


def write_image(image: Image.Image, path: Path, plan: OutputPlan) -> Path:
    """Encode `image` and write it to `path`: replaced atomically with --overwrite, else created exclusively
    (a file that appeared there during the edit is kept, and the result goes beside it). Returns the path.

    A write cut short (a full disk) removes what it wrote: no half picture at --out, no hidden temporary."""
    data = io.BytesIO()
    image.convert(plan.mode).save(data, format=plan.format)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if plan.overwrite:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                _write_whole(fd, data.getbuffer(), usual_mode=True)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return path
        candidate = path
        for n in range(2, 1000):
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
                continue
            try:
                _write_whole(fd, data.getbuffer())
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(candidate)  # ours: created exclusively a moment ago
                raise
            return candidate
        raise BadInput(f"cannot find a free name beside {path}")
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_whole(fd: int, data: memoryview, usual_mode: bool = False) -> None:
    """Write all of `data` to `fd`, synced, and close it; `usual_mode`: the mode a new file gets (0666 less
    the umask), not mkstemp's private 0600."""
    with os.fdopen(fd, "wb") as handle:
        if usual_mode and os.name == "posix":
            mask = os.umask(0)
            os.umask(mask)
            os.fchmod(handle.fileno(), 0o666 & ~mask)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def check_weights_folder(folder: str | None, flag: str) -> None:
    """`--weights`/`--style-weights`: a new or empty folder, or one holding a saved fine-tune (reused).

    A folder of the user's other files is refused: saving there could replace a file of the same name.
    """
    if folder is None:
        return
    path = Path(folder).expanduser()
    _refuse_broken_links(path, flag, folder=True)
    if path.exists() and not path.is_dir():
        raise BadInput(f"{flag} {path} is a file; name a folder (new or empty) for the fine-tuned weights")
    if path.is_dir():
        meta = path / FINETUNE_FILE
        if meta.exists():
            try:
                saved = json.loads(read_small_file(meta, SMALL_FILE_BYTES))  # a pipe there must not hold us
            except (OSError, ValueError, UnicodeDecodeError):
                saved = None
            if not (isinstance(saved, dict) and isinstance(saved.get("settings"), dict)):
                raise BadInput(f"{flag} {path}: {FINETUNE_FILE} there is not a saved sine fine-tune")
            return
        if any(path.iterdir()):
            raise BadInput(f"{flag} {path} holds other files and no saved fine-tune; name a new or empty folder "
                           "(sine never writes into a folder of yours)")
        return
    _writable_folder(path, flag)


def check_demo_folder(folder: str) -> None:
    """`sine demo --out`: a new or empty folder, or an earlier demo's (its summary.json lists its files).

    The demo writes fixed names (source.png, comparison.png, ...): in a folder of pictures it would
    replace the user's own source.png.
    """
    path = Path(folder).expanduser()
    _refuse_broken_links(path, "--out", folder=True)
    if path.exists() and not path.is_dir():
        raise BadInput(f"--out {path} is a file; the demo writes a folder of pictures: name a new folder")
    if not path.is_dir():
        _writable_folder(path, "--out")
        return
    try:
        summary = json.loads(read_small_file(path / "summary.json", SMALL_FILE_BYTES))
    except (OSError, ValueError, UnicodeDecodeError):
        summary = None
    earlier_demo = isinstance(summary, dict) and isinstance(summary.get("files"), list) and "asset" in summary
    if not earlier_demo and any(path.iterdir()):
        raise BadInput(f"--out {path} holds other files; the demo writes source.png, comparison.png and more "
                       "there: name a new or empty folder")


def discard_partial_demo(folder: Path) -> None:
    """After an interrupted or failed `sine demo` into a folder checked new or empty: remove what it wrote
    (only the demo's own file names), so the same command runs again instead of finding "other files"."""
    _discard(folder, [folder / "source.png", folder / "comparison.png", folder / "summary.json",
                      *folder.glob("*-sine.png")])


def save_finetune_whole(folder: Path, save: Callable[[Path], object]) -> None:
    """`save(work)` into a new folder beside `folder` (checked new or empty before the minutes of work), then
    move it into place only while `folder` is still missing or empty: what appeared there meanwhile (another
    run's fine-tune, a file of the user's) is never overwritten or mixed with this one (FileExistsError), and
    a failed save (a full disk) leaves no half-saved fine-tune to be reused. The temporary goes either way."""
    folder = folder.resolve() if folder.is_symlink() else folder  # a link to an empty folder: fill that folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = folder.parent / f".{folder.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    work.mkdir()  # the umask's mode, as the folder save() made before
    try:
        save(work)
        if folder.is_dir():
            os.chmod(work, stat.S_IMODE(folder.stat().st_mode))  # an empty folder the user made keeps its mode
        try:
            os.rename(work, folder)  # POSIX: over a missing or an empty folder only
        except OSError:
            if not (folder.is_dir() and not any(folder.iterdir())):
                raise FileExistsError(f"{folder} is no longer empty: files appeared in it during the fine-tune,"
                                      " and are left as they are") from None
            folder.rmdir()  # Windows renames over no folder, even an empty one
            os.rename(work, folder)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _discard(folder: Path, written: list[Path]) -> None:
    """Remove the files `written` into `folder`, then `folder` itself if nothing else is left in it."""
    for path in written:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:  # not empty (the user's file appeared meanwhile) or already gone
        pass
