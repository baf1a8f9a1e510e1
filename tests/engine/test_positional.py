import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from sine.finetune import FinetuneSettings, finetune
from sine.positional import (
    GRID,
    PositionalHook,
    axis_embedding,
    crop_embedding,
    positional_table,
    region_embedding,
)


def expected(p: int, k: int, d: int) -> tuple[float, float]:
    half = d // 2
    omega = 10000 ** (-k / (half - 1))
    return math.sin(p * omega), math.cos(p * omega)


@pytest.mark.parametrize("channels", [32, 320])
@pytest.mark.parametrize("row,col", [(0, 0), (5, 17), (127, 64), (63, 127)])
def test_table_matches_the_formula(channels, row, col):
    table = positional_table(channels)
    d = channels // 2
    half = d // 2
    assert table.shape == (channels, GRID, GRID)
    for k in (0, 1, half // 2, half - 1):
        s, c = expected(col + 1, k, d)
        assert table[k, row, col].item() == pytest.approx(s, abs=1e-6)
        assert table[half + k, row, col].item() == pytest.approx(c, abs=1e-6)
        s, c = expected(row + 1, k, d)
        assert table[d + k, row, col].item() == pytest.approx(s, abs=1e-6)
        assert table[d + half + k, row, col].item() == pytest.approx(c, abs=1e-6)


def test_axis_embedding_frequencies_span_one_to_ten_thousandth():
    e = axis_embedding(8, grid=4)  # D=8 → 4 frequencies, ω_0 = 1, ω_3 = 1e-4
    assert e[0, 0].item() == pytest.approx(math.sin(1.0))
    assert e[0, 3].item() == pytest.approx(math.sin(1e-4), rel=1e-4)


def test_table_rejects_channel_counts_it_cannot_split():
    with pytest.raises(ValueError):
        positional_table(30)


def test_crop_bilinear_uses_align_corners():
    table = positional_table(32)
    box = (10, 20, 50, 100)
    out = crop_embedding(table, box, (8, 16), "bilinear")
    assert out.shape == (32, 8, 16)
    # align_corners: the corners of the output are exactly the corner cells of the crop
    assert torch.allclose(out[:, 0, 0], table[:, 10, 20])
    assert torch.allclose(out[:, -1, -1], table[:, 49, 99])
    ref = F.interpolate(table[None, :, 10:50, 20:100], size=(8, 16), mode="bilinear", align_corners=True)[0]
    assert torch.allclose(out, ref)


def test_crop_nearest_picks_existing_cells():
    table = positional_table(32)
    out = crop_embedding(table, (0, 0, 64, 64), (16, 16), "nearest")
    # nearest with scale 4 picks every 4th cell, no blending
    assert torch.equal(out, table[:, 0:64:4, 0:64:4])


def test_whole_picture_region_equals_resizing_the_whole_table():
    table = positional_table(32)
    region = region_embedding(table, (24.0, 40.0), (0, 0), (24, 40), "bilinear")
    ref = F.interpolate(table[None], size=(24, 40), mode="bilinear", align_corners=True)[0]
    assert torch.allclose(region, ref, atol=1e-5)


def test_tile_regions_are_crops_of_the_whole():
    table = positional_table(32)
    whole = region_embedding(table, (30.0, 50.0), (0, 0), (30, 50), "bilinear")
    tile = region_embedding(table, (30.0, 50.0), (7, 20), (16, 16), "bilinear")
    assert torch.allclose(tile, whole[:, 7:23, 20:36], atol=1e-5)


@pytest.mark.parametrize("size", [(64, 64), (50, 50), (24, 40), (200, 130)])
def test_whole_picture_nearest_region_equals_training_resize(size):
    """Paintings: sampling's whole picture reads the same table cells as training's whole-table view
    (the old grid_sample(nearest, align_corners) rounding differed on 75 % of cells at 64×64)."""
    table = positional_table(32)
    region = region_embedding(table, (float(size[0]), float(size[1])), (0, 0), size, "nearest")
    assert torch.equal(region, crop_embedding(table, (0, 0, GRID, GRID), size, "nearest"))


def test_nearest_tile_regions_are_crops_of_the_whole():
    table = positional_table(32)
    whole = region_embedding(table, (30.0, 50.0), (0, 0), (30, 50), "nearest")
    tile = region_embedding(table, (30.0, 50.0), (7, 20), (16, 16), "nearest")
    assert torch.equal(tile, whole[:, 7:23, 20:36])
    edge = region_embedding(table, (30.0, 50.0), (24, 40), (8, 12), "nearest")  # past the edge: border repeats
    assert torch.equal(edge[:, -1, -1], table[:, -1, -1])


def test_hook_adds_only_while_set(base):
    unet = base.unet
    x = torch.randn(1, 4, 8, 8)
    plain = unet.conv_in(x)
    hook = PositionalHook(unet)
    try:
        pe = torch.ones(32, 8, 8)
        with hook.using(pe):
            assert torch.allclose(unet.conv_in(x), plain + 1)
        assert torch.allclose(unet.conv_in(x), plain)
    finally:
        hook.remove()
    assert not unet.conv_in._forward_hooks


def test_pretrained_unet_never_sees_the_embedding(base, source_image):
    x = torch.randn(1, 4, 8, 8)
    t = torch.tensor([500])
    states = base.encode_prompts(["picture of a sks dog"])
    before = base.unet(x, t, states).sample
    ft = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(method="lora", steps=2, patch=True))
    assert ft.pe_table is not None
    assert not base.unet.conv_in._forward_hooks  # the hook lives on the fine-tuned copy only
    assert len(ft.unet.conv_in._forward_hooks) == 1
    after = base.unet(x, t, states).sample
    assert torch.equal(before, after)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_saved_finetuned_unet_is_a_plain_unet(base, source_image, tmp_path, method):
    ft = finetune(base, source_image, "picture of a sks dog", FinetuneSettings(method=method, steps=2, lr=1e-3))
    folder = ft.export_unet(tmp_path / "unet")
    plain = UNet2DConditionModel.from_pretrained(folder)
    assert type(plain) is UNet2DConditionModel
    assert not plain.conv_in._forward_hooks
    assert not any("lora" in name for name, _ in plain.named_parameters())
    x = torch.randn(1, 4, 8, 8)
    t = torch.tensor([300])
    states = ft.encode_source()
    with ft.hook.using(None):
        ref = ft.unet(x, t, states).sample
    assert torch.allclose(plain(x, t, states).sample, ref, atol=1e-4)
