"""A generated corpus of image files (Pillow modes x formats x EXIF orientation x TIFF sample layout x
bit depth) through ``lutkern.apply`` and ``img2lut.predict``: every output is read back and must hold
what was meant, upright, or the input is refused with one line and nothing is written."""

import contextlib
import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lutkern
from img2lut import checkpoint
from img2lut.model import ResNetLUTGenerator
from img2lut.predict import main as predict_main
from lutkern.apply import main as apply_main
from lutkern.imageio import decode_image

tifffile = pytest.importorskip("tifffile")

H, W = 6, 8  # stored size; non-square, so a wrong rotation changes the shape
STORED_16BIT_PLANAR = "16-bit TIFF with planar"
pytestmark = pytest.mark.usefixtures("fast_small_tensors")


def _upright(codes: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows for stored ``codes``: 6 turns the picture 90 degrees clockwise, 8 counter."""
    return {1: codes, 6: np.rot90(codes, k=-1), 8: np.rot90(codes, k=1)}[orientation]


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "lutkern test camera"  # Make: a descriptive tag that must survive
    return exif.tobytes()


def _png16(path, samples: np.ndarray, colour_type: int, orientation: int) -> None:
    """A 16-bit PNG written here, independently of lutkern's writer (filter 0, one IDAT)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = samples.shape[:2]
    rows = samples.astype(">u2").reshape(h, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()
    exif = chunk(b"eXIf", _exif(orientation)[6:]) if orientation != 1 else b""
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
        + exif
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _corpus(root, rng):
    """``{file name: (expected upright RGB codes, or None when the file must be refused; lossy)}``."""
    root.mkdir()
    cases = {}
    rgb8 = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    grey8, alpha8 = rgb8[..., 0], rgb8[..., 1]
    rgb16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    grey16, alpha16 = rgb16[..., 0], rgb16[..., 1]
    pil = {
        "L": Image.fromarray(grey8, "L"),
        "LA": Image.fromarray(np.dstack([grey8, alpha8]), "LA"),
        "P": Image.fromarray(rgb8).quantize(16),
        "RGB": Image.fromarray(rgb8, "RGB"),
        "RGBA": Image.fromarray(np.dstack([rgb8, alpha8]), "RGBA"),
        "CMYK": Image.fromarray(np.dstack([rgb8, alpha8]), "CMYK"),
        "I16": Image.fromarray(grey16),
        "1": Image.fromarray(grey8 > 127),
        "F": Image.fromarray(grey16 / np.float32(65535)),  # float samples in [0, 1]: kept at 16 bits
    }
    modes_of = {
        "png": ("1", "L", "LA", "P", "RGB", "RGBA", "I16"),
        "tif": ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I16", "F"),
        "jpg": ("L", "RGB", "CMYK"),
        "webp": ("RGB", "RGBA"),
    }
    for ext, modes in modes_of.items():
        for mode in modes:
            for orientation in (1, 6, 8) if mode == "RGB" else (1, 6):
                name = f"pil_{mode}_{orientation}_{ext}.{ext}"
                lossless = {"lossless": True, "exact": True} if ext == "webp" else {}
                pil[mode].save(root / name, exif=_exif(orientation), **lossless)
                if mode in ("I16", "F"):
                    stored = np.repeat(grey16[..., None], 3, axis=-1)
                elif ext == "jpg":  # lossy: what Pillow itself decodes
                    with Image.open(root / name) as im:
                        stored = np.asarray(im.convert("RGB"))
                else:
                    stored = np.asarray(pil[mode].convert("RGB"))
                cases[name] = (_upright(stored, orientation), ext == "jpg")
    for channels, colour_type in ((3, 2), (4, 6), (1, 0), (2, 4)):  # RGB, RGBA, grey, grey + alpha
        samples = (
            np.dstack([rgb16, alpha16])[..., :channels] if channels >= 3 else np.dstack([grey16, alpha16])
        )
        samples = samples[..., :channels]
        for orientation in (1, 6):
            name = f"png16_{channels}_{orientation}.png"
            _png16(root / name, samples, colour_type, orientation)
            stored = samples[..., :3] if channels >= 3 else np.repeat(samples[..., :1], 3, axis=-1)
            cases[name] = (_upright(stored, orientation), False)
    for data, photometric in (
        (rgb8, "rgb"),
        (np.dstack([rgb8, alpha8]), "rgb"),
        (rgb16, "rgb"),
        (np.dstack([rgb16, alpha16]), "rgb"),
        (grey16, "minisblack"),
    ):
        layouts = ("contig", "separate") if data.ndim == 3 else ("contig",)
        for planar in layouts:
            for compression in (None, "zlib"):
                for orientation in (1, 6):
                    name = (
                        f"tf_{data.dtype.itemsize * 8}_{data.shape[-1] if data.ndim == 3 else 1}_{planar}_"
                        f"{compression}_{orientation}.tif"
                    )
                    stored = data.transpose(2, 0, 1) if planar == "separate" else data
                    extra = data.shape[-1] - 3 if data.ndim == 3 else 0
                    tifffile.imwrite(
                        root / name,
                        stored,
                        photometric=photometric,
                        planarconfig=planar,
                        compression=compression,
                        extrasamples=("unassalpha",) * extra,
                        extratags=[(274, "H", 1, orientation, False)],
                    )
                    rgb = data[..., :3] if data.ndim == 3 else np.repeat(data[..., None], 3, axis=-1)
                    refused = planar == "separate" and data.dtype == np.uint16
                    cases[name] = (STORED_16BIT_PLANAR if refused else _upright(rgb, orientation), False)
    # Sample meanings Pillow leaves to the reader: "white is zero" greyscale, a padding fourth sample,
    # premultiplied alpha (which Pillow divides out at 8 bits and then drops).
    for name, data, options, expected in (
        ("tf_miniswhite_8.tif", grey8, {"photometric": "miniswhite"}, 255 - grey8),
        ("tf_miniswhite_16.tif", grey16, {"photometric": "miniswhite"}, 65535 - grey16),
        ("tf_rgbx_16.tif", np.dstack([rgb16, alpha16]), {"photometric": "rgb", "extrasamples": (0,)}, rgb16),
        ("tf_assocalpha_16.tif", np.dstack([rgb16, alpha16]), {"photometric": "rgb", "extrasamples": (1,)},
         "premultiplied (associated) alpha"),
    ):
        tifffile.imwrite(root / name, data, **options)
        if not isinstance(expected, str) and expected.ndim == 2:
            expected = np.repeat(expected[..., None], 3, axis=-1)
        cases[name] = (expected, False)
    return cases


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root / "in", _corpus(root / "in", np.random.default_rng(13))


def _read_back(path) -> np.ndarray:
    """The output's RGB codes, read by Pillow (8-bit) or tifffile (16-bit TIFF); it must not be corrupt."""
    with Image.open(path) as im:
        im.load()  # a corrupt file raises here
        assert im.getexif().get(0x0112, 1) == 1, f"{path.name}: orientation not reset"
        pillow = np.asarray(im.convert("RGB"))
    if path.suffix == ".tif":
        codes = tifffile.imread(path)
        if codes.dtype == np.uint8:
            np.testing.assert_array_equal(pillow, codes)
        return codes
    return decode_image(path).codes if path.suffix == ".png" else pillow


def _check(name, expected, lossy, graded: np.ndarray, grade) -> None:
    top = np.iinfo(expected.dtype).max
    assert graded.shape == expected.shape, f"{name}: {graded.shape} written, {expected.shape} meant"
    assert graded.dtype == expected.dtype, f"{name}: {graded.dtype} written for {expected.dtype} samples"
    want = np.round(grade(expected.astype(np.float64) / top) * top)
    err = np.abs(graded.astype(np.float64) - want)
    if lossy:
        assert err.mean() < 4, f"{name}: mean error {err.mean():.1f} codes"
    else:
        assert err.max() <= 1, f"{name}: off by up to {err.max():.0f} codes"


def _errors(err: str) -> dict[str, str]:
    lines = [line for line in err.splitlines() if line.startswith(("error:", "python -m"))]
    return {
        next((w for w in line.split() if "/in/" in w), "").rstrip(":").rsplit("/", 1)[-1]: line
        for line in lines
    }


@pytest.fixture(scope="module")
def applied(corpus, tmp_path_factory):
    """lutkern.apply's outputs for the corpus, its exit status and its messages, graded without torch (the
    default); through torch (LUTKERN_TORCH_FREE=0) it must write the same files, byte for byte, and fail
    the same ones."""
    src, cases = corpus
    root = tmp_path_factory.mktemp("applied")
    invert = lutkern.CubeLUT(1 - lutkern.identity_lut(2))  # affine: exact under trilinear interpolation
    lutkern.write_cube(root / "invert.cube", invert)
    runs = {}
    for flag in ("1", "0"):
        err = io.StringIO()
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(err):
            patch.setenv("LUTKERN_TORCH_FREE", flag)
            code = apply_main(
                [
                    "--lut",
                    str(root / "invert.cube"),
                    *sorted(str(src / n) for n in cases),
                    "--out",
                    str(root / f"out{flag}"),
                    "--backend",
                    "torch",  # the loop CPU users get (module fixtures run before fast_small_tensors)
                ]
            )
        runs[flag] = root / f"out{flag}", code, err.getvalue()
    (free, free_code, free_err), (torch_out, torch_code, torch_err) = runs["1"], runs["0"]
    assert (free_code, _errors(free_err).keys()) == (torch_code, _errors(torch_err).keys())
    assert sorted(p.name for p in free.iterdir()) == sorted(p.name for p in torch_out.iterdir())
    for written in free.iterdir():
        assert written.read_bytes() == (torch_out / written.name).read_bytes(), written.name
    return runs["1"]


def _corpus_names() -> dict[str, bool]:
    """``{file name: refused}``: a refused file's expectation is the reason its error must give."""
    with tempfile.TemporaryDirectory() as d:
        cases = _corpus(Path(d) / "in", np.random.default_rng(13))
    return {n: isinstance(e, str) for n, (e, _) in cases.items()}


CORPUS = _corpus_names()


@pytest.mark.parametrize("name", sorted(n for n, refused in CORPUS.items() if not refused))
def test_apply_writes_what_was_meant(applied, corpus, name):
    out, _, err = applied
    expected, lossy = corpus[1][name]
    if name.endswith(".webp"):  # lutkern.apply writes only PNG, JPEG and TIFF: refused, nothing written
        assert "unsupported image type" in _errors(err)[name] and not (out / name).exists()
        return
    _check(name, expected, lossy or name.endswith(".jpg"), _read_back(out / name), lambda x: 1 - x)


@pytest.mark.parametrize("name", sorted(n for n, refused in CORPUS.items() if refused))
def test_apply_refuses_what_it_cannot_decode(applied, corpus, name):
    out, code, err = applied
    assert code == 1 and "Traceback" not in err
    assert corpus[1][name][0] in _errors(err)[name] and not (out / name).exists()


@pytest.fixture(scope="module")
def predicted(corpus, tmp_path_factory):
    """predict's outputs for the corpus, from a model whose LUT is far from the identity."""
    src, cases = corpus
    root = tmp_path_factory.mktemp("predicted")
    torch.manual_seed(0)
    model = ResNetLUTGenerator(5, "trilinear", "identity")
    with torch.no_grad():
        model.lut_generator[-1].bias.copy_(
            torch.logit(lutkern.looks["teal_orange"](5).clamp(0.01, 0.99)).reshape(-1)
        )
    checkpoint.save_checkpoint(
        root / "model.pt", model=model.eval(), config={"image_size": 32, "cnn_size": 16}
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny images: a second thread only costs
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.ExitStack() as restore:
        restore.callback(torch.set_num_threads, threads)
        code = predict_main(
            [
                str(root / "model.pt"),
                *sorted(str(src / n) for n in cases),
                "--out",
                str(root / "out"),
                "--device",
                "cpu",
                "--backend",
                "torch",
            ]
        )
    return root / "out", code, err.getvalue()


def _graded_by(cube_path):
    lut = lutkern.read_cube(cube_path)

    def grade(x: np.ndarray) -> np.ndarray:
        image = torch.from_numpy(x).float().permute(2, 0, 1)
        return lut.apply(image, backend="torch").clamp(0, 1).permute(1, 2, 0).double().numpy()

    return grade


@pytest.mark.parametrize("name", sorted(n for n, refused in CORPUS.items() if not refused))
def test_predict_writes_what_was_meant(predicted, corpus, name):
    out, _, _ = predicted
    expected, lossy = corpus[1][name]
    stem, ext = name.rsplit(".", 1)
    written = out / f"{stem}.{'png' if ext == 'webp' else ext}"  # WEBP is written as PNG
    _check(name, expected, lossy or ext == "jpg", _read_back(written), _graded_by(out / f"{stem}.cube"))


@pytest.mark.parametrize("name", sorted(n for n, refused in CORPUS.items() if refused))
def test_predict_refuses_what_it_cannot_decode(predicted, corpus, name):
    out, code, err = predicted
    assert code == 1 and "Traceback" not in err
    assert corpus[1][name][0] in _errors(err)[name]
    assert not list(out.glob(name.rsplit(".", 1)[0] + ".*"))  # neither the image nor its .cube


@pytest.mark.parametrize("ext", ["png", "jpg", "tif"])
def test_descriptive_exif_is_kept_and_structural_tags_are_not(applied, ext):
    out, _, _ = applied
    with Image.open(out / f"pil_RGB_6_{ext}.{ext}") as im:
        exif = im.getexif()
        assert exif.get(0x010F) == "lutkern test camera"  # Make
        assert (exif.get(256, im.width), exif.get(257, im.height)) == im.size  # the file's own, if any
