"""LUT formats beyond ``.cube`` (``.3dl``, ``.spi1d``, ``.spi3d``, ``.csp``, ``.clf``): round trips, axis
orders, agreement with OpenColorIO and colour-science on files we write and on hand-written files in
each format's published layout, errors naming file and line, fuzzing."""

import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lutkern import CubeFormatError, CubeLUT, identity_lut
from lutkern.formats import (
    FORMATS,
    Curves,
    LUTChain,
    LUTFormatError,
    Matrix,
    Range,
    lut_text,
    parse_lut,
    read_lut,
    write_lut,
)


def _lut(d: int = 5, seed: int = 0) -> torch.Tensor:
    """A smooth random LUT in [0, 1] with distinct channels (so an axis or channel mix-up shows)."""
    gen = torch.Generator().manual_seed(seed)
    ident = identity_lut(d, dtype=torch.float64)
    return (ident**1.3 * 0.8 + torch.rand(d, d, d, 3, generator=gen, dtype=torch.float64) * 0.2).clamp(0, 1)


def _points(n: int = 600, lo: float = -0.2, hi: float = 1.3, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(3, 1, n, generator=gen, dtype=torch.float64) * (hi - lo) + lo


def _ocio(path, img: torch.Tensor, interpolation: str = "trilinear") -> torch.Tensor:
    ocio = pytest.importorskip("PyOpenColorIO")
    interp = {"trilinear": ocio.INTERP_LINEAR, "tetrahedral": ocio.INTERP_TETRAHEDRAL}[interpolation]
    proc = ocio.Config.CreateRaw().getProcessor(ocio.FileTransform(src=str(path), interpolation=interp))
    buf = img.reshape(3, -1).t().numpy().astype(np.float32).copy()
    proc.getDefaultCPUProcessor().applyRGB(buf)
    return torch.from_numpy(buf.astype(np.float64)).t().reshape(img.shape)


def _colour():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # colour-science warns that matplotlib is missing
        return pytest.importorskip("colour")


SHAPER = torch.linspace(0, 1, 17, dtype=torch.float64).view(-1, 1).repeat(1, 3) ** torch.tensor(
    [0.6, 0.7, 0.8]
)
MATRIX = torch.tensor([[0.9, 0.1, 0, 0.01], [0.1, 0.8, 0.1, 0], [0, 0.2, 0.8, -0.02]], dtype=torch.float64)
CURVES = Curves(
    [torch.tensor([-0.1, 0.2, 0.5, 0.7, 1.5], dtype=torch.float64)] * 3,
    [
        torch.tensor(y, dtype=torch.float64)
        for y in ([0, 0.6, 0.7, 0.8, 1.0], [0, 0.3, 0.5, 0.6, 1.0], [0.1, 0.5, 0.6, 0.7, 0.9])
    ],
)
# name -> (what is written, writer options): every kind of content each format holds
WRITTEN = {
    "plain.3dl": (_lut(), {}),
    "lustre16.3dl": (_lut(9), {"variant": "lustre", "output_bits": 16}),
    "plain.spi3d": (_lut(), {"precision": 8}),
    "curves.spi1d": (CubeLUT(None, SHAPER, shaper_domain=((-0.1,) * 3, (1.3,) * 3)), {"precision": 8}),
    "plain.csp": (_lut(), {"precision": 8}),
    "domain.csp": (CubeLUT(_lut(), lut3d_domain=((-0.1, 0, 0.05), (1.2, 1, 1.1))), {"precision": 8}),
    "prelut.csp": (LUTChain([CURVES, CubeLUT(_lut())]), {"precision": 8}),
    "plain.clf": (_lut(), {"precision": 8}),
    "domain.clf": (CubeLUT(_lut(), lut3d_domain=((-0.1, 0, 0.05), (1.2, 1, 1.1))), {"precision": 8}),
    "shaper.clf": (CubeLUT(_lut(), SHAPER, shaper_domain=((-0.1,) * 3, (1.3,) * 3)), {"precision": 8}),
    "matrix.clf": (
        LUTChain([Matrix(MATRIX), Range(0, 1.2, 0, 1, clamp=False), CubeLUT(_lut())]),
        {"precision": 8},
    ),
}


def _apply(lut, img, interpolation="trilinear"):
    if isinstance(lut, torch.Tensor):
        lut = CubeLUT(lut)
    return lut.apply(img, interpolation=interpolation, backend="torch")


# ---------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", list(WRITTEN))
def test_round_trip_same_pixels_and_same_text(tmp_path, name):
    lut, options = WRITTEN[name]
    write_lut(tmp_path / name, lut, **options)
    got = read_lut(tmp_path / name, dtype=torch.float64)
    img = _points()
    # 8 decimals: 5e-9 a value (a domain matrix scales that); .3dl codes: half a code of the output depth
    tol = 0.5 / (2 ** options.get("output_bits", 12) - 1) if name.endswith(".3dl") else 5e-8
    torch.testing.assert_close(_apply(got, img), _apply(lut, img), rtol=0, atol=tol)
    write_lut(tmp_path / ("again" + name[name.index(".") :]), got, **options)
    assert (tmp_path / ("again" + name[name.index(".") :])).read_text() == (tmp_path / name).read_text()


def test_3dl_codes_are_exact(tmp_path):
    codes = torch.randint(0, 4096, (5, 5, 5, 3), generator=torch.Generator().manual_seed(3))
    lut = codes.double() / 4095
    text = lut_text(lut, ".3dl")
    got = parse_lut(text, "a.3dl", dtype=torch.float64)
    assert torch.equal((got.lut3d * 4095).round().long(), codes)


# ------------------------------------------------------------------------------------------- axis orders

_ROWS_BLUE_FASTEST = [(r, g, b) for r in range(2) for g in range(2) for b in range(2)]


def _marker_lut() -> torch.Tensor:
    """lut[b, g, r] = (r, g, b) scaled: each lattice point names its own indices."""
    return identity_lut(2, dtype=torch.float64) * torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)


@pytest.mark.parametrize("fmt", [".3dl", ".spi3d", ".clf"])
def test_blue_fastest_formats(fmt):
    text = lut_text(_marker_lut(), fmt)
    if fmt == ".clf":
        text = text.split('dim="2 2 2 3">\n')[1].split("\n    </Array>")[0] + "\n"
    numbers = [ln.split() for ln in text.splitlines()[-8:]]  # the 8 rows end every file but a .clf
    rows = [tuple(float(v) for v in ln[-3:]) for ln in numbers]
    if fmt == ".3dl":
        rows = [tuple(v / 4095 for v in row) for row in rows]
    expected = [(r * 0.25, g * 0.5, b * 0.75) for r, g, b in _ROWS_BLUE_FASTEST]
    np.testing.assert_allclose(np.array(rows), np.array(expected), atol=2e-4)


def test_csp_is_red_fastest():
    text = lut_text(_marker_lut(), ".csp")
    rows = [tuple(map(float, ln.split())) for ln in text.splitlines()[-8:]]
    expected = [(r * 0.25, g * 0.5, b * 0.75) for b in range(2) for g in range(2) for r in range(2)]
    np.testing.assert_allclose(np.array(rows), np.array(expected), atol=1e-6)


def test_spi3d_rows_in_any_order():
    lines = [f"{r} {g} {b} {r * 0.25} {g * 0.5} {b * 0.75}" for r, g, b in reversed(_ROWS_BLUE_FASTEST)]
    got = parse_lut("SPILUT 1.0\n3 3\n2 2 2\n" + "\n".join(lines), "a.spi3d", dtype=torch.float64)
    torch.testing.assert_close(got.lut3d, _marker_lut(), rtol=0, atol=0)


# -------------------------------------------------------------------------- OpenColorIO and colour-science


@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
@pytest.mark.parametrize("name", list(WRITTEN))
def test_our_files_in_ocio(tmp_path, name, interpolation):
    lut, options = WRITTEN[name]
    write_lut(tmp_path / name, lut, **options)
    img = _points()
    ours = read_lut(tmp_path / name, dtype=torch.float64).apply(
        img, interpolation=interpolation, backend="torch"
    )
    torch.testing.assert_close(ours, _ocio(tmp_path / name, img, interpolation), rtol=0, atol=1e-6)


# Hand-written files in each format's published layout (the examples of their documentation).
FIXTURES = {
    "flame.3dl": "# Flame: mesh line, 12-bit output\n0 256 512 768 1023\n\n"
    + "\n".join(
        f"{round(r / 4 * 4095)} {round(g / 4 * 3000)} {round((b / 4) ** 2 * 4095 * (1 - r / 8))}"
        for r in range(5)
        for g in range(5)
        for b in range(5)
    )
    + "\n",
    "lustre.3dl": "#Tokens required by applications - do not edit\n3DMESH\nMesh 2 12\n0 256 512 768 1023\n"
    + "\n".join(
        f"{r * 1000} {g * 500} {b * 1000 - r * 20 + 80}" for r in range(5) for g in range(5) for b in range(5)
    )
    + "\n\n#Tokens required by applications - do not edit\n\nLUT8\ngamma 1.0\n",
    "bare.3dl": "\n".join(
        f"{r * 1023} {g * 700} {b * 1000}" for r in range(2) for g in range(2) for b in range(2)
    ),
    "log.spi1d": "Version 1\nFrom -0.125 1.125\nLength 5\nComponents 1\n{\n 0.0\n 0.3\n 0.55\n 0.8\n 1\n}\n",
    "rgb.spi1d": "Version 1\nFrom 0.0 1.0\nLength 3\nComponents 3\n{\n0 0.1 0\n0.4 0.5 0.6\n1 0.9 1\n}\n",
    "ids.spi3d": "SPILUT 1.0\n3 3\n2 2 2\n"
    + "\n".join(
        f"{r} {g} {b} {0.1 + 0.8 * r} {0.2 + 0.5 * g * b} {0.3 * b + 0.6 * r}"
        for r, g, b in _ROWS_BLUE_FASTEST
    ),
    "meta.csp": "CSPLUTV100\n3D\n\nBEGIN METADATA\nlook from a colourist\nEND METADATA\n\n"
    "3\n0.0 0.5 1.0\n0.0 0.6 1.0\n2\n-0.1 1.1\n0.0 1.0\n4\n0 0.2 0.7 1.2\n0 0.3 0.8 1\n\n2 2 2\n"
    + "\n".join(
        f"{0.1 + 0.8 * r} {0.2 + 0.5 * g} {0.3 * b + 0.6 * r}"
        for b in range(2)
        for g in range(2)
        for r in range(2)
    )
    + "\n",
    "oned.csp": "CSPLUTV100\n1D\n\n" + "2\n-0.5 2.0\n0 1\n" * 3 + "\n3\n0 0 0\n0.5 0.4 0.3\n1 1 1\n",
    "tenbit.clf": """<?xml version="1.0" encoding="UTF-8"?>
<ProcessList compCLFversion="3.0" id="a1" name="10-bit chain" xmlns="urn:AMPAS:CLF:v3.0">
  <Description>Range, Matrix, LUT1D and LUT3D at 10-bit and float depths</Description>
  <InputDescriptor>log</InputDescriptor>
  <Range inBitDepth="10i" outBitDepth="32f">
    <minInValue>64</minInValue><maxInValue>940</maxInValue>
    <minOutValue>0</minOutValue><maxOutValue>1</maxOutValue>
  </Range>
  <Matrix inBitDepth="32f" outBitDepth="12i">
    <Array dim="3 4">
      3000 500 595 10
      200 3500 395 0
      0 300 3795 -20
    </Array>
  </Matrix>
  <LUT1D inBitDepth="12i" outBitDepth="10i">
    <Array dim="3 1">
      0 700 1023
    </Array>
  </LUT1D>
  <LUT3D inBitDepth="10i" outBitDepth="16f">
    <Array dim="2 2 2 3">
      0.0 0.0 0.1  0.0 0.1 0.9  0.0 0.9 0.2  0.1 0.8 0.9
      0.9 0.1 0.0  0.8 0.0 0.9  1.0 0.8 0.1  1.0 1.0 1.0
    </Array>
  </LUT3D>
</ProcessList>
""",
}


@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
@pytest.mark.parametrize("name", list(FIXTURES))
def test_published_layouts_in_ours_and_ocio(tmp_path, name, interpolation):
    (tmp_path / name).write_text(FIXTURES[name])
    img = _points()
    ours = read_lut(tmp_path / name, dtype=torch.float64).apply(
        img, interpolation=interpolation, backend="torch"
    )
    torch.testing.assert_close(ours, _ocio(tmp_path / name, img, interpolation), rtol=0, atol=1e-6)


def _ffmpeg_lut3d(path, img: torch.Tensor, tmp_path) -> torch.Tensor:
    """FFmpeg's lut3d filter (trilinear) on one gbrpf32le frame of ``img`` ``(3,1,N)``."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("no ffmpeg binary")
    n = img.shape[-1]
    (tmp_path / "in.raw").write_bytes(img[[1, 2, 0]].numpy().astype("<f4").tobytes())  # G, B, R planes
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gbrpf32le", "-s", f"{n}x1",
                    "-i", str(tmp_path / "in.raw"), "-vf", f"lut3d=file={path}:interp=trilinear", "-f",
                    "rawvideo", "-pix_fmt", "gbrpf32le", str(tmp_path / "out.raw")], check=True, timeout=60)
    g, b, r = np.frombuffer((tmp_path / "out.raw").read_bytes(), dtype="<f4").reshape(3, 1, n)
    return torch.from_numpy(np.stack([r, g, b]).astype(np.float64))


@pytest.mark.parametrize("fmt", [".cube", ".3dl", ".csp"])
def test_our_files_in_ffmpeg_lut3d(tmp_path, fmt):
    """FFmpeg reads a .3dl only at size 17 and divides its codes by 4096 (not 4095): the same pixels
    scaled by 4095/4096, which the comparison undoes; .cube and .csp: the same pixels."""
    lut = _lut(17)
    write_lut(tmp_path / ("a" + fmt), lut)
    img = _points(2000, lo=0, hi=1)
    ours = read_lut(tmp_path / ("a" + fmt), dtype=torch.float64).apply(img, backend="torch")
    scale = 4095 / 4096 if fmt == ".3dl" else 1
    torch.testing.assert_close(_ffmpeg_lut3d(tmp_path / ("a" + fmt), img, tmp_path), ours * scale, rtol=0,
                               atol=1e-6)


def test_3dl_bit_depths_from_mesh_and_largest_code():
    lustre = parse_lut(FIXTURES["lustre.3dl"], "a.3dl", dtype=torch.float64)
    assert lustre.lut3d[4, 4, 4].tolist() == [4000 / 4095, 2000 / 4095, 4000 / 4095]  # Mesh 2 12: 12-bit
    bare = parse_lut(FIXTURES["bare.3dl"], "b.3dl", dtype=torch.float64)
    assert bare.lut3d[1, 1, 1].tolist() == [1.0, 700 / 1023, 1000 / 1023]  # largest code 1023: 10-bit


@pytest.mark.parametrize("name", ["plain.spi3d", "curves.spi1d", "plain.csp", "domain.csp"])
def test_our_files_in_colour_science(tmp_path, name):
    colour = _colour()
    lut, options = WRITTEN[name]
    write_lut(tmp_path / name, lut, **options)
    theirs = colour.read_LUT(str(tmp_path / name))
    ours = read_lut(tmp_path / name, dtype=torch.float64)
    if ours.lut3d is not None:  # colour-science indexes [r, g, b]
        torch.testing.assert_close(
            torch.from_numpy(theirs.table).permute(2, 1, 0, 3), ours.lut3d, rtol=0, atol=0
        )
        assert np.allclose(theirs.domain, np.array(ours.lut3d_domain))
    else:
        torch.testing.assert_close(torch.from_numpy(theirs.table), ours.shaper, rtol=0, atol=0)
        assert np.allclose(theirs.domain, np.array(ours.shaper_domain))
    img = _points(lo=0, hi=1)
    flat = img.reshape(3, -1).t().numpy().copy()
    torch.testing.assert_close(
        torch.from_numpy(theirs.apply(flat)).t().reshape(img.shape), _apply(ours, img), rtol=0, atol=1e-9
    )


def test_colour_science_files_in_ours(tmp_path):
    colour = _colour()
    table = colour.LUT3D.linear_table(5) ** 1.3
    written = {
        "c.spi3d": colour.LUT3D(table),
        "c.csp": colour.LUT3D(table, domain=[[-0.1, 0, 0], [1.2, 1, 1]]),
        "c.spi1d": colour.LUT3x1D(colour.LUT3x1D.linear_table(7) ** 1.3),
    }
    for name, theirs in written.items():
        colour.write_LUT(theirs, str(tmp_path / name))
        ours = read_lut(tmp_path / name, dtype=torch.float64)
        got = ours.lut3d.permute(2, 1, 0, 3) if ours.lut3d is not None else ours.shaper
        torch.testing.assert_close(got, torch.from_numpy(theirs.table), rtol=0, atol=5e-8)  # 7 decimals
        domain = ours.lut3d_domain if ours.lut3d is not None else ours.shaper_domain
        assert np.allclose(np.array(domain), theirs.domain)


# ---------------------------------------------------------------------------------------------- errors

_ID2_3DL = "\n".join(f"{r * 4095} {g * 4095} {b * 4095}" for r, g, b in _ROWS_BLUE_FASTEST) + "\n"
_MESH5 = "0 256 512 768 1023\n"
_SPI3D = (
    "SPILUT 1.0\n3 3\n2 2 2\n"
    + "\n".join(f"{r} {g} {b} {r} {g} {b}" for r, g, b in _ROWS_BLUE_FASTEST)
    + "\n"
)
_CSP = "CSPLUTV100\n3D\n2\n0 1\n0 1\n2\n0 1\n0 1\n2\n0 1\n0 1\n2 2 2\n" + "0 0 0\n" * 8
_CLF = (
    '<ProcessList id="x" compCLFversion="3.0">\n<LUT1D inBitDepth="32f" outBitDepth="32f">\n'
    '<Array dim="2 3">0 0 0 1 1 1</Array>\n</LUT1D>\n</ProcessList>\n'
)
BAD = [
    ("3dl short row", "a.3dl", _MESH5 + "0 0\n", 2, "needs 3 integers"),
    ("3dl float", "a.3dl", _ID2_3DL.replace("4095 0 0", "4095.0 0 0"), 5, "not an integer"),
    ("3dl negative", "a.3dl", _ID2_3DL.replace("0 4095 0", "0 -4 0"), 3, "out of range"),
    ("3dl rows", "a.3dl", _MESH5 + "0 0 4095\n" * 126, 127, "more than the 125 rows"),
    ("3dl too few", "a.3dl", _MESH5 + "0 0 4095\n" * 124, 125, "expected 125 rows"),
    ("3dl two meshes", "a.3dl", _MESH5 + _MESH5, 2, "second mesh line"),
    ("3dl mesh after rows", "a.3dl", _ID2_3DL + _MESH5, 9, "second mesh line"),
    ("3dl uneven mesh", "a.3dl", "0 100 512 768 1023\n" + "0 0 4095\n" * 125, 1, "not a uniform ramp"),
    ("3dl keyword", "a.3dl", "LUT_3D_SIZE 2\n" + _ID2_3DL, 1, "unexpected 'LUT_3D_SIZE'"),
    ("3dl xml", "a.3dl", "<xml>\n", 1, "unexpected"),
    ("3dl Mesh depth", "a.3dl", "3DMESH\nMesh 1 10\n" + _ID2_3DL, 3, "does not fit the 10-bit"),
    ("3dl not a cube", "a.3dl", "0 0 4095\n" * 9, 9, "not the cube"),
    ("3dl small codes", "a.3dl", "0 0 100\n" * 8, 1, "too small to tell"),
    ("spi1d version", "a.spi1d", "Version 2\nLength 2\nComponents 1\n{\n0\n1\n}\n", 1, "only Version 1"),
    ("spi1d length", "a.spi1d", "Version 1\nLength 70000\nComponents 1\n{\n", 2, "out of range"),
    ("spi1d components", "a.spi1d", "Version 1\nLength 2\nComponents 2\n{\n", 3, "must be 1 or 3"),
    ("spi1d rows", "a.spi1d", "Version 1\nLength 2\nComponents 1\n{\n0\n1\n2\n}\n", 7, "more than the 2"),
    ("spi1d unclosed", "a.spi1d", "Version 1\nLength 2\nComponents 1\n{\n0\n1\n", 6, "closing"),
    ("spi1d reversed", "a.spi1d", "Version 1\nFrom 1 0\nLength 2\nComponents 1\n{\n0\n1\n}\n", 2, "reversed"),
    ("spi1d nan", "a.spi1d", "Version 1\nLength 2\nComponents 1\n{\nnan\n1\n}\n", 5, "not a number"),
    ("spi3d header", "a.spi3d", "SPILUT 2.0\n", 1, "expected 'SPILUT 1.0'"),
    ("spi3d sizes differ", "a.spi3d", "SPILUT 1.0\n3 3\n2 2 3\n", 3, "differ"),
    ("spi3d size bomb", "a.spi3d", "SPILUT 1.0\n3 3\n256 256 256\n0 0 0 0 0 0\n", None, "cannot hold"),
    ("spi3d index", "a.spi3d", _SPI3D.replace("1 1 1 1 1 1", "1 1 2 1 1 1"), 11, "out of range"),
    ("spi3d twice", "a.spi3d", _SPI3D.replace("1 1 1 1 1 1", "1 1 0 1 1 1"), 11, "given twice"),
    ("spi3d missing", "a.spi3d", _SPI3D.rsplit("\n", 2)[0] + "\n", 10, "1 1 1 is missing"),
    ("csp magic", "a.csp", "CSPLUTV200\n", 1, "CSPLUTV100"),
    ("csp type", "a.csp", "CSPLUTV100\n2D\n", 2, "'1D' or '3D'"),
    (
        "csp knots",
        "a.csp",
        _CSP.replace("2\n0 1\n0 1\n2 2 2", "2\n1 0\n0 1\n2 2 2", 1),
        10,
        "strictly increasing",
    ),
    ("csp knot count", "a.csp", _CSP.replace("2\n0 1\n0 1\n", "3\n0 1\n0 1\n", 1), 4, "expected 3 numbers"),
    ("csp size", "a.csp", _CSP.replace("2 2 2", "2 2 3"), 12, "differ"),
    ("csp rows", "a.csp", _CSP + "0 0 0\n", 21, "more than the 8 rows"),
    ("csp inf", "a.csp", _CSP.replace("2 2 2\n0 0 0", "2 2 2\n0 inf 0"), 13, "not a number"),
    (
        "clf doctype",
        "a.clf",
        '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "b">]>\n<ProcessList/>',
        2,
        "document type declaration",
    ),
    ("clf encoding", "a.clf", '<?xml version="1.0" encoding="U0TF-8"?><ProcessList/>', 1, "unknown encoding"),
    ("clf root", "a.clf", "<ProcessLis/>", 1, "not <ProcessList>"),
    ("clf xml", "a.clf", "<ProcessList>\n<LUT1D>\n</ProcessList>", 3, "not well-formed"),
    ("clf node", "a.clf", _CLF.replace("LUT1D", "Log"), 2, "<Log> is not supported"),
    ("clf depth", "a.clf", _CLF.replace('outBitDepth="32f"', 'outBitDepth="11i"'), 2, "outBitDepth must be"),
    ("clf count", "a.clf", _CLF.replace("0 0 0 1 1 1", "0 0 0 1 1"), 3, "needs 6 values, found 5"),
    (
        "clf dim bomb",
        "a.clf",
        _CLF.replace("LUT1D", "LUT3D").replace('"2 3"', '"256 256 256 3"'),
        3,
        "needs 50331648",
    ),
    (
        "clf 3d size",
        "a.clf",
        _CLF.replace("LUT1D", "LUT3D").replace('"2 3"', '"300 300 300 3"'),
        3,
        "out of range",
    ),
    ("clf 1d size", "a.clf", _CLF.replace('"2 3"', '"1 3"'), 3, "out of range"),
    ("clf value", "a.clf", _CLF.replace("0 0 0 1 1 1", "0 0 0 1 1 0x1"), 3, "not a finite number"),
    ("clf overflow", "a.clf", _CLF.replace("0 0 0 1 1 1", "0 0 0 1 1 1e999"), 3, "overflows"),
    ("clf half domain", "a.clf", _CLF.replace("<LUT1D ", '<LUT1D halfDomain="true" '), 2, "halfDomain"),
    (
        "clf chain depths",
        "a.clf",
        _CLF.replace(
            "</LUT1D>\n",
            '</LUT1D>\n<LUT1D inBitDepth="10i" outBitDepth="32f"><Array dim="2 1">0 1</Array></LUT1D>\n',
        ),
        5,
        "differs from the previous",
    ),
    (
        "clf range",
        "a.clf",
        '<ProcessList id="x"><Range inBitDepth="32f" outBitDepth="32f"><minInValue>0'
        "</minInValue></Range></ProcessList>",
        1,
        "without maxInValue",
    ),
    ("clf empty", "a.clf", '<ProcessList id="x"><Description>d</Description></ProcessList>', 1, "holds no"),
]


@pytest.mark.parametrize("name,text,line,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_files_name_file_and_line(tmp_path, name, text, line, message):
    path = tmp_path / name
    path.write_text(text)
    where = f"{re.escape(str(path))}:{line}:" if line is not None else f"{re.escape(str(path))}:"
    with pytest.raises(LUTFormatError, match=rf"^{where} .*{message}") as info:
        read_lut(path)
    assert isinstance(info.value, CubeFormatError) and info.value.line == line
    assert "\n" not in str(info.value)


def test_billion_laughs_is_refused_before_expansion():
    bomb = (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
        + "".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
            for i in range(1, 10)
        )
        + ']>\n<ProcessList id="x"><Description>&lol9;</Description></ProcessList>\n'
    )
    with pytest.raises(LUTFormatError, match="document type declaration"):
        parse_lut(bomb, "bomb.clf")


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(LUTFormatError, match=r"nope.3dl: no such file"):
        read_lut(tmp_path / "nope.3dl")
    (tmp_path / "a.lut").write_text("x")
    with pytest.raises(ValueError, match=r"extension '.lut' is not a LUT format \(known: .cube, .3dl"):
        read_lut(tmp_path / "a.lut")


def test_writers_refuse_what_their_format_cannot_hold(tmp_path):
    shaper_3d = CubeLUT(_lut(), SHAPER)
    refusals = [
        (".3dl", shaper_3d, "3D table on \\[0, 1\\] only"),
        (".3dl", CubeLUT(_lut(), lut3d_domain=((0,) * 3, (2,) * 3)), "3D table on \\[0, 1\\] only"),
        (".spi3d", shaper_3d, "3D table on \\[0, 1\\] only"),
        (".spi1d", CubeLUT(_lut()), "1D table only"),
        (".spi1d", CubeLUT(None, SHAPER, ((0, 0, 0), (1, 2, 1))), "one input range"),
        (".csp", shaper_3d, "cubic curve"),
        (".clf", LUTChain([CURVES, CubeLUT(_lut())]), "Cinespace pre-LUT"),
        (".cube", LUTChain([Matrix(MATRIX)]), "not this chain"),
        (".3dl", _lut() * float("nan"), "NaN"),
        (".clf", _lut() * float("inf"), "NaN or infinite"),
        (".csp", _lut()[None], "one LUT"),
    ]
    for fmt, lut, message in refusals:
        with pytest.raises(ValueError, match=message):
            write_lut(tmp_path / ("t" + fmt), lut)
        assert not (tmp_path / ("t" + fmt)).exists()
    with pytest.warns(UserWarning, match="2 values outside it clamped"):
        lut = _lut()
        lut[0, 0, 0] = torch.tensor([-0.1, 0.5, 1.2], dtype=torch.float64)
        text = lut_text(lut, ".3dl")
    assert text.splitlines()[1] == "0 2048 4095"  # after the mesh line


@pytest.mark.parametrize("name", ["matrix.clf", "prelut.csp"])
def test_a_chain_at_partial_strength_blends_each_pixel(name):
    """A chain (no single table of its kind) at strength S gives c + S * (lut(x) - c), c being x clamped to
    the chain's input domain: the Curves' end knots for a .csp pre-LUT; nothing for a CLF Matrix."""
    from lutkern.grading import at_strength

    chain = WRITTEN[name][0]
    img = _points()
    got = at_strength(chain, 0.3).apply(img, backend="torch")
    clamped = img if name == "matrix.clf" else img.clamp(-0.1, 1.5)
    torch.testing.assert_close(got, clamped + 0.3 * (chain.apply(img, backend="torch") - clamped), rtol=0,
                               atol=1e-12)
    assert at_strength(chain, 1) is chain


# ----------------------------------------------------------------------------- python -m lutkern.convert


def _convert(*argv) -> int:
    from lutkern.convert import main

    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        return exc.code


@pytest.mark.parametrize(
    "source", ["plain.3dl", "plain.spi3d", "domain.csp", "plain.clf", "domain.clf", "shaper.clf"]
)
def test_convert_keeps_the_transform(tmp_path, source):
    lut, options = WRITTEN[source]
    write_lut(tmp_path / source, lut, **options)
    img = _points()
    before = read_lut(tmp_path / source, dtype=torch.float64).apply(img, backend="torch")
    for target in (".cube", ".clf", ".csp", ".3dl", ".spi3d"):
        out = tmp_path / ("out" + target)
        rc = _convert(
            tmp_path / source, out, "--overwrite", *(["--precision", "8"] if target != ".3dl" else [])
        )
        fits = (
            target in (".cube", ".clf")
            or (target == ".csp" and "shaper" not in source)
            or (source.startswith("plain"))
        )
        assert rc == (0 if fits else 2), target
        if fits:
            after = read_lut(out, dtype=torch.float64).apply(img, backend="torch")
            tol = 0.5 / 4095 + 1e-7 if ".3dl" in (source[-4:], target) else 5e-8
            torch.testing.assert_close(after, before, rtol=0, atol=tol)


def test_convert_refuses_in_one_line_and_bakes_on_request(tmp_path, capsys):
    write_lut(tmp_path / "m.clf", WRITTEN["matrix.clf"][0], precision=8)
    assert _convert(tmp_path / "m.clf", tmp_path / "m.cube") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--bake" in err and not (tmp_path / "m.cube").exists()
    assert _convert(tmp_path / "m.clf", tmp_path / "m.cube", "--bake", "9") == 0
    baked = read_lut(tmp_path / "m.cube", dtype=torch.float64).lut3d
    lattice = identity_lut(9, dtype=torch.float64).permute(3, 0, 1, 2).reshape(3, 81, 9)
    exact = read_lut(tmp_path / "m.clf", dtype=torch.float64).apply(lattice, backend="torch")
    # 6 decimals, of a float32 sample
    torch.testing.assert_close(baked, exact.reshape(3, 9, 9, 9).permute(1, 2, 3, 0), rtol=0, atol=6e-7)
    capsys.readouterr()
    assert _convert(tmp_path / "m.clf", tmp_path / "m.cube", "--bake", "9") == 2  # exists: no --overwrite
    assert "exists" in capsys.readouterr().err
    assert _convert(tmp_path / "m.clf", tmp_path / "m.clf", "--overwrite") == 2  # never the input
    assert "input" in capsys.readouterr().err
    assert _convert(tmp_path / "m.clf", tmp_path / "m.csp", "--bits", "10") == 2
    assert "--bits applies to .3dl only" in capsys.readouterr().err
    assert _convert("bw", tmp_path / "bw.3dl", "--bits", "10", "--variant", "lustre") == 0
    assert (tmp_path / "bw.3dl").read_text().startswith("# bw\n3DMESH\nMesh 5 10\n")  # the title, a comment


# -------------------------------------------------------------------------------------------------- fuzz

_VALID = {
    ".3dl": "# c\n3DMESH\nMesh 2 12\n" + _MESH5 + "0 100 4095\n" * 125 + "LUT8\ngamma 1.0\n",
    ".spi1d": "Version 1\nFrom 0 2\nLength 2\nComponents 3\n{\n0 0 0\n1 1 1\n}\n",
    ".spi3d": _SPI3D,
    ".csp": _CSP.replace("3D\n", "3D\nBEGIN METADATA\nm\nEND METADATA\n").replace(
        "2\n0 1\n0 1\n2 2 2", "3\n0 0.5 1\n0 0.2 1\n2 2 2"
    ),
    ".clf": FIXTURES["tenbit.clf"],
}
_TOKENS = [
    "\n",
    " ",
    "0",
    "1",
    "-1",
    "2",
    "65537",
    "1e999",
    "nan",
    ".",
    "e",
    "<",
    ">",
    "/",
    '"',
    "&",
    "#",
    "{",
    "}",
    "\x00",
    "\ufeff",
    "3DMESH",
    "Mesh",
    "SPILUT",
    "<!DOCTYPE a>",
    "LUT3D",
    "dim",
    "Array",
]


def _only_format_errors(content, fmt):
    try:
        lut = parse_lut(content, "fuzz" + fmt)
    except LUTFormatError:
        return
    lut.apply(torch.rand(3, 2, 2))  # what is read applies without error


@pytest.mark.parametrize("fmt", list(_VALID))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_fuzz_arbitrary_input(fmt, content):
    _only_format_errors(content, fmt)


@pytest.mark.parametrize("fmt", list(_VALID))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 3), st.sampled_from(_TOKENS)), max_size=5)
)
def test_fuzz_mutated_valid_file(fmt, edits):
    text = _VALID[fmt]
    for pos, cut, token in edits:
        pos %= len(text) + 1
        text = text[:pos] + token + text[pos + cut :]
    _only_format_errors(text, fmt)


def test_valid_fuzz_seeds_parse():
    for fmt, text in _VALID.items():
        parse_lut(text, "seed" + fmt)
    assert set(_VALID) | {".cube"} == set(FORMATS)
