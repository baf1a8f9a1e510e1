"""One definition of each edit default (steps 100, w 7.5, v 0.7, K 400, strength 0.6): `sine_protocol.defaults`.

Reads the shipped code (engine, CLI, daemon, protocol, both plugins, installer) with `ast` and
finds every place one of the default numbers is given to a sampling setting: an assignment, a
dataclass field, a parameter default, a keyword argument, an argparse `default=`, a GIMP argument
declaration or a `.get("steps", 100)`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sine_protocol.defaults as defaults

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ["backend/sine", "shared/sine_protocol", "plugin_krita", "plugin_gimp", "installer"]
SETTINGS = {"steps", "guidance", "w", "v", "k", "strength"}
VALUES = {100, 7.5, 0.7, 400, 0.6}


def _setting(name: str) -> bool:
    name = name.lower().lstrip("-").removeprefix("default_").removeprefix("sampling.")
    return name in SETTINGS


def _number(node: ast.AST | None) -> float | None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value in VALUES:
        return node.value
    return None


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def default_numbers(tree: ast.AST) -> list[tuple[int, str, float]]:
    """(line, setting, number) for every default number given to a sampling setting in `tree`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if _setting(_name(target)) and (n := _number(node.value)) is not None:
                    found.append((node.lineno, _name(target), n))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
            found += [(d.lineno, a.arg, n) for a, d in pairs if _setting(a.arg) and (n := _number(d)) is not None]
        elif isinstance(node, ast.Call):
            found += [(kw.lineno, kw.arg, n) for kw in node.keywords
                      if kw.arg and _setting(kw.arg) and (n := _number(kw.value)) is not None]
            labels = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if any(_setting(label) for label in labels):  # add_argument("--steps", default=100), .get("k", 400), GIMP
                found += [(v.lineno, labels[0], n) for v in [*node.args, *(kw.value for kw in node.keywords)]
                          if (n := _number(v)) is not None]
    return found


def test_the_finder_sees_each_kind_of_default():
    code = '''
steps = 100
class S:
    guidance: float = 7.5
def f(v=0.7, *, k=400): ...
p.add_argument("--steps", type=int, default=100)
header.get("k", 400)
proc.add_double_argument("guidance", "_Guidance", "w", 0.0, 50.0, 7.5, RW)
SamplingSettings(v=0.7)
for _ in range(100): poll(100)
'''
    found = sorted(default_numbers(ast.parse(code)))
    assert [line for line, _, _ in found] == [2, 4, 5, 5, 6, 7, 8, 9]


def test_each_default_number_is_defined_once_in_the_protocol_package():
    hits = []
    for folder in SHIPPED:
        for path in sorted((REPO / folder).rglob("*.py")):
            for line, setting, number in default_numbers(ast.parse(path.read_text(), str(path))):
                hits.append((str(path.relative_to(REPO)), line, setting, number))
    where = {number: [(p, line) for p, line, _, n in hits if n == number] for number in VALUES}
    assert all(len(places) == 1 for places in where.values()), hits
    assert {p for p, _, _, _ in hits} == {"shared/sine_protocol/defaults.py"}, hits
    assert (defaults.STEPS, defaults.GUIDANCE, defaults.V, defaults.K) == (100, 7.5, 0.7, 400)
