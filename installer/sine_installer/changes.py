"""Every change the installer makes goes through `Changes`, which prints it, honours --dry-run and
remembers it in the manifest, so that `--uninstall` can undo exactly that and a second run can tell
"up to date" from "changed".
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MANIFEST_VERSION = 1
POSIX_MODES = os.name == "posix"  # Windows keeps only a read-only bit: comparing modes would never settle


class InstallError(Exception):
    """A failed step: `advice` tells the user what to do next."""

    def __init__(self, message: str, advice: str = "") -> None:
        super().__init__(message)
        self.advice = advice


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_manifest(path: Path) -> dict[str, Any]:
    """The previous install's record, or an empty one."""
    empty: dict[str, Any] = {"version": MANIFEST_VERSION, "files": {}, "dirs": [], "trees": [], "edits": {}, "state": {}}
    if not path.is_file():
        return empty
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InstallError(f"cannot read the install manifest {path}: {exc}",
                           "move it away and run the installer again") from exc
    for key, value in empty.items():
        data.setdefault(key, value)
    return data


class Changes:
    """Applies (or, in dry-run, only describes) file changes and records them in the manifest."""

    def __init__(self, manifest_path: Path, dry_run: bool = False, verbose: bool = True) -> None:
        self.manifest_path = manifest_path
        self.dry_run = dry_run
        self.verbose = verbose
        self.previous = load_manifest(manifest_path)
        self.manifest: dict[str, Any] = json.loads(json.dumps(self.previous))
        self.changed = 0
        self.written_this_run: set[str] = set()
        self._planned_dirs: set[str] = set()  # folders a dry run pretends to have created

    # --- output -----------------------------------------------------------------------------
    def say(self, message: str) -> None:
        print(message, flush=True)

    def _did(self, action: str) -> None:
        self.changed += 1
        if self.verbose:
            self.say(("    [dry-run] would " if self.dry_run else "    ") + action)

    # --- folders ----------------------------------------------------------------------------
    def ensure_dir(self, path: Path, mode: int | None = None) -> None:
        """Create `path` and missing parents, remembering each created one for the uninstaller;
        `mode` applies to `path` itself when this call creates it (e.g. 0700 for the config folder)."""
        missing: list[Path] = []
        p = path
        while not p.exists() and str(p) not in self._planned_dirs:
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        for d in reversed(missing):
            self._did(f"create folder {d}")
            if self.dry_run:
                self._planned_dirs.add(str(d))
            else:
                d.mkdir()
                if mode is not None and d == path:
                    os.chmod(d, mode)
            if str(d) not in self.manifest["dirs"]:
                self.manifest["dirs"].append(str(d))

    def own_tree(self, path: Path) -> None:
        """Mark a folder as wholly ours (venv, plugin folder we created): uninstall removes it whole."""
        if str(path) not in self.manifest["trees"]:
            self.manifest["trees"].append(str(path))

    def owns_tree(self, path: Path) -> bool:
        return str(path) in self.manifest["trees"]

    # --- files ------------------------------------------------------------------------------
    def write_file(self, path: Path, data: bytes, mode: int, step: str) -> bool:
        """Make `path` hold `data` with `mode`; keep the user's original bytes (if any) for uninstall."""
        key = str(path)
        self.written_this_run.add(key)
        entry = self.manifest["files"].get(key)
        if entry is not None and self.edited_since(path) and (path.is_symlink() or path.read_bytes() != data):
            self._keep_users_copy(path)
        exists = path.is_file()
        current = path.read_bytes() if exists else None
        if entry is None:
            entry = {"backup": None, "backup_mode": None}
            if current is not None:
                entry["backup"] = base64.b64encode(current).decode("ascii")
                entry["backup_mode"] = stat.S_IMODE(path.stat().st_mode)
        entry.update({"step": step, "sha256": sha256(data), "mode": mode})
        self.manifest["files"][key] = entry
        changed = False
        if current != data:
            self.ensure_dir(path.parent)
            self._did(("update " if exists else "write ") + key)
            changed = True
            if not self.dry_run:
                tmp = path.with_name(path.name + ".sine-tmp")
                tmp.write_bytes(data)
                os.chmod(tmp, mode)
                os.replace(tmp, path)
        elif POSIX_MODES and stat.S_IMODE(path.stat().st_mode) != mode:
            self._did(f"chmod {mode:o} {key}")
            changed = True
            if not self.dry_run:
                os.chmod(path, mode)
        return changed

    def edited_since(self, path: Path) -> bool:
        """The installer wrote `path` on an earlier run and it no longer holds those bytes: the user's edit."""
        entry = self.manifest["files"].get(str(path))
        if entry is None or not entry.get("sha256") or not (path.is_file() or path.is_symlink()):
            return False
        return path.is_symlink() or sha256(path.read_bytes()) != entry["sha256"]

    def _keep_users_copy(self, path: Path) -> None:
        """Move the user's edited `path` aside (NAME.edited, NAME.edited-2, ...) before the installer writes its own."""
        kept, n = path.with_name(path.name + ".edited"), 1
        while kept.exists() or kept.is_symlink():
            n += 1
            kept = path.with_name(f"{path.name}.edited-{n}")
        self._did(f"keep your edited {path} as {kept}")
        self.say(f"  {path} was changed since the install: your version is kept as {kept} "
                 "(copy your change back if you still want it)")
        if not self.dry_run:
            os.replace(path, kept)

    def drop_stale(self, step: str) -> None:
        """Undo files an earlier run of `step` wrote that this run did not (e.g. a file dropped upstream)."""
        for key, entry in list(self.manifest["files"].items()):
            if entry.get("step") == step and key not in self.written_this_run:
                self._undo_file(Path(key), entry)
                del self.manifest["files"][key]

    def _undo_file(self, path: Path, entry: dict[str, Any]) -> None:
        """Remove a file the installer wrote, or restore the user's original; a file that no longer holds what
        the installer wrote (the user edited config.json since) is the user's now: it stays, and is named."""
        if path.is_symlink() or (path.is_file() and entry.get("sha256")
                                 and sha256(path.read_bytes()) != entry["sha256"]):  # restoring would write through a link
            self.say(f"  kept {path}: changed since the install, so it is yours now (delete it if unwanted)")
            return
        if entry.get("backup") is not None:
            original = base64.b64decode(entry["backup"])
            if not path.is_file() or path.read_bytes() != original:
                self._did(f"restore the original {path}")
                if not self.dry_run:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(original)
            if not self.dry_run and path.is_file() and entry.get("backup_mode") is not None:
                os.chmod(path, entry["backup_mode"])
        elif path.is_file() or path.is_symlink():
            self._did(f"remove {path}")
            if not self.dry_run:
                path.unlink()

    # --- text edits of files the user owns (kritarc) ----------------------------------------
    def record_edit(self, key: str, record: dict[str, Any]) -> None:
        self.manifest["edits"][key] = record

    # --- commands ---------------------------------------------------------------------------
    def run(self, argv: Sequence[str], what: str, advice: str, env: dict[str, str] | None = None,
            check: bool = True) -> int:
        """Run a command (output passes through), or only show it in dry-run."""
        self.changed += 1
        shown = " ".join(_quote(a) for a in argv)
        if self.dry_run:
            self.say(f"    [dry-run] would run: {shown}")
            return 0
        self.say(f"    {what}: {shown}")
        try:
            rc = subprocess.call(list(argv), env=env)
        except OSError as exc:
            raise InstallError(f"{what} failed: {exc}", advice) from exc
        if rc != 0 and check:
            raise InstallError(f"{what} failed (exit code {rc})", advice)
        return rc

    # --- state ------------------------------------------------------------------------------
    def state(self, key: str) -> Any:
        return self.manifest["state"].get(key)

    def set_state(self, key: str, value: Any) -> None:
        self.manifest["state"][key] = value

    def save(self) -> None:
        """Write the manifest, but only when it differs: an unchanged re-run touches nothing."""
        if self.dry_run:
            return
        if self.manifest_path.is_file() and json.loads(self.manifest_path.read_text("utf-8")) == self.manifest:
            return
        self.ensure_dir(self.manifest_path.parent)
        self.manifest_path.write_text(json.dumps(self.manifest, indent=1, sort_keys=True) + "\n", "utf-8")

    # --- uninstall --------------------------------------------------------------------------
    def undo_files(self) -> None:
        for key, entry in sorted(self.manifest["files"].items()):
            self._undo_file(Path(key), entry)
        self.manifest["files"] = {}

    def trees_written(self) -> set[str]:
        """The folders wholly ours that the installer filled file by file (the plug-ins), not a tool (venv, models):
        once those files are undone, anything left in them (but the hosts' __pycache__) is the user's."""
        return {t for t in self.manifest["trees"] if any(k.startswith(t + os.sep) for k in self.manifest["files"])}

    def remove_trees(self, keep: Sequence[Path] = (), written: set[str] = frozenset()) -> None:
        kept = {str(k) for k in keep}
        for key in list(self.manifest["trees"]):
            if key in kept:
                continue
            path = Path(key)
            if key in written and path.is_dir() and not path.is_symlink() and (left := _users_files(path)):
                if not self.dry_run:
                    _remove_caches_and_empty_folders(path)
                self.say(f"  kept {path}: it holds {len(left)} file(s) the installer did not write ("
                         + ", ".join(str(p.relative_to(path)) for p in left[:3]) + (", ..." if len(left) > 3 else "") + ")")
                self.manifest["trees"].remove(key)
                continue
            if path.exists():
                self._did(f"remove folder {path} (and everything in it)")
                if not self.dry_run:
                    shutil.rmtree(path)
            self.manifest["trees"].remove(key)

    def remove_dirs(self) -> None:
        """Remove the folders the installer created, deepest first, when they are empty."""
        for key in sorted(self.manifest["dirs"], key=lambda k: k.count(os.sep), reverse=True):
            path = Path(key)
            if path.is_dir() and not any(path.iterdir()):
                self._did(f"remove empty folder {path}")
                if not self.dry_run:
                    path.rmdir()
                self.manifest["dirs"].remove(key)
            elif path.exists():
                if self.verbose:
                    self.say(f"    keep {path} (not empty)")
            else:
                self.manifest["dirs"].remove(key)


def _users_files(tree: Path) -> list[Path]:
    """Files under `tree` outside __pycache__ folders (what Python in Krita or GIMP compiles there)."""
    return sorted(p for p in tree.rglob("*") if not p.is_dir() and "__pycache__" not in p.relative_to(tree).parts)


def _remove_caches_and_empty_folders(tree: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        folder = Path(dirpath)
        if folder.name == "__pycache__" and not dirnames and all(n.endswith(".pyc") for n in filenames):
            shutil.rmtree(folder)
        elif folder != tree and not any(folder.iterdir()):
            folder.rmdir()


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or not arg) else arg
