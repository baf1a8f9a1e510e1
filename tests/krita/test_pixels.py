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


def test_linear_light_pixels_reach_the_model_srgb_encoded_and_come_back_linear():
    """Krita's default 16-bit profile is linear (sRGB-elle-V2-g10.icc): its values sent as they are came
    back washed out. Encoded with the sRGB curve on the way out, decoded on the way back; alpha untouched."""
    import struct

    from sine_krita.pixels import linear_native_to_rgba8, rgba8_to_linear_native

    # one B,G,R,A pixel at 16 bits: blue 0, green linear 0.5, red 1.0, alpha 0.5
    native16 = struct.pack("<4H", 0, 32768, 65535, 32768)
    assert linear_native_to_rgba8(native16, 2) == bytes((255, 188, 0, 128))  # sRGB(0.5) = 0.735 -> 188
    native8 = bytes((0, 128, 255, 77))
    assert linear_native_to_rgba8(native8, 1) == bytes((255, 188, 0, 77))
    back16 = struct.unpack("<4H", rgba8_to_linear_native(bytes((255, 188, 0, 128)), 2))
    assert back16[0] == 0 and back16[2] == 65535 and back16[3] == 128 * 257 and abs(back16[1] - 32768) < 200
    assert rgba8_to_linear_native(bytes((255, 188, 0, 77)), 1) == bytes((0, 128, 255, 77))
    everything = bytes(range(256)) * 4
    assert rgba8_to_linear_native(linear_native_to_rgba8(everything, 1), 1)[3::4] == everything[3::4]
