"""img2lut.color against published data (Sharma, Wu and Dalal 2005) and colour-science."""

import numpy as np
import pytest
import torch

from img2lut.color import delta_e_2000, delta_e_2000_srgb, srgb_to_lab, srgb_to_xyz

colour = pytest.importorskip("colour")

# Table 1 of Sharma, Wu and Dalal, "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Color Res. Appl. 30(1), 2005: all 34 pairs,
# (L1, a1, b1), (L2, a2, b2), published dE00 (rounded to 4 decimals).
SHARMA_2005 = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def _sharma(dtype):
    lab1 = torch.tensor([p[0] for p in SHARMA_2005], dtype=dtype)
    lab2 = torch.tensor([p[1] for p in SHARMA_2005], dtype=dtype)
    expected = torch.tensor([p[2] for p in SHARMA_2005], dtype=torch.float64)
    return lab1, lab2, expected


def test_sharma_table_is_complete():
    assert len(SHARMA_2005) == 34


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ciede2000_matches_published_pairs(dtype):
    lab1, lab2, expected = _sharma(dtype)
    got = delta_e_2000(lab1, lab2, dim=-1)
    assert got.dtype == dtype
    # Published values have 4 decimals (rounding error <= 5e-5); float32 adds ~1e-5 on the near-180 pairs.
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-4)


def test_ciede2000_is_symmetric_and_zero_on_equal_colours():
    lab1, lab2, expected = _sharma(torch.float64)
    torch.testing.assert_close(delta_e_2000(lab2, lab1, dim=-1), expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(delta_e_2000(lab1, lab1, dim=-1), torch.zeros(34, dtype=torch.float64))


def test_ciede2000_matches_colour_science_on_random_colours():
    gen = torch.Generator().manual_seed(0)
    n = 2000
    lab1 = torch.stack([torch.rand(n, generator=gen) * 100, (torch.rand(n, generator=gen) - 0.5) * 200,
                        (torch.rand(n, generator=gen) - 0.5) * 200], -1).double()
    # Half far apart, half close (where the hue and chroma terms matter most).
    lab2 = lab1 + torch.randn(n, 3, generator=gen, dtype=torch.float64) * torch.where(
        torch.arange(n) < n // 2, 30.0, 1.0).double()[:, None]
    ref = colour.difference.delta_E_CIE2000(lab1.numpy(), lab2.numpy())
    torch.testing.assert_close(delta_e_2000(lab1, lab2, dim=-1), torch.from_numpy(ref), rtol=1e-9, atol=1e-9)


def test_ciede2000_channel_dim_and_broadcast():
    lab1, lab2, expected = _sharma(torch.float64)
    # (34,3) -> images (1,3,34,1) with channels on dim -3, compared against a single broadcast colour too.
    img1 = lab1.T.reshape(1, 3, 34, 1)
    img2 = lab2.T.reshape(1, 3, 34, 1)
    torch.testing.assert_close(delta_e_2000(img1, img2).reshape(34), expected, rtol=0, atol=1e-4)
    one = delta_e_2000(img1, lab2[0].reshape(1, 3, 1, 1))
    torch.testing.assert_close(one.reshape(34), delta_e_2000(lab1, lab2[:1], dim=-1))


def _colour_srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    return colour.XYZ_to_Lab(colour.sRGB_to_XYZ(rgb))  # both default to D65 (xy 0.3127, 0.3290)


def test_srgb_to_lab_matches_colour_science():
    gen = torch.Generator().manual_seed(1)
    rgb = torch.rand(4096, 3, generator=gen, dtype=torch.float64)
    # Corners of the cube, both sides of the sRGB knee and very dark values (the linear Lab branch). The knee
    # itself is left out: IEC puts 0.04045 on the linear side, colour-science its threshold at 0.0404499.
    extras = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.04044, 0.0404, 0.0405],
                           [0.001, 0.002, 0.0005], [0.5, 0.5, 0.5]], dtype=torch.float64)
    rgb = torch.cat([rgb, extras])
    ref = torch.from_numpy(_colour_srgb_to_lab(rgb.numpy()))
    torch.testing.assert_close(srgb_to_lab(rgb, dim=-1), ref, rtol=0, atol=1e-6)
    got32 = srgb_to_lab(rgb.float(), dim=-1)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), ref, rtol=0, atol=2e-4)
    ref_xyz = torch.from_numpy(colour.sRGB_to_XYZ(rgb.numpy()))
    torch.testing.assert_close(srgb_to_xyz(rgb, dim=-1), ref_xyz, rtol=0, atol=1e-9)


def test_white_and_black():
    lab = srgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64), dim=-1)
    # The published 4-decimal matrix puts sRGB white within 0.01 of the D65 neutral axis.
    torch.testing.assert_close(lab, torch.tensor([[100.0, 0, 0], [0, 0, 0]], dtype=torch.float64),
                               rtol=0, atol=1e-2)
    assert lab[0, 0] == pytest.approx(100, abs=1e-9)


def test_delta_e_srgb_images():
    gen = torch.Generator().manual_seed(2)
    a = torch.rand(2, 3, 5, 7, generator=gen)
    b = (a + 0.05 * torch.randn(2, 3, 5, 7, generator=gen)).clamp(0, 1)
    got = delta_e_2000_srgb(a, b)
    assert got.shape == (2, 5, 7)
    lab_a = _colour_srgb_to_lab(a.double().permute(0, 2, 3, 1).numpy())
    lab_b = _colour_srgb_to_lab(b.double().permute(0, 2, 3, 1).numpy())
    ref = torch.from_numpy(colour.difference.delta_E_CIE2000(lab_a, lab_b)).float()
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-3)


def test_bad_shapes():
    with pytest.raises(ValueError, match="3 channels"):
        srgb_to_lab(torch.zeros(2, 4, 5, 5))
    with pytest.raises(ValueError, match="lab2"):
        delta_e_2000(torch.zeros(3, 2), torch.zeros(2, 2), dim=0)
    with pytest.raises(TypeError):
        srgb_to_lab(np.zeros((3, 2, 2)))
