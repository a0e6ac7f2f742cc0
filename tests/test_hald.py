"""Hald CLUT images: the pixel layout, 8- and 16-bit round trips, resampling, and rejected shapes."""

import numpy as np
import pytest
import torch
from PIL import Image

from lutkern import apply_lut, identity_lut
from lutkern.builtin_looks import LOOKS
from lutkern.hald import hald_from_lut, lut_from_hald, read_hald, resample_lut, write_hald


def _identity_hald_by_definition(level: int) -> np.ndarray:
    """The identity Hald image built pixel by pixel from the format's definition, as uint8 (H,W,3)."""
    d, side = level * level, level**3
    out = np.zeros((side, side, 3), dtype=np.uint8)
    for i in range(side * side):
        r, g, b = i % d, (i // d) % d, i // (d * d)
        out[i // side, i % side] = [round(c * 255 / (d - 1)) for c in (r, g, b)]
    return out


@pytest.mark.parametrize("level", [2, 3, 4])
def test_identity_hald_layout_and_round_trip(tmp_path, level):
    d = level * level
    write_hald(tmp_path / "id.png", identity_lut(d))
    written = np.asarray(Image.open(tmp_path / "id.png"))
    np.testing.assert_array_equal(written, _identity_hald_by_definition(level))
    got = read_hald(tmp_path / "id.png")
    torch.testing.assert_close(got, torch.round(identity_lut(d) * 255) / 255, rtol=0, atol=1e-7)


def test_16bit_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(0)
    lut = torch.rand(16, 16, 16, 3, generator=gen, dtype=torch.float64)
    write_hald(tmp_path / "r.png", lut, bit_depth=16)
    assert Image.open(tmp_path / "r.png").size == (64, 64)
    got = read_hald(tmp_path / "r.png", dtype=torch.float64)
    torch.testing.assert_close(got, torch.round(lut * 65535) / 65535, rtol=0, atol=1e-7)


def test_hald_and_lut_are_a_reshape():
    lut = torch.rand(9, 9, 9, 3)
    torch.testing.assert_close(lut_from_hald(hald_from_lut(lut)), lut, rtol=0, atol=0)


def test_non_square_sizes_are_resampled(tmp_path):
    look = LOOKS["teal_orange"]
    write_hald(tmp_path / "t.png", look(33, dtype=torch.float64), bit_depth=16)  # level 6: D = 36
    got = read_hald(tmp_path / "t.png", dtype=torch.float64)
    assert got.shape == (36, 36, 36, 3)
    torch.testing.assert_close(got, look(36, dtype=torch.float64), rtol=0, atol=3e-3)
    # Resampling is exact where the lattices coincide (every point of a 5-LUT lies on a 9-LUT's lattice).
    lut9 = torch.rand(9, 9, 9, 3, dtype=torch.float64)
    torch.testing.assert_close(resample_lut(lut9, 5), lut9[::2, ::2, ::2], rtol=0, atol=1e-12)
    img = torch.rand(3, 4, 4, dtype=torch.float64)
    lut5 = torch.rand(5, 5, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(
        apply_lut(img, resample_lut(lut5, 9), backend="torch"), apply_lut(img, lut5, backend="torch")
    )


def test_rejects_non_hald_images(tmp_path):
    Image.new("RGB", (30, 30)).save(tmp_path / "sq.png")
    Image.new("RGB", (64, 27)).save(tmp_path / "rect.png")
    for name in ("sq.png", "rect.png"):
        with pytest.raises(ValueError, match=rf"{name}: a Hald CLUT is a square image"):
            read_hald(tmp_path / name)
    with pytest.raises(ValueError, match="level"):
        write_hald(tmp_path / "x.png", identity_lut(4), level=17)
    with pytest.raises(ValueError, match="D = L"):
        hald_from_lut(identity_lut(5))
