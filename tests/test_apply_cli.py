"""``python -m lutkern.apply``: formats and bit depths kept, strips, EXIF/ICC, refusals, per-file errors; the
same bytes with and without torch, and no torch imported where it is not needed."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import lutkern
import lutkern.formats as lutkern_formats
import lutkern.grading
from lutkern import apply_lut, read_cube, read_lut, write_cube, write_lut
from lutkern.apply import main
from lutkern.builtin_looks import LOOKS
from lutkern.grading import grade_codes
from lutkern.hald import write_hald
from lutkern.imageio import decode_image, read_image, write_image

ROOT = Path(__file__).resolve().parents[1]


def _photo(h: int = 12, w: int = 17, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(3, h, w, generator=gen)


def _expected_codes(pixels: torch.Tensor, lut: torch.Tensor, top: int, interpolation: str = "trilinear"):
    out = apply_lut(pixels[None], lut, interpolation=interpolation, backend="torch")[0]
    return (out.double().clamp(0, 1) * top).round().permute(1, 2, 0).numpy()


def _codes(path: Path, top: int) -> np.ndarray:
    return np.round(read_image(path).pixels.double().permute(1, 2, 0).numpy() * top)


@pytest.mark.parametrize("name,depth", [("a.png", 8), ("b.png", 16), ("c.tif", 8), ("d.tiff", 16)])
def test_lossless_formats_keep_depth_and_match_apply_lut(tmp_path, name, depth, grading_path):
    src = tmp_path / "in" / name
    src.parent.mkdir()
    write_image(src, _photo(), bit_depth=depth)
    cube = tmp_path / "look.cube"
    write_cube(cube, LOOKS["teal_orange"](33), precision=9)
    # A strip of 40 pixels is 2 rows here: several strips, the last one short.
    assert main(["--lut", str(cube), str(src), "--out", str(tmp_path / "out"), "--strip-pixels", "40"]) == 0
    dst = tmp_path / "out" / name
    loaded = read_image(dst)
    assert loaded.bit_depth == depth and loaded.format == read_image(src).format
    top = 2**depth - 1
    expected = _expected_codes(read_image(src).pixels, read_cube(cube).lut3d, top)
    # Strips vs the whole image may round a float32 differently (vectorised vs scalar loop tails): at
    # most one code, rarely.
    diff = np.abs(_codes(dst, top) - expected)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_a_batch_of_8_bit_images_is_looked_up_past_every_code(tmp_path, monkeypatch, grading_path):
    """Once a command has graded as many 8-bit pixels as there are 8-bit colours (here two images), its
    8-bit images are looked up in the table of every code graded (lutkern.grading.CodesGrader): the codes
    grading each image gives, exactly; 16-bit images are interpolated."""
    monkeypatch.setattr(lutkern.grading, "ALL_CODES", 2 * 12 * 17)
    built = []
    real = lutkern.grading.every_code_graded
    monkeypatch.setattr(lutkern.grading, "every_code_graded", lambda *args: built.append(1) or real(*args))
    sources = []
    for i, depth in enumerate((8, 8, 8, 16, 8)):
        sources.append(tmp_path / "in" / f"{i}.png")
        sources[-1].parent.mkdir(exist_ok=True)
        write_image(sources[-1], _photo(seed=i), bit_depth=depth)
    cube = tmp_path / "look.cube"
    write_cube(cube, LOOKS["teal_orange"](17) * 1.2 - 0.1, precision=9)
    out = tmp_path / "out"
    args = ["--lut", str(cube), "--interpolation", "tetrahedral", *map(str, sources)]
    assert main([*args, "--out", str(out)]) == 0
    assert built == [1]
    for src in sources:
        want = decode_image(src).codes
        grade_codes(want, read_cube(cube), interpolation="tetrahedral")
        np.testing.assert_array_equal(decode_image(out / src.name).codes, want)


def test_jpeg_in_jpeg_out(tmp_path):
    src = tmp_path / "p.jpg"
    write_image(src, _photo(16, 16))
    assert (
        main(["--lut", "bw", "--interpolation", "tetrahedral", str(src), "--out", str(tmp_path / "o")]) == 0
    )
    out = read_image(tmp_path / "o" / "p.jpg")
    assert out.format == "JPEG" and out.bit_depth == 8
    expected = apply_lut(
        read_image(src).pixels, LOOKS["bw"](33), interpolation="tetrahedral", backend="torch"
    )
    assert (out.pixels - expected).abs().mean() < 0.01  # JPEG re-encoding


def _grades_like_apply_lut(tmp_path: Path, lut_path: Path, lut: torch.Tensor) -> None:
    src = tmp_path / "x.png"
    write_image(src, _photo(), bit_depth=16)
    assert main(["--lut", str(lut_path), str(src), "--out", str(tmp_path / "o")]) == 0
    got = _codes(tmp_path / "o" / "x.png", 65535)
    expected = _expected_codes(read_image(src).pixels, lut, 65535)
    assert np.abs(got - expected).max() <= 2  # stored LUT rounded to 7 decimals / 16 bits


def test_cube_file(tmp_path, grading_path):
    lut = LOOKS["cool_contrast"](17)
    write_cube(tmp_path / "look.cube", lut, precision=7)
    _grades_like_apply_lut(tmp_path, tmp_path / "look.cube", lut)


def test_hald_file(tmp_path):
    lut = LOOKS["cool_contrast"](16)
    write_hald(tmp_path / "look_hald.png", lut, bit_depth=16)
    _grades_like_apply_lut(tmp_path, tmp_path / "look_hald.png", lut)


@pytest.mark.parametrize("name", ["look.3dl", "look.spi3d", "look.csp", "look.clf"])
def test_lut_files_of_every_format(tmp_path, name):
    """--lut takes any LUT format by its extension, and grades with what the file holds (a .3dl's 12-bit
    codes, a .clf's Matrix and Range steps)."""
    look = LOOKS["cool_contrast"](9)
    lut = (look if not name.endswith(".clf") else
           lutkern_formats.LUTChain([lutkern_formats.Matrix(torch.tensor(
               [[0.9, 0.1, 0, 0.02], [0, 1, 0, 0], [0.1, 0, 0.8, 0]], dtype=torch.float64)),
               lutkern_formats.Range(0, 1, 0, 1), lutkern.CubeLUT(look)]))
    write_lut(tmp_path / name, lut)
    src = tmp_path / "x.png"
    write_image(src, _photo(), bit_depth=16)
    assert main(["--lut", str(tmp_path / name), str(src), "--out", str(tmp_path / "o")]) == 0
    graded = read_lut(tmp_path / name).apply(read_image(src).pixels[None], backend="torch")[0]
    expected = (graded.double().clamp(0, 1) * 65535).round().permute(1, 2, 0).numpy()
    assert np.abs(_codes(tmp_path / "o" / "x.png", 65535) - expected).max() <= 1


def test_exif_orientation_and_icc_profile(tmp_path, capsys):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    src = tmp_path / "r.png"
    Image.new("RGB", (8, 5), (200, 30, 40)).save(src, exif=exif.tobytes(), icc_profile=icc)
    assert main(["--lut", "faded_warm", str(src), "--out", str(tmp_path / "o")]) == 0
    with Image.open(tmp_path / "o" / "r.png") as out:
        assert out.size == (5, 8)
        assert out.getexif().get(0x0112) == 1
        assert out.info.get("icc_profile") == icc
    assert "ICC profile" in capsys.readouterr().err


def test_refusals_and_per_file_errors(tmp_path, capsys):
    good1, bad, good2 = tmp_path / "g1.png", tmp_path / "broken.png", tmp_path / "g2.jpg"
    write_image(good1, _photo())
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_image(good2, _photo())
    before = good1.read_bytes()
    # Writing next to the inputs would overwrite them: refused even with --overwrite.
    assert main(["--lut", "bw", str(good1), "--out", str(tmp_path), "--overwrite"]) == 1
    assert good1.read_bytes() == before
    assert "refusing to overwrite an input" in capsys.readouterr().err

    out = tmp_path / "out"
    code = main(
        ["--lut", "bw", str(good1), str(bad), str(good2), str(tmp_path / "missing.png"), "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert (out / "g1.png").exists() and (out / "g2.jpg").exists() and not (out / "broken.png").exists()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "broken.png" in errors[0] and "missing.png" in errors[1]
    assert "Traceback" not in err and "2 graded" in err

    # Existing outputs: refused without --overwrite, replaced with it.
    assert main(["--lut", "bw", str(good1), "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["--lut", "teal_orange", str(good1), "--out", str(out), "--overwrite"]) == 0

    # Two inputs with the same name would collide in the output directory.
    other = tmp_path / "sub" / "g1.png"
    other.parent.mkdir()
    write_image(other, _photo(seed=1))
    assert main(["--lut", "bw", str(good1), str(other), "--out", str(tmp_path / "o2")]) == 1
    assert "written twice" in capsys.readouterr().err


def test_bad_lut_is_one_line_exit_2(tmp_path, capsys):
    src = tmp_path / "x.png"
    write_image(src, _photo())
    assert main(["--lut", "no_such_look", str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m lutkern.apply: error: no_such_look") and "bw" in err and "\n" not in err
    (tmp_path / "bad.cube").write_text("LUT_3D_SIZE 2\n0 0 0\n")
    assert main(["--lut", str(tmp_path / "bad.cube"), str(src), "--out", str(tmp_path / "o")]) == 2
    assert "bad.cube:2: expected 8 table rows" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    src = tmp_path / "x.png"
    write_image(src, _photo(4, 4))
    cmd = [sys.executable, "-m", "lutkern.apply", "--lut", "bw", str(src), "--out", str(tmp_path / "o")]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "o" / "x.png").exists()


def _grade_both_ways(tmp_path: Path, monkeypatch, sources: list[Path], *args: str) -> dict[str, Path]:
    """Run the command on ``sources`` without torch where it can and through torch; the two output folders."""
    outs = {}
    for path, flag in (("torch-free", "1"), ("torch", "0")):
        monkeypatch.setenv("LUTKERN_TORCH_FREE", flag)
        outs[path] = tmp_path / path
        assert main([*args, *map(str, sources), "--out", str(outs[path])]) == 0
    return outs


@pytest.mark.parametrize("interpolation", ["trilinear", "tetrahedral", "nearest"])
def test_with_and_without_torch_the_same_bytes(tmp_path, monkeypatch, interpolation):
    """Every depth and format a .cube grades without torch: 8 and 16-bit PNG and TIFF, JPEG; the codes
    equal the float loop's, rounded (an oracle independent of the integer-code loop)."""
    cube = tmp_path / "look.cube"
    write_cube(cube, LOOKS["cool_contrast"](17) * 1.2 - 0.1, precision=9)  # values leave [0, 1]: clamped
    sources = []
    for name, depth in (("a.png", 8), ("b.png", 16), ("c.tif", 8), ("d.tiff", 16), ("e.jpg", 8)):
        sources.append(tmp_path / "in" / name)
        sources[-1].parent.mkdir(exist_ok=True)
        write_image(sources[-1], _photo(37, 29, seed=depth), bit_depth=depth)
    args = ["--lut", str(cube), "--interpolation", interpolation]
    outs = _grade_both_ways(tmp_path, monkeypatch, sources, *args)
    lut = read_cube(cube).lut3d
    for src in sources:
        a, b = (outs[path] / src.name for path in outs)
        assert a.read_bytes() == b.read_bytes(), src.name
        if src.suffix != ".jpg":
            top = 2 ** read_image(src).bit_depth - 1
            want = _expected_codes(read_image(src).pixels, lut, top, interpolation)
            assert np.array_equal(_codes(a, top), want), src.name


def test_a_cube_on_the_cpu_never_imports_torch(tmp_path, command_modules):
    cube = tmp_path / "look.cube"
    write_cube(cube, LOOKS["bw"](9))
    sources = [tmp_path / "p.jpg", tmp_path / "q.png"]
    write_image(sources[0], _photo(8, 8))
    write_image(sources[1], _photo(8, 8), bit_depth=16)
    args = ["--lut", str(cube), *map(str, sources), "--device", "cpu"]
    assert "torch" not in command_modules([*args, "--out", str(tmp_path / "a")])
    assert (tmp_path / "a" / "q.png").exists()
    # The torch path of the same command, which the tests run beside this one (conftest's grading_path).
    assert "torch" in command_modules([*args, "--out", str(tmp_path / "t")], LUTKERN_TORCH_FREE="0")
    # A look is built by torch, and --strength blends in torch: the probe sees torch when it is imported.
    assert "torch" in command_modules(["--lut", "bw", str(sources[0]), "--out", str(tmp_path / "b")])
    assert "torch" in command_modules([*args, "--strength", "0.5", "--out", str(tmp_path / "c")])
