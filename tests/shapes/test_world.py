"""The shapes world: deterministic scenes, exact masks, regular captions, edits and other sizes."""

from __future__ import annotations

import numpy as np
import pytest

from sine.shapes.metrics import classify_shape, majority_color, object_pixels
from sine.shapes.world import COLORS, HUE_COLORS, SHAPES, Background, Scene, Shape, random_scene


def test_same_seed_same_scene_and_pixels() -> None:
    a, b = random_scene(1234), random_scene(1234)
    assert a == b and a.caption() == b.caption()
    assert np.array_equal(np.asarray(a.render()[0]), np.asarray(b.render()[0]))
    assert any(random_scene(s) != a for s in range(1235, 1240))


def test_world_has_enough_variety() -> None:
    scenes = [random_scene(s) for s in range(400)]
    kinds = {o.kind for s in scenes for o in s.objects}
    colors = {o.color for s in scenes for o in s.objects}
    backgrounds = {s.background.kind for s in scenes}
    counts = {len(s.objects) for s in scenes}
    assert kinds == set(SHAPES) and len(colors) >= 8
    assert backgrounds == {"plain", "gradient", "striped"} and counts == {1, 2, 3}
    assert len(HUE_COLORS) >= 8


@pytest.mark.parametrize("seed", range(0, 60, 7))
def test_masks_partition_the_image_and_carry_the_object_colour(seed: int) -> None:
    scene = random_scene(seed)
    image, masks = scene.render()
    assert image.size == (64, 64)
    total = masks.background.astype(int) + sum(m.astype(int) for m in masks.objects)
    assert (total == 1).all()
    px = np.asarray(image)
    for obj, m in zip(scene.objects, masks.objects, strict=True):
        assert m.sum() > 20
        assert (px[m] == np.array(COLORS[obj.color], dtype=np.uint8)).all()


def test_caption_names_every_object_and_the_background() -> None:
    for seed in range(50):
        scene = random_scene(seed)
        text = scene.caption()
        for obj in scene.objects:
            assert f"{obj.color} {obj.kind}" in text
        assert text.endswith("background") and scene.background.colors[0] in text


def test_relations_follow_the_grid() -> None:
    bg = Background("plain", ("white",))
    above = Scene((Shape("circle", "red", "small", 0, 1), Shape("square", "blue", "small", 2, 1)), bg)
    right = Scene((Shape("star", "red", "small", 1, 2), Shape("square", "blue", "small", 1, 0)), bg)
    assert above.caption(with_size=False) == "a red circle above a blue square on a white background"
    assert right.caption(with_size=False) == "a red star right of a blue square on a white background"
    single = Scene((Shape("triangle", "green", "large", 0, 0),), Background("gradient", ("yellow", "pink")))
    assert single.caption() == "a large green triangle at the top left on a yellow to pink gradient background"


def test_recolour_changes_only_that_object() -> None:
    scene = random_scene(3, n_objects=2)
    edited = scene.recolored(0, "cyan" if scene.objects[0].color != "cyan" else "red")
    (a, masks), (b, _) = scene.render(), edited.render()
    a, b = np.asarray(a), np.asarray(b)
    changed = (a != b).any(-1)
    assert changed.any() and not changed[~masks.objects[0]].any()


def test_background_edit_keeps_objects() -> None:
    scene = random_scene(8)
    edited = scene.with_background(Background("plain", ("black",)))
    (a, masks), (b, _) = scene.render(), edited.render()
    union = masks.union()
    assert np.array_equal(np.asarray(a)[union], np.asarray(b)[union])
    assert majority_color(b, masks.background) == "black"


@pytest.mark.parametrize("texture", ["dotted", "checkered", "noisy"])
def test_unseen_textures_differ_from_plain_fill(texture: str) -> None:
    plain = Scene((Shape("square", "red", "large", 1, 1),), Background("plain", ("blue",)), seed=1)
    img_plain, masks = plain.render()
    img_tex, _ = plain.with_texture(0, texture).render()
    m = masks.objects[0]
    diff = (np.asarray(img_plain)[m] != np.asarray(img_tex)[m]).any(-1).mean()
    assert diff > 0.1
    assert texture in plain.with_texture(0, texture).caption()


def test_wide_render_keeps_one_object_per_shape() -> None:
    scene = Scene((Shape("circle", "red", "medium", 1, 0), Shape("star", "blue", "medium", 1, 2)),
                  Background("plain", ("white",)))
    image, masks = scene.render(128, 64)
    assert image.size == (128, 64) and masks.background.shape == (64, 128)
    for obj in scene.objects:
        blobs = object_pixels(image, obj.color)
        assert len(blobs) == 1
        assert classify_shape(blobs[0]) == obj.kind
