"""The Python side: a private venv, torch (CUDA build when an NVIDIA GPU is present), the sine
backend from this checkout, the model, the daemon command file and starting the daemon."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .changes import Changes, InstallError
from .layout import APP, Layout

DEFAULT_TORCH_SPEC = "torch==2.13.0"
WINDOWS_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
DEFAULT_PORT = 47633
BACKEND_MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class TorchPlan:
    """What to pip-install for torch; `spec` None means "leave it to the backend's dependencies"."""

    flavour: str
    spec: str | None
    pip_args: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.spec is None:
            return "torch: not installed separately (--torch skip)"
        extra = f" from {self.pip_args[-1]}" if self.pip_args else ""
        return f"torch: {self.flavour} build, {self.spec}{extra}"


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver that lists at least one GPU means the CUDA build of torch is worth its size."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def plan_torch(choice: str, spec: str | None, index_url: str | None, platform: str,
               gpu: bool | None = None) -> TorchPlan:
    """Turn --torch/--torch-spec/--torch-index-url into one pip request."""
    if choice == "skip":
        return TorchPlan("skip", None)
    if choice == "spec":
        if not spec:
            raise InstallError("--torch spec needs --torch-spec", "e.g. --torch spec --torch-spec 'torch==2.13.0'")
        return TorchPlan("custom", spec, ("--index-url", index_url) if index_url else ())
    flavour = choice
    if choice == "auto":
        flavour = "cuda" if (nvidia_gpu_present() if gpu is None else gpu) else "cpu"
    if flavour == "cuda" and platform == "macos":
        raise InstallError("there is no CUDA build of torch for macOS", "use --torch cpu (Apple GPUs work through it)")
    if flavour == "cuda" and platform == "windows" and not index_url:
        index_url = WINDOWS_CUDA_INDEX  # PyPI's Windows wheels are CPU-only
    return TorchPlan(flavour, spec or DEFAULT_TORCH_SPEC, ("--index-url", index_url) if index_url else ())


def source_fingerprint(source_root: Path, plan: TorchPlan) -> str:
    """Hash of what `pip install <repo>` would install: unchanged hash = nothing to upgrade."""
    h = hashlib.sha256(repr((plan.spec, plan.pip_args)).encode())
    paths = [source_root / "pyproject.toml"]
    for folder in ("backend", "shared"):
        paths += sorted(p for p in (source_root / folder).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p))
    for p in paths:
        if p.is_file():
            h.update(str(p.relative_to(source_root)).encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def install_backend(changes: Changes, layout: Layout, source_root: Path, plan: TorchPlan, force: bool) -> None:
    """Create the venv if needed and (re)install torch and the backend when the sources changed."""
    changes.say("==> Backend")
    if sys.version_info < BACKEND_MIN_PYTHON:
        raise InstallError(f"the backend needs Python >= 3.11, this is {sys.version.split()[0]}",
                           "install Python 3.11+ and run the installer with it (or use --skip-backend)")
    if not (source_root / "pyproject.toml").is_file():
        raise InstallError(f"no pyproject.toml in {source_root}", "run from a complete checkout or pass --source-root")
    if not layout.venv_dir.exists():
        changes.ensure_dir(layout.data_dir)
        changes.run([sys.executable, "-m", "venv", str(layout.venv_dir)], "create the venv",
                    "check that Python's venv module is installed (Debian/Ubuntu: apt install python3-venv)")
    changes.own_tree(layout.venv_dir)
    fingerprint = source_fingerprint(source_root, plan)
    if not force and changes.state("backend_fingerprint") == fingerprint and layout.venv_python.exists():
        changes.say(f"  venv {layout.venv_dir}: up to date")
        return
    pip = [str(layout.venv_python), "-m", "pip", "install"]
    changes.say("  " + plan.describe())
    if plan.spec is not None:
        changes.run([*pip, plan.spec, *plan.pip_args], "install torch",
                    "check the network / the spec, or choose another build with --torch cpu|cuda|spec")
    changes.run([*pip, "--upgrade", str(source_root)], "install the backend",
                "read pip's message above; rerun with --torch skip if torch is already fine")
    changes.set_state("backend_fingerprint", fingerprint)


def _venv_output(layout: Layout, code: str, *args: str) -> str:
    out = subprocess.run([str(layout.venv_python), "-c", code, *args], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise InstallError("the venv's Python failed (see above)", "rerun the installer without --skip-backend")
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def demo_model_path(layout: Layout, source_root: Path) -> Path | None:
    """The bundled demo model: the installed copy in the venv, else the checkout's."""
    if layout.venv_python.exists():
        try:
            found = Path(_venv_output(layout, "import pathlib, sine; print(pathlib.Path(sine.__file__).parent / 'demo_model')"))
            if found.is_dir():
                return found
        except InstallError:
            pass
    local = source_root / "backend" / "sine" / "demo_model"
    return local if local.is_dir() else None


SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")  # as sine.checkpoints accepts them


def checkpoint_problem(source_root: Path, checkpoint: Path) -> str | None:
    """What `sine edit`'s instant check says of a checkpoint file that is not a model (a LoRA, a Git
    LFS pointer...), read with the backend's own standard-library module from the checkout (the venv
    may not exist yet); None when it may be a model or the checkout lacks the module."""
    module = checkout_module(source_root, "checkpoint_contents")
    return None if module is None else module.file_problem(checkpoint)


def checkout_module(source_root: Path, name: str, under: str = "backend/sine") -> Any:
    """UNDER/NAME.py of the checkout (backend/sine/NAME.py unless said), a standard-library-only module,
    loaded without the venv (None when the checkout lacks it)."""
    import importlib.util

    module_file = source_root / under / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"sine_{name}", module_file)
    if not module_file.is_file() or spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install_model(changes: Changes, layout: Layout, source_root: Path, model_id: str | None,
                  model_dir: Path | None, force: bool) -> None:
    """Decide the daemon's model and record it as config.json {"model": <local folder>}."""
    changes.say("==> Model")
    record: dict[str, str] = {}
    if model_id is not None and Path(model_id).expanduser().is_dir():  # a folder on disk, as `sine edit --model` reads it
        model_dir, model_id = Path(model_id), None
        hub = checkout_module(source_root, "hub")  # a hub cache folder models--owner--name: its snapshot
        folder = hub.cache_snapshot(model_dir.expanduser()) if hub else model_dir.expanduser()
        if not (folder / "unet").is_dir():
            contents = checkout_module(source_root, "checkpoint_contents")  # what `sine edit` says of it
            why = ((hub and hub.several_snapshots(folder.resolve())) or  # a hub cache copied without refs/
                   (contents.not_a_model_folder(folder.resolve()) if contents else
                    f"{folder.resolve()} is not a diffusers Stable Diffusion folder (no unet/ inside)"))
            raise InstallError(f"--model {why}", "pass the model folder (with unet/, vae/, text_encoder/...), a "
                               ".safetensors checkpoint or a hub id")
    if model_dir is not None:
        model_dir = model_dir.expanduser().resolve()
        if not model_dir.is_dir():
            raise InstallError(f"--model-dir {model_dir} is not a folder", "pass a diffusers model folder")
        if not (model_dir / "model_index.json").is_file():
            changes.say(f"  WARNING: {model_dir} has no model_index.json; is it a diffusers folder?")
        record["model"] = str(model_dir)
        changes.say(f"  local model folder {model_dir}")
    elif model_id is not None and Path(model_id).suffix.lower() in SINGLE_FILE_SUFFIXES:
        checkpoint = Path(model_id).expanduser().resolve()
        if not checkpoint.is_file():
            raise InstallError(f"--model {checkpoint} does not exist",
                               "pass the .safetensors/.ckpt file you downloaded, or a hub id")
        if (why := checkpoint_problem(source_root, checkpoint)) is not None:
            raise InstallError(why, "pass a whole Stable Diffusion checkpoint (README: Models you can use)")
        record["model"] = str(checkpoint)  # loaded offline with the configs shipped in sine/model_configs
        changes.say(f"  single-file checkpoint {checkpoint}")
    elif model_id is not None and Path(model_id).expanduser().is_file():  # a file, not a checkpoint's suffix
        raise InstallError(f"--model {Path(model_id).expanduser().resolve()} is not a checkpoint file "
                           f"({', '.join(SINGLE_FILE_SUFFIXES)})", "pass the model's .safetensors file (rename "
                           "ComfyUI's .sft to .safetensors), its diffusers folder or a hub id")
    elif model_id is not None:
        previous = changes.state("model_download") or {}
        if not force and previous.get("id") == model_id and Path(previous.get("path", "")).is_dir():
            changes.say(f"  {model_id}: up to date in {previous['path']}")
            path = previous["path"]
        else:
            if not layout.venv_python.exists() and not changes.dry_run:
                raise InstallError("downloading a model needs the backend's venv", "rerun without --skip-backend")
            if not layout.models_dir.exists() or changes.owns_tree(layout.models_dir):
                changes.own_tree(layout.models_dir)
            changes.ensure_dir(layout.models_dir)
            code = ("import sys; from sine.hub import download; "  # the loader's files, not the whole repository
                    "print(download(sys.argv[1], cache_dir=sys.argv[2]))")
            changes.changed += 1
            if changes.dry_run:
                changes.say(f"    [dry-run] would download {model_id} into {layout.models_dir}")
                path = str(layout.models_dir / model_id)
            else:
                changes.say(f"    downloading {model_id} into {layout.models_dir} (may take a while)")
                path = _venv_output(layout, code, model_id, str(layout.models_dir))
                changes.set_state("model_download", {"id": model_id, "path": path})
        record = {"model": path, "model_id": model_id}
    elif (users := _users_model(changes, layout)) is not None:
        changes.say(f"  keeping the model you set in {layout.config_file}: {users} (pass --model to change it)")
        return
    else:
        demo = demo_model_path(layout, source_root)
        if demo is None:
            changes.say("  WARNING: the bundled demo model is missing from this checkout; "
                        "pass --model ID or --model-dir PATH")
            return
        record["model"] = str(demo)
        changes.say(f"  bundled demo model {demo}")
    config: dict = {}
    if layout.config_file.is_file():
        try:
            config = json.loads(layout.config_file.read_text("utf-8"))
        except ValueError as exc:
            raise InstallError(f"{layout.config_file} is not valid JSON: {exc}", "fix or delete it, then rerun") from exc
    config.pop("model_id", None)
    config.update(record)
    changes.ensure_dir(layout.config_dir, 0o700)
    changes.write_file(layout.config_file, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(), 0o644, "model")


def _users_model(changes: Changes, layout: Layout) -> str | None:
    """The "model" the user wrote into config.json after the installer last did (README: how to change it)."""
    if not changes.edited_since(layout.config_file) or layout.config_file.is_symlink():
        return None
    try:
        model = json.loads(layout.config_file.read_text("utf-8")).get("model")
    except (OSError, ValueError, AttributeError):
        return None
    return model if isinstance(model, str) and model else None


def write_daemon_command(changes: Changes, layout: Layout) -> None:
    """daemon.json tells the plugins how to start the daemon on demand."""
    changes.say("==> Daemon command")
    if not layout.venv_python.exists():
        changes.say(f"  WARNING: {layout.venv_python} does not exist yet (backend not installed)")
    changes.ensure_dir(layout.config_dir, 0o700)
    data = json.dumps({"argv": layout.daemon_argv()}, indent=2) + "\n"
    if not changes.write_file(layout.daemon_command_file, data.encode(), 0o644, "daemon"):
        changes.say(f"  {layout.daemon_command_file}: up to date")
    changes.drop_stale("daemon")


def daemon_port(env: dict[str, str]) -> tuple[str, int]:
    endpoint = env.get("SINE_ENDPOINT", "")
    if endpoint.startswith("tcp://") and ":" in endpoint[6:]:
        host, _, port = endpoint[6:].rpartition(":")
        if port.isdigit():
            return host, int(port)
    return "127.0.0.1", DEFAULT_PORT


def daemon_listening(env: dict[str, str]) -> bool:
    host, port = daemon_port(env)
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def start_daemon(changes: Changes, layout: Layout, env: dict[str, str]) -> None:
    """Start the daemon now, detached, unless one already listens."""
    changes.say("==> Starting the daemon")
    if not layout.venv_python.exists():
        changes.say("  skipped: the backend is not installed")
        return
    if daemon_listening(env):
        changes.say("  a daemon is already running (restart it to use an upgraded backend)")
        return
    argv = layout.daemon_argv()
    if changes.dry_run:
        changes.say("    [dry-run] would start: " + " ".join(argv))
        return
    kwargs: dict = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
                    "env": env, "close_fds": True}
    if os.name == "nt":
        kwargs["creationflags"] = 0x00000008 | 0x08000000  # DETACHED_PROCESS | CREATE_NO_WINDOW
    else:
        kwargs["start_new_session"] = True
    proc = subprocess.Popen(argv, **kwargs)
    changes.say(f"  started (pid {proc.pid}); `sine doctor` checks that it answers")


def _daemon_pids(layout: Layout) -> list[int]:
    """Processes running this install's venv as `... daemon`: the one the installer or autostart started.

    Read from /proc (Linux) or `ps` (macOS); the first word must be the venv's own python or `sine`,
    so a daemon of another install or a checkout is never matched."""
    ours = {str(layout.venv_python), str(layout.venv_dir / "bin" / "sine")}
    found = []
    proc_root = Path("/proc")
    if proc_root.is_dir():
        for entry in proc_root.iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if argv and argv[0] in ours and "daemon" in argv[1:]:
                found.append(int(entry.name))
    elif os.name == "posix":
        try:
            listing = subprocess.run(["ps", "-axo", "pid=,args="], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        for line in listing.splitlines():
            pid, _, args = line.strip().partition(" ")
            if pid.isdigit() and any(args.startswith(p + " ") for p in ours) and " daemon" in args:
                found.append(int(pid))
    return sorted(found)


def stop_daemon(changes: Changes, layout: Layout) -> None:
    """Before the venv goes: stop the daemon running from it (SIGTERM: it finishes or drops its job and
    removes its lock), so nothing of the install keeps running or holding the port."""
    import signal
    import time

    for pid in _daemon_pids(layout):
        if changes.dry_run:
            changes.say(f"    [dry-run] would stop the daemon (pid {pid})")
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and pid in _daemon_pids(layout):
            time.sleep(0.1)
        changes.changed += 1
        if pid in _daemon_pids(layout):
            changes.say(f"  the daemon (pid {pid}) did not stop within 15 s; stop it yourself (kill {pid})")
        else:
            changes.say(f"    stopped the daemon (pid {pid})")


def daemon_data(layout: Layout) -> list[tuple[str, Path]]:
    """What the daemon made (not the installer): token, weight cache, logs and locks, that exist."""
    found = [("token", layout.config_dir / "token"), ("weight cache", layout.cache_dir), ("logs", layout.state_dir)]
    return [(what, path) for what, path in found if path.exists()]


def say_daemon_data_kept(changes: Changes, layout: Layout) -> None:
    kept = daemon_data(layout)
    if kept:
        changes.say("  kept your images and what the daemon made: " + ", ".join(f"{w} {p}" for w, p in kept)
                    + " (remove them with --uninstall --purge-data)")
    else:
        changes.say("  your images were left alone")


# What the daemon and the plug-ins write in the state folder (sine.daemon.logging_setup, lockfile, sine.estimate,
# sine_protocol.launch and paths.runtime_dir): the log and its rotations (.1 ...), the launch log, lock files, the
# step-time calibration and its temporary, and run/ (the ipc socket and its lock). tests/installer/
# test_purge_names.py has the backend make each of them and checks that these names cover them.
STATE_NAMES = re.compile(r"^(daemon\.log(\.\d+)?|daemon-launch\.log|daemon-.+\.lock|calibration\.json"
                         r"|\.calibration\.json\.\d+(\.\d+)?\.tmp)$")
RUN_NAMES = ("daemon.sock", "daemon.sock.lock")
_LAUNCH_LINE = re.compile(rb"--- \d{4}-\d\d-\d\d \d\d:\d\d:\d\d starting: ")  # sine_protocol.launch's first line
_LOG_LINE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ sine[. ]")  # logging_setup's line format


def _head(path: Path, size: int = 64) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return None


def _is_calibration(path: Path) -> bool:
    """calibration.json as sine.estimate writes it (an object of entries, each with "measured"), not the user's."""
    try:
        entries = json.loads(path.read_bytes()) if path.stat().st_size < (1 << 20) else None
    except (OSError, ValueError):
        return False
    return isinstance(entries, dict) and all(isinstance(v, dict) and "measured" in v for v in entries.values())


def _is_the_daemons(path: Path) -> bool:
    """Whether a file with one of the daemon's names holds what the daemon writes there: a log that starts with
    one of its lines (or is empty), a lock holding its pid, its calibration. A user's file of that name stays."""
    name = path.name
    if name == "calibration.json":
        return _is_calibration(path)
    if name.startswith("daemon.log"):
        head = _head(path)
        return head is not None and (head == b"" or bool(_LOG_LINE.match(head)))
    if name.endswith(".lock"):
        head = _head(path, 4096)
        return head is not None and (head == b"" or head.startswith(b"\n{") and b'"pid"' in head)
    if name == "daemon-launch.log":  # sine_protocol.launch starts it with its own line
        head = _head(path)
        return head is not None and (head == b"" or bool(_LAUNCH_LINE.match(head)))
    return True  # temporaries


def _daemon_names(folder: Path) -> list[Path]:
    """The entries of the state folder `folder` that the daemon or the plug-ins made, by name and content."""
    own = APP in folder.parts  # sine-edit's own state folder: by name, as logging_setup decides too
    names = [p for p in folder.iterdir() if STATE_NAMES.match(p.name) and p.is_file() and not p.is_symlink()
             and (own or _is_the_daemons(p))]
    run = folder / "run"
    if run.is_dir() and not run.is_symlink() and all(p.name in RUN_NAMES for p in run.iterdir()):
        names.append(run)
    return names


# What sine.cache writes in its folder (the installer runs without the backend, so it cannot import them): the
# mark and its temporary, the model-hash memo (sine.checkpoints) and its temporary, .tmp/ (entries being built),
# and shard folders <key[:2]>/ holding only entries <key>/ or entries being deleted.
CACHE_MARK = ".sine-cache"
_CACHE_FILES = re.compile(r"^(\.\.sine-cache\.\d+\.\d+\.tmp|model_hashes\.json|\.model_hashes\.json\.\d+(\.\d+)?\.tmp)$")
_CACHE_SHARD = re.compile(r"^[0-9a-f]{2}$")
_CACHE_ENTRY = re.compile(r"^([0-9a-f]{64}|\.del-[0-9a-f]{64}-\d+-\d+)$")


def _cache_names(folder: Path) -> list[Path]:
    """The entries of the weight-cache folder `folder` that the cache made, by name."""
    names = []
    for p in folder.iterdir():
        if p.is_symlink():
            continue
        if (p.name == CACHE_MARK or _CACHE_FILES.match(p.name)) and p.is_file():
            names.append(p)
        elif p.name == ".tmp" and p.is_dir():
            names.append(p)
        elif _CACHE_SHARD.match(p.name) and p.is_dir() \
                and all(_CACHE_ENTRY.match(e.name) and e.is_dir() and not e.is_symlink() for e in p.iterdir()):
            names.append(p)
    return names


def _not_the_daemons(folder: Path, names: list[Path]) -> list[Path]:
    ours = set(names)
    return [p for p in folder.iterdir() if p not in ours]


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _purge_names(changes: Changes, names: list[Path]) -> None:
    for path in names:
        changes._did(f"remove {path}")
        if not changes.dry_run:
            _remove(path)


def purge_daemon_data(changes: Changes, layout: Layout) -> None:
    """`--uninstall --purge-data`: the token, the weight cache (only a folder the cache marked as its own)
    and the state folder; then their parent when that is left empty and is sine-edit's own config or data folder
    (Windows) or an XDG base folder the daemon created (~/.cache, ~/.local/state)."""
    for what, path in daemon_data(layout):
        if path.is_dir() and what == "weight cache" and any(path.iterdir()) \
                and not (path / CACHE_MARK).exists():
            changes.say(f"  kept {path}: not marked as sine-edit's cache (.sine-cache), so not removed")
            continue
        names = {"logs": _daemon_names, "weight cache": _cache_names}.get(what)
        if names is not None and path.is_dir() and (others := _not_the_daemons(path, ours := names(path))):
            # a folder the user named (SINE_STATE_DIR, SINE_CACHE_DIR: one they made empty and the cache
            # adopted) holds their files too: only the daemon's own names go
            _purge_names(changes, ours)
            changes.say(f"  kept {path} and the {len(others)} file(s) in it that the daemon did not make")
            continue
        changes._did(f"remove {what} {path}" + (" (and everything in it)" if path.is_dir() else ""))
        if changes.dry_run:
            continue
        _remove(path)
        if path.parent in (layout.config_dir, layout.data_dir, layout.home / ".cache", layout.home / ".local" / "state"):
            try:
                path.parent.rmdir()  # only when empty
            except OSError:
                pass
