"""The suite's own split across pytest-xdist workers (tests/conftest.py), run on a copy of that conftest.

xdist's `--dist loadgroup` once stopped grouping without a word (pytest 9.2); this test makes such a
change loud: a file's module fixture must be made once, and every real-host test must run on one worker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FILE_TESTS = """
import os
import pytest

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    with open(os.environ["MADE_LOG"], "a") as log:
        log.write(f"{__name__} {os.environ['PYTEST_XDIST_WORKER']}\\n")

@pytest.mark.parametrize("n", range(6))
def test_one(made, n):
    pass
"""


def run_split(tmp_path: Path) -> dict[str, list[str]]:
    """A small project with the suite's conftest, run in two workers: which worker made which module fixture."""
    pytest.importorskip("xdist")
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")  # the project's folder is the rootdir, as in the repo
    shutil.copyfile(HERE.parent / "conftest.py", project / "tests" / "conftest.py")
    files = ["tests/engine/test_a.py", "tests/engine/test_b.py", "tests/cli/test_c.py",
             "tests/hosts/gimp/test_g.py", "tests/hosts/krita/test_k.py"]
    for name in files:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(FILE_TESTS)
    log = tmp_path / "made.log"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                           "--import-mode=importlib", "tests"], cwd=project, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MADE_LOG": str(log)})
    assert done.returncode == 0, done.stdout + done.stderr
    made: dict[str, list[str]] = {}
    for line in log.read_text().splitlines():
        module, worker = line.split()
        made.setdefault(module, []).append(worker)
    return made


def test_each_file_runs_whole_on_one_worker_and_the_real_hosts_share_one(tmp_path: Path) -> None:
    made = run_split(tmp_path)
    assert len(made) == 5, made
    assert all(len(workers) == 1 for workers in made.values()), f"a module fixture was made twice: {made}"
    hosts = {workers[0] for module, workers in made.items() if module.endswith(("test_g", "test_k"))}
    assert len(hosts) == 1, f"the real-host tests ran on two workers: {made}"
