"""Built-in looks: ranges, sizes, smoothness, and what each look promises (bw: grey, monotone, S curve)."""

import pytest
import torch

import lutkern
from lutkern import apply_lut, identity_lut
from lutkern.builtin_looks import LOOKS, PANCHROMATIC_WEIGHTS

NAMES = sorted(LOOKS)


def test_exported_read_only_mapping():
    assert lutkern.looks is LOOKS
    assert {"bw", "teal_orange", "faded_warm", "cool_contrast"} <= set(NAMES)
    with pytest.raises(TypeError):
        lutkern.looks["bw"] = None
    assert lutkern.looks["bw"](33).shape == (33, 33, 33, 3)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [2, 17, 33])
def test_shape_dtype_range(name, size):
    lut = LOOKS[name](size)
    assert lut.shape == (size, size, size, 3) and lut.dtype == torch.float32
    assert torch.isfinite(lut).all()
    assert lut.min() >= 0 and lut.max() <= 1
    assert LOOKS[name](size, dtype=torch.float64, device="cpu").dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
def test_sizes_sample_one_function(name):
    # Every size samples the same continuous look: the 33 lattice contains the 17 lattice.
    fine, coarse = LOOKS[name](33, dtype=torch.float64), LOOKS[name](17, dtype=torch.float64)
    torch.testing.assert_close(fine[::2, ::2, ::2], coarse, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_smooth(name):
    # A smooth look is well approximated by trilinear interpolation of a coarse sampling of itself.
    fine = LOOKS[name](33, dtype=torch.float64)
    grid = identity_lut(33, dtype=torch.float64).permute(3, 0, 1, 2).reshape(3, 33 * 33, 33)
    from_coarse = apply_lut(grid, LOOKS[name](17, dtype=torch.float64), backend="torch")
    err = (from_coarse.reshape(3, 33, 33, 33).permute(1, 2, 3, 0) - fine).abs().max().item()
    assert err < 0.01, f"{name}: trilinear 17^3 vs 33^3 differs by {err:.4f}"


def test_bw_is_grey_monotone_and_a_function_of_the_panchromatic_mix():
    lut = LOOKS["bw"](33, dtype=torch.float64)
    torch.testing.assert_close(lut[..., 0], lut[..., 1], rtol=0, atol=0)
    torch.testing.assert_close(lut[..., 0], lut[..., 2], rtol=0, atol=0)
    y = lut[..., 0]
    for dim in range(3):  # non-decreasing along blue, green and red
        assert (y.diff(dim=dim) > 0).all()
    fn = LOOKS["bw"].colour_fn
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(200, 3, generator=gen, dtype=torch.float64) * 0.5 + 0.25
    # Move along a direction orthogonal to the mix weights: same mix, so the same grey.
    w = torch.tensor(PANCHROMATIC_WEIGHTS, dtype=torch.float64)
    step = torch.linalg.cross(w.expand_as(a), torch.rand(200, 3, generator=gen, dtype=torch.float64))
    b = a + 0.2 * step / step.norm(dim=1, keepdim=True)
    torch.testing.assert_close(fn(a), fn(b), rtol=0, atol=1e-12)


def test_bw_tone_curve_is_film_like():
    fn = LOOKS["bw"].colour_fn
    grey = torch.linspace(0, 1, 1001, dtype=torch.float64)[:, None].expand(-1, 3)
    y = fn(grey)[:, 0]
    slope = y.diff() * 1000
    assert 0 < y[0] < 0.05 and 0.95 < y[-1] < 1  # printed black and white, not clipped
    assert slope[450] > 1.2  # contrast in the mid-tones ...
    assert slope[:20].max() < 0.6 and slope[-20:].max() < 0.6  # ... a toe and a shoulder


@pytest.mark.parametrize("name", [n for n in NAMES if n != "bw"])
def test_colour_looks_grade_colour(name):
    lut = LOOKS[name](17, dtype=torch.float64)
    ident = identity_lut(17, dtype=torch.float64)
    assert (lut - ident).abs().mean() > 0.03, "look is too close to identity"
    chroma = lut.max(dim=-1).values - lut.min(dim=-1).values
    assert chroma.mean() > 0.15, "colour look lost its colour"
    for other in NAMES:
        if other != name:
            assert (lut - LOOKS[other](17, dtype=torch.float64)).abs().mean() > 0.02
