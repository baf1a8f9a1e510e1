"""Host-side compositing of the 8-bit result into a layer of any depth (sine_protocol.layer_pixels)."""

from __future__ import annotations

import numpy as np

from sine_protocol.layer_pixels import composite_native, selected_runs, u8_to_u16, u16_to_u8


def test_runs_of_a_mask() -> None:
    assert selected_runs(bytes([0, 3, 255, 0, 0, 1])) == [(1, 3), (5, 6)]
    assert selected_runs(bytes(4)) == []


def test_16_bit_outside_the_mask_is_the_source_and_alpha_is_the_sources_everywhere() -> None:
    rng = np.random.default_rng(1)
    source = rng.integers(0, 65536, (7, 9, 4), dtype=np.uint16)
    result = rng.integers(0, 65536, (7, 9, 4), dtype=np.uint16)
    mask = np.zeros((7, 9), np.uint8)
    mask[2:5, 3:8] = 200
    out = np.frombuffer(composite_native(source.tobytes(), result.tobytes(), mask.tobytes(), 8, 6, 2),
                        np.uint16).reshape(7, 9, 4)  # fmt: skip
    assert np.array_equal(out[..., 3], source[..., 3])
    assert np.array_equal(out[mask == 0], source[mask == 0])
    assert np.array_equal(out[mask > 0][:, :3], result[mask > 0][:, :3])
    whole = np.frombuffer(composite_native(source.tobytes(), result.tobytes(), None, 8, 6, 2), np.uint16)
    whole = whole.reshape(7, 9, 4)
    assert np.array_equal(whole[..., :3], result[..., :3]) and np.array_equal(whole[..., 3], source[..., 3])


def test_8_to_16_bits_is_exact_and_back() -> None:
    values = bytes(range(256))
    wide = np.frombuffer(u8_to_u16(values), "<u2")
    assert np.array_equal(wide, np.arange(256) * 257)
    assert u16_to_u8(u8_to_u16(values)) == values
