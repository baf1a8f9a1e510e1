import pytest
from sine_krita.pixels import bgra_to_rgba, rgba_to_bgra, swap_red_blue


def test_bgra_to_rgba_moves_each_channel():
    bgra = bytes([10, 20, 30, 40, 1, 2, 3, 255])  # pixel 0: B=10 G=20 R=30 A=40
    assert bgra_to_rgba(bgra) == bytes([30, 20, 10, 40, 3, 2, 1, 255])


def test_round_trip_is_identity_on_every_byte_value():
    data = bytes(range(256)) * 4
    assert rgba_to_bgra(bgra_to_rgba(data)) == data
    assert bgra_to_rgba(data) != data


def test_partial_pixel_is_refused():
    with pytest.raises(ValueError):
        swap_red_blue(b"\x00\x01\x02")
