"""`part`/`parts`/`part_of` on progress events: what the plug-ins show, and garbage read as none."""

from __future__ import annotations

import pytest

from sine_protocol.messages import part_text, step_fraction, within_step


def test_a_tile_inside_a_step_is_shown_and_moves_the_fraction() -> None:
    header = {"phase": "sample", "step": 1, "total": 4, "part": 6, "parts": 24, "part_of": "tile"}
    assert part_text(header) == " · tile 6/24"
    assert step_fraction(header) == pytest.approx((1 + 6 / 24) / 4)
    decode = {"step": 4, "total": 4, "part": 3, "parts": 12, "part_of": "decode tile"}
    assert part_text(decode) == " · decode tile 3/12" and step_fraction(decode) == 1.0  # all steps done


@pytest.mark.parametrize("extra", [
    {}, {"part": 3}, {"part": 3, "parts": 2, "part_of": "tile"}, {"part": -1, "parts": 2, "part_of": "tile"},
    {"part": True, "parts": 2, "part_of": "tile"}, {"part": 1.5, "parts": 2, "part_of": "tile"},
    {"part": 1, "parts": 0, "part_of": "tile"}, {"part": 1, "parts": 2, "part_of": ""},
    {"part": 1, "parts": 2, "part_of": "x" * 500}, {"part": 1, "parts": 2, "part_of": "a\nb"},
    {"part": 1, "parts": 2, "part_of": ["tile"]},
])
def test_missing_or_odd_parts_read_as_none(extra: dict) -> None:
    header = {"phase": "sample", "step": 1, "total": 2, **extra}
    assert within_step(header) is None and part_text(header) == ""
    assert step_fraction(header) == 0.5


def test_an_odd_step_or_total_gives_no_fraction() -> None:
    assert step_fraction({"step": "1", "total": 2}) == 0.0 and step_fraction({"step": 1, "total": 0}) == 0.0
    assert step_fraction({"step": 5, "total": 2}) == 1.0


@pytest.mark.parametrize("step,total", [
    (10**400, 2), (1, 10**400), (-1, 10**400), (10**400, 10**401), (float("nan"), 2), (1, float("nan")),
    (float("inf"), 2), (1, float("inf")),
])
def test_a_step_or_total_past_a_float_gives_no_fraction_not_an_error(step: float, total: float) -> None:
    """A progress event with a step or total no float holds (JSON allows integers of any length): step_fraction
    raised OverflowError into the GIMP plug-in's progress loop; it is now 0, as other garbage is."""
    header = {"phase": "sample", "step": step, "total": total, "part": 1, "parts": 2, "part_of": "tile"}
    assert step_fraction(header) == 0.0


def test_a_daemon_gone_mid_edit_keeps_why_once_and_a_silence_whole(tmp_path, monkeypatch) -> None:
    """The words both plug-ins show when the daemon goes away: a closed connection keeps only its why (not
    "lost the connection" twice); a silence keeps the client's whole sentence (how long it sent nothing)."""
    from sine_protocol.messages import daemon_lost_text

    monkeypatch.setenv("SINE_STATE_DIR", str(tmp_path))
    closed = daemon_lost_text("lost the connection to the daemon at tcp://127.0.0.1:5 (tcp://127.0.0.1:5 closed "
                              "the connection)", "Go on.")
    assert "(tcp://127.0.0.1:5 closed the connection)" in closed and "lost the connection" not in closed, closed
    silent = daemon_lost_text("the daemon at tcp://127.0.0.1:5 sent nothing for 31 s while a request was pending (it "
                              "sends a heartbeat every few seconds while it works): it stopped answering", "Go on.")
    assert "sent nothing for 31 s" in silent and "stopped answering" in silent, silent
    for text in (closed, silent):
        assert str(tmp_path / "daemon.log") in text and text.endswith("Go on.") and "nothing was added" in text
