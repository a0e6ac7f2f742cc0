"""img2lut.data: pairing by file name, every Pillow mode to RGB float, resizing, the split."""

import numpy as np
import pytest
import torch
from PIL import Image

from img2lut.data import (
    DataError,
    group_names,
    pair_files,
    read_rgb,
    resize,
    split_groups,
    split_names,
)
from img2lut.pair_loading import load_pairs


def _save_rgb(path, colour, size=(8, 8)):
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def folders(tmp_path):
    ins, outs = tmp_path / "inputs", tmp_path / "targets"
    ins.mkdir()
    outs.mkdir()
    return ins, outs


def test_pairs_by_stem_not_listing_order_and_extensions_may_differ(folders):
    ins, outs = folders
    # Each pair shares a colour so a wrong pairing shows in the pixels.
    colours = {"b": (10, 20, 30), "a": (200, 100, 50), "c": (0, 255, 0)}
    for stem, colour in colours.items():
        _save_rgb(ins / f"{stem}.png", colour)
        _save_rgb(outs / f"{stem}.{'bmp' if stem == 'a' else 'png'}", colour)
    (ins / "notes.txt").write_text("not an image")
    (ins / ".hidden.png").write_bytes(b"")
    pairs = pair_files(ins, outs)
    assert [p.name for p in pairs] == ["a", "b", "c"]
    assert pairs[0].target.suffix == ".bmp"
    data = load_pairs(pairs, image_size=8)
    assert data.inputs.shape == (3, 3, 8, 8)
    torch.testing.assert_close(data.inputs.tensor(), data.targets.tensor())
    expected = torch.tensor([colours[n] for n in ["a", "b", "c"]], dtype=torch.float32) / 255
    torch.testing.assert_close(data.inputs[:, :, 0, 0], expected)


def test_unmatched_files_are_all_listed(folders):
    ins, outs = folders
    for stem in ("same", "only_in_1", "only_in_2"):
        _save_rgb(ins / f"{stem}.png", (0, 0, 0))
    for stem in ("same", "only_out"):
        _save_rgb(outs / f"{stem}.jpg", (0, 0, 0))
    with pytest.raises(DataError) as err:
        pair_files(ins, outs)
    msg = str(err.value)
    assert "only_in_1" in msg and "only_in_2" in msg and "only_out" in msg and "same" not in msg
    assert "\n" not in msg


def test_pair_of_different_sizes_names_both_files(folders):
    ins, outs = folders
    _save_rgb(ins / "x.png", (0, 0, 0), size=(8, 6))
    _save_rgb(outs / "x.png", (0, 0, 0), size=(8, 8))
    with pytest.raises(DataError, match=r"inputs/x\.png is 8x6 but .*targets/x\.png is 8x8"):
        load_pairs(pair_files(ins, outs), image_size=8)


@pytest.mark.parametrize("problem", ["missing", "empty", "not_a_folder", "duplicate_stem"])
def test_bad_folders(tmp_path, problem):
    folder = tmp_path / "inputs"
    other = tmp_path / "targets"
    other.mkdir()
    _save_rgb(other / "a.png", (0, 0, 0))
    if problem == "empty":
        folder.mkdir()
        (folder / "readme.txt").write_text("no images here")
    elif problem == "not_a_folder":
        folder.write_text("a file")
    elif problem == "duplicate_stem":
        folder.mkdir()
        _save_rgb(folder / "a.png", (0, 0, 0))
        _save_rgb(folder / "a.jpg", (0, 0, 0))
    with pytest.raises(DataError, match="inputs"):
        pair_files(folder, other)


def test_unreadable_image_is_a_data_error_naming_it(folders):
    ins, outs = folders
    (ins / "x.png").write_bytes(b"not a png")
    _save_rgb(outs / "x.png", (0, 0, 0))
    with pytest.raises(DataError, match=r"x\.png"):
        load_pairs(pair_files(ins, outs), image_size=8)


# ---- every Pillow mode becomes RGB float in [0,1] -------------------------------------------------

def test_grayscale_becomes_three_equal_channels(tmp_path):
    values = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(values, "L").save(tmp_path / "g.png")
    px = read_rgb(tmp_path / "g.png")
    expected = torch.from_numpy(values).float() / 255
    for c in range(3):
        torch.testing.assert_close(px[c], expected)


def test_palette_maps_through_the_palette(tmp_path):
    im = Image.new("P", (4, 1))
    im.putpalette([255, 0, 0, 0, 128, 255] + [0] * (256 * 3 - 6))
    im.putdata([0, 1, 1, 0])
    im.save(tmp_path / "p.png")
    px = read_rgb(tmp_path / "p.png")
    red, blue = torch.tensor([1.0, 0, 0]), torch.tensor([0, 128 / 255, 1.0])
    torch.testing.assert_close(px[:, 0, :].T, torch.stack([red, blue, blue, red]))


def test_rgba_keeps_the_stored_colour(tmp_path):
    Image.new("RGBA", (3, 3), (10, 200, 30, 7)).save(tmp_path / "a.png")
    px = read_rgb(tmp_path / "a.png")
    assert px.shape == (3, 3, 3)
    torch.testing.assert_close(px[:, 1, 1], torch.tensor([10, 200, 30]) / 255)


def test_cmyk_primaries(tmp_path):
    # White (no ink) and pure cyan ink: every CMYK->RGB convention agrees on these two.
    im = Image.new("CMYK", (2, 1))
    im.putdata([(0, 0, 0, 0), (255, 0, 0, 0)])
    im.save(tmp_path / "c.jpg", quality=100)
    px = read_rgb(tmp_path / "c.jpg")
    torch.testing.assert_close(px[:, 0, 0], torch.ones(3), atol=3 / 255, rtol=0)
    torch.testing.assert_close(px[:, 0, 1], torch.tensor([0.0, 1, 1]), atol=12 / 255, rtol=0)


def test_16bit_png_keeps_its_precision(tmp_path):
    codes = np.array([[1000, 1001, 1002, 65535]], dtype=np.uint16)  # one 8-bit code apart: 257
    Image.fromarray(codes).save(tmp_path / "d.png")  # uint16 -> mode I;16
    assert Image.open(tmp_path / "d.png").mode.startswith("I;16")
    px = read_rgb(tmp_path / "d.png")
    expected = torch.from_numpy(codes.astype(np.float64) / 65535).float()
    torch.testing.assert_close(px[0], expected, atol=1e-7, rtol=0)


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)  # red at the stored top-left
    im = Image.fromarray(rgb, "RGB")
    exif = im.getexif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    im.save(tmp_path / "o.jpg", exif=exif, quality=100, subsampling=0)
    px = read_rgb(tmp_path / "o.jpg")
    assert px.shape == (3, 3, 2)
    # Rotating clockwise moves the top-left corner to the top-right.
    assert px[0, 0, 1] > 0.8 and px[0, 0, 0] < 0.2


# ---- resizing and splitting ----------------------------------------------------------------------

def test_resize_matches_pillow_bilinear():
    torch.manual_seed(0)
    img = torch.rand(3, 37, 23)
    ours = resize(img, 16)
    ref = torch.stack([
        torch.from_numpy(np.array(Image.fromarray(img[c].numpy(), "F").resize((16, 16), Image.BILINEAR)))
        for c in range(3)
    ])
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_load_pairs_resizes_to_image_size(folders):
    ins, outs = folders
    _save_rgb(ins / "x.png", (255, 0, 0), size=(20, 12))
    _save_rgb(outs / "x.png", (0, 0, 255), size=(20, 12))
    data = load_pairs(pair_files(ins, outs), image_size=16)
    assert data.inputs.shape == data.targets.shape == (1, 3, 16, 16)
    torch.testing.assert_close(data.inputs[0, :, 5, 7], torch.tensor([1.0, 0, 0]))


def test_split_is_deterministic_disjoint_and_complete():
    names = [f"img{i:03d}" for i in range(50)]
    train, val = split_names(names, 0.2)
    assert len(val) == 10 and sorted(train + val) == list(range(50))
    # The same names in another order give the same split (by name).
    shuffled = names[::-1]
    train2, val2 = split_names(shuffled, 0.2)
    assert {shuffled[i] for i in val2} == {names[i] for i in val}
    # Not simply the first or last names.
    assert val != list(range(10)) and val != list(range(40, 50))


@pytest.mark.parametrize("fraction,names", [(0.0, ["a", "b"]), (1.0, ["a", "b"]), (0.5, ["a"])])
def test_split_rejects_impossible_requests(fraction, names):
    with pytest.raises(DataError):
        split_names(names, fraction)


def test_split_keeps_one_on_each_side():
    train, val = split_names(["a", "b", "c"], 0.01)
    assert len(val) == 1 and len(train) == 2


def test_default_grouping_drops_a_trailing_counter():
    names = ["beach-003", "beach-004", "city_crop12", "city_crop2", "forest 1", "forest.f07", "lake",
             "lake2"]
    grouping = group_names(names)
    assert grouping.groups == ["beach", "beach", "city", "city", "forest", "forest", "lake", "lake2"]
    assert grouping.count == 5 and "counter" in grouping.rule


def test_default_grouping_leaves_camera_numbering_alone():
    # IMG_0001 ... share a prefix because of the camera, not the photograph: fewer than three groups
    # is no description of photographs, so every file stays its own.
    names = [f"IMG_{i:04d}" for i in range(1, 9)] + ["DSC_0001"]
    grouping = group_names(names)
    assert grouping.groups == names and "one photograph per pair" in grouping.rule


def test_grouping_by_a_regular_expression():
    names = ["shotA_ev-1", "shotA_ev+1", "shotB_ev0", "other"]
    with pytest.warns(UserWarning, match="does not match 1 of the 4 pair names \\(other\\)"):
        assert group_names(names, r"^(?P<group>shot\w)_").groups == ["shotA", "shotA", "shotB", "other"]
        assert group_names(names, r"^(shot\w)_").groups == ["shotA", "shotA", "shotB", "other"]
    assert group_names(names, "none").groups == names
    with pytest.raises(DataError, match="regular expression"):
        group_names(names, "(")


def test_split_groups_holds_out_whole_photographs():
    groups = [f"photo{i % 7}" for i in range(70)]  # 7 photographs of 10 crops each, interleaved
    train, val = split_groups(groups, 0.2)
    assert sorted(train + val) == list(range(70))
    held, kept = {groups[i] for i in val}, {groups[i] for i in train}
    assert not held & kept and len(held) == 2  # 20 pairs: two whole photographs
    # The split depends on the keys alone, not on their order.
    reordered = groups[::-1]
    _, val2 = split_groups(reordered, 0.2)
    assert {reordered[i] for i in val2} == held
    with pytest.raises(DataError, match="at least 2 photographs"):
        split_groups(["one"] * 5, 0.2)
    # Never every photograph: with two groups and a large fraction one stays for training.
    train, val = split_groups(["a"] * 3 + ["b"] * 3, 0.9)
    assert len(train) == 3 and len(val) == 3
