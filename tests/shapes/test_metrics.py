"""Measurements: they must read ground-truth renders right and tell wrong ones apart."""

from __future__ import annotations

import numpy as np

from sine.shapes.evaluate import held_out_scenes, judge
from sine.shapes.metrics import (
    classify_shape,
    color_index,
    color_labels,
    components,
    count_foreground,
    count_objects,
    object_pixels,
    placement,
    psnr,
    ssim,
    ssim_map,
)
from sine.shapes.world import SHAPES, Background, Scene, Shape


def test_judge_accepts_ground_truth_and_rejects_wrong_images() -> None:
    scenes = held_out_scenes(24)
    for scene in scenes:
        assert all(judge(scene.render()[0], scene).values()), scene.caption()
    scene = scenes[0]
    obj = scene.objects[0]
    other = next(c for c in ("red", "green") if c not in (obj.color, scene.background.colors[0]))
    verdict = judge(scene.recolored(0, other).render()[0], scene)
    assert not verdict["color"]


def test_shapes_are_told_apart() -> None:
    for kind in SHAPES:
        for size in ("medium", "large"):
            image, _ = Scene((Shape(kind, "blue", size, 1, 1),), Background("plain", ("white",))).render()
            assert classify_shape(object_pixels(image, "blue")[0]) == kind


def test_components_count_duplicates() -> None:
    mask = np.zeros((10, 20), dtype=bool)
    mask[1:4, 1:4] = True
    mask[5:9, 10:15] = True
    comps = components(mask)
    assert len(comps) == 2 and comps[0].sum() == 20


def test_psnr_and_ssim() -> None:
    a, _ = held_out_scenes(1)[0].render()
    arr = np.asarray(a).astype(np.float32)
    noisy = np.clip(arr + np.random.default_rng(0).normal(0, 20, arr.shape), 0, 255)
    assert psnr(a, a) == 100.0 and abs(ssim(a, a) - 1.0) < 1e-9
    assert 15 < psnr(a, noisy) < 30 and ssim(a, noisy) < 0.9


def _wang_ssim_interior(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Wang et al.'s SSIM written out: 11-tap Gaussian window (σ = 1.5), K1 0.01, K2 0.03, range 255,
    where the window fits inside the picture."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    g /= g.sum()

    def mean(img: np.ndarray) -> np.ndarray:
        rows = np.stack([img[:, i:img.shape[1] - 10 + i] for i in range(11)], -1) @ g
        return np.stack([rows[i:rows.shape[0] - 10 + i] for i in range(11)], -1) @ g

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = mean(x), mean(y)
    vx, vy, cxy = mean(x * x) - mx**2, mean(y * y) - my**2, mean(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def test_ssim_is_the_standard_gaussian_window_ssim() -> None:
    """Not a box window: the map matches Wang et al.'s definition pixel for pixel where the window fits."""
    a, _ = held_out_scenes(1)[0].render()
    arr = np.asarray(a).astype(np.float64)
    noisy = np.clip(arr + np.random.default_rng(1).normal(0, 25, arr.shape), 0, 255)
    luma = np.array([0.299, 0.587, 0.114])
    want = _wang_ssim_interior(arr @ luma, noisy @ luma)
    got = ssim_map(arr, noisy)[5:-5, 5:-5]
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-6


def test_count_objects_sees_textured_fills_as_one_and_duplicates_as_two() -> None:
    bg = Background("plain", ("white",))
    one = Scene((Shape("circle", "red", "large", 1, 1, texture="checkered"),), bg).render(128, 64)[0]
    two = Scene((Shape("star", "red", "medium", 1, 0, texture="dotted"), Shape("star", "red", "medium", 1, 2)),
                bg).render(128, 64)[0]
    assert count_objects(one, "red", min_pixels=20) == 1
    assert count_objects(two, "red", min_pixels=20) == 2


def test_count_foreground_counts_things_of_any_colour_on_a_plain_background() -> None:
    bg = Background("plain", ("blue",))
    one = Scene((Shape("circle", "red", "large", 1, 1, texture="checkered"),), bg).render(128, 64)[0]
    two = Scene((Shape("circle", "red", "medium", 1, 0, texture="checkered"), Shape("star", "yellow", "medium", 1, 2)),
                bg).render(128, 64)[0]
    assert count_foreground(one, "blue", min_pixels=20) == 1
    assert count_foreground(two, "blue", min_pixels=20) == 2
    assert count_foreground(Scene((), bg).render(128, 64)[0], "blue", min_pixels=20) == 0


def test_placement_counts_small_copies_as_strays_and_pieces_in_place_as_none() -> None:
    """At 4x a big checkered object is many pieces, and duplicates can be far smaller than it."""
    bg = Background("plain", ("blue",))
    big = Shape("circle", "red", "large", 1, 1, texture="checkered")
    truth, masks = Scene((big,), bg).render(256, 256)
    where = masks.objects[0]
    red = color_labels(truth) == color_index("red")
    right = placement(red, where, min_pixels=128, margin=8)
    assert right.stray == 0 and right.coverage > 0.5  # the white squares of the checker are not red
    copies = [Shape("circle", "red", "small", r, c) for r, c in ((0, 0), (0, 2), (2, 0), (2, 2))]
    image, _ = Scene((big, *copies), bg).render(256, 256)
    dup = placement(color_labels(image) == color_index("red"), where, min_pixels=128, margin=8)
    assert dup.stray == 4 and dup.coverage == right.coverage
    moved, _ = Scene((Shape("circle", "red", "small", 0, 0),), bg).render(256, 256)
    lost = placement(color_labels(moved) == color_index("red"), where, min_pixels=128, margin=8)
    assert lost.stray == 1 and lost.coverage < 0.1
