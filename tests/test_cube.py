"""``.cube`` files: exact round trips, agreement with colour-science and OpenColorIO, errors, fuzzing."""

import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lutkern import CubeFormatError, CubeLUT, apply_lut, identity_lut, read_cube, write_cube
from lutkern.cube import parse_cube

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns that matplotlib is missing
    import colour

OCIO = pytest.importorskip("PyOpenColorIO")


def _random_lut(d: int, seed: int = 0, lo: float = -0.1, hi: float = 1.1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (
        identity_lut(d, dtype=torch.float64) * 0.7
        + torch.rand(d, d, d, 3, generator=gen, dtype=torch.float64) * (hi - lo) * 0.3
        + lo * 0.3
    )


def _points(n: int = 500, lo: float = 0.0, hi: float = 1.0, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    pts = torch.rand(3, 1, n, generator=gen, dtype=torch.float64) * (hi - lo) + lo
    return pts


def _as_colour_points(img: torch.Tensor) -> np.ndarray:
    return img.reshape(3, -1).t().numpy().copy()


def _from_colour_points(arr: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.asarray(arr, dtype=np.float64)).t().reshape(like.shape)


def _ocio_apply(path, img: torch.Tensor, interpolation: str) -> torch.Tensor:
    interp = {"trilinear": OCIO.INTERP_LINEAR, "tetrahedral": OCIO.INTERP_TETRAHEDRAL}[interpolation]
    proc = OCIO.Config.CreateRaw().getProcessor(OCIO.FileTransform(src=str(path), interpolation=interp))
    buf = _as_colour_points(img).astype(np.float32)
    proc.getDefaultCPUProcessor().applyRGB(buf)
    return _from_colour_points(buf, img)


# ---------------------------------------------------------------------------------------------- round trips


def test_rows_are_red_fastest(tmp_path):
    write_cube(tmp_path / "id.cube", identity_lut(3), precision=2)
    rows = [ln for ln in (tmp_path / "id.cube").read_text().splitlines() if ln and ln[0] in "01"]
    assert rows[:4] == ["0.00 0.00 0.00", "0.50 0.00 0.00", "1.00 0.00 0.00", "0.00 0.50 0.00"]
    assert rows[9] == "0.00 0.00 0.50" and len(rows) == 27


@pytest.mark.parametrize("precision", [3, 6, 10])
def test_write_read_exact_to_printed_precision(tmp_path, precision):
    lut = _random_lut(5)
    write_cube(tmp_path / "a.cube", lut, title="rand", precision=precision)
    got = read_cube(tmp_path / "a.cube", dtype=torch.float64)
    assert got.title == "rand" and got.shaper is None
    expected = torch.tensor(
        [float(f"{v:.{precision}f}") for v in lut.flatten().tolist()], dtype=torch.float64
    )
    torch.testing.assert_close(got.lut3d, expected.reshape(lut.shape), rtol=0, atol=0)
    write_cube(tmp_path / "b.cube", got.lut3d, title="rand", precision=precision)
    assert (tmp_path / "b.cube").read_text() == (tmp_path / "a.cube").read_text()


def test_domain_and_resolve_shaper_round_trip(tmp_path):
    lut = _random_lut(4)
    write_cube(tmp_path / "d.cube", lut, domain_min=(-0.5, 0, 0.1), domain_max=(2, 1, 1.5), precision=8)
    got = read_cube(tmp_path / "d.cube", dtype=torch.float64)
    assert got.lut3d_domain == ((-0.5, 0.0, 0.1), (2.0, 1.0, 1.5))
    shaper = torch.linspace(0, 1, 7, dtype=torch.float64)[:, None].pow(torch.tensor([0.5, 0.6, 0.7]))
    both = CubeLUT(lut, shaper, ((-0.1,) * 3, (3.0,) * 3), ((0.0,) * 3, (1.0,) * 3), "both", ["a comment"])
    write_cube(tmp_path / "s.cube", both, precision=12)
    got = read_cube(tmp_path / "s.cube", dtype=torch.float64)
    assert got.title == "both" and got.comments == ["a comment"]
    assert got.shaper_domain == both.shaper_domain and got.lut3d_domain == both.lut3d_domain
    torch.testing.assert_close(got.shaper, shaper, rtol=0, atol=1e-12)
    torch.testing.assert_close(got.lut3d, lut, rtol=0, atol=1e-12)


def test_crlf_cr_comments_blank_lines_bom_tabs():
    text = '# made by hand\r\n\r\nTITLE "x"\r\n  LUT_3D_SIZE\t2\r\n# mid\r\n' + "\r\n".join(
        ["0 0 0", "1 0 0", "0\t1 0", "1 1 0", "", "0 0 1", "1 0 1", "0 1 1", "1 1 1  "]
    )
    for variant in (text, text.replace("\r\n", "\r"), text.replace("\r\n", "\n")):
        got = parse_cube(("\ufeff" + variant).encode())
        torch.testing.assert_close(got.lut3d, identity_lut(2), rtol=0, atol=0)
        assert got.comments == ["made by hand", "mid"] and got.title == "x"


def test_one_d_only(tmp_path):
    text = "LUT_1D_SIZE 3\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 2 2 2\n0 0 0\n0.25 0.5 1\n1 1 1\n"
    lut = parse_cube(text)
    assert lut.lut3d is None and lut.shaper_domain == ((0.0,) * 3, (2.0,) * 3)
    img = torch.tensor([0.5, 1.0, 3.0]).reshape(3, 1, 1)  # x/2 -> 0.25, 0.5, 1 (clamped)
    torch.testing.assert_close(lut.apply(img, backend="torch").flatten(), torch.tensor([0.125, 0.5, 1.0]))


# ------------------------------------------------------------------------------------ independent readers


@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral"])
def test_our_file_in_colour_science_and_ocio(tmp_path, interpolation):
    lut = _random_lut(7, seed=3)
    path = tmp_path / "ours.cube"
    write_cube(path, lut, title="ours", precision=9)
    ours = read_cube(path, dtype=torch.float64)
    theirs = colour.read_LUT(str(path))
    # colour-science indexes its table [r, g, b]; ours is [b, g, r].
    np.testing.assert_allclose(theirs.table, ours.lut3d.permute(2, 1, 0, 3).numpy(), rtol=0, atol=0)
    img = _points()
    mine = apply_lut(img, ours.lut3d, interpolation=interpolation, backend="torch")
    interp = {
        "trilinear": colour.algebra.table_interpolation_trilinear,
        "tetrahedral": colour.algebra.table_interpolation_tetrahedral,
    }[interpolation]
    ref = _from_colour_points(theirs.apply(_as_colour_points(img), interpolator=interp), img)
    torch.testing.assert_close(mine, ref, rtol=0, atol=1e-12)  # both float64
    # OpenColorIO computes in float32.
    torch.testing.assert_close(mine, _ocio_apply(path, img, interpolation), rtol=0, atol=2e-6)


def test_domain_file_in_ocio_and_colour(tmp_path):
    lut = _random_lut(5, seed=4)
    path = tmp_path / "dom.cube"
    write_cube(path, lut, domain_min=(-0.25, -0.25, -0.25), domain_max=(2.0, 2.0, 2.0), precision=9)
    ours = read_cube(path, dtype=torch.float64)
    img = _points(lo=-0.2, hi=1.9)
    mine = ours.apply(img, backend="torch")
    ref = _from_colour_points(colour.read_LUT(str(path)).apply(_as_colour_points(img)), img)
    torch.testing.assert_close(mine, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(mine, _ocio_apply(path, img, "trilinear"), rtol=0, atol=2e-6)


def test_shaper_plus_3d_in_ocio_and_colour(tmp_path):
    lut = _random_lut(5, seed=5)
    shaper = (torch.linspace(0, 1, 16, dtype=torch.float64)[:, None] ** torch.tensor([0.45, 0.5, 0.55])) * 0.9
    # No title: OpenColorIO's Resolve reader rejects TITLE (DaVinci Resolve itself accepts it).
    cube = CubeLUT(lut, shaper, ((-0.1,) * 3, (3.0,) * 3), ((0.0,) * 3, (1.0,) * 3))
    path = tmp_path / "shaped.cube"
    write_cube(path, cube, precision=10)
    ours = read_cube(path, dtype=torch.float64)
    img = _points(lo=-0.05, hi=2.9)
    mine = ours.apply(img, backend="torch")
    seq = colour.read_LUT(str(path))
    assert isinstance(seq, colour.LUTSequence)
    ref = _from_colour_points(seq.apply(_as_colour_points(img)), img)
    torch.testing.assert_close(mine, ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(mine, _ocio_apply(path, img, "trilinear"), rtol=0, atol=2e-6)


def test_colour_science_files_load_in_ours(tmp_path):
    gen = np.random.default_rng(7)
    table = colour.LUT3D.linear_table(6) * 0.8 + gen.random((6, 6, 6, 3)) * 0.2
    c3d = colour.LUT3D(table, "from colour", np.array([[-0.1, 0.0, 0.05], [1.5, 1.2, 1.0]]))
    colour.write_LUT(c3d, str(tmp_path / "c3d.cube"))
    ours = read_cube(tmp_path / "c3d.cube", dtype=torch.float64)
    assert ours.title == "from colour"
    img = _points(lo=-0.05, hi=0.95)
    ref = _from_colour_points(c3d.apply(_as_colour_points(img)), img)
    # colour-science writes 7 decimals.
    torch.testing.assert_close(ours.apply(img, backend="torch"), ref, rtol=0, atol=1e-6)

    shaper = colour.LUT3x1D(colour.LUT3x1D.linear_table(10) ** 0.5, "shaper")
    seq = colour.LUTSequence(shaper, colour.LUT3D(table, "cube"))
    colour.io.write_LUT_ResolveCube(seq, str(tmp_path / "seq.cube"))
    ours = read_cube(tmp_path / "seq.cube", dtype=torch.float64)
    assert ours.shaper.shape == (10, 3) and ours.lut3d.shape == (6, 6, 6, 3)
    img = _points()
    ref = _from_colour_points(seq.apply(_as_colour_points(img)), img)
    torch.testing.assert_close(ours.apply(img, backend="torch"), ref, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ errors

_ID2 = "0 0 0\n1 0 0\n0 1 0\n1 1 0\n0 0 1\n1 0 1\n0 1 1\n1 1 1\n"
BAD = [
    ("no size", "0 0 0\n", 1, "before LUT_1D_SIZE or LUT_3D_SIZE"),
    ("empty", "", 1, "missing LUT_3D_SIZE"),
    ("only comments", "# hi\n\n", 1, "missing LUT_3D_SIZE"),
    ("too few rows", "LUT_3D_SIZE 2\n" + "0 0 0\n" * 7, 8, "expected 8 table rows, found 7"),
    ("too many rows", "LUT_3D_SIZE 2\n" + "0 0 0\n" * 9, 10, "more than the 8"),
    ("shaper rows count", "LUT_1D_SIZE 2\nLUT_3D_SIZE 2\n" + _ID2, 10, "expected 10 table rows, found 8"),
    ("letters", "LUT_3D_SIZE 2\n" + _ID2.replace("1 1 0", "1 x 0"), 5, "'x' is not a number"),
    ("non-ASCII digit", "LUT_3D_SIZE 2\n" + _ID2.replace("1 1 0", "1 \u0663 0"), 5, "is not a number"),
    ("two columns", "LUT_3D_SIZE 2\n0 0\n", 2, "3 numbers, got 2"),
    ("nan", "LUT_3D_SIZE 2\n" + _ID2.replace("0 1 1", "0 nan 1"), 8, "'nan' is not a number"),
    ("overflow", "LUT_3D_SIZE 2\n" + _ID2.replace("0 1 1", "0 1e999 1"), 8, "not finite"),
    ("duplicate", "LUT_3D_SIZE 2\nLUT_3D_SIZE 2\n" + _ID2, 2, "duplicate LUT_3D_SIZE"),
    ("unknown", "LUT_3D_SIZE 2\nLUT_4D_SIZE 2\n" + _ID2, 2, "unknown keyword 'LUT_4D_SIZE'"),
    ("keyword after data", "LUT_3D_SIZE 2\n" + _ID2 + 'TITLE "late"\n', 10, "after the table data"),
    ("reversed domain", "DOMAIN_MIN 0 0 1\nDOMAIN_MAX 1 1 0.5\nLUT_3D_SIZE 2\n" + _ID2, 2, "reversed"),
    ("equal range", "LUT_3D_INPUT_RANGE 1 1\nLUT_3D_SIZE 2\n" + _ID2, 1, "reversed"),
    ("size too big", "LUT_3D_SIZE 257\n", 1, r"out of range \[2, 256\]"),
    ("size huge", "LUT_3D_SIZE 99999999999999999999999999\n", 1, "out of range"),
    ("size one", "LUT_1D_SIZE 1\n0 0 0\n", 1, "out of range"),
    ("size float", "LUT_3D_SIZE 2.0\n", 1, "one integer"),
    ("domain arity", "DOMAIN_MIN 0 0\nLUT_3D_SIZE 2\n" + _ID2, 1, "needs 3 numbers"),
    ("title unquoted", "TITLE hello\nLUT_3D_SIZE 2\n" + _ID2, 1, "quoted"),
    ("mixed domains", "DOMAIN_MIN 0 0 0\nLUT_3D_INPUT_RANGE 0 1\nLUT_3D_SIZE 2\n" + _ID2, 1, "mixed"),
    (
        "ambiguous domain",
        "DOMAIN_MAX 2 2 2\nLUT_1D_SIZE 2\nLUT_3D_SIZE 2\n0 0 0\n1 1 1\n" + _ID2,
        1,
        "ambiguous",
    ),
    (  # alone in a 3D file, LUT_1D_INPUT_RANGE is its range (colour-science 0.3.x); not beside the 3D one
        "range without table",
        "LUT_1D_INPUT_RANGE 0 2\nLUT_3D_INPUT_RANGE 0 1\nLUT_3D_SIZE 2\n" + _ID2,
        1,
        "without LUT_1D_SIZE",
    ),
    ("3D range, no table", "LUT_3D_INPUT_RANGE 0 2\nLUT_1D_SIZE 2\n0 0 0\n1 1 1\n", 1, "without LUT_3D_SIZE"),
]


@pytest.mark.parametrize("text,line,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_files_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad.cube"
    path.write_text(text)
    with pytest.raises(CubeFormatError, match=rf"^{re.escape(str(path))}:{line}: .*{message}") as info:
        read_cube(path)
    assert isinstance(info.value, ValueError) and info.value.line == line


def test_non_utf8():
    with pytest.raises(CubeFormatError, match=r"^f.cube:2: not UTF-8"):
        parse_cube(b"LUT_3D_SIZE 2\n\xff\xfe\n", "f.cube")


def test_writer_rejects_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="quotes"):
        write_cube(tmp_path / "t.cube", identity_lut(2), title='a "b"')
    with pytest.raises(ValueError, match="NaN"):
        write_cube(tmp_path / "t.cube", identity_lut(2) * float("nan"))
    with pytest.raises(ValueError, match="one LUT"):
        write_cube(tmp_path / "t.cube", identity_lut(2)[None])
    per_channel = CubeLUT(identity_lut(2), identity_lut(2)[0, 0], ((0, 0, 0), (1, 2, 1)))
    with pytest.raises(ValueError, match="one 1D input range"):
        write_cube(tmp_path / "t.cube", per_channel)
    assert not (tmp_path / "t.cube").exists()


# -------------------------------------------------------------------------------------------------- fuzz

_VALID = 'TITLE "t"\nLUT_1D_INPUT_RANGE 0 2\nLUT_1D_SIZE 2\nLUT_3D_SIZE 2\n0 0 0\n1 1 1\n' + _ID2
_TOKENS = [
    "LUT_3D_SIZE",
    "LUT_1D_SIZE",
    "DOMAIN_MIN",
    "DOMAIN_MAX",
    "TITLE",
    '"',
    "#",
    "\n",
    "\r",
    " ",
    "\t",
    "0",
    "1",
    "2",
    "-1",
    "1e5",
    "nan",
    "inf",
    "1e999",
    "257",
    "65537",
    ".",
    "e",
    "\x00",
    "\ufeff",
]


def _only_format_errors(content):
    try:
        parse_cube(content, "fuzz.cube")
    except CubeFormatError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_fuzz_arbitrary_input(content):
    _only_format_errors(content)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, len(_VALID)), st.integers(0, 3), st.sampled_from(_TOKENS)), max_size=6)
)
def test_fuzz_mutated_valid_file(edits):
    text = _VALID
    for pos, cut, token in edits:
        text = text[:pos] + token + text[pos + cut :]
    _only_format_errors(text)
