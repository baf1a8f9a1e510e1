"""Copying the Krita and GIMP plugins (with a vendored sine_protocol) into every host found."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

from . import kritarc
from .changes import Changes, InstallError, sha256
from .layout import Layout

STEP = "plugins"
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")
GIMP_EXECUTABLE = "sine-gimp.py"


def _source_files(src: Path) -> list[Path]:
    files = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in SKIP_DIRS for part in rel.parts) or path.suffix in SKIP_SUFFIXES:
            continue
        if path.is_file():
            files.append(path)
    return files


def copy_tree(changes: Changes, src: Path, dst: Path, executables: frozenset[str] = frozenset()) -> int:
    """Mirror `src` into `dst` (files only, caches skipped); returns how many files changed."""
    n = 0
    for path in _source_files(src):
        executable = path.name in executables or bool(path.stat().st_mode & stat.S_IXUSR)
        n += changes.write_file(dst / path.relative_to(src), path.read_bytes(), 0o755 if executable else 0o644, STEP)
    return n


def _install_package(changes: Changes, src: Path, dst: Path, protocol: Path,
                     executables: frozenset[str] = frozenset()) -> int:
    if not dst.exists() or changes.owns_tree(dst):
        changes.own_tree(dst)
    n = copy_tree(changes, src, dst, executables)
    return n + copy_tree(changes, protocol, dst / "_vendor" / "sine_protocol")


def enable_in_kritarc(changes: Changes, path: Path) -> int:
    """Add `enable_sine_krita=true` to kritarc, recording how to take it out again."""
    key = str(path)
    existed = path.is_file()
    before = path.read_bytes() if existed else b""
    text = before.decode("utf-8", "surrogateescape")
    new_text, record = kritarc.enable(text)
    if record.get("unchanged"):
        return 0
    after = new_text.encode("utf-8", "surrogateescape")
    previous = changes.manifest["edits"].get(key)
    if previous is not None:  # keep how the file was before our *first* edit
        record = {k: previous[k] for k in ("added_section", "original_line", "created", "original")}
    else:
        record.update({"created": not existed, "original": base64.b64encode(before).decode("ascii")})
    record["written_sha256"] = sha256(after)
    record["kind"] = "kritarc"
    changes._did(f"enable the plugin in {path}")
    changes.ensure_dir(path.parent)
    if not changes.dry_run:
        path.write_bytes(after)
    changes.record_edit(key, record)
    return 1


def disable_in_kritarc(changes: Changes, path: Path, record: dict) -> None:
    """Restore kritarc exactly when Krita has not touched it since, else remove just our line."""
    if not path.is_file():
        return
    current = path.read_bytes()
    if sha256(current) == record.get("written_sha256"):
        restored = base64.b64decode(record["original"])
    else:
        restored = kritarc.disable(current.decode("utf-8", "surrogateescape"), record).encode("utf-8", "surrogateescape")
    if record.get("created") and not restored.strip():
        changes._did(f"remove {path} (the installer created it)")
        if not changes.dry_run:
            path.unlink()
    elif restored != current:
        changes._did(f"take the plugin out of {path}")
        if not changes.dry_run:
            path.write_bytes(restored)


def install_plugins(changes: Changes, layout: Layout, source_root: Path, force: bool) -> None:
    """Install both plugins wherever their host is configured (or in the default place with `force`)."""
    protocol = source_root / "shared" / "sine_protocol"
    krita_src = source_root / "plugin_krita"
    gimp_src = source_root / "plugin_gimp" / "sine-gimp"
    if not (protocol / "__init__.py").is_file():
        raise InstallError(f"sine_protocol not found in {protocol}",
                           "run the installer from a complete sine-edit checkout, or pass --source-root")
    have_krita = (krita_src / "sine_krita.desktop").is_file() and (krita_src / "sine_krita").is_dir()
    have_gimp = (gimp_src / GIMP_EXECUTABLE).is_file()
    if not (have_krita or have_gimp):
        raise InstallError(f"no plugin sources under {source_root}",
                           "run the installer from a complete sine-edit checkout, or pass --source-root")

    changes.say("==> Plugins")
    placed = 0
    if not have_krita:
        changes.say(f"  WARNING: the Krita plugin is missing from {krita_src}; skipping Krita")
    else:
        targets = [t for t in layout.krita_targets() if t.found()]
        if not targets and force:
            targets = layout.krita_targets()[:1]
        if not targets:
            changes.say("  Krita: not found (no Krita settings folder); start Krita once, then run again,"
                        " or pass --force-plugins")
        for target in targets:
            n = changes.write_file(target.pykrita / "sine_krita.desktop",
                                   (krita_src / "sine_krita.desktop").read_bytes(), 0o644, STEP)
            n += _install_package(changes, krita_src / "sine_krita", target.pykrita / "sine_krita", protocol)
            n += enable_in_kritarc(changes, target.kritarc)
            changes.say(f"  {target.label}: {target.pykrita} " + (f"({n} changes)" if n else "up to date"))
            placed += 1
    if not have_gimp:
        changes.say(f"  WARNING: the GIMP plug-in is missing from {gimp_src}; skipping GIMP")
    else:
        versions = [(root.label, v) for root in layout.gimp_roots() for v in root.versions()]
        if not versions and force:
            root = layout.gimp_roots()[0]
            versions = [(root.label, root.root / "3.0")]
        if not versions:
            changes.say("  GIMP: not found (no GIMP 3.x settings folder); start GIMP 3 once, then run again,"
                        " or pass --force-plugins")
        for label, version_dir in versions:
            dst = version_dir / "plug-ins" / "sine-gimp"
            n = _install_package(changes, gimp_src, dst, protocol, frozenset({GIMP_EXECUTABLE}))
            changes.say(f"  {label} {version_dir.name}: {dst} " + (f"({n} changes)" if n else "up to date"))
            placed += 1
    if have_krita and have_gimp:  # a plugin missing from the checkout is no reason to uninstall it
        changes.drop_stale(STEP)
    if placed:
        changes.say("  restart Krita / GIMP to load the plugin")
