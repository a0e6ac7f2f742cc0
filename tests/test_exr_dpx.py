"""EXR and DPX stills (lutkern.exr_dpx, through lutkern.imageio): read and written against OpenImageIO, an
independent reader and writer of both (OpenEXR's own library for EXR, its libdpx for DPX); malformed
files; the extra missing."""

import struct

import numpy as np
import pytest
import torch
from PIL import Image

import lutkern.exr_dpx as exr_dpx
from lutkern.imageio import ImageReadError, decode_image, read_image, write_codes

pytest.importorskip("av")
oiio = pytest.importorskip("OpenImageIO")

COMPRESSIONS = ["none", "rle", "zips", "zip", "piz", "pxr24", "b44"]  # OpenEXR's, but DWA


def hdr_plate(h: int, w: int, seed: int = 0) -> np.ndarray:
    """``(h,w,3)`` float32 scene-linear values: mostly 0..2, highlights to ~50, a few negatives."""
    rng = np.random.default_rng(seed)
    return (np.exp(rng.standard_normal((h, w, 3)) * 1.2) * 0.4 - 0.05).astype(np.float32)


def oiio_write(path, pixels: np.ndarray, dtype, **attributes) -> None:
    """Write ``pixels`` ``(H,W,C)`` with OpenImageIO; ``channelnames``, ``tile``, ``window`` (x, y,
    full_x, full_y, full_width, full_height) and any other key as a format attribute."""
    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, dtype)
    if "channelnames" in attributes:
        spec.channelnames = attributes.pop("channelnames")
    if "tile" in attributes:
        spec.tile_width = spec.tile_height = attributes.pop("tile")
    if "window" in attributes:
        spec.x, spec.y, spec.full_x, spec.full_y, spec.full_width, spec.full_height = attributes.pop("window")
    for key, value in attributes.items():
        spec.attribute(key, value)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), oiio.geterror()
    assert out.write_image(pixels), out.geterror()
    out.close()


def oiio_read(path, dtype=None):
    inp = oiio.ImageInput.open(str(path))
    assert inp is not None, oiio.geterror()
    spec = inp.spec()
    pixels = inp.read_image(dtype if dtype is not None else oiio.FLOAT)
    inp.close()
    return pixels, spec


def ours(path) -> np.ndarray:
    return exr_dpx.read_exr(path).pixels.permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------------------------------- EXR


@pytest.mark.parametrize("precision", ["half", "float"])
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_exr_read_as_openexr_reads_it(tmp_path, precision, compression):
    plate = hdr_plate(37, 53)
    if compression in ("none", "zip", "piz"):  # lossless ones carry inf, NaN and -0 too
        plate[0, :3] = [[np.inf, -np.inf, np.nan], [-0.0, 65504.0, 1e-7], [100.0, 1e-3, -2.0]]
    path = tmp_path / "plate.exr"
    oiio_write(path, plate, oiio.HALF if precision == "half" else oiio.FLOAT, compression=compression)
    expected, _ = oiio_read(path)
    img = exr_dpx.read_exr(path)
    assert (img.precision, img.compression, img.bit_depth) == (precision, compression,
                                                                 16 if precision == "half" else 32)
    np.testing.assert_array_equal(ours(path), expected)  # every bit, NaN where NaN
    assert np.nanmax(ours(path)) > 1  # nothing clamped
    loaded = read_image(path)
    assert loaded.format == "EXR" and loaded.bit_depth == img.bit_depth
    np.testing.assert_array_equal(loaded.pixels.permute(1, 2, 0).numpy(), expected)


def test_exr_tiled_and_channel_orders(tmp_path):
    plate = hdr_plate(40, 70, seed=1)
    oiio_write(tmp_path / "tiled.exr", plate, oiio.HALF, tile=16)
    np.testing.assert_array_equal(ours(tmp_path / "tiled.exr"), oiio_read(tmp_path / "tiled.exr")[0])
    oiio_write(tmp_path / "bgr.exr", plate[..., ::-1].copy(), oiio.FLOAT, channelnames=("B", "G", "R"))
    np.testing.assert_array_equal(ours(tmp_path / "bgr.exr"), plate)
    rgba = np.concatenate([plate, np.full_like(plate[..., :1], 0.25)], axis=-1)
    oiio_write(tmp_path / "rgba.exr", rgba, oiio.FLOAT)
    img = exr_dpx.read_exr(tmp_path / "rgba.exr")
    assert "alpha channel dropped" in img.notes and read_image(tmp_path / "rgba.exr").dropped_alpha
    np.testing.assert_array_equal(img.pixels.permute(1, 2, 0).numpy(), plate)
    oiio_write(tmp_path / "y.exr", plate[..., :1].copy(), oiio.FLOAT, channelnames=("Y",))
    np.testing.assert_array_equal(ours(tmp_path / "y.exr"), np.repeat(plate[..., :1], 3, axis=-1))


def test_exr_display_window_is_the_image(tmp_path):
    plate = hdr_plate(4, 5, seed=2)
    oiio_write(tmp_path / "w.exr", plate, oiio.FLOAT, window=(2, 1, 0, 0, 8, 6))  # data inside display
    img = exr_dpx.read_exr(tmp_path / "w.exr")
    expected = np.zeros((6, 8, 3), np.float32)
    expected[1:5, 2:7] = plate
    np.testing.assert_array_equal(img.pixels.permute(1, 2, 0).numpy(), expected)
    assert any("data window (2, 1, 6, 4) read within the display window (0, 0, 7, 5)" in n for n in img.notes)
    oiio_write(tmp_path / "o.exr", plate, oiio.FLOAT, window=(-1, -1, 0, 0, 3, 2))  # overscan
    np.testing.assert_array_equal(ours(tmp_path / "o.exr"), plate[1:3, 1:4])


@pytest.mark.parametrize("compression", ["none", "rle", "zips", "zip"])
def test_exr_written_as_openexr_rounds_half(tmp_path, compression):
    plate = hdr_plate(33, 47, seed=3)
    plate[0, :3] = [[np.inf, -np.inf, np.nan], [-0.0, 65519.0, 65520.0], [1e-8, -70000.0, 6.1e-5]]
    pixels = torch.from_numpy(plate).permute(2, 0, 1)
    exr_dpx.write_exr(tmp_path / "h.exr", pixels, precision="half", compression=compression)
    got, spec = oiio_read(tmp_path / "h.exr", oiio.HALF)
    assert spec.format == oiio.HALF and spec.get_string_attribute("compression") == compression
    assert tuple(spec.channelnames) == ("R", "G", "B")
    with np.errstate(over="ignore"):
        nearest = plate.astype(np.float16)  # IEEE round to nearest even; beyond 65519.99: inf
    np.testing.assert_array_equal(got.view(np.uint16), nearest.view(np.uint16))
    exr_dpx.write_exr(tmp_path / "f.exr", pixels, precision="float", compression=compression)
    got, spec = oiio_read(tmp_path / "f.exr")
    assert spec.format == oiio.FLOAT
    np.testing.assert_array_equal(got.view(np.uint32), plate.view(np.uint32))


def test_exr_writer_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="precision"):
        exr_dpx.write_exr(tmp_path / "a.exr", torch.zeros(3, 2, 2), precision="uint")
    with pytest.raises(ValueError, match="compression"):
        exr_dpx.write_exr(tmp_path / "a.exr", torch.zeros(3, 2, 2), compression="piz")
    with pytest.raises(ValueError, match=r"\(3,H,W\)"):
        exr_dpx.write_exr(tmp_path / "a.exr", torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match="float pixels, not integer codes"):
        write_codes(tmp_path / "a.exr", np.zeros((2, 2, 3), np.uint16))
    assert not any(tmp_path.iterdir())
    assert [exr_dpx.exr_output_compression(c) for c in COMPRESSIONS] == [
        "none", "rle", "zips", "zip", "zip", "zip", "zip"]


# --------------------------------------------------------------------------------------------------- DPX


def oiio_dpx(path, codes: np.ndarray, bits: int, **attributes) -> None:
    """Write ``codes`` (at ``bits``) as a DPX with OpenImageIO (which takes them scaled to 16 bits)."""
    if bits == 8:
        oiio_write(path, codes.astype(np.uint8), oiio.UINT8, **attributes)
        return
    scaled = np.round(codes.astype(np.float64) * 65535 / ((1 << bits) - 1)).astype(np.uint16)
    attributes = {"oiio:BitsPerSample": bits, "dpx:Packing": "Filled, method A", **attributes}
    oiio_write(path, scaled, oiio.UINT16, **attributes)


def codes(h: int, w: int, bits: int, seed: int = 0) -> np.ndarray:
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.random.default_rng(seed).integers(0, 1 << bits, (h, w, 3)).astype(dtype)


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
@pytest.mark.parametrize("endian", ["big", "little"])
@pytest.mark.parametrize("packing", ["Filled, method A", "Filled, method B"])
def test_dpx_read_as_written_by_openimageio(tmp_path, bits, endian, packing):
    scan = codes(9, 13, bits, seed=bits)
    oiio_dpx(tmp_path / "s.dpx", scan, bits, **{"oiio:Endian": endian, "dpx:Packing": packing,
                                                 "dpx:Transfer": "Printing density"})
    img = decode_image(tmp_path / "s.dpx")
    assert (img.format, img.bit_depth) == ("DPX", bits)
    np.testing.assert_array_equal(img.codes, scan)
    assert img.dpx.byte_order == (">" if endian == "big" else "<") and img.dpx.transfer == 1
    loaded = read_image(tmp_path / "s.dpx")
    np.testing.assert_allclose(loaded.pixels.permute(1, 2, 0).numpy(), scan / ((1 << bits) - 1), atol=1e-7)


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
@pytest.mark.parametrize("order", [">", "<"])
def test_dpx_written_as_openimageio_reads_it(tmp_path, bits, order):
    scan = codes(24, 37, bits, seed=bits + 1)  # OpenImageIO reads no DPX shorter than 2048 bytes
    like = exr_dpx.DpxHeader(order, bits, 50, transfer=3, colorimetric=1, packing=1, width=37, height=24)
    write_codes(tmp_path / "o.dpx", scan, bit_depth=bits, dpx=like)
    got, spec = oiio_read(tmp_path / "o.dpx", oiio.UINT16)
    assert spec.get_int_attribute("oiio:BitsPerSample") == bits
    written_order = order if bits > 8 else "<"  # FFmpeg writes 8-bit DPX little-endian
    assert (tmp_path / "o.dpx").read_bytes()[:4] == (b"SDPX" if written_order == ">" else b"XPDS")
    assert spec.get_string_attribute("dpx:Transfer") == "Logarithmic"
    assert spec.get_string_attribute("dpx:Colorimetric") == "Printing density"
    # The top bits of OpenImageIO's 16-bit samples: whether it scales, shifts or replicates bits.
    np.testing.assert_array_equal(got.astype(np.uint16) >> (16 - bits), scan)
    again = decode_image(tmp_path / "o.dpx")
    np.testing.assert_array_equal(again.codes, scan)
    carried = (written_order, bits, like.transfer, like.colorimetric, like.width, like.height)
    assert (again.dpx.byte_order, again.dpx.bit_depth, again.dpx.transfer, again.dpx.colorimetric,
            again.dpx.width, again.dpx.height) == carried


def test_dpx_luma_and_alpha(tmp_path):
    scan = codes(24, 40, 10, seed=5)
    grey = codes(24, 40, 12, seed=6)[..., :1].copy()  # OpenImageIO packs 10-bit luma: FFmpeg reads no such
    oiio_dpx(tmp_path / "y.dpx", grey, 12)
    np.testing.assert_array_equal(decode_image(tmp_path / "y.dpx").codes, np.repeat(grey, 3, -1))
    rgba = np.concatenate([scan, scan[..., :1]], axis=-1)
    oiio_dpx(tmp_path / "a.dpx", rgba, 10)
    img = decode_image(tmp_path / "a.dpx")
    assert img.dropped_alpha
    np.testing.assert_array_equal(img.codes, scan)


def test_dpx_writer_refuses_codes_beyond_their_depth(tmp_path):
    with pytest.raises(ValueError, match="beyond 10 bits"):
        write_codes(tmp_path / "a.dpx", np.full((2, 2, 3), 1024, np.uint16), bit_depth=10)
    with pytest.raises(ValueError, match="held in uint16"):
        write_codes(tmp_path / "a.dpx", np.zeros((2, 2, 3), np.uint8), bit_depth=10)
    with pytest.raises(ValueError, match="PNG holds bit depths"):
        write_codes(tmp_path / "a.png", np.zeros((2, 2, 3), np.uint16), bit_depth=10)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------ malformed inputs


def _valid_exr(tmp_path) -> bytes:
    oiio_write(tmp_path / "v.exr", hdr_plate(16, 16), oiio.HALF, compression="zip")
    return (tmp_path / "v.exr").read_bytes()


def _valid_dpx(tmp_path) -> bytes:
    oiio_dpx(tmp_path / "v.dpx", codes(16, 32, 10), 10, **{"oiio:Endian": "big"})
    return (tmp_path / "v.dpx").read_bytes()


def _refused(path, match: str | None = None) -> str:
    """The one-line ImageReadError naming ``path`` that reading it gives."""
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    text = str(info.value)
    assert text.startswith(f"{path}: cannot read image") and "\n" not in text, text
    if match is not None:
        assert match in text, text
    return text


def _set_attribute(data: bytes, name: str, value: bytes) -> bytes:
    """``data`` with the value of the EXR header attribute ``name`` replaced (same length)."""
    at = data.index(name.encode() + b"\0")
    type_end = data.index(b"\0", at + len(name) + 1)
    (size,) = struct.unpack("<i", data[type_end + 1 : type_end + 5])
    assert size == len(value)
    return data[: type_end + 5] + value + data[type_end + 5 + size :]


class TestMalformedExr:
    def test_truncated_anywhere(self, tmp_path):
        data = _valid_exr(tmp_path)
        for n in [0, 3, 4, 7, 8, 20, 100, 200, 300, len(data) // 2, len(data) - 1]:
            (tmp_path / "t.exr").write_bytes(data[:n])
            if n < 4:  # too short to be recognised: Pillow's turn, refused all the same
                with pytest.raises(ImageReadError):
                    read_image(tmp_path / "t.exr")
            else:
                _refused(tmp_path / "t.exr")

    def test_random_bytes_in_the_header_never_escape_as_another_error(self, tmp_path):
        data = _valid_exr(tmp_path)
        header_end = data.index(b"\0\0", data.index(b"screenWindowWidth")) + 40
        rng = np.random.default_rng(0)
        for _ in range(150):
            damaged = bytearray(data)
            for at in rng.integers(8, header_end, 3):
                damaged[at] = rng.integers(0, 256)
            (tmp_path / "f.exr").write_bytes(bytes(damaged))
            try:
                read_image(tmp_path / "f.exr")
            except ImageReadError as exc:
                assert "\n" not in str(exc)

    @pytest.mark.parametrize(("change", "message"), [
        (lambda d: d[:4] + struct.pack("<i", 2 | 0x800) + d[8:], "deep EXR"),
        (lambda d: d[:4] + struct.pack("<i", 3) + d[8:], "OpenEXR version 3"),
        (lambda d: _set_attribute(d, "compression", b"\x08"), "DWAA compression is not supported"),
        (lambda d: _set_attribute(d, "compression", b"\x63"), "unknown compression 99"),
        (lambda d: _set_attribute(d, "dataWindow", struct.pack("<4i", 0, 0, 99999, 99999)), "pixel limit"),
        (lambda d: _set_attribute(d, "displayWindow", struct.pack("<4i", 5, 0, 4, 15)), "holds no pixel"),
        (lambda d: d.replace(b"channels\0chlist\0", b"channels\0chlist\0" + b"\xff", 1)[:-1], None),
        (lambda d: d.replace(b"compression\0compression\0\x01\0\0\0",
                             b"compression\0compression\0\xff\xff\xff\x7f"), "truncated header"),
    ])
    def test_refused_in_one_line(self, tmp_path, monkeypatch, change, message):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**6)
        (tmp_path / "m.exr").write_bytes(change(_valid_exr(tmp_path)))
        _refused(tmp_path / "m.exr", message)

    def test_channels_other_than_rgb_or_y(self, tmp_path):
        oiio_write(tmp_path / "l.exr", hdr_plate(8, 8), oiio.HALF, channelnames=("diffuse.R", "diffuse.G",
                                                                                   "diffuse.B"))
        _refused(tmp_path / "l.exr", "no R, G, B (or Y) channels: diffuse.B, diffuse.G, diffuse.R")
        data = (tmp_path / "l.exr").read_bytes()
        channel = b"diffuse.R\0\x01\0\0\0\0\0\0\0"  # name, half, linear flag, 3 reserved bytes
        sampled = data.replace(channel + b"\x01\0\0\0", channel + b"\x02\0\0\0")  # x sampling 2
        (tmp_path / "s.exr").write_bytes(sampled)
        _refused(tmp_path / "s.exr", "subsampled")

    def test_a_multi_part_file_is_read_at_its_first_part_with_a_note(self, tmp_path):
        out = oiio.ImageOutput.create(str(tmp_path / "mp.exr"))
        specs = (oiio.ImageSpec(8, 8, 3, oiio.HALF), oiio.ImageSpec(8, 8, 3, oiio.HALF))
        assert out.open(str(tmp_path / "mp.exr"), specs)
        out.write_image(np.ones((8, 8, 3), np.float32))
        out.open(str(tmp_path / "mp.exr"), specs[1], "AppendSubimage")
        out.write_image(np.zeros((8, 8, 3), np.float32))
        out.close()
        img = exr_dpx.read_exr(tmp_path / "mp.exr")
        assert "a multi-part file: only its first part is read" in img.notes
        assert torch.equal(img.pixels, torch.ones(3, 8, 8))

    def test_not_a_regular_file(self, tmp_path):
        (tmp_path / "d.exr").mkdir()
        _refused(tmp_path / "d.exr", "not a regular file")


class TestMalformedDpx:
    def test_truncated_anywhere(self, tmp_path):
        data = _valid_dpx(tmp_path)
        for n in [4, 100, 800, 1663, 1664, 2000, len(data) - 1]:
            (tmp_path / "t.dpx").write_bytes(data[:n])
            _refused(tmp_path / "t.dpx")

    def test_random_bytes_in_the_header_never_escape_as_another_error(self, tmp_path):
        data = _valid_dpx(tmp_path)
        rng = np.random.default_rng(1)
        for _ in range(150):
            damaged = bytearray(data)
            for at in rng.integers(4, 1664, 4):
                damaged[at] = rng.integers(0, 256)
            (tmp_path / "f.dpx").write_bytes(bytes(damaged))
            try:
                decode_image(tmp_path / "f.dpx")
            except ImageReadError as exc:
                assert "\n" not in str(exc)

    @pytest.mark.parametrize(("offset", "value", "message"), [
        (768, b"\0\x04", "orientation 4"),
        (770, b"\0\x02", "2 image elements"),
        (800, b"\x64", "descriptor 100"),
        (803, b"\x20", "32-bit samples"),
        (804, b"\0\0", "packed without padding"),
        (806, b"\0\x01", "run-length encoded"),
        (772, b"\x00\x10\x00\x00", "pixel limit"),
    ])
    def test_refused_in_one_line(self, tmp_path, monkeypatch, offset, value, message):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**6)
        data = bytearray(_valid_dpx(tmp_path))
        assert data[:4] == b"SDPX"  # big-endian: the values above are written most significant first
        data[offset : offset + len(value)] = value
        (tmp_path / "m.dpx").write_bytes(bytes(data))
        _refused(tmp_path / "m.dpx", message)


def test_without_pyav_one_line_names_the_extra(tmp_path, monkeypatch, capsys):
    from lutkern.apply import main

    exr = tmp_path / "a.exr"
    oiio_write(exr, hdr_plate(4, 4), oiio.HALF)
    dpx = tmp_path / "b.dpx"
    oiio_dpx(dpx, codes(16, 32, 10), 10)
    monkeypatch.setattr(exr_dpx, "av", None)
    _refused(exr, "EXR images need PyAV (FFmpeg's codecs): pip install 'lutkern[video]'")
    _refused(dpx, "DPX images need PyAV (FFmpeg's codecs): pip install 'lutkern[video]'")
    assert main(["--lut", "teal_orange", str(exr), str(dpx), "--out", str(tmp_path / "out")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("pip install 'lutkern[video]'" in line for line in errors)
    assert not any((tmp_path / "out").iterdir())
