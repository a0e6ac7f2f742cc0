"""python -m img2lut.predict and the img2lut.load API: the written .cube against colour-science, strips,
bit depth, EXIF orientation, per-file errors and bad checkpoints."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import lutkern
from img2lut import checkpoint
from img2lut.data import resize
from img2lut.model import ResNetLUTGenerator, lut_logits
from img2lut.predict import main
from img2lut.prediction import load, thumbnail_from_codes
from lutkern.imageio import decode_image, write_codes

colour = pytest.importorskip("colour")

LUT = 5
IMAGE_SIZE, CNN_SIZE = 32, 16


pytestmark = pytest.mark.usefixtures("fast_small_tensors")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A checkpoint whose LUTs are the teal/orange look plus an image-dependent part (small random
    last weight), so every image gets a different, far-from-identity LUT."""
    torch.manual_seed(0)
    model = ResNetLUTGenerator(LUT, "trilinear", "identity")
    look = lutkern.looks["teal_orange"](LUT)
    with torch.no_grad():
        logits = lut_logits(look)
        model.lut_generator[-1].bias.copy_(logits.reshape(-1))
        model.lut_generator[-1].weight.mul_(10000)  # features differ little between images: amplify
    path = tmp_path_factory.mktemp("model") / "checkpoint.pt"
    config = {"image_size": IMAGE_SIZE, "cnn_size": CNN_SIZE}
    checkpoint.save_checkpoint(path, model=model.eval(), config=config)
    return path


def _photo(h: int, w: int, seed: int, depth: int = 8) -> np.ndarray:
    """Smooth random colours plus noise, ``(h,w,3)`` uint8 or uint16 codes covering most of the cube."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 4, 5, generator=gen)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)[0]
    img = (img + 0.05 * torch.randn(3, h, w, generator=gen)).clamp(0, 1)
    top = 255 if depth == 8 else 65535
    codes = (img * top).round().permute(1, 2, 0).numpy()
    return codes.astype(np.uint8 if depth == 8 else np.uint16)


def _save(path, codes: np.ndarray, exif: bytes | None = None, icc: bytes | None = None):
    write_codes(path, np.ascontiguousarray(codes), exif=exif, icc_profile=icc)
    return path


def _colour_apply(cube_path, codes: np.ndarray, method: str) -> np.ndarray:
    """colour-science's application of the .cube to ``codes``, rounded to the same codes."""
    top = 255.0 if codes.dtype == np.uint8 else 65535.0
    lut = colour.read_LUT(str(cube_path))  # LUT3D, table indexed [r, g, b] (colour's own convention)
    interpolator = {"trilinear": colour.algebra.table_interpolation_trilinear,
                    "tetrahedral": colour.algebra.table_interpolation_tetrahedral}[method]
    out = lut.apply(codes.astype(np.float64) / top, interpolator=interpolator)
    return np.round(np.clip(out, 0, 1) * top).astype(codes.dtype)


@pytest.mark.parametrize(("depth", "method"), [(8, "trilinear"), (16, "trilinear"), (8, "tetrahedral")])
def test_cube_applied_by_colour_science_reproduces_the_image(model_path, tmp_path, depth, method):
    codes = _photo(37, 45, seed=depth, depth=depth)
    src = _save(tmp_path / "photo.png", codes)
    out = tmp_path / "out"
    assert main([str(model_path), str(src), "--out", str(out), "--interpolation", method,
                 "--device", "cpu"]) == 0
    graded = decode_image(out / "photo.png")
    assert graded.bit_depth == depth and graded.codes.shape == codes.shape
    expected = _colour_apply(out / "photo.cube", codes, method)
    # Same LUT values (the image is graded with the LUT as written, 6 decimals); only float32 (ours) vs
    # float64 (colour-science) arithmetic differs, which can move a value across a rounding boundary.
    diff = np.abs(graded.codes.astype(np.int64) - expected.astype(np.int64))
    assert diff.max() <= 1, f"max difference {diff.max()} codes"
    assert (diff == 0).mean() > 0.99
    # The grade is far from the identity, so the comparison above is not trivially satisfied.
    assert np.abs(graded.codes.astype(np.int64) - codes.astype(np.int64)).mean() > 0.02 * (2**depth - 1)


def test_cube_holds_the_predicted_lut_and_lutkern_apply_reproduces_the_image(model_path, tmp_path,
                                                                             grading_path):
    src = _save(tmp_path / "a.png", _photo(30, 41, seed=3))
    out = tmp_path / "out"
    assert main([str(model_path), str(src), "--out", str(out), "--device", "cpu"]) == 0
    predictor = load(model_path, "cpu")
    cube = lutkern.read_cube(out / "a.cube").lut3d
    torch.testing.assert_close(cube, predictor.predict_lut(src), rtol=0, atol=5.1e-7)  # 6 decimals
    from lutkern.apply import main as apply_main

    assert apply_main(["--lut", str(out / "a.cube"), str(src), "--out", str(tmp_path / "again")]) == 0
    np.testing.assert_array_equal(decode_image(tmp_path / "again" / "a.png").codes,
                                  decode_image(out / "a.png").codes)


@pytest.mark.parametrize("fmt", ["3dl", "clf"])
def test_format_writes_that_file_and_lutkern_apply_reproduces_the_image(model_path, tmp_path, fmt):
    src = _save(tmp_path / "a.png", _photo(30, 41, seed=3))
    out = tmp_path / "out"
    assert main([str(model_path), str(src), "--out", str(out), "--device", "cpu", "--format", fmt]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.png", f"a.{fmt}"])
    from lutkern.grading import sample_lut

    stored = sample_lut(lutkern.read_lut(out / f"a.{fmt}"), LUT)  # the file's whole transform, on its lattice
    predicted = load(model_path, "cpu").predict_lut(src)
    tolerance = 0.5 / 4095 + 1e-6 if fmt == "3dl" else 5.1e-7  # 12-bit codes, or 6 decimals
    torch.testing.assert_close(stored.float(), predicted.clamp(0, 1) if fmt == "3dl" else predicted, rtol=0,
                               atol=tolerance)
    from lutkern.apply import main as apply_main

    assert apply_main(["--lut", str(out / f"a.{fmt}"), str(src), "--out", str(tmp_path / "again")]) == 0
    np.testing.assert_array_equal(decode_image(tmp_path / "again" / "a.png").codes,
                                  decode_image(out / "a.png").codes)


def test_strips_equal_whole_image(model_path, tmp_path):
    codes = _photo(53, 47, seed=4, depth=16)
    src = _save(tmp_path / "big.tif", codes)
    whole, strips = tmp_path / "whole", tmp_path / "strips"
    assert main([str(model_path), str(src), "--out", str(whole), "--device", "cpu"]) == 0
    # 100-pixel strips: 2 rows each, 27 strips for grading and for the CNN's small copy.
    assert main([str(model_path), str(src), "--out", str(strips), "--device", "cpu",
                 "--strip-pixels", "100"]) == 0
    np.testing.assert_array_equal(decode_image(strips / "big.tif").codes,
                                  decode_image(whole / "big.tif").codes)
    assert (strips / "big.cube").read_text() == (whole / "big.cube").read_text()


@pytest.mark.parametrize("size", [IMAGE_SIZE, 8, 64])
def test_thumbnail_from_codes_equals_resizing_the_whole_image(size):
    codes = _photo(61, 43, seed=5)
    whole = resize(torch.from_numpy(codes).permute(2, 0, 1).float().div(255).unsqueeze(0), size)
    torch.testing.assert_close(thumbnail_from_codes(codes, 8, size, strip_pixels=43 * 3), whole,
                               rtol=0, atol=1e-6)


def test_api_predicts_as_training_does(model_path, tmp_path):
    import img2lut

    predictor = img2lut.load(model_path, "cpu")
    assert (predictor.lut_size, predictor.image_size, predictor.cnn_size) == (LUT, IMAGE_SIZE, CNN_SIZE)
    codes = [_photo(40, 50, seed=s) for s in (6, 7)]
    images = torch.stack([torch.from_numpy(c).permute(2, 0, 1).float() / 255 for c in codes])
    # Training's pipeline: images resized to image_size, the CNN sees their cnn_size thumbnails.
    model = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(model_path))
    with torch.no_grad():
        expected = model.predict_lut(resize(resize(images, IMAGE_SIZE), CNN_SIZE))
    batch = predictor.predict_lut(images)
    assert batch.shape == (2, LUT, LUT, LUT, 3)
    torch.testing.assert_close(batch, expected)
    torch.testing.assert_close(predictor.predict_lut(images[1]), expected[1])
    torch.testing.assert_close(predictor.predict_lut(_save(tmp_path / "p.png", codes[1])), expected[1])
    assert (batch[0] - batch[1]).abs().max() > 1e-3  # the LUT depends on the image
    graded = predictor.apply(images[0])
    torch.testing.assert_close(graded, lutkern.apply_lut(images[0], expected[0]))
    with pytest.raises(ValueError, match=r"\(3,H,W\)"):
        predictor.predict_lut(torch.zeros(4, 8, 8))


def test_exif_orientation_is_applied_and_icc_kept(model_path, tmp_path):
    upright = _photo(20, 36, seed=8)
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # orientation 6: rotate 90 CW to display
    exif = Image.Exif()
    exif[0x0112] = 6
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rotated_src = _save(tmp_path / "rotated.png", stored, exif=exif.tobytes(), icc=icc)
    upright_src = _save(tmp_path / "upright.png", upright)
    out = tmp_path / "out"
    assert main([str(model_path), str(rotated_src), str(upright_src), "--out", str(out),
                 "--device", "cpu"]) == 0
    a, b = decode_image(out / "rotated.png"), decode_image(out / "upright.png")
    assert a.codes.shape == (20, 36, 3)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert (out / "rotated.cube").read_text().split("\n", 1)[1] == (out / "upright.cube").read_text().split(
        "\n", 1)[1]  # same LUT rows (titles name the files)
    with Image.open(out / "rotated.png") as im:
        assert im.getexif().get(0x0112, 1) == 1
    assert a.icc_profile == icc


def test_batch_goes_on_after_bad_files_and_exits_1(model_path, tmp_path, capsys):
    good = _save(tmp_path / "good.jpg", _photo(16, 16, seed=9))
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    missing = tmp_path / "missing.png"
    bmp = tmp_path / "old.bmp"
    Image.fromarray(_photo(16, 16, seed=10)).save(bmp)
    out = tmp_path / "out"
    code = main([str(model_path), str(not_image), str(missing), str(good), str(bmp), "--out", str(out),
                 "--device", "cpu"])
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["good.cube", "good.jpg", "old.cube", "old.png"]
    err = capsys.readouterr().err
    assert f"error: {not_image}" in err and f"error: {missing}" in err
    assert "2 failed" in err
    # Existing outputs are kept unless --overwrite.
    assert main([str(model_path), str(good), "--out", str(out), "--device", "cpu"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main([str(model_path), str(good), "--out", str(out), "--device", "cpu", "--overwrite"]) == 0


def test_cube_only(model_path, tmp_path):
    src = _save(tmp_path / "x.png", _photo(16, 20, seed=11))
    out = tmp_path / "out"
    assert main([str(model_path), str(src), "--out", str(out), "--cube-only", "--device", "cpu"]) == 0
    assert [p.name for p in out.iterdir()] == ["x.cube"]
    assert lutkern.read_cube(out / "x.cube").lut3d.shape == (LUT, LUT, LUT, 3)


def _bad_checkpoints(model_path, tmp_path) -> dict:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(model_path.read_bytes()[:2000])
    not_torch = tmp_path / "lut.cube"
    lutkern.write_cube(not_torch, lutkern.identity_lut(3))
    code = tmp_path / "code.pt"
    torch.save({"format": 1, "model_config": {}, "model": {}, "config": {}, "x": pickle.PickleError()}, code)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    other_size = tmp_path / "other_size.pt"
    payload = checkpoint.load_checkpoint(model_path)
    payload["model_config"]["lut_size"] = LUT + 2  # the weights are for LUT
    torch.save(payload, other_size)
    return {truncated: "cannot read checkpoint", not_torch: "not an img2lut checkpoint",
            code: "not an img2lut checkpoint", foreign: "not an img2lut checkpoint",
            other_size: "size mismatch", tmp_path / "absent.pt": "no such checkpoint"}


def test_bad_checkpoints_give_one_line_errors(model_path, tmp_path, capsys):
    src = _save(tmp_path / "x.png", _photo(16, 16, seed=12))
    for path, reason in _bad_checkpoints(model_path, tmp_path).items():
        assert main([str(path), str(src), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert str(path) in err and reason in err, err
        with pytest.raises(checkpoint.CheckpointError):
            load(path, "cpu")
    assert not (tmp_path / "out").exists()
