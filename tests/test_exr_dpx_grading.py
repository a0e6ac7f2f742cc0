"""An EXR plate and a DPX scan graded end to end by python -m lutkern.apply and img2lut.predict, against
OpenColorIO's CPU processor on the same .cube (OpenImageIO reads the outputs back); what the outputs keep;
EXR and DPX as training pairs."""

import numpy as np
import pytest
import torch

import lutkern
from img2lut import checkpoint
from img2lut.data import list_images, pair_files
from img2lut.model import ResNetLUTGenerator
from img2lut.pair_loading import load_pairs
from lutkern.apply import main as apply_main
from lutkern.cube import CubeLUT, read_cube, write_cube

pytest.importorskip("av")
oiio = pytest.importorskip("OpenImageIO")
OCIO = pytest.importorskip("PyOpenColorIO")

pytestmark = pytest.mark.usefixtures("fast_small_tensors")


def _write(path, pixels: np.ndarray, dtype, **attributes):
    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, dtype)
    for key, value in attributes.items():
        spec.attribute(key, value)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), oiio.geterror()
    assert out.write_image(pixels)
    out.close()


def _read(path, dtype=oiio.FLOAT):
    inp = oiio.ImageInput.open(str(path))
    assert inp is not None, oiio.geterror()
    pixels, spec = inp.read_image(dtype), inp.spec()
    inp.close()
    return pixels, spec


def _ocio(cube_path, rgb: np.ndarray, interpolation: str) -> np.ndarray:
    """OpenColorIO's CPU processor on ``rgb`` ``(...,3)`` float32."""
    interp = {"trilinear": OCIO.INTERP_LINEAR, "tetrahedral": OCIO.INTERP_TETRAHEDRAL}[interpolation]
    transform = OCIO.FileTransform(src=str(cube_path), interpolation=interp)
    processor = OCIO.Config.CreateRaw().getProcessor(transform).getDefaultCPUProcessor()
    out = np.ascontiguousarray(rgb, dtype=np.float32).reshape(-1, 3).copy()
    processor.applyRGB(out)
    return out.reshape(rgb.shape)


def _plate(h: int, w: int, seed: int) -> np.ndarray:
    """Scene-linear values: mostly 0..2, highlights to ~40, a few below 0 (outside every domain below)."""
    rng = np.random.default_rng(seed)
    return (np.exp(rng.standard_normal((h, w, 3)) * 1.1) * 0.5 - 0.12).astype(np.float32)


def _lut(d: int, seed: int, top: float = 1.3) -> torch.Tensor:
    """A smooth look whose outputs reach above 1 (up to ``top``): kept in EXR outputs."""
    gen = torch.Generator().manual_seed(seed)
    ramp = lutkern.identity_lut(d, dtype=torch.float64)
    mix = torch.tensor([[0.9, 0.08, 0.02], [0.05, 0.85, 0.1], [0.0, 0.15, 0.85]], dtype=torch.float64)
    return (ramp @ mix.T * top + 0.01 * torch.randn(d, d, d, 3, generator=gen, dtype=torch.float64)).float()


def _log_shaper(n: int, top: float) -> torch.Tensor:
    """A log shaper over [-0.125, top]: the usual way a .cube grades scene-linear footage."""
    x = torch.linspace(-0.125, top, n, dtype=torch.float64)
    y = torch.log2(x + 0.25) - np.log2(0.125)
    return (y / y.max()).view(-1, 1).expand(n, 3).float().contiguous()


def _grade(tmp_path, cube_path, src, *flags) -> object:
    out = tmp_path / "out"
    assert apply_main(["--lut", str(cube_path), str(src), "--out", str(out), "--device", "cpu",
                       "--overwrite", *flags]) == 0
    return out / src.name


@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_float_exr_plate_through_a_shaper_cube_like_ocio(tmp_path, interpolation):
    plate = _plate(48, 61, seed=1)
    _write(tmp_path / "plate.exr", plate, oiio.FLOAT, compression="piz")
    cube = CubeLUT(_lut(17, seed=2), _log_shaper(256, 16.0), shaper_domain=((-0.125,) * 3, (16.0,) * 3))
    write_cube(tmp_path / "look.cube", cube, precision=9)
    graded, spec = _read(_grade(tmp_path, tmp_path / "look.cube", tmp_path / "plate.exr",
                                "--interpolation", interpolation))
    assert spec.format == oiio.FLOAT and spec.get_string_attribute("compression") == "zip"
    expected = _ocio(tmp_path / "look.cube", plate, interpolation)
    assert expected.max() > 1.05 and graded.max() > 1.05  # the LUT's values above 1 are kept
    np.testing.assert_allclose(graded, expected, atol=1e-6, rtol=0)  # measured: 2.4e-7


@pytest.mark.parametrize("name", ["look.csp", "look.clf"])
def test_float_exr_plate_through_a_csp_pre_lut_or_a_clf_like_ocio(tmp_path, name):
    """The other ways a pipeline grades linear footage: a Cinespace pre-LUT (knots on a log curve, cubic
    between them) or a CLF Range + LUT1D + LUT3D, read by lutkern.apply and by OpenColorIO."""
    from lutkern.formats import Curves, LUTChain, write_lut

    plate = _plate(40, 53, seed=11)
    _write(tmp_path / "plate.exr", plate, oiio.FLOAT)
    if name.endswith(".csp"):
        knots = torch.tensor([-0.125, 0.0, 0.18, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0], dtype=torch.float64)
        curve = torch.log2(knots + 0.25) - np.log2(0.125)
        look = LUTChain([Curves([knots] * 3, [curve / curve.max()] * 3), CubeLUT(_lut(17, seed=12))])
    else:
        look = CubeLUT(_lut(17, seed=12), _log_shaper(128, 16.0), shaper_domain=((-0.125,) * 3, (16.0,) * 3))
    write_lut(tmp_path / name, look, precision=9)
    graded, _ = _read(_grade(tmp_path, tmp_path / name, tmp_path / "plate.exr"))
    expected = _ocio(tmp_path / name, plate, "trilinear")
    assert expected.max() > 1.05 and (plate > 16).any() and (plate < -0.1).any()  # clamped both ends
    np.testing.assert_allclose(graded, expected, atol=2e-6, rtol=0)


def test_half_exr_plate_through_a_3d_domain_like_ocio(tmp_path):
    plate = _plate(40, 52, seed=3)
    _write(tmp_path / "plate.exr", plate, oiio.HALF, compression="zips")
    write_cube(tmp_path / "look.cube", _lut(21, seed=4), domain_min=(-0.1, -0.1, -0.1),
               domain_max=(6.0, 6.0, 6.0), precision=9)
    graded, spec = _read(_grade(tmp_path, tmp_path / "look.cube", tmp_path / "plate.exr",
                                "--interpolation", "tetrahedral"), oiio.HALF)
    assert spec.format == oiio.HALF and spec.get_string_attribute("compression") == "zips"
    halves = _read(tmp_path / "plate.exr")[0]  # the plate as its half samples hold it
    expected = _ocio(tmp_path / "look.cube", halves, "tetrahedral").astype(np.float16)
    ulps = np.abs(graded.view(np.int16).astype(int) - expected.view(np.int16).astype(int))
    assert ulps.max() <= 1, ulps.max()  # float32 rounding, then one rounding to half each


def test_dpx_scan_like_ocio_at_its_bit_depth_with_its_fields(tmp_path, grading_path):
    rng = np.random.default_rng(5)
    scan = rng.integers(95, 940, (30, 41, 3)).astype(np.uint16)  # 10-bit log codes
    scaled = np.round(scan * (65535 / 1023)).astype(np.uint16)
    _write(tmp_path / "scan.dpx", scaled, oiio.UINT16, **{"oiio:BitsPerSample": 10, "oiio:Endian": "little",
           "dpx:Packing": "Filled, method B", "dpx:Transfer": "Printing density",
           "dpx:Colorimetric": "Printing density"})
    write_cube(tmp_path / "look.cube", _lut(33, seed=6, top=1.0), precision=9)
    out = _grade(tmp_path, tmp_path / "look.cube", tmp_path / "scan.dpx", "--interpolation", "tetrahedral")
    raw, spec = _read(out, oiio.UINT16)
    assert spec.get_int_attribute("oiio:BitsPerSample") == 10 and out.read_bytes()[:4] == b"XPDS"
    assert spec.get_string_attribute("dpx:Transfer") == "Printing density"
    assert spec.get_string_attribute("dpx:Colorimetric") == "Printing density"
    got = raw.astype(np.uint16) >> 6
    expected = np.round(np.clip(_ocio(tmp_path / "look.cube", scan / 1023.0, "tetrahedral"), 0, 1) * 1023)
    diff = np.abs(got.astype(int) - expected.astype(int))
    # Measured: every code the same; one code apart is float32 rounding at a code's half-way point.
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.999, (diff.max(), (diff == 0).mean())


def test_exr_at_strength_blends_ocio_with_the_clamped_plate(tmp_path):
    plate = _plate(20, 27, seed=7)
    _write(tmp_path / "plate.exr", plate, oiio.FLOAT)
    cube = CubeLUT(_lut(9, seed=8), _log_shaper(64, 4.0), shaper_domain=((-0.125,) * 3, (4.0,) * 3))
    write_cube(tmp_path / "look.cube", cube, precision=9)
    graded, _ = _read(_grade(tmp_path, tmp_path / "look.cube", tmp_path / "plate.exr", "--strength", "0.3"))
    clamped = np.clip(plate, -0.125, 4.0)
    expected = clamped + 0.3 * (_ocio(tmp_path / "look.cube", plate, "trilinear") - clamped)
    np.testing.assert_allclose(graded, expected, atol=1e-6, rtol=0)


def test_inf_clamps_as_in_ocio_and_nan_stays_nan(tmp_path, capsys):
    plate = np.full((2, 3, 3), 0.5, np.float32)
    plate[0, 0], plate[0, 1], plate[0, 2] = [np.inf, -np.inf, 0.2], [np.nan, 0.3, 0.4], [1e30, -1e30, 0.6]
    _write(tmp_path / "plate.exr", plate, oiio.FLOAT)
    write_cube(tmp_path / "look.cube", _lut(9, seed=9), domain_min=(-0.5,) * 3, domain_max=(4.0,) * 3)
    graded, _ = _read(_grade(tmp_path, tmp_path / "look.cube", tmp_path / "plate.exr"))
    assert "1 pixels are NaN and stay NaN" in capsys.readouterr().err
    expected = _ocio(tmp_path / "look.cube", plate, "trilinear")
    finite = ~np.isnan(plate).any(axis=-1)
    np.testing.assert_allclose(graded[finite], expected[finite], atol=1e-6, rtol=0)
    assert np.isnan(graded[0, 1]).all()  # lutkern: NaN in, NaN out; OpenColorIO: NaN read as the minimum
    at_min = _ocio(tmp_path / "look.cube", np.array([-0.5, 0.3, 0.4], np.float32), "trilinear")
    np.testing.assert_allclose(expected[0, 1], at_min, atol=1e-6)


# ----------------------------------------------------------------------------------------- img2lut.predict


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    model = ResNetLUTGenerator(5, "trilinear", "identity")
    path = tmp_path_factory.mktemp("model") / "model.pt"
    checkpoint.save_checkpoint(path, model=model.eval(), config={"image_size": 32, "cnn_size": 16})
    return path


# Each strength's .cube files graded again by lutkern.apply on one of its paths (a slow test: not all four).
@pytest.mark.parametrize("strength,grading_path", [("1", "torch-free"), ("0.4", "torch")],
                         indirect=["grading_path"])
def test_predict_grades_exr_and_dpx_as_its_cube_files_say(tmp_path, model_path, strength, grading_path):
    from img2lut.predict import main

    _write(tmp_path / "plate.exr", np.clip(_plate(24, 30, seed=9), 0, None), oiio.HALF, compression="piz")
    scan = np.random.default_rng(10).integers(0, 4096, (24, 30, 3)).astype(np.uint16)
    _write(tmp_path / "scan.dpx", np.round(scan * (65535 / 4095)).astype(np.uint16), oiio.UINT16,
           **{"oiio:BitsPerSample": 12})
    out = tmp_path / "out"
    assert main([str(model_path), str(tmp_path / "plate.exr"), str(tmp_path / "scan.dpx"), "--out", str(out),
                 "--device", "cpu", "--strength", strength]) == 0
    for name in ("plate.exr", "scan.dpx"):
        stem = name.split(".")[0]
        cube_text = (out / f"{stem}.cube").read_text()
        blended = "# strength 0.4: the predicted LUT blended with the identity" in cube_text
        assert blended == (strength != "1")
        again = _grade(tmp_path, out / f"{stem}.cube", tmp_path / name)  # the .cube reproduces the image
        np.testing.assert_array_equal(_read(again)[0], _read(out / name)[0])
    assert _read(out / "plate.exr")[1].format == oiio.HALF
    assert _read(out / "scan.dpx")[1].get_int_attribute("oiio:BitsPerSample") == 12
    if strength != "1":  # the table at 0.4 is the blend of the full-strength one with the identity
        assert main([str(model_path), str(tmp_path / "scan.dpx"), "--out", str(tmp_path / "full"),
                     "--device", "cpu", "--cube-only"]) == 0
        full = read_cube(tmp_path / "full" / "scan.cube").lut3d
        part = read_cube(out / "scan.cube").lut3d
        identity = lutkern.identity_lut(5)
        assert torch.allclose(part, identity + 0.4 * (full - identity), atol=2e-6)


def test_exr_and_dpx_training_pairs(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    plate = _plate(16, 16, seed=11)
    _write(tmp_path / "in" / "a.exr", plate, oiio.FLOAT)
    _write(tmp_path / "out" / "a.exr", plate * 0.5, oiio.FLOAT)
    scan = np.random.default_rng(12).integers(0, 1024, (16, 16, 3)).astype(np.uint16)
    for folder in ("in", "out"):
        _write(tmp_path / folder / "b.dpx", np.round(scan * (65535 / 1023)).astype(np.uint16), oiio.UINT16,
               **{"oiio:BitsPerSample": 10})
    assert sorted(list_images(tmp_path / "in")) == ["a", "b"]
    pairs = load_pairs(pair_files(tmp_path / "in", tmp_path / "out"), 16)
    assert torch.equal(pairs.inputs[0], torch.from_numpy(plate).permute(2, 0, 1))  # above 1, unclamped
    assert pairs.inputs[0].max() > 1
    assert torch.allclose(pairs.targets[1], torch.from_numpy(scan / 1023).permute(2, 0, 1).float())
