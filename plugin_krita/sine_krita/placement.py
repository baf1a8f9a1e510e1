"""Where the floating docker goes: pure rectangle arithmetic, no Qt, so it is tested anywhere."""

from __future__ import annotations

Rect = tuple[int, int, int, int]  # x, y, width, height


def floating_frame(frame: Rect, wanted: tuple[int, int], available: Rect) -> Rect:
    """The floating docker's frame: grown to ``wanted`` (the whole panel) but no larger than the
    screen's ``available`` area, and moved so that all of it is on that screen.

    Krita floats a docker at its docked size: in a crowded column on a small screen that is a
    window 116 px high with Edit and the status line out of sight.
    """
    x, y, w, h = frame
    ax, ay, aw, ah = available
    w, h = min(max(w, wanted[0]), aw), min(max(h, wanted[1]), ah)
    x, y = min(max(x, ax), ax + aw - w), min(max(y, ay), ay + ah - h)
    return x, y, w, h
