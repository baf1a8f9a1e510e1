import random

from PIL import Image

from sine.patches import PatchSampler, WholeImageSampler, draw_box
from sine.positional import GRID


def test_boxes_have_independent_sides_in_range_and_fit_the_grid():
    rng = random.Random(0)
    boxes = [draw_box(rng) for _ in range(2000)]
    heights = [y1 - y0 for y0, x0, y1, x1 in boxes]
    widths = [x1 - x0 for y0, x0, y1, x1 in boxes]
    for y0, x0, y1, x1 in boxes:
        assert 0 <= y0 < y1 <= GRID and 0 <= x0 < x1 <= GRID
    assert min(heights) >= int(GRID * 0.1) and max(heights) <= GRID - 1
    assert min(widths) >= int(GRID * 0.1) and max(widths) <= GRID - 1
    assert sum(h != w for h, w in zip(heights, widths, strict=True)) > 1900  # drawn independently
    assert min(b[0] for b in boxes) == 0 and max(b[2] for b in boxes) == GRID  # offsets cover the grid


def test_patch_is_the_boxed_region_of_the_double_size_view():
    # left half black, right half white: a box inside the right half must be all white
    img = Image.new("RGB", (50, 30), "black")
    img.paste((255, 255, 255), (25, 0, 50, 30))
    sampler = PatchSampler(img, train_size=64, rng=random.Random(3))
    assert sampler.view.size == (128, 128)
    for _ in range(200):
        view = sampler.sample()
        assert view.image.size == (64, 64)
        y0, x0, y1, x1 = view.box
        lo, hi = view.image.convert("L").getextrema()
        if x0 >= GRID // 2 + 2:
            assert lo > 200
        if x1 <= GRID // 2 - 2:
            assert hi < 50


def test_whole_image_variant_is_the_resized_source_with_the_full_box():
    img = Image.new("RGB", (40, 20), (10, 200, 30))
    view = WholeImageSampler(img, train_size=32).sample()
    assert view.image.size == (32, 32)
    assert view.box == (0, 0, GRID, GRID)
    assert view.image.getpixel((5, 5)) == (10, 200, 30)
