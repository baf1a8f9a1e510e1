"""Shared fixtures for the daemon tests: import paths and few CPU threads (2 cores for everything)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for path in (str(REPO / "backend"), str(REPO / "shared"), str(Path(__file__).resolve().parent)):
    if path not in sys.path:
        sys.path.insert(0, path)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD-shaped diffusers folder (random weights), built once per session."""
    import torch

    from sine.tiny_models import make_tiny_sd

    torch.set_num_threads(1)
    return make_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "model")


@pytest.fixture()
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp folder with a short path (ipc:// socket paths are limited to ~100 characters)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="sd-"))
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)
