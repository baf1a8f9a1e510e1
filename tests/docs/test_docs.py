"""The documentation stays usable by someone who only has the repository.

Every link and image in the README and docs/ resolves to a file of the repository (or, for an
anchor, to a heading of that file); only public http(s) addresses may leave the repository; the
README stays short and starts with the two commands, which must stay runnable as written.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README_MAX_LINES = 160
FIRST_COMMANDS = (
    "python3 installer/install.py && ~/.local/share/sine-edit/venv/bin/sine demo --out demo-out",
    "bash scripts/test.sh",
)
# Places outside the repository that earlier docs and comments pointed at.
OUTSIDE = ("../shared/", "/work/shared", "DESIGN.md", "docs/architecture.md")

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_HTML_LINK = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.I)


def doc_files() -> list[Path]:
    """The README, every page under docs/, and the READMEs of the parts."""
    files = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    files += [p for p in (REPO / "installer" / "README.md", REPO / "plugin_krita" / "README.md",
                          REPO / "plugin_gimp" / "README.md") if p.exists()]
    return files


def links(text: str) -> list[str]:
    """Targets of the Markdown (inline, reference, image) and HTML links, code left out."""
    prose = _CODE_SPAN.sub("", _FENCE.sub("", text))
    found = [m.group(1) for m in _INLINE_LINK.finditer(prose)]
    found += [m.group(1) for m in _REF_LINK.finditer(prose)]
    found += [m.group(1) for m in _HTML_LINK.finditer(prose)]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def link_problems(page: Path, text: str) -> list[str]:
    """Why each bad link of `page` (whose content is `text`) is bad; empty when all are fine."""
    problems = []
    for target in links(text):
        if re.match(r"https?://", target):
            if re.match(r"https?://(localhost|127\.|0\.0\.0\.0|\[::1\])", target):
                problems.append(f"{target}: a local address, not a public project")
            continue
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
            problems.append(f"{target}: only http(s) links may leave the repository")
            continue
        path_part, _, anchor = target.partition("#")
        if path_part.startswith("/"):
            problems.append(f"{target}: absolute path")
            continue
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.is_relative_to(REPO):
            problems.append(f"{target}: outside the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    return problems


def readme_problems(text: str) -> list[str]:
    """The README's own rules: short, and the two commands first, exactly."""
    problems = []
    lines = text.splitlines()
    if len(lines) > README_MAX_LINES:
        problems.append(f"README has {len(lines)} lines (at most {README_MAX_LINES})")
    start = [line for line in lines[:8] if line.strip()]
    commands = [line.split("#", 1)[0].strip() for line in start[2:4]]
    if len(start) < 5 or not start[0].startswith("# ") or not start[1].startswith("```") \
            or tuple(commands) != FIRST_COMMANDS or not start[4].startswith("```"):
        problems.append(f"README must open with a heading and a code block of exactly {FIRST_COMMANDS}")
    return problems


_COMMAND = re.compile(r"(?:^|[\s(/])(?:sine[ ](?P<sub>[a-z][a-z_-]*)|(?P<installer>install\.py)"
                      r"|(?P<bench>bench/\w+\.py)|-m[ ](?P<module>sine(?:\.\w+)+))(?P<rest>[^|;&#`]*)")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _options(parser: argparse.ArgumentParser) -> set[str]:
    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _options(sub)
    return found


def command_lines(text: str) -> list[str]:
    """Every line of a fenced block and every code span: where the docs write commands to type."""
    lines = [line for m in _FENCE.finditer(text) for line in m.group(0).splitlines()[1:-1]]
    return lines + [m.group(0).strip("`") for m in _CODE_SPAN.finditer(_FENCE.sub("", text))]


def flag_problems(text: str) -> list[str]:
    """Each `--flag` written after `sine CMD`, `install.py`, `bench/X.py` or `-m sine.X` that the command lacks."""
    from sine.cli import build_parser

    sys.path.insert(0, str(REPO / "installer"))
    spec = importlib.util.spec_from_file_location("install_py", REPO / "installer" / "install.py")
    installer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installer)
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    bench_source = "".join(p.read_text(encoding="utf-8") for p in (REPO / "bench").glob("*.py"))
    problems = []
    for line in command_lines(text):
        for m in _COMMAND.finditer(line):
            if m["sub"]:
                if m["sub"] not in subcommands:
                    problems.append(f"sine {m['sub']}: no such command")
                    continue
                known = _options(subcommands[m["sub"]]).__contains__
            elif m["installer"]:
                known = _options(installer.build_parser()).__contains__
            else:
                path = REPO / m["bench"] if m["bench"] else REPO / "backend" / (m["module"].replace(".", "/") + ".py")
                if not path.is_file():
                    problems.append(f"{m['bench'] or m['module']}: no such file")
                    continue
                source = path.read_text(encoding="utf-8") + (bench_source if m["bench"] else "")
                known = lambda flag, source=source: f'"{flag}"' in source  # noqa: E731
            for flag in _FLAG.findall(m["rest"]):
                if flag != "--help" and not known(flag):
                    problems.append(f"{m.group(0).strip().lstrip('(/')}: no {flag}")
    return problems


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_flag_a_page_writes_exists(page: Path) -> None:
    """A newcomer types the docs' commands as written: every flag there is one the command has."""
    assert flag_problems(page.read_text(encoding="utf-8")) == []


def setting_problems(text: str, code: str) -> list[str]:
    """Each SINE_* variable a page names that no code of the repository (`code`) reads."""
    return sorted({f"{name}: read nowhere" for name in re.findall(r"\bSINE_[A-Z][A-Z0-9_]*", text)
                   if f'"{name}"' not in code and f"{name}=" not in code and f"${name}" not in code})


def test_every_setting_a_page_names_is_read_somewhere() -> None:
    code = "".join(p.read_text(encoding="utf-8", errors="replace") for part in
                   ("backend", "shared", "installer", "plugin_krita", "plugin_gimp", "tests", "bench", "scripts")
                   for p in (REPO / part).rglob("*") if p.suffix in {".py", ".sh"})
    problems = [f"{page.relative_to(REPO)}: {p}" for page in doc_files()
                for p in setting_problems(page.read_text(encoding="utf-8"), code)]
    assert problems == []


def test_the_readme_controls_are_flags_of_sine_edit() -> None:
    """The README's Controls section lists `sine edit`'s flags by name alone."""
    from sine.cli import build_parser

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Controls\n", 1)[1].split("\n## ", 1)[0]
    edit = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["edit"]
    assert sorted(set(_FLAG.findall(section)) - _options(edit)) == []


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_and_image_resolves_inside_the_repository(page: Path) -> None:
    assert link_problems(page, page.read_text(encoding="utf-8")) == []


def test_readme_is_short_and_opens_with_the_two_commands() -> None:
    assert readme_problems((REPO / "README.md").read_text(encoding="utf-8")) == []


def test_the_first_commands_are_runnable_as_written() -> None:
    """The scripts exist, the installer's venv is where the command looks, and `sine demo --out` parses."""
    from sine.cli import build_parser

    assert (REPO / "installer" / "install.py").is_file()
    assert (REPO / "scripts" / "test.sh").is_file()
    args = build_parser().parse_args(["demo", "--out", "demo-out"])
    assert args.command == "demo" and args.out == "demo-out"


def test_the_installer_puts_sine_where_the_first_command_runs_it(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "installer"))
    from sine_installer.layout import Layout

    layout = Layout(platform="linux", home=tmp_path, env={})
    assert layout.venv_dir == tmp_path / ".local" / "share" / "sine-edit" / "venv"


def test_nothing_points_outside_the_repository() -> None:
    """No tracked text names a spec or page that only existed beside the repository."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    offenders = []
    for name in tracked.splitlines():
        path = REPO / name
        if path.suffix not in {".py", ".md", ".sh", ".toml", ".txt", ".desktop", ".ps1", ""} or not path.is_file():
            continue
        if name == "tests/docs/test_docs.py":
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}: {bad}" for bad in OUTSIDE if bad in text]
    assert offenders == []


def test_the_checks_catch_what_they_are_for() -> None:
    """The old README broke every rule: 291 lines and a link beside the repository."""
    page = REPO / "README.md"
    assert link_problems(page, "see [the spec](../shared/DESIGN.md) and ![x](docs/images/nope.png)") == [
        "../shared/DESIGN.md: outside the repository", "docs/images/nope.png: no such file"]
    assert link_problems(page, "[a](file:///etc/passwd) [b](http://127.0.0.1:47633/) [c](#no-such-heading)") != []
    assert readme_problems("# x\n\n```sh\nbash scripts/test.sh\n```\n") != []
    assert flag_problems("run `sine demo --outdir x`, `sine edit a.png --prompt b --out c`") == [
        "sine demo --outdir x: no --outdir"]
    assert flag_problems("```sh\npython3 installer/install.py --purge-all\nsine frobnicate\n```") == [
        "install.py --purge-all: no --purge-all", "sine frobnicate: no such command"]
    assert flag_problems("`python bench/speed.py --no-such-flag`, `python -m sine.nope --n 1`") != []
    assert setting_problems("set `SINE_DEVICE` or SINE_TURBO=1", 'os.environ.get("SINE_DEVICE")') == [
        "SINE_TURBO: read nowhere"]
    assert readme_problems("\n".join(["# sine-edit", "", "```sh", *FIRST_COMMANDS, "```"] + ["x"] * 200)) != []
