"""`sine edit` never replaces or deletes a user's file by surprise, and says so before any work.

The refusals run the real command (as in test_instant_errors: no torch in the import trace means no
work was started); the writes run a real edit with a tiny model built from a config.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_instant_errors import HEAVY, messages, run_traced


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file()
            else p.stat().st_mode for p in sorted(root.rglob("*")) if p.is_symlink() or not p.is_dir()}


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    """A user's folder: a source picture, a picture they care about, a folder of their own files."""
    Image.new("RGB", (48, 32), (35, 170, 50)).save(tmp_path / "source.png")
    Image.new("RGB", (48, 32), (200, 10, 10)).save(tmp_path / "holiday.png")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "unet_lora.safetensors").write_text("the user's own file with a name sine uses")
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    (tmp_path / "plain-file").write_text("not a folder")
    (tmp_path / "bad-weights").mkdir()
    (tmp_path / "bad-weights" / "finetune.json").write_text("{not json")
    (tmp_path / "link-to-source.png").symlink_to(tmp_path / "source.png")
    os.mkfifo(tmp_path / "pipe.png")
    os.mkfifo(tmp_path / "channel")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "gone").symlink_to(tmp_path / "no-such-folder")
    return tmp_path


REFUSALS = {
    # name: (arguments after the source, text in the message)
    "out is the source": (["--out", "{home}/source.png"], "one of the input pictures"),
    "out links to the source": (["--out", "{home}/link-to-source.png", "--overwrite"], "one of the input pictures"),
    "out is the mask": (["--mask", "{home}/holiday.png", "--out", "{home}/holiday.png", "--overwrite"],
                        "one of the input pictures"),
    "out exists": (["--out", "{home}/holiday.png"], "--overwrite"),
    "out is a folder": (["--out", "{home}/mine"], "is a folder"),
    # a new folder's name with its slash: results.png was written beside it, in the folder above
    "out names a folder that is not there yet": (["--out", "{home}/results/"], "names a folder"),
    "out is a named pipe": (["--out", "{home}/pipe.png", "--overwrite"], "not a regular file"),
    # OUT without a suffix gets .png: a device or pipe named so (/dev/full) had pipe.png written beside it
    "out is a named pipe without a suffix": (["--out", "{home}/channel"], "not a regular file"),
    "out has an unknown extension": (["--out", "{home}/result.xyz"], "use .png"),
    "out under a file": (["--out", "{home}/plain-file/result.png"], "is a file, not a folder"),
    "weights is a file": (["--out", "{home}/r.png", "--weights", "{home}/plain-file"], "is a file"),
    # a symbolic link loop was a traceback (out) or noticed only after the work (weights)
    "out under a link loop": (["--out", "{home}/loop/result.png"], "symbolic link loop"),
    "weights is a link loop": (["--out", "{home}/r.png", "--weights", "{home}/loop"], "symbolic link loop"),
    "weights links to nothing": (["--out", "{home}/r.png", "--weights", "{home}/gone"], "does not exist"),
    "weights is a folder of the user's": (["--out", "{home}/r.png", "--weights", "{home}/mine"], "other files"),
    "weights holds a broken finetune.json": (["--out", "{home}/r.png", "--weights", "{home}/bad-weights"],
                                             "not a saved sine fine-tune"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_users_file_is_refused_before_any_work(case: str, home: Path) -> None:
    args, text = REFUSALS[case]
    before = _snapshot(home)
    proc, imported = run_traced("edit", f"{home}/source.png", "--prompt", "a red circle",
                                *[a.format(home=home) for a in args])
    out = messages(proc)
    assert proc.returncode == 1, out
    assert text in out.strip().splitlines()[-1], out
    assert "Traceback" not in out
    assert not imported & set(HEAVY), f"{case}: loaded {imported & set(HEAVY)} before answering"
    assert _snapshot(home) == before


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from sine.tiny_models import make_tiny_sd

    torch.set_num_threads(1)
    return make_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "model")


def _edit(*args: str, model: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "sine.cli", "edit", *args, "--prompt", "a red circle", "--model",
                           str(model), "--finetune-steps", "1", "--steps", "1", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_jpeg_out_and_overwrite_write_a_whole_picture(home: Path, tiny_model: Path) -> None:
    """A .jpg result was a traceback after all the work (RGBA cannot be JPEG); --overwrite replaces in one
    step; --out without an extension gets .png; saving weights into a new folder keeps nothing else there."""
    Image.new("RGB", (10, 10)).save(home / "old.jpg")
    proc = _edit(f"{home}/source.png", "--out", f"{home}/old.jpg", "--overwrite", "--weights", f"{home}/w",
                 model=tiny_model)
    assert proc.returncode == 0, proc.stderr
    with Image.open(home / "old.jpg") as result:
        assert (result.format, result.size) == ("JPEG", (48, 32))
    assert (home / "w" / "finetune.json").exists()
    from sine.output_files import FINETUNE_FILE, FINETUNE_TENSORS  # what a failed save removes again

    assert {path.name for path in (home / "w").iterdir()} <= {FINETUNE_FILE, *FINETUNE_TENSORS}
    assert not [p for p in home.iterdir() if p.name.startswith(".old.jpg")]  # no temporary file left
    proc = _edit(f"{home}/source.png", "--out", f"{home}/plain", "--weights", f"{home}/w", model=tiny_model)
    assert proc.returncode == 0, proc.stderr
    assert "reusing fine-tuned" in proc.stderr
    with Image.open(home / "plain.png") as result:
        assert (result.format, result.size) == ("PNG", (48, 32))


DEMO_REFUSALS = {"home": "other files", "file": "is a file", "loop": "symbolic link loop", "gone": "does not exist"}


@pytest.mark.parametrize("target", sorted(DEMO_REFUSALS))
def test_sine_demo_never_writes_into_a_folder_of_the_users(home: Path, target: str) -> None:
    """The demo writes fixed names (source.png, comparison.png...): `--out ~/Pictures` replaced the user's.
    A link loop or a link to nothing as the folder was a FileExistsError traceback."""
    (home / "comparison.png").write_bytes((home / "holiday.png").read_bytes())
    out = {"home": home, "file": home / "plain-file", "loop": home / "loop", "gone": home / "gone"}[target]
    before = _snapshot(home)
    proc, imported = run_traced("demo", "--out", str(out))
    text = messages(proc)
    assert proc.returncode == 1, text
    assert DEMO_REFUSALS[target] in text.strip().splitlines()[-1], text
    assert not imported & set(HEAVY)
    assert _snapshot(home) == before


def test_a_device_this_machine_lacks_is_one_line_not_a_traceback(home: Path, tmp_path: Path) -> None:
    """`--device cuda` without a usable GPU was torch's AssertionError; cuda:99 exists on no machine."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "sine.cli", "edit", str(home / "source.png"), "--prompt", "x",
                           "--device", "cuda:99", "--out", str(tmp_path / "o.png")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "cuda:99" in last and "not available" in last, proc.stderr


@pytest.mark.slow
def test_a_full_disk_costs_the_saved_weights_never_the_edit(home: Path, tiny_model: Path) -> None:
    """`--weights` on a full disk was a traceback after the fine-tune, and the edit was lost with it."""
    disk = home / "small-disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        with open(disk / "filler", "wb", buffering=0) as handle:  # fill the disk up to the last few KB
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError:
                pass
        proc = _edit(f"{home}/source.png", "--out", f"{home}/edited.png", "--weights", f"{disk}/w", model=tiny_model)
        assert proc.returncode == 0, proc.stderr
        assert "could not save the fine-tuned weights" in proc.stderr
        with Image.open(home / "edited.png") as result:
            assert result.size == (48, 32)
        assert not (disk / "w").exists() or not any((disk / "w").iterdir())  # no half-saved fine-tune to reuse
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def _edit_limited(home: Path, model: Path, *args: str) -> subprocess.CompletedProcess:
    """`sine edit` whose files may not grow past 1 KB (RLIMIT_FSIZE: a disk that fills up mid-write), umask 022."""
    import resource

    def limits() -> None:
        os.umask(0o022)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "SINE_STATE_DIR": str(home / ".state")}
    return subprocess.run([sys.executable, "-m", "sine.cli", "edit", f"{home}/source.png", *args, "--prompt", "a red",
                           "--model", str(model), "--finetune-steps", "1", "--steps", "1", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, env=env, preexec_fn=limits)


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_result_cut_short_by_a_full_disk_leaves_no_half_file(home: Path, tiny_model: Path, overwrite: bool) -> None:
    """The result is written after all the work: a disk that filled up then left half a PNG at --out (a new
    file) or a hidden `.out.png.*` temporary beside it (--overwrite), each looking like a result."""
    noisy = Image.effect_noise((48, 32), 100).convert("RGB")  # does not compress: the result is over 1 KB
    noisy.save(home / "source.png")
    if overwrite:
        (home / "edited.png").write_bytes(b"the old result")
    before = _snapshot(home)
    args = ["--out", f"{home}/edited.png"] + (["--overwrite"] if overwrite else [])
    proc = _edit_limited(home, tiny_model, *args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot write" in proc.stderr.strip().splitlines()[-1], proc.stderr
    after = {k: v for k, v in _snapshot(home).items() if not k.startswith(".state")}
    assert after == before, sorted(set(after) ^ set(before))


@pytest.mark.slow
def test_an_overwritten_result_gets_the_usual_file_mode(home: Path, tiny_model: Path) -> None:
    """--overwrite wrote through a private temporary file (mode 0600) renamed into place: the result was
    unreadable to anyone else, unlike a new result (0644 under umask 022)."""
    import stat

    (home / "edited.png").write_bytes(b"the old result")
    os.chmod(home / "edited.png", 0o644)
    proc = _edit(f"{home}/source.png", "--out", f"{home}/edited.png", "--overwrite", model=tiny_model)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((home / "edited.png").stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_files_that_appear_in_the_weights_folder_during_the_fine_tune_are_kept(home: Path, tiny_model: Path) -> None:
    """`--weights` is checked new or empty before the work, but saved into minutes later: a fine-tune another
    `sine edit` saved there meanwhile (or the user's file) was overwritten and mixed with this run's files.
    Now the weights are saved whole under a temporary name and moved into place only while the folder is
    still new or empty; otherwise they are not saved (said) and the edit goes on."""
    import select
    import time

    weights = home / "w"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "SINE_STATE_DIR": str(home / ".state")}
    proc = subprocess.Popen([sys.executable, "-m", "sine.cli", "edit", f"{home}/source.png", "--prompt", "a red",
                             "--model", str(tiny_model), "--finetune-steps", "6", "--steps", "1", "--device", "cpu",
                             "--weights", str(weights), "--out", f"{home}/edited.png"],
                            stderr=subprocess.PIPE, env=env)
    seen, deadline = b"", time.monotonic() + 240
    while b"fine-tuning" not in seen and proc.poll() is None and time.monotonic() < deadline:
        if select.select([proc.stderr], [], [], 0.5)[0]:
            seen += os.read(proc.stderr.fileno(), 65536)
    weights.mkdir()  # the other run's save, during this run's fine-tune
    (weights / "finetune.json").write_text('{"the other run": true}')
    (weights / "notes.txt").write_text("keep me")
    out = seen + proc.communicate(timeout=240)[1]
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert (weights / "finetune.json").read_text() == '{"the other run": true}', text
    assert sorted(p.name for p in weights.iterdir()) == ["finetune.json", "notes.txt"]
    assert "could not save the fine-tuned weights" in text and str(weights) in text, text
    assert not [p for p in home.iterdir() if p.name.startswith(".w")], list(home.iterdir())  # no temporary left
    with Image.open(home / "edited.png") as result:
        assert result.size == (48, 32)


@pytest.mark.slow
def test_a_file_name_with_a_newline_or_a_terminal_escape_is_printed_escaped(home: Path, tiny_model: Path) -> None:
    """Errors escaped such names (errors.printable) but the lines of a run that worked did not: `--out` named with
    a terminal escape and a newline made `wrote …` obey the escape (retitle the terminal, recolour the text) and
    print a second line that looked like sine's own; the same for `reusing fine-tuned weights from …`."""
    out = home / "evil\x1b]0;pwned\x07\nsine edit: error: fake.png"
    weights = home / "w\x1b[31m"
    for _ in range(2):  # the second run reuses the weights: its `reusing` line names the folder too
        proc = _edit(f"{home}/source.png", "--out", str(out), "--overwrite", "--weights", str(weights),
                     model=tiny_model)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
        assert not any(line.startswith("sine edit: error") for line in proc.stderr.splitlines()), proc.stderr
        assert "wrote " in proc.stderr and "\\x1b]0;pwned" in proc.stderr
    assert out.exists() and "reusing fine-tuned" in proc.stderr
