"""A mistyped flag or a path typed as `"~/my picture.png"` is answered as a newcomer needs.

argparse alone reports `sine demo --outt d` as the top-level parser ("usage: sine [-h] COMMAND",
"unrecognized arguments") and `sine edit x.png --promt "..."` as a missing `--prompt`, never naming
the typo; `sine` names the subcommand, the unknown flag and the flag that was probably meant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sine.cli import main


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_an_unknown_flag_is_named_in_its_command_with_the_likely_one(capsys: pytest.CaptureFixture[str]) -> None:
    err = error_of(["demo", "--outt", "d"], capsys)
    assert "usage: sine demo" in err
    assert "sine demo: error: unrecognized arguments: --outt d" in err
    assert "did you mean --out?" in err


def test_a_typo_is_named_before_the_flag_it_left_missing(capsys: pytest.CaptureFixture[str]) -> None:
    err = error_of(["edit", "x.png", "--promt", "a hat", "--out", "o.png"], capsys)
    assert "--promt" in err and "did you mean --prompt?" in err
    err = error_of(["edit", "x.png", "--prompt=a hat", "--out", "o.png", "--finetune-stpes=3"], capsys)
    assert "did you mean --finetune-steps?" in err


def test_a_flag_far_from_every_other_gets_no_guess(capsys: pytest.CaptureFixture[str]) -> None:
    err = error_of(["doctor", "--zzzzzz"], capsys)
    assert "unrecognized arguments: --zzzzzz" in err and "did you mean" not in err


def test_a_quoted_tilde_path_means_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`"~/my pic.png"` (quoted because of the space) reaches sine with its `~`: it is the home folder."""
    import argparse

    from sine.commands.edit import add_parser

    monkeypatch.setenv("HOME", str(tmp_path))
    sub = argparse.ArgumentParser().add_subparsers()
    args = add_parser(sub).parse_args(["~/my pic.png", "--prompt", "x", "--out", "~/out dir/o.png",
                                       "--mask", "~/m.png", "--weights", "~/w", "--model", "~/models/sd"])
    assert args.source == str(tmp_path / "my pic.png")
    assert args.out == str(tmp_path / "out dir" / "o.png")
    assert (args.mask, args.weights, args.model) == (str(tmp_path / "m.png"), str(tmp_path / "w"),
                                                     str(tmp_path / "models" / "sd"))


def test_a_tilde_cache_folder_is_in_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sine.cli import build_parser

    monkeypatch.setenv("HOME", str(tmp_path))
    for command in (["cache", "list"], ["daemon"]):
        args = build_parser().parse_args([*command, "--cache-dir", "~/weights"])
        assert args.cache_dir == tmp_path / "weights"


def test_sine_version_answers(capsys: pytest.CaptureFixture[str]) -> None:
    """The first thing a bug report asks for; it was `unrecognized arguments: --version`."""
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sine {version('sine-edit')}"


def test_an_unknown_flag_before_any_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = error_of(["--verbose"], capsys)
    assert "usage: sine" in err and "unrecognized arguments: --verbose" in err
