"""The held-out evaluation's shape confusion: which shape the judge reads for each asked one."""

from __future__ import annotations

from PIL import Image

from sine.shapes.evaluate import held_out_scenes, shape_confusion
from sine.shapes.world import COLORS, SHAPES


def test_the_worlds_own_pictures_fill_the_diagonal() -> None:
    scenes = held_out_scenes(32)
    table = shape_confusion([s.render()[0] for s in scenes], scenes)
    assert set(table) == set(SHAPES)
    assert sum(sum(row.values()) for row in table.values()) == 32
    for asked, row in table.items():
        assert set(row) <= {asked}, (asked, row)
    assert sum(len(row) for row in table.values()) >= 3  # the 32 scenes ask for several shapes


def test_a_picture_without_the_objects_colour_reads_none() -> None:
    scene = held_out_scenes(1)[0]
    background = COLORS[scene.background.colors[0]]
    table = shape_confusion([Image.new("RGB", (64, 64), background)], [scene])
    assert table[scene.objects[0].kind] == {"none": 1}
