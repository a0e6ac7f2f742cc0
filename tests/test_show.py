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


# Where the lattice slices are drawn, from the layout's sizes: row r (0: output, 1: covered), column c.
def _slice(picture: Image.Image, row: int, col: int) -> np.ndarray:
    pad, title, plot, size = 10, 16, 200, 128
    middle = title + pad + title + SWEEP_H + 2 * pad
    x = 3 * pad + plot + col * (size + 2 * pad)
    y = middle + row * (title + size + pad) + title
    return np.asarray(picture)[y:y + size, x:x + size].astype(int)


def _block(image: np.ndarray, red: int, green: int, d: int) -> np.ndarray:
    """The centre pixel of lattice point (red, green) of a ``d``-point slice: red across, green up."""
    size = image.shape[0]
    return image[size - 1 - (green * size + size // 2) // d, (red * size + size // 2) // d]


@pytest.mark.parametrize("d", [2, 3, 4])
def test_slices_show_each_lattice_point_where_it_belongs(d):
    """A LUT whose every point has its own output, (r, g, b) -> (r, 1 - g, b / 2): each block of a slice
    shows its own point's output, with red across, green up and the plane the label says."""
    lut = lutkern.identity_lut(d)
    lut[..., 1] = 1 - lut[..., 1]
    lut[..., 2] = lut[..., 2] / 2
    picture = lut_picture(lut)
    planes = {2: [0, 1], 3: [0, 1, 2], 4: [0, 1, 3]}[d]  # a size-2 LUT has no plane at 1/2
    for col, b in enumerate(planes):
        image = _slice(picture, 0, col)
        for r in range(d):
            for g in range(d):
                want = np.round(255 * np.array([r / (d - 1), 1 - g / (d - 1), b / (d - 1) / 2]))
                assert np.abs(_block(image, r, g, d) - want).max() <= 1, (d, b, r, g)
    if d == 2:  # only two slices: the third place stays white
        assert (_slice(picture, 0, 2) == 255).all()


def test_coverage_row_is_bright_where_covered_and_dim_elsewhere():
    d = 3
    covered = torch.zeros(d, d, d, dtype=torch.bool)
    covered[0, 0, 2] = True  # blue 0, green 0, red 1: the bottom-right block of the first slice
    covered[2, 2, 0] = True  # blue 1, green 1, red 0: the top-left block of the last slice
    picture = lut_picture(lutkern.identity_lut(d), covered=covered)
    first, last = _slice(picture, 1, 0), _slice(picture, 1, 2)
    np.testing.assert_array_equal(_block(first, 2, 0, d), [255, 0, 0])  # its input colour, full
    np.testing.assert_array_equal(_block(last, 0, 2, d), [0, 255, 255])
    np.testing.assert_array_equal(_block(first, 2, 2, d), [38, 38, 0])  # not covered: 0.15 of it
    np.testing.assert_array_equal(_block(last, 2, 0, d), [38, 0, 38])


def test_out_writes_the_format_its_name_says_or_refuses(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bw", "--out", "bw.jpg"]) == 0
    with Image.open(tmp_path / "bw.jpg") as im:
        assert im.format == "JPEG"
    assert main(["bw", "--out", "bw.tif"]) == 0
    with Image.open(tmp_path / "bw.tif") as im:
        assert im.format == "TIFF"
    assert main(["bw", "--out", "bw.bmp"]) == 2
    assert "PNG, JPEG or TIFF" in capsys.readouterr().err and not (tmp_path / "bw.bmp").exists()


def test_a_hald_image_with_the_default_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    lutkern.write_hald(tmp_path / "look.png", lutkern.looks["bw"](4))
    before = (tmp_path / "look.png").read_bytes()
    assert main(["look.png"]) == 0
    assert (tmp_path / "look.png").read_bytes() == before
    with Image.open(tmp_path / "look.show.png") as im:
        assert im.format == "PNG"
    assert capsys.readouterr().err.strip() == "wrote look.show.png"


def test_errors_name_the_file_once_and_never_a_temporary(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert main(["broken.png"]) == 2
    assert main(["bw", "--out", "missing/bw.png"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].count("broken.png") == 1
    assert lines[1] == "python -m lutkern.show: error: cannot write missing/bw.png: No such file or directory"
    assert not any(".lutkern.tmp" in line or "Errno" in line for line in lines)


def test_a_clf_chain_is_shown_as_its_transform_on_a_lattice(tmp_path, monkeypatch, capsys):
    """A .clf (a chain of steps, no single table) is drawn as its whole transform sampled on a lattice of
    its 3D table's size: the same picture as that sampled table's."""
    from lutkern.formats import LUTChain, Range, write_lut
    from lutkern.grading import sample_lut

    monkeypatch.chdir(tmp_path)
    chain = LUTChain([Range(0.0, 0.8, 0.0, 1.0), lutkern.CubeLUT(lutkern.looks["cool_contrast"](5))])
    write_lut("look.clf", chain)
    assert main(["look.clf"]) == 0
    stored = lutkern.read_lut("look.clf")  # 6 decimals, float32
    expected = lut_picture(lutkern.CubeLUT(sample_lut(stored, 5).float()), title="look.clf")
    with Image.open(tmp_path / "look.png") as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(expected))
