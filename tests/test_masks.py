import numpy as np
import pytest
import torch
from PIL import Image

from spatial_erasure.masks import grid_masks, heldout_masks, mask_names, read_mask, to_latent


@pytest.mark.parametrize("size", [64, 512, 100])
def test_grid_cells_tile_the_image_once(size):
    m = grid_masks(size, 3, center=True)
    assert m.shape == (10, 1, size, size)
    assert len(mask_names()) == 10
    assert torch.equal(m[:9].sum(0), torch.ones(1, size, size))       # every pixel in exactly one cell
    cover = m[:9].mean((1, 2, 3))
    assert torch.allclose(cover, torch.full((9,), 1 / 9), atol=0.02)
    assert abs(m[9].mean().item() - 0.25) < 0.01                         # centre: half the side


def test_latent_masks_keep_the_partition():
    lat = to_latent(grid_masks(64), 16)
    assert lat.shape == (10, 1, 16, 16)
    assert torch.equal(lat[:9].sum(0), torch.ones(1, 16, 16))
    assert set(lat.unique().tolist()) == {0.0, 1.0}


def test_heldout_masks_are_not_grid_cells():
    hm, names = heldout_masks(64)
    assert names == ["rect0", "rect1", "circle", "stroke"]
    assert hm.shape == (4, 1, 64, 64)
    g = grid_masks(64)
    for m in hm:
        assert 0.03 < m.mean() < 0.5
        assert all((m * c).sum() < m.sum() for c in g[:9])          # never inside a single cell


def test_read_mask(tmp_path):
    a = np.zeros((128, 128), np.uint8)
    a[32:96, 0:64] = 255
    Image.fromarray(a).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png", 64)
    assert m.shape == (1, 1, 64, 64)
    assert m.sum() == 32 * 32
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(ValueError, match="no white pixels"):
        read_mask(tmp_path / "empty.png", 64)
    with pytest.raises(ValueError, match="cannot read mask image"):
        read_mask(tmp_path / "missing.png", 64)
