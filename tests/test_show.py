"""python -m lutkern.show: the picture's reference images by hand, and what the picture shows of a LUT."""

import numpy as np
import pytest
import torch
from PIL import Image

import lutkern
from lutkern.show import PATCH, SWEEP_H, SWEEP_W, colour_chart, hue_sweep, lut_picture, main

pytestmark = pytest.mark.usefixtures("fast_small_tensors")


def test_chart_patches_are_the_colorchecker():
    chart = colour_chart()
    assert chart.shape == (3, 4 * PATCH, 6 * PATCH)
    # Dark skin (top left), cyan (third row, last), white and black (last row ends), in 8-bit sRGB.
    for (row, col), rgb in {(0, 0): (115, 82, 68), (2, 5): (8, 133, 161), (3, 0): (243, 243, 242),
                            (3, 5): (52, 52, 52)}.items():
        centre = chart[:, row * PATCH + PATCH // 2, col * PATCH + PATCH // 2]
        torch.testing.assert_close(centre * 255, torch.tensor(rgb, dtype=torch.float32))


def test_hue_sweep_by_hand():
    sweep = hue_sweep(7, 5)  # hue 0, 60, ..., 360 across; rows white, half, full, half, black
    full = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1], [1, 0, 0]],
                        dtype=torch.float32).T
    torch.testing.assert_close(sweep[:, 0], torch.ones(3, 7))
    torch.testing.assert_close(sweep[:, 2], full)
    torch.testing.assert_close(sweep[:, 1], 0.5 + 0.5 * full)
    torch.testing.assert_close(sweep[:, 3], 0.5 * full)
    torch.testing.assert_close(sweep[:, 4], torch.zeros(3, 7))
    assert hue_sweep().shape == (3, SWEEP_H, SWEEP_W)


def _panels(picture: Image.Image) -> list[np.ndarray]:
    """The four top panels (chart, chart + LUT, sweep, sweep + LUT) of a picture."""
    a = np.asarray(picture)
    top = 16 + 10 + 16
    return [a[top:top + SWEEP_H, 10 + k * (SWEEP_W + 10):10 + k * (SWEEP_W + 10) + SWEEP_W] for k in range(4)]


def test_identity_leaves_the_references_as_they_are_and_a_look_changes_them():
    chart, graded, sweep, swept = _panels(lut_picture(lutkern.identity_lut(17)))
    assert np.abs(chart.astype(int) - graded).max() <= 1 and np.abs(sweep.astype(int) - swept).max() <= 1
    chart, graded, _, swept = _panels(lut_picture(lutkern.looks["bw"](17)))
    assert np.abs(chart.astype(int) - graded).max() > 50
    assert np.abs(graded[..., 0].astype(int) - graded[..., 2]).max() <= 1  # black and white: r == b
    assert np.abs(swept[..., 0].astype(int) - swept[..., 1]).max() <= 1


def test_coverage_adds_a_row_of_slices():
    lut = lutkern.looks["teal_orange"](9)
    plain, learned = lut_picture(lut), lut_picture(lut, covered=torch.ones(9, 9, 9, dtype=torch.bool))
    assert learned.size[0] == plain.size[0] and learned.size[1] > plain.size[1]


def test_command_writes_a_png_and_never_over_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    lutkern.write_cube(tmp_path / "look.cube", lutkern.looks["faded_warm"](9))
    assert main(["look.cube"]) == 0
    with Image.open(tmp_path / "look.png") as im:
        assert im.format == "PNG" and im.size[0] > 4 * SWEEP_W
    assert main(["look.cube"]) == 2  # exists: one line, no overwrite
    assert main(["look.cube", "--out", "look.cube", "--overwrite"]) == 2  # never the LUT itself
    err = capsys.readouterr().err.splitlines()
    assert [line.startswith("python -m lutkern.show: error: ") for line in err[-2:]] == [True, True]
    assert lutkern.read_cube(tmp_path / "look.cube").lut3d.shape == (9, 9, 9, 3)
