"""The package as the plugins get it: vendored, without pyzmq, on the hosts' Python versions."""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_daemon import FakeDaemon  # noqa: E402

import sine_protocol  # noqa: E402

PACKAGE = Path(sine_protocol.__file__).resolve().parent
TOKEN = "v" * 64

# Runs in a child interpreter: pyzmq blocked, the package imported from a plugin's _vendor folder.
CHILD = r"""
import sys
sys.modules["zmq"] = None  # what a host without pyzmq looks like: `import zmq` raises ImportError
vendor, endpoint, token = sys.argv[1:4]
sys.path.insert(0, vendor)
import sine_protocol
from sine_protocol import Mask, RGBAImage, SineClient
assert sine_protocol.__file__.startswith(vendor), sine_protocol.__file__
c = SineClient(endpoint, token, transport="auto", timeout=10)
assert c.transport_name == "pure", c.transport_name
assert c.hello()["type"] == "welcome"
image = RGBAImage(300, 200, bytes(range(256)) * 937 + bytes(128))
rid = c.submit_edit(image, "make it green", output_size=(64, 48), mask=Mask(300, 200, b"\xff" * 60000))
types = [e.type for e in c.events(rid, timeout=10)]
final = c.wait_result(c.submit_edit(image, "x"), timeout=10)
assert final.image == image
c.close()
print("OK", sys.version_info[:2], types)
"""


def _vendor(tmp_path: Path) -> Path:
    vendor = tmp_path / "plugin" / "_vendor"
    shutil.copytree(PACKAGE, vendor / "sine_protocol", ignore=shutil.ignore_patterns("__pycache__"))
    return vendor


def _interpreters() -> list[str]:
    """Other CPythons on this machine that match the hosts' bundled ones (3.10-3.13)."""
    found: dict[str, str] = {}
    candidates = [shutil.which(f"python3.{minor}") for minor in range(10, 14)]
    candidates += sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.1[0-3].*/bin/python3")))
    for exe in filter(None, candidates):
        version = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                                 text=True, timeout=30).stdout.strip()
        if version:
            found.setdefault(version, exe)
    return sorted(found.values())


@pytest.fixture
def daemon():
    fake = FakeDaemon(TOKEN)
    yield fake
    fake.close()


def test_auto_picks_pure_when_pyzmq_is_blocked(tmp_path: Path, daemon: FakeDaemon) -> None:
    result = subprocess.run([sys.executable, "-c", CHILD, str(_vendor(tmp_path)), daemon.endpoint, TOKEN],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "['accepted', 'progress', 'result']" in result.stdout


@pytest.mark.slow
def test_other_python_versions(tmp_path: Path, daemon: FakeDaemon) -> None:
    interpreters = _interpreters()
    if not interpreters:
        pytest.skip("no other Python 3.10-3.13 on this machine")
    vendor = _vendor(tmp_path)
    for exe in interpreters:
        # -I: isolated (no site-packages, no user env), as bare as a host's bundled Python.
        result = subprocess.run([exe, "-I", "-c", CHILD, str(vendor), daemon.endpoint, TOKEN],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{exe}: {result.stderr}"
        assert "OK" in result.stdout


def test_package_imports_only_stdlib() -> None:
    """Each module's top-level imports are stdlib or relative (pyzmq only lazily, inside a function)."""
    import ast

    allowed = set(sys.stdlib_module_names)
    for source in PACKAGE.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in tree.body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level else [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{source.name} imports {name} at top level"
