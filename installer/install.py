#!/usr/bin/env python3
"""One-command set-up of sine-edit: venv + backend, model, Krita/GIMP plugins, daemon autostart.

Runs on a bare Python >= 3.10 (stdlib only). Every step says what it does; a failure says what to do
next. Run it again to upgrade in place; `--uninstall` removes exactly what it added (listed in
<data dir>/install-manifest.json); `--dry-run` only shows what it would do.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sine_installer import autostart, backend, plugins  # noqa: E402
from sine_installer.changes import Changes, InstallError  # noqa: E402
from sine_installer.layout import PLATFORMS, Layout, running_platform, user_home  # noqa: E402

STEPS = ("backend", "model", "plugins", "autostart")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="install.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_argument_group("where")
    where.add_argument("--home", type=Path, help="install into this home folder instead of yours "
                       "(ignores XDG_*/APPDATA variables; registers nothing with the session)")
    where.add_argument("--platform", choices=PLATFORMS, default=running_platform(),
                       help="folder layout to use (default: this OS)")
    where.add_argument("--prefix", type=Path, help="data folder for the venv, downloads and manifest (pass it again with --uninstall)")
    where.add_argument("--source-root", type=Path, default=HERE.parent, help="sine-edit checkout to install from")
    what = p.add_argument_group("what")
    what.add_argument("--only", choices=STEPS, help="run just this step")
    what.add_argument("--skip-backend", action="store_true", help="keep the venv as it is")
    what.add_argument("--torch", choices=("auto", "cpu", "cuda", "skip", "spec"), default="auto",
                      help="torch build: auto = CUDA when nvidia-smi sees a GPU, else CPU")
    what.add_argument("--torch-spec", help="pip requirement for torch (default torch==2.13.0)")
    what.add_argument("--torch-index-url", help="package index for torch (e.g. a PyTorch CUDA/CPU index)")
    model = what.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="ID_OR_FILE",
                       help="Hugging Face model id to download, or a .safetensors/.ckpt checkpoint file to use")
    model.add_argument("--model-dir", type=Path, metavar="PATH", help="use this local diffusers folder")
    model.add_argument("--no-model", action="store_true", help="leave the model setting alone")
    what.add_argument("--force-plugins", action="store_true",
                      help="install the plugins in the default place even if Krita/GIMP were not found")
    what.add_argument("--no-autostart", action="store_true", help="no login entry for the daemon")
    what.add_argument("--no-start", action="store_true", help="do not start the daemon now")
    what.add_argument("--force", action="store_true", help="reinstall the backend / refetch the model")
    how = p.add_argument_group("how")
    how.add_argument("--uninstall", action="store_true", help="remove what the installer added")
    how.add_argument("--purge-models", action="store_true", help="with --uninstall: also delete downloaded models")
    how.add_argument("--purge-data", action="store_true",
                     help="with --uninstall: also delete the daemon's token, weight cache and logs")
    how.add_argument("--dry-run", action="store_true", help="print every action, change nothing")
    return p


def selected_steps(args: argparse.Namespace) -> list[str]:
    if args.only:
        return [args.only]
    steps = list(STEPS)
    if args.skip_backend:
        steps.remove("backend")
    if args.no_model:
        steps.remove("model")
    return steps


def make_layout(args: argparse.Namespace) -> tuple[Layout, dict[str, str], bool]:
    """The layout, the environment for child processes and whether this is the user's real session."""
    if args.home is not None:
        home = args.home.expanduser().resolve()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "SINE_"))
               and k not in ("APPDATA", "LOCALAPPDATA")}
        env["HOME"] = str(home)
        layout_env: dict[str, str] = {}
    else:
        home = user_home()
        env = dict(os.environ)
        layout_env = env
    prefix = args.prefix.expanduser().resolve() if args.prefix else None
    real = args.home is None and args.platform == running_platform()
    return Layout(args.platform, home, layout_env, prefix), env, real


def install(args: argparse.Namespace, changes: Changes, layout: Layout, env: dict[str, str], real: bool) -> None:
    source = args.source_root.resolve()
    steps = selected_steps(args)
    if "backend" in steps:
        plan = backend.plan_torch(args.torch, args.torch_spec, args.torch_index_url, layout.platform)
        backend.install_backend(changes, layout, source, plan, args.force)
    if "model" in steps:
        backend.install_model(changes, layout, source, args.model, args.model_dir, args.force)
    if "plugins" in steps:
        plugins.install_plugins(changes, layout, source, args.force_plugins)
    if "autostart" in steps:
        backend.write_daemon_command(changes, layout)
        started = False
        if not args.no_autostart:
            started = autostart.install_autostart(changes, layout, real)
        if not args.no_start and not started:
            backend.start_daemon(changes, layout, env)


def uninstall(args: argparse.Namespace, changes: Changes, layout: Layout, real: bool) -> None:
    if not layout.manifest.is_file():
        changes.say(f"Nothing to uninstall: no manifest at {layout.manifest}")
        if args.purge_data:
            backend.stop_daemon(changes, layout)
            backend.purge_daemon_data(changes, layout)
        return
    changes.say("==> Uninstall")
    autostart.remove_autostart(changes, real)
    backend.stop_daemon(changes, layout)
    for key, record in sorted(changes.manifest["edits"].items()):
        plugins.disable_in_kritarc(changes, Path(key), record)
    changes.manifest["edits"] = {}
    written = changes.trees_written()
    changes.undo_files()
    keep = [] if args.purge_models else [layout.models_dir]
    changes.remove_trees(keep=keep, written=written)
    if args.purge_data:  # before the installer's empty folders go: the token's folder is one of them
        backend.purge_daemon_data(changes, layout)
    autostart.reload_systemd(changes, real)
    kept = changes.manifest["trees"]
    if kept:  # a smaller manifest remains, so that `--uninstall --purge-models` can still find them
        changes.manifest.update({"files": {}, "edits": {}, "state": {}})
        changes.save()
        changes.say(f"  kept downloaded models in {', '.join(kept)} (remove them with --uninstall --purge-models)")
    else:
        changes.changed += 1
        if changes.dry_run:
            changes.say(f"    [dry-run] would remove {layout.manifest}")
        else:
            layout.manifest.unlink()
    changes.remove_dirs()
    if kept:
        changes.save()
    if args.purge_data:
        changes.say("  your images were left alone")
    else:
        backend.say_daemon_data_kept(changes, layout)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # argparse's own message names no flag that was meant
        known = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
        matches = {word: difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6) for word in extras}
        hints = [f"{word}: did you mean {match[0]}?" for word, match in matches.items() if match]
        parser.error(f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(hints)})" if hints else ""))
    for flag in ("purge_models", "purge_data"):  # alone, the command would install everything instead
        if getattr(args, flag) and not args.uninstall:
            parser.error(f"--{flag.replace('_', '-')} only goes with --uninstall")
    if sys.version_info < (3, 10):  # noqa: UP036 - the wrappers may find an older python3
        print("sine-edit needs Python >= 3.10; install a newer Python and run this again", file=sys.stderr)
        return 1
    layout, env, real = make_layout(args)
    paths = backend.checkout_module(HERE.parent, "paths", under="shared/sine_protocol")  # the daemon's own rule
    problems = [paths.folder_setting_problem(name, layout.env) for name in paths.FOLDER_SETTINGS] if paths else []
    problem = next((p for p in problems if p), None)
    if problem:  # the daemon refuses it at start; daemon.json would land under this folder
        print(f"FAILED: {problem}", file=sys.stderr)
        return 1
    changes: Changes | None = None
    try:
        changes = Changes(layout.manifest, dry_run=args.dry_run)
        mode = "uninstall" if args.uninstall else "install"
        changes.say(f"sine-edit {mode} ({layout.platform}, home {layout.home}, data {layout.data_dir})"
                    + (" [dry run: nothing will change]" if args.dry_run else ""))
        if args.uninstall:
            uninstall(args, changes, layout, real)
        else:
            install(args, changes, layout, env, real)
            changes.save()
    except InstallError as exc:
        if changes is not None and not args.uninstall:
            changes.save()  # so that --uninstall can undo what was done before the failure
        print(f"FAILED: {exc}", file=sys.stderr)
        if exc.advice:
            print(f"  next: {exc.advice}", file=sys.stderr)
        return 1
    if changes.changed == 0:
        print("Everything is up to date.")
    elif args.dry_run:
        print(f"Dry run: {changes.changed} action(s) would be taken; nothing was changed.")
    else:
        print(f"Done: {changes.changed} change(s).")
    if not args.uninstall and not args.dry_run and layout.sine_command.exists():
        folder = layout.sine_command.parent
        shorter = f"add {folder} to PATH" if layout.platform == "windows" else f'export PATH="{folder}:$PATH"'
        print(f"the `sine` command: {layout.sine_command} (for a plain `sine`: {shorter})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
