"""bench/quality.py and bench/large_canvas.py are scripts, not package modules: load each once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def quality_bench() -> ModuleType:
    return _load_script("quality")


@pytest.fixture(scope="session")
def large_canvas_bench() -> ModuleType:
    return _load_script("large_canvas")
