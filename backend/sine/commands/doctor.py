"""`sine doctor`: one line per thing that must be right for an edit to work, so a user (or a bug
report) shows at a glance what is missing. Exit code 1 when any line is FAIL; a missing GPU is
only a warning because the CPU path works, just slowly."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..argparsing import user_path
from ..errors import printable
from ..preflight import float_in

OK, WARN, FAIL = "ok", "warn", "FAIL"
DEMO_MODEL = Path(__file__).resolve().parent.parent / "demo_model"


@dataclass
class Check:
    """One result line: status, what was checked, and what was found or what to do."""

    status: str
    name: str
    detail: str

    def line(self) -> str:
        """The detail escaped: a model's name may hold a newline or a terminal escape (a forged line)."""
        return f"{self.status:<4}  {self.name}: {printable(self.detail)}"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("doctor", help="check the installation (Python, torch, model, daemon, plugins)")
    p.add_argument("--timeout", type=float_in(0.0, 600.0, low_open=True), default=2.0,
                   help="seconds to wait for the daemon's pong (at most 600)")
    p.add_argument("--model", type=user_path, default=None,
                   help="check this model folder, checkpoint file or hub id instead of the configured one")
    return p


def run(args: argparse.Namespace) -> int:
    checks = collect(timeout=args.timeout, model=args.model)
    for check in checks:
        print(check.line(), flush=True)
    failed = [c for c in checks if c.status == FAIL]
    print(f"{len(failed)} problem(s) found" if failed else "all good")
    return 1 if failed else 0


def collect(timeout: float = 2.0, model: str | None = None) -> list[Check]:
    """Run every check; a crashing check becomes a FAIL line instead of a traceback. `model`: the
    model to check instead of the configured one."""
    checks: list[Check] = []
    steps: list[tuple[str, Callable[[], list[Check]]]] = [
        ("Python", lambda: [check_python()]),
        ("torch", lambda: [check_torch()]),
        ("settings", check_settings),
        ("model", lambda: [check_model(model)]),
        ("daemon", lambda: [check_daemon(timeout)]),
        ("token", lambda: [check_token()]),
        ("plugins", check_plugins),
        ("autostart", lambda: [check_autostart()]),
    ]
    for name, step in steps:
        try:
            checks += step()
        except Exception as exc:  # doctor must report, not crash
            checks.append(Check(FAIL, name, f"check crashed: {type(exc).__name__}: {exc}"))
    return checks


def check_python() -> Check:
    v = sys.version_info
    text = f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
    return Check(OK if v >= (3, 11) else FAIL, "Python", text if v >= (3, 11) else text + "; need 3.11 or newer")


def check_torch() -> Check:
    try:
        import torch
    except ImportError as exc:
        return Check(FAIL, "torch", f"not importable ({exc}); rerun the installer")
    version = torch.__version__
    if torch.cuda.is_available():
        return Check(OK, "torch", f"{version}, CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return Check(OK, "torch", f"{version}, Apple GPU (MPS)")
    gpu_driver = shutil.which("nvidia-smi") is not None
    hint = " (an NVIDIA driver is present: rerun the installer with --torch cuda)" if gpu_driver else ""
    return Check(WARN, "torch", f"{version}, CPU only: edits work but slowly{hint}")


SETTINGS = ("SINE_MODEL", "SINE_DEVICE", "SINE_DTYPE", "SINE_FT_DTYPE", "SINE_THREADS", "SINE_COMPILE", "SINE_LOADED_BUDGET",
            "SINE_CACHE_BUDGET", "SINE_ENDPOINT", "SINE_TRANSPORT", "SINE_CONFIG_DIR", "SINE_STATE_DIR",
            "SINE_CACHE_DIR", "SINE_RUNTIME_DIR")


def check_settings() -> list[Check]:
    """The SINE_* variables, as the daemon checks them at start and the clients read them: a value the daemon
    refuses (or a plug-in trips on) is a FAIL line naming it, each on its own line."""
    from sine_protocol.client import transport_setting_problem
    from sine_protocol.zmtp import parse_endpoint

    from ..cache import parse_size
    from .daemon import environment_problem, folder_problem

    problems = [p for p in (environment_problem(), folder_problem(None)) if p]
    for name, parse in (("SINE_CACHE_BUDGET", parse_size), ("SINE_ENDPOINT", parse_endpoint)):
        value = os.environ.get(name)
        try:
            if value:
                parse(value)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    transport_problem = transport_setting_problem(os.environ.get("SINE_TRANSPORT") or "auto")
    if transport_problem:
        problems.append(transport_problem)
    if problems:
        return [Check(FAIL, "settings", problem) for problem in problems]
    given = [f"{name}={os.environ[name]}" for name in SETTINGS if os.environ.get(name)]
    return [Check(OK, "settings", ", ".join(given) if given else "no SINE_* variable set (the defaults)")]


def _config() -> tuple[Path, dict]:
    from sine_protocol.paths import config_dir, read_small_file

    from .daemon import CONFIG_MAX_BYTES

    path = config_dir() / "config.json"
    if not path.is_file():
        return path, {}
    try:
        config = json.loads(read_small_file(path, CONFIG_MAX_BYTES))
    except OSError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(config, dict) or not isinstance(config.get("model", ""), str | None):
        raise ValueError('it must be an object whose "model" is a string')
    return path, config


def check_model(model: str | None = None) -> Check:
    """The model given (`sine doctor --model`), else the one the daemon loads: SINE_MODEL, else config.json's
    (the order of commands.daemon.default_model), named with where it came from."""
    given = model is not None
    origin, advice = "--model", ""
    if not given and os.environ.get("SINE_MODEL"):
        model, origin, advice = os.environ["SINE_MODEL"], "SINE_MODEL", "; fix SINE_MODEL or unset it"
    elif not given:
        try:
            path, config = _config()
        except ValueError as exc:
            return Check(FAIL, "model", f"config.json is not usable ({exc}); fix it or rerun the installer")
        origin, advice = str(path), "; rerun the installer"
        model = config.get("model")
    if not model or model == "demo":
        if (DEMO_MODEL / "model_index.json").is_file():
            return _model_kind(OK, f"bundled demo model {DEMO_MODEL}", None)
        return Check(FAIL, "model", f"no model configured and the bundled demo model is missing ({DEMO_MODEL});"
                     " rerun the installer with --model ID or --model-dir PATH")
    local = Path(model).expanduser()
    if local.is_dir() or local.is_file():
        return _model_kind(OK, f"{local}", local)
    from sine.preflight import CHECKPOINT_SUFFIXES, hub_id_cached

    if local.is_absolute() or model.startswith((".", "~")) or local.suffix.lower() in CHECKPOINT_SUFFIXES \
            or model.count("/") != 1:
        return Check(FAIL, "model", f"{model} (from {origin}) does not exist{advice}")
    if hub_id_cached(model):
        return _model_kind(OK, f"hub id {model} (in the local cache)", model)
    return Check(WARN, "model", f"hub id {model}: not in the local cache; fetch it once while online with "
                 f"`python3 installer/install.py --model {model}` (sine edit works offline)")


def _model_kind(status: str, where: str, model: Path | str | None) -> Check:
    """The model line with its kind read from its configs (SD1/SD2/SDXL, ε/v, size), or why it is unusable."""
    try:
        from sine.models import model_report

        kind, notes = model_report(model)
    except ImportError as exc:
        return Check(WARN, "model", f"{where} (kind unknown: {exc})")
    except Exception as exc:  # a broken or unsupported model: say so here, not at the first edit
        return Check(FAIL, "model", f"{where}: {exc}")
    if notes:
        return Check(WARN if status == OK else status, "model", f"{where} ({kind.describe()}); " + "; ".join(notes))
    return Check(status, "model", f"{where} ({kind.describe()})")


def check_daemon(timeout: float) -> Check:
    from sine_protocol.paths import default_endpoint, read_token

    endpoint = default_endpoint()
    advice = "start it with `sine daemon` (the installer's autostart entry does so at login)"
    try:
        from sine_protocol.client import SineClient
        from sine_protocol.errors import DaemonUnavailable
        from sine_protocol.listener import check_listener
    except ImportError as exc:
        return Check(FAIL, "daemon", f"sine_protocol client not importable ({exc})")
    try:  # a ping would only say "no answer"
        check_listener(endpoint)
    except DaemonUnavailable as exc:
        return Check(FAIL, "daemon", str(exc))
    client = SineClient(endpoint=endpoint, token=read_token(), timeout=timeout)
    try:
        answered = client.ping(timeout=timeout)
    except Exception as exc:  # any failure means "not reachable"
        return Check(FAIL, "daemon", f"not reachable at {endpoint} ({type(exc).__name__}: {exc}); {advice}")
    finally:
        client.close()
    if answered:
        return Check(OK, "daemon", f"answers at {endpoint}")
    return Check(FAIL, "daemon", f"no answer at {endpoint} within {timeout:g} s; {advice}")


def check_token() -> Check:
    from sine_protocol.paths import token_file

    path = token_file()
    if not path.is_file():
        return Check(FAIL, "token", f"{path} missing: the daemon writes it at its first start; start the daemon")
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != 0o600:
            return Check(FAIL, "token", f"{path} has mode {mode:o}, must be 600; run `chmod 600 {path}`")
    return Check(OK, "token", f"{path} (mode 600)" if os.name == "posix" else str(path))


# --- host applications: the same folders installer/sine_installer/layout.py writes to -----------------

def _env_dir(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value) if value else default


def _dirs() -> dict[str, Path]:
    home = Path.home()
    return {
        "config": _env_dir("XDG_CONFIG_HOME", home / ".config"),
        "data": _env_dir("XDG_DATA_HOME", home / ".local" / "share"),
        "appdata": _env_dir("APPDATA", home / "AppData" / "Roaming"),
        "local": _env_dir("LOCALAPPDATA", home / "AppData" / "Local"),
        "support": home / "Library" / "Application Support",
        "home": home,
    }


def krita_locations() -> list[tuple[str, Path, Path]]:
    """(label, Krita data folder, kritarc) for this OS."""
    d = _dirs()
    if sys.platform == "win32":
        return [("Krita", d["appdata"] / "krita", d["local"] / "kritarc")]
    if sys.platform == "darwin":
        return [("Krita", d["support"] / "krita", d["home"] / "Library" / "Preferences" / "kritarc")]
    flat = d["home"] / ".var" / "app" / "org.kde.krita"
    return [("Krita", d["data"] / "krita", d["config"] / "kritarc"),
            ("Krita (Flatpak)", flat / "data" / "krita", flat / "config" / "kritarc")]


def gimp_locations() -> list[tuple[str, Path]]:
    """(label, folder holding GIMP's 3.x config folders) for this OS."""
    d = _dirs()
    if sys.platform == "win32":
        return [("GIMP", d["appdata"] / "GIMP")]
    if sys.platform == "darwin":
        return [("GIMP", d["support"] / "GIMP")]
    return [("GIMP", d["config"] / "GIMP"),
            ("GIMP (Flatpak)", d["home"] / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP")]


def _kritarc_enabled(path: Path) -> bool:
    section = ""
    try:
        lines = path.read_text("utf-8", "replace").splitlines()
    except OSError:
        return False
    for line in lines:
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s
        elif section == "[python]" and s.replace(" ", "") == "enable_sine_krita=true":
            return True
    return False


def check_plugins() -> list[Check]:
    """Per host found: is the plugin there (and enabled)? A host that is not installed is a warning."""
    fix = "run `python3 installer/install.py --only plugins`"
    checks: list[Check] = []
    krita_found = False
    for label, data, kritarc in krita_locations():
        if not (data.exists() or kritarc.exists()):
            continue
        krita_found = True
        pykrita = data / "pykrita"
        if not (pykrita / "sine_krita.desktop").is_file() or not (pykrita / "sine_krita" / "__init__.py").is_file():
            checks.append(Check(FAIL, f"{label} plugin", f"not installed in {pykrita}; {fix}"))
        elif not _kritarc_enabled(kritarc):
            checks.append(Check(FAIL, f"{label} plugin", f"installed but not enabled in {kritarc}; {fix}"
                                " or tick it in Settings > Configure Krita > Python Plugin Manager"))
        else:
            checks.append(Check(OK, f"{label} plugin", f"{pykrita / 'sine_krita'} (enabled)"))
    if not krita_found:
        checks.append(Check(WARN, "Krita plugin", "Krita not found (no settings folder); start Krita once, then install"))
    gimp_found = False
    for label, root in gimp_locations():
        versions = sorted(p for p in root.glob("3.*") if p.is_dir()) if root.is_dir() else []
        for version in versions:
            gimp_found = True
            script = version / "plug-ins" / "sine-gimp" / "sine-gimp.py"
            name = f"{label} {version.name} plug-in"
            if not script.is_file():
                checks.append(Check(FAIL, name, f"not installed in {script.parent.parent}; {fix}"))
            elif os.name == "posix" and not os.access(script, os.X_OK):
                checks.append(Check(FAIL, name, f"{script} is not executable; run `chmod +x {script}`"))
            else:
                checks.append(Check(OK, name, str(script.parent)))
    if not gimp_found:
        checks.append(Check(WARN, "GIMP plug-in", "GIMP 3 not found (no 3.x settings folder); start GIMP once, then install"))
    return checks


def check_autostart() -> Check:
    """The login entry is a convenience (plugins can start the daemon), so its absence only warns."""
    from sine_protocol.errors import DaemonNotInstalled
    from sine_protocol.launch import read_daemon_command
    from sine_protocol.paths import daemon_command_file

    d = _dirs()
    if sys.platform == "win32":
        entries = [d["appdata"] / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup" / "sine-daemon.vbs"]
    elif sys.platform == "darwin":
        entries = [d["home"] / "Library" / "LaunchAgents" / "org.sine-edit.daemon.plist"]
    else:
        entries = [d["config"] / "systemd" / "user" / "sine-daemon.service", d["config"] / "autostart" / "sine-daemon.desktop"]
    found = [e for e in entries if e.is_file()]
    on_demand = daemon_command_file()
    if not os.path.lexists(on_demand):
        extra = f"; {on_demand} missing too, so plugins cannot start the daemon: rerun the installer"
        return Check(WARN if found else FAIL, "autostart", (", ".join(map(str, found)) if found else "no login entry")
                     + extra)
    try:  # as the plug-ins read it: a file there that they cannot use starts no daemon either
        read_daemon_command(on_demand)
    except DaemonNotInstalled as exc:
        return Check(WARN if found else FAIL, "autostart", (", ".join(map(str, found)) if found else "no login entry")
                     + f"; the plugins cannot start the daemon: {exc}")
    if found:
        return Check(OK, "autostart", ", ".join(map(str, found)))
    return Check(WARN, "autostart", f"no login entry (plugins start the daemon on demand via {on_demand})")
