"""img2lut.metrics.lattice_coverage of an image batch against a case worked out by hand (the general
formula is checked against hat functions in test_fit.py)."""

import numpy as np
import pytest
import torch

from img2lut.codes import BATCH, Codes
from img2lut.metrics import COVERED_WEIGHT, lattice_coverage


def test_coverage_of_a_hand_built_batch():
    """D=3 (lattice at 0, 0.5, 1): a pixel on a lattice point gives it weight 1, one halfway between two
    points half to each; values outside [0, 1] count at the edge. Every pixel has different r and b, so a
    swap of the axes shows."""
    pixels = [  # (r, g, b) -> {(b, g, r): weight}
        ((1.0, 0.0, 0.0), {(0, 0, 2): 1.0}),
        ((0.0, 0.5, 1.0), {(2, 1, 0): 1.0}),
        ((0.25, 0.0, 0.0), {(0, 0, 0): 0.5, (0, 0, 1): 0.5}),
        ((-0.3, 1.7, 0.5), {(1, 2, 0): 1.0}),  # clamped to (0, 1, 0.5)
    ]
    images = torch.tensor([rgb for rgb, _ in pixels]).T.reshape(3, 2, 1, 2).permute(1, 0, 2, 3)
    want = torch.zeros(3, 3, 3)
    for _, weights in pixels:
        for (b, g, r), w in weights.items():
            want[b, g, r] += w
    coverage = lattice_coverage(images, 3)
    torch.testing.assert_close(coverage, want)
    assert int((coverage >= COVERED_WEIGHT).sum()) == 3  # the half-covered pair does not count


@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_coverage_of_8_bit_codes_counted_by_colour_is_the_per_pixel_sum(interpolation):
    gen = torch.Generator().manual_seed(0)
    array = torch.randint(0, 256, (BATCH + 3, 3, 5, 7), generator=gen, dtype=torch.uint8)
    array[:, :, 0] = 0  # repeated colours and both ends of the range
    array[:, :, 1] = 255
    array[::2, 0, 2] = 17
    codes = Codes(array.numpy(), np.full(len(array), 255, dtype=np.float32)).subset([4, 0, 66, 4, 9])
    got = lattice_coverage(codes, 9, interpolation)
    want = lattice_coverage(codes[:], 9, interpolation)  # apply_lut's gradient over every pixel
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    assert float(got.sum()) == pytest.approx(5 * 35, rel=1e-6)
