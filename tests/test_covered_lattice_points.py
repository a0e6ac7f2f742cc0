"""img2lut.metrics.covered_lattice_points against a case worked out by hand."""

import torch

from img2lut.metrics import covered_lattice_points


def test_covered_points_of_a_hand_built_batch():
    """D=3 (lattice at 0, 0.5, 1): each pixel marks its nearest point [b, g, r] (ties half to even,
    values outside [0, 1] clamped); every pixel has different r and b indices, so a swap shows."""
    pixels = [  # (r, g, b) -> (b, g, r) of the nearest lattice point
        ((1.0, 0.0, 0.0), (0, 0, 2)),
        ((0.0, 0.5, 0.9), (2, 1, 0)),  # 0.9 * 2 = 1.8 -> 2
        ((0.25, 0.75, -0.3), (0, 2, 0)),  # ties 0.5 -> 0 and 1.5 -> 2; -0.3 clamps to 0
        ((1.7, 0.3, 0.74), (1, 1, 2)),  # 1.7 clamps to 1; 0.6 -> 1; 1.48 -> 1
    ]
    images = torch.tensor([rgb for rgb, _ in pixels]).T.reshape(3, 2, 1, 2).permute(1, 0, 2, 3)
    want = torch.zeros(3, 3, 3, dtype=torch.bool)
    for _, (b, g, r) in pixels:
        want[b, g, r] = True
    assert torch.equal(covered_lattice_points(images, 3), want)
