"""Image reading/writing: every Pillow mode to RGB, 16-bit precision, rounding, EXIF orientation, errors."""

import io
import os
import stat
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from lutkern import identity_lut, write_cube
from lutkern.imageio import ImageReadError, read_image, write_image


def _expected(rgb_uint: np.ndarray, top: int) -> torch.Tensor:
    return torch.from_numpy(rgb_uint.astype(np.float32) / top).permute(2, 0, 1)


def _png16_filtered(rgb: np.ndarray, filters: list[int]) -> bytes:
    """A 16-bit PNG encoded independently of lutkern, row filter ``filters[i % len]`` (0..4)."""
    h, w, c = rgb.shape
    bpp = 2 * c
    raw = rgb.astype(">u2").view(np.uint8).reshape(h, w * bpp).astype(np.int32)
    out = []
    for y in range(h):
        ft = filters[y % len(filters)]
        x = raw[y]
        up = raw[y - 1] if y else np.zeros_like(x)
        left = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
        if ft == 0:
            pred = 0
        elif ft == 1:
            pred = left
        elif ft == 2:
            pred = up
        elif ft == 3:
            pred = (left + up) // 2
        else:
            p = left + up - upleft
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        out.append(bytes([ft]) + ((x - pred) % 256).astype(np.uint8).tobytes())

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    colour_type = {1: 0, 3: 2, 4: 6}[c]
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"".join(out)))
        + chunk(b"IEND", b"")
    )


def _tiff16(codes: np.ndarray, order: str, deflate: bool) -> bytes:
    """A 16-bit RGB TIFF encoded independently of lutkern: byte order ``"<"`` or ``">"``, raw or deflate."""
    h, w, _ = codes.shape
    data = codes.astype(order + "u2").tobytes()
    data = zlib.compress(data) if deflate else data
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, "bits"), (259, 3, 1, 8 if deflate else 1)]
    tags += [(262, 3, 1, 2), (273, 4, 1, "data"), (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(data))]
    bits_at = 8 + 2 + 12 * len(tags) + 4
    entries = b""
    for tag, typ, count, value in tags:
        value = {"bits": bits_at, "data": bits_at + 6}.get(value, value)
        layout = "HHIHH" if typ == 3 and count == 1 else "HHII"
        entries += struct.pack(order + layout, tag, typ, count, value, *([0] if layout == "HHIHH" else []))
    head = (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", 8)
    ifd = struct.pack(order + "H", len(tags)) + entries + struct.pack(order + "I", 0)
    return head + ifd + struct.pack(order + "3H", 16, 16, 16) + data


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("ext,depth", [(".png", 8), (".png", 16), (".tif", 8), (".tiff", 16)])
def test_lossless_round_trip_on_the_integer_grid(tmp_path, rng, ext, depth, monkeypatch):
    monkeypatch.setattr("lutkern.imageio._BLOCK_PIXELS", 20)  # 16-bit files coded in one-row blocks
    top = 2**depth - 1
    codes = rng.integers(0, top + 1, size=(9, 13, 3))
    pixels = _expected(codes, top)
    write_image(tmp_path / f"x{ext}", pixels, bit_depth=depth)
    loaded = read_image(tmp_path / f"x{ext}")
    assert loaded.bit_depth == depth and loaded.pixels.shape == (3, 9, 13)
    torch.testing.assert_close(loaded.pixels, pixels, rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == [f"x{ext}"]  # written via a temporary name


@pytest.mark.parametrize("depth", [8, 16])
def test_write_rounds_to_nearest(tmp_path, depth):
    top = 2**depth - 1
    k = torch.arange(0, 30, dtype=torch.float64).reshape(1, 1, 30).expand(3, 2, 30)
    below, above = (k + 0.49) / top, (k + 0.51) / top
    pixels = torch.cat([below, above], dim=1).float()
    write_image(tmp_path / "r.png", pixels, bit_depth=depth)
    got = np.round(read_image(tmp_path / "r.png").pixels.double().numpy() * top)
    np.testing.assert_array_equal(got[:, :2], k.numpy())
    np.testing.assert_array_equal(got[:, 2:], k.numpy() + 1)


def test_out_of_range_is_clamped(tmp_path):
    pixels = torch.tensor([-0.5, 0.5, 1.5]).reshape(3, 1, 1).expand(3, 2, 2)
    write_image(tmp_path / "c.png", pixels)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c.png"))[0, 0], [0, 128, 255])


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("filters", [[0], [1], [2], [3], [4], [4, 3, 1, 2, 0]])
def test_16bit_png_from_another_encoder(tmp_path, rng, channels, filters, monkeypatch):
    monkeypatch.setattr("lutkern.imageio._BLOCK_PIXELS", 30)  # high bytes merged in blocks of 2 rows
    codes = rng.integers(0, 65536, size=(7, 11, channels))
    (tmp_path / "w.png").write_bytes(_png16_filtered(codes, filters))
    loaded = read_image(tmp_path / "w.png")
    assert loaded.bit_depth == 16 and loaded.dropped_alpha == (channels == 4)
    torch.testing.assert_close(loaded.pixels, _expected(codes[..., :3], 65535), rtol=0, atol=0)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("deflate", [False, True])  # deflate goes through libtiff, raw through Pillow
def test_16bit_tiff_from_another_encoder(tmp_path, rng, order, deflate):
    codes = rng.integers(0, 65536, size=(5, 7, 3))
    (tmp_path / "w.tif").write_bytes(_tiff16(codes, order, deflate))
    loaded = read_image(tmp_path / "w.tif")
    assert loaded.bit_depth == 16
    torch.testing.assert_close(loaded.pixels, _expected(codes, 65535), rtol=0, atol=0)


def test_16bit_grey_png_and_tiff_keep_precision(tmp_path, rng):
    codes = rng.integers(0, 65536, size=(6, 5)).astype(np.uint16)
    for name in ("g.png", "g.tif"):
        Image.fromarray(codes).save(tmp_path / name)
        loaded = read_image(tmp_path / name)
        assert loaded.bit_depth == 16
        torch.testing.assert_close(
            loaded.pixels, _expected(np.repeat(codes[..., None], 3, -1), 65535), rtol=0, atol=0
        )


def test_8bit_modes(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(4, 6, 3)).astype(np.uint8)
    alpha = rng.integers(0, 256, size=(4, 6)).astype(np.uint8)
    grey = rgb[..., 0]
    palette = rng.integers(0, 256, size=(256, 3)).astype(np.uint8)
    index = rng.integers(0, 256, size=(4, 6)).astype(np.uint8)
    p = Image.fromarray(index, "P")
    p.putpalette(palette.tobytes())
    p_transparent = p.copy()
    p_transparent.info["transparency"] = int(index[0, 0])
    bits = grey > 127
    cases = {  # image, expected RGB uint8, alpha dropped
        "L": (Image.fromarray(grey, "L"), np.repeat(grey[..., None], 3, -1), False),
        "LA": (Image.fromarray(np.stack([grey, alpha], -1), "LA"), np.repeat(grey[..., None], 3, -1), True),
        "RGBA": (Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), rgb, True),
        "P": (p, palette[index], False),
        "P+transparency": (p_transparent, palette[index], True),
        "1": (Image.fromarray(bits), np.repeat(bits[..., None] * np.uint8(255), 3, -1), False),
    }
    for name, (im, expected, dropped) in cases.items():
        im.save(tmp_path / "m.png")
        loaded = read_image(tmp_path / "m.png")
        assert loaded.bit_depth == 8 and loaded.format == "PNG", name
        assert loaded.dropped_alpha == dropped, name
        torch.testing.assert_close(loaded.pixels, _expected(expected, 255), rtol=0, atol=0, msg=name)


def test_cmyk_and_float_and_int_modes(tmp_path, rng):
    cmyk = rng.integers(0, 256, size=(3, 4, 4)).astype(np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif", icc_profile=b"a CMYK profile")
    # Pillow's formula, R = (255 - C) * (255 - K) / 255; the CMYK profile does not describe the RGB result.
    expected = np.round((255 - cmyk[..., :3].astype(np.float64)) * (255 - cmyk[..., 3:4]) / 255)
    loaded = read_image(tmp_path / "c.tif")
    np.testing.assert_allclose(loaded.pixels.permute(1, 2, 0).numpy() * 255, expected, atol=1.0)
    assert loaded.icc_profile is None

    f = rng.random((3, 4)).astype(np.float32) * 1.2 - 0.1
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    loaded = read_image(tmp_path / "f.tif")
    torch.testing.assert_close(loaded.pixels, torch.from_numpy(np.clip(f, 0, 1)).expand(3, -1, -1))

    ints = rng.integers(0, 65536, size=(3, 4)).astype(np.int32)
    Image.fromarray(ints, "I").save(tmp_path / "i.tif")
    torch.testing.assert_close(
        read_image(tmp_path / "i.tif").pixels, torch.from_numpy(ints / 65535).float().expand(3, -1, -1)
    )


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, rng, orientation):
    rgb = rng.integers(0, 256, size=(3, 5, 3)).astype(np.uint8)
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.png", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")).convert("RGB"))
    loaded = read_image(tmp_path / "o.png")
    torch.testing.assert_close(loaded.pixels, _expected(expected, 255), rtol=0, atol=0)
    reread = Image.Exif()
    reread.load(loaded.exif)
    assert reread.get(0x0112) == 1


def test_icc_profile_and_exif_carried(tmp_path, rng):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pixels = _expected(rng.integers(0, 256, size=(4, 4, 3)), 255)
    for name, depth in (("a.png", 8), ("a.png", 16), ("a.jpg", 8), ("a.tif", 8), ("a.tif", 16)):
        write_image(tmp_path / name, pixels, bit_depth=depth, icc_profile=icc)
        assert read_image(tmp_path / name).icc_profile == icc, (name, depth)


@pytest.mark.parametrize("name,depth", [("e.png", 8), ("e.png", 16), ("e.jpg", 8), ("e.tif", 8)])
def test_exif_written(tmp_path, name, depth):
    exif = Image.Exif()
    exif[0x010F] = "lutkern test camera"  # Make
    write_image(tmp_path / name, torch.rand(3, 4, 4), bit_depth=depth, exif=exif.tobytes())
    with Image.open(tmp_path / name) as im:
        assert im.getexif().get(0x010F) == "lutkern test camera"


def test_jpeg_is_close(tmp_path):
    ramp = torch.linspace(0, 1, 32)
    pixels = torch.stack([ramp.expand(32, 32), ramp.expand(32, 32).t(), 1 - ramp.expand(32, 32)])
    write_image(tmp_path / "j.jpg", pixels)
    loaded = read_image(tmp_path / "j.jpg")
    assert loaded.format == "JPEG" and loaded.bit_depth == 8
    assert (loaded.pixels - pixels).abs().mean() < 0.01


def test_unreadable_files_name_the_file(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    for path in (tmp_path / "junk.png", tmp_path / "missing.jpg"):
        with pytest.raises(ImageReadError, match=str(path.name)):
            read_image(path)
    truncated = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(truncated, "PNG")
    (tmp_path / "cut.png").write_bytes(truncated.getvalue()[:60])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_write_rejects_bad_arguments(tmp_path):
    px = torch.zeros(3, 2, 2)
    with pytest.raises(ValueError, match="extension"):
        write_image(tmp_path / "x.bmp", px)
    with pytest.raises(ValueError, match="bit depth"):
        write_image(tmp_path / "x.jpg", px, bit_depth=16)
    with pytest.raises(ValueError, match="3,H,W"):
        write_image(tmp_path / "x.png", torch.zeros(2, 2, 3))


def test_written_files_get_the_umask_permissions(tmp_path):
    """Atomic writes go through a private temporary file; the result must still be readable by others."""
    old = os.umask(0o022)
    try:
        write_image(tmp_path / "a.png", torch.rand(3, 4, 5))
        write_cube(tmp_path / "a.cube", identity_lut(2))
    finally:
        os.umask(old)
    for name in ("a.png", "a.cube"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.cube", "a.png"]
