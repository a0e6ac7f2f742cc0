"""Reading and writing photos as float RGB tensors, keeping bit depth, ICC profile and EXIF.

``read_image`` turns any Pillow image into ``pixels`` ``(3,H,W)`` float32 RGB in [0, 1] with EXIF
orientation applied; ``write_image`` writes such a tensor as PNG (8/16-bit), JPEG (8-bit), TIFF
(8/16-bit) or DPX (8/10/12/16-bit), rounding to the nearest integer code. EXR stills (scene-linear
float, any value) and DPX scans are read and written through FFmpeg's codecs (:mod:`lutkern.exr_dpx`,
PyAV); a file is recognised as EXR or DPX by its first bytes, as Pillow recognises the others.

Pillow decodes 16-bit RGB(A) PNG and TIFF to 8 bits. To keep 16 bits we let Pillow decode the file twice,
once unpacking each sample's high byte and once its low byte (the same decoder, with the byte order of
the raw mode swapped), so decompression and PNG unfiltering stay in Pillow's C code. Pillow cannot
write 16-bit RGB either, so 16-bit RGB PNG and TIFF are encoded here with numpy and zlib.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import sys
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import ExifTags, Image

from . import exr_dpx
from .files import atomic_open

if TYPE_CHECKING:  # torch is imported by the functions that make or take tensors
    import torch

# Extension -> (format, bit depths it can hold): the formats of integer codes (Pillow's, and DPX).
FORMATS = {
    ".png": ("PNG", (8, 16)),
    ".jpg": ("JPEG", (8,)),
    ".jpeg": ("JPEG", (8,)),
    ".tif": ("TIFF", (8, 16)),
    ".tiff": ("TIFF", (8, 16)),
    ".dpx": ("DPX", (8, 10, 12, 16)),
}
# Extension -> format of float pixels (graded as floats, never quantised): see lutkern.exr_dpx.
FLOAT_FORMATS = {".exr": "EXR"}
_EXIF_ORIENTATION = 0x0112


class ImageReadError(ValueError):
    """A file could not be read as an image; the message names the file."""


@dataclasses.dataclass
class LoadedImage:
    """A decoded photo.

    pixels: ``(3,H,W)`` float32 RGB in [0, 1], EXIF orientation already applied; for an EXR, the
        scene-linear values as stored (above 1, negative, inf and NaN kept).
    bit_depth: the precision of the stored samples: 8 or 16 (16 for 16-bit, 32-bit int and float
        Pillow files), 8, 10, 12 or 16 for DPX, 16 (half) or 32 (float) for EXR.
    format: Pillow's format name (``"PNG"``, ``"JPEG"``, ``"TIFF"``, ...), ``"DPX"`` or ``"EXR"``.
    icc_profile: the embedded ICC profile (None when absent, and for CMYK files, whose profile describes
        CMYK, not the converted RGB).
    exif: raw EXIF bytes with the orientation tag reset to 1 (pixels are already upright), or None.
    dropped_alpha: True when the file had an alpha channel (or a transparent palette entry). Alpha is
        dropped, not composited: each pixel keeps its stored colour, whatever its opacity.
    """

    pixels: torch.Tensor
    bit_depth: int
    format: str
    icc_profile: bytes | None
    exif: bytes | None
    dropped_alpha: bool = False


def _swap_byte_order(rawmode: str) -> str | None:
    """The raw mode that unpacks the other byte of each 16-bit sample (None if not a 16-bit raw mode)."""
    native_swapped = ";16B" if sys.byteorder == "little" else ";16L"  # libtiff hands over native order
    for a, b in ((";16B", ";16L"), (";16L", ";16B"), (";16N", native_swapped)):
        if rawmode.endswith(a):
            return rawmode[: -len(a)] + b
    return None


def _tile_rawmode(tile) -> str | None:
    """The raw mode of a Pillow tile ``(codec, extents, offset, args)``: ``args`` or ``args[0]``."""
    args = tile[3]
    if isinstance(args, str):
        return args
    return args[0] if args and isinstance(args[0], str) else None


def _with_rawmode(tile, rawmode: str):
    """The tile with its raw mode replaced (a named tuple since Pillow 11, a plain tuple before)."""
    args = tile[3]
    args = rawmode if isinstance(args, str) else (rawmode, *args[1:])
    return tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args)


def _read_16bit_rgb(path: Path, im: Image.Image) -> np.ndarray | None:
    """``(H,W,C)`` uint16 for a 16-bit RGB/RGBA (or grey + alpha PNG) file that Pillow would truncate to 8
    bits, else None."""
    if im.mode not in ("RGB", "RGBA") or len(im.tile) == 0:
        return None
    raws = {_tile_rawmode(t) for t in im.tile}
    if len(raws) != 1:
        return None
    raw = raws.pop()
    if raw == "LA;16B" and im.mode == "RGBA":  # 16-bit grey + alpha PNG: its 4 bytes a pixel, as RGBA
        im.tile = [_with_rawmode(t, "RGBA") for t in im.tile]
        im.load()
        b = np.asarray(im, dtype=np.uint16)
        grey = b[..., 0] << 8 | b[..., 1]
        return np.stack([grey, grey, grey, b[..., 2] << 8 | b[..., 3]], axis=-1)
    swapped = _swap_byte_order(raw or "")
    # RGBX: a TIFF's unspecified fourth sample (padding), decoded into mode RGB and ignored.
    if swapped is None or not (raw.startswith(im.mode + ";16") or raw.startswith("RGBX;16")):
        return None
    with Image.open(path) as low:
        if low.format == "TIFF":
            _take_tiff_orientation(low)
        low.tile = [_with_rawmode(t, swapped) for t in low.tile]
        low.load()
        wide = np.asarray(low, dtype=np.uint16)
    im.load()
    for y0, y1 in _row_blocks(wide):  # high bytes block by block: no second full-size uint16 temporary
        high = np.asarray(im.crop((0, y0, im.width, y1)), dtype=np.uint16)
        high <<= 8
        wide[y0:y1] |= high
    return wide


def _rgb_codes(path: Path, im: Image.Image) -> tuple[np.ndarray, int, bool, bytes | None]:
    """Decode ``im`` to ``(H,W,3)`` uint8 or uint16 codes; returns (codes, bit depth, dropped alpha, icc)."""
    icc = im.info.get("icc_profile") or None
    mode = im.mode
    wide = _read_16bit_rgb(path, im)
    if wide is not None:
        return wide[..., :3], 16, wide.shape[-1] == 4, icc
    if mode.startswith("I;16") or mode == "I":
        # Pillow uses "I" and "I;16*" for 16-bit greyscale; wider integer data is clipped to 16 bits.
        grey = np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
        if _min_is_white(im):  # Pillow inverts 8-bit "white is zero" TIFFs itself, not 16-bit ones
            grey = 65535 - grey
        return np.repeat(grey[..., None], 3, axis=-1), 16, False, icc
    if mode == "F":  # float samples, nominally [0, 1]: kept at 16-bit precision
        grey = np.clip(np.asarray(im, dtype=np.float64), 0, 1)
        grey = np.round((1 - grey if _min_is_white(im) else grey) * 65535).astype(np.uint16)
        return np.repeat(grey[..., None], 3, axis=-1), 16, False, icc
    dropped_alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in im.info)
    if mode == "CMYK":
        # Pillow's formula, without colour management: a CMYK profile does not describe the RGB result.
        im, icc = im.convert("RGB"), None
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if dropped_alpha else "RGB")
    elif mode != "RGB":
        im = im.convert("RGB")  # 1, L, LA, La, RGBA, RGBa, RGBX, YCbCr, ...: alpha is simply dropped
    return np.asarray(im)[..., :3], 8, dropped_alpha, icc


# IFD0 tags carried over: descriptive only. A TIFF's own IFD0 is what Pillow returns as its EXIF, and its
# structural tags (size, strips, samples, compression, ...) written into another file would corrupt it.
_EXIF_KEPT = frozenset({
    269, 270, 271, 272, 282, 283, 296, 305, 306, 315, 316, 33432,  # names, resolution, software, dates
    ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo,  # the photo's own sub-IFDs (camera settings, GPS)
})


def _describes_layout(tag: int, value) -> bool:
    """A TIFF ImageDescription that tifffile wrote to record the array's shape: stale in any other file."""
    return tag == 270 and isinstance(value, str) and value.startswith('{"shape":')


def _upright_exif(im: Image.Image) -> bytes | None:
    """A fresh EXIF block: the descriptive tags of ``im`` and orientation 1; None when it has neither."""
    exif = im.getexif()
    kept = Image.Exif()
    for tag in exif:
        if tag in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
            ifd = exif.get_ifd(tag)
            if ifd:
                kept[tag] = dict(ifd)
        elif tag in _EXIF_KEPT and not _describes_layout(tag, exif[tag]):
            kept[tag] = exif[tag]
    if len(kept) == 0 and _EXIF_ORIENTATION not in exif:
        return None
    kept[_EXIF_ORIENTATION] = 1  # the pixels are made upright
    return kept.tobytes()


@dataclasses.dataclass
class DecodedImage:
    """A photo as integer codes: ``codes`` ``(H,W,3)`` uint8 (``bit_depth`` 8) or uint16 (``bit_depth``
    16, or 10 and 12 for DPX: codes up to 1023 and 4095), upright and C-contiguous; the other fields as
    in :class:`LoadedImage`; ``dpx``: a DPX file's header, carried to its output. Holds no float copy."""

    codes: np.ndarray
    bit_depth: int
    format: str
    icc_profile: bytes | None
    exif: bytes | None
    dropped_alpha: bool = False
    frames: int = 1  # frames or pages in the file; only the first is decoded
    dpx: exr_dpx.DpxHeader | None = None
    full_size: tuple[int, int] | None = None  # (width, height) of the file, upright; ``codes`` may be less


def _min_is_white(im: Image.Image) -> bool:
    """A TIFF whose PhotometricInterpretation says 0 is white."""
    return im.format == "TIFF" and im.tag_v2.get(262) == 0


def _check_layout(im: Image.Image) -> None:
    """ValueError for layouts Pillow decodes wrongly: 16-bit TIFF with planar (separate) samples, or with
    premultiplied (associated) alpha, which Pillow decodes to 8 bits divided by an alpha it then drops."""
    if im.format != "TIFF" or im.mode not in ("RGB", "RGBA", "CMYK"):
        return
    bits = im.tag_v2.get(258, (8,))
    if max(bits if isinstance(bits, tuple) else (bits,)) <= 8:
        return
    if im.tag_v2.get(284, 1) == 2:
        raise ValueError("a 16-bit TIFF with planar (separate) samples is not supported; "
                         "save it with interleaved (contiguous) samples")
    if {_tile_rawmode(t) for t in im.tile} & {"RGBa;16L", "RGBa;16B", "RGBa;16N"}:
        raise ValueError("a 16-bit TIFF with premultiplied (associated) alpha is not supported; "
                         "save it without alpha, or with unassociated alpha")


def _take_tiff_orientation(im: Image.Image) -> int:
    """A TIFF's orientation tag, removed before decoding: Pillow 11+ transposes some TIFF modes while
    decoding and not others, so the tag is applied in one place only, by :func:`_orient`."""
    orientation = im.tag_v2.pop(_EXIF_ORIENTATION, 1)
    im.getexif().pop(_EXIF_ORIENTATION, None)  # Pillow transposes by this cached copy
    im._size = getattr(im, "_tile_size", im.size)  # the stored size, which Pillow 11+ swapped for 5..8
    return orientation


def _magic(path: Path) -> bytes:
    """The first 4 bytes of a regular file (ValueError for anything else: a FIFO would block)."""
    if not path.is_file():  # a FIFO or a device would block or never end
        raise ValueError("not a regular file" if path.exists() else "no such file")
    with path.open("rb") as f:
        return f.read(4)


def is_float_image(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds float pixels (an EXR, by its first bytes; else by its extension) that are
    graded as floats (:func:`read_float_image`), not as integer codes."""
    path = Path(path)
    try:
        return _magic(path) == exr_dpx.EXR_MAGIC
    except (OSError, ValueError):  # not readable: the reader chosen by the extension says why
        return path.suffix.lower() in FLOAT_FORMATS


def read_float_image(path: str | os.PathLike) -> exr_dpx.FloatImage:
    """Read an EXR still (:func:`lutkern.exr_dpx.read_exr`); :class:`ImageReadError` naming the file."""
    path = Path(path)
    try:
        return exr_dpx.read_exr(path)
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc


def draft_scale(width: int, height: int, at_least: int) -> int:
    """The largest of 1, 2, 4, 8 that divides both sides and leaves both at least ``at_least`` pixels.

    Dividing exactly matters: a partial last block is a whole pixel of the smaller image, which shifts
    every later resize by up to half a block (27 codes at edges, measured on a photo).
    """
    scale = 1
    while scale < 8 and width % (2 * scale) == 0 and height % (2 * scale) == 0 \
            and min(width, height) // (2 * scale) >= at_least:
        scale *= 2
    return scale


def decode_image(path: str | os.PathLike, *, at_least: int | None = None) -> DecodedImage:
    """Read a photo as integer RGB codes (see :func:`read_image` for the conversions).

    at_least: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, Pillow's draft
    mode), the smallest of :func:`draft_scale`; ``full_size`` then holds the file's own size. Other
    formats are decoded whole.
    """
    path = Path(path)
    try:
        magic = _magic(path)
        if magic == exr_dpx.EXR_MAGIC:
            raise ValueError("an EXR holds float pixels, not integer codes (read it with read_image)")
        if magic in exr_dpx.DPX_MAGICS:
            codes, head, dropped = exr_dpx.decode_dpx(path)
            return DecodedImage(codes, head.bit_depth, "DPX", None, None, dropped, dpx=head,
                                full_size=(codes.shape[1], codes.shape[0]))
        with Image.open(path) as im:
            fmt = im.format or "unknown"
            _check_layout(im)
            frames = getattr(im, "n_frames", 1)
            tiff_orientation = _take_tiff_orientation(im) if fmt == "TIFF" else None
            stored = im.size
            if at_least is not None and fmt == "JPEG":
                scale = draft_scale(im.width, im.height, at_least)
                if scale > 1:
                    im.draft(im.mode, (im.width // scale, im.height // scale))
            # Decode before reading EXIF: Pillow loads a PNG to find its eXIf chunk, consuming the tile.
            codes, depth, dropped, icc = _rgb_codes(path, im)
            orientation = tiff_orientation or im.getexif().get(_EXIF_ORIENTATION, 1)
            exif = _upright_exif(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        detail = str(exc).replace(f" {str(path)!r}", "")  # Pillow's own text names the file: name it once
        raise ImageReadError(f"{path}: cannot read image ({type(exc).__name__}: {detail})") from exc
    codes = np.ascontiguousarray(_orient(codes, orientation))
    if not codes.flags.writeable:  # a view of Pillow's buffer: own the codes so they can be graded in place
        codes = codes.copy()
    full = stored[::-1] if orientation in (5, 6, 7, 8) else stored
    return DecodedImage(codes, depth, fmt, icc, exif, dropped, frames, full_size=full)


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Read a photo as :class:`LoadedImage` (``pixels`` ``(3,H,W)`` float32 RGB in [0, 1]).

    Every Pillow mode is converted to RGB: greyscale is repeated on the three channels, palettes are
    expanded, CMYK uses Pillow's conversion (no colour management), 16-bit PNG/TIFF keep 16 bits (float
    greyscale is quantised to 16 bits), alpha is dropped (see :class:`LoadedImage`). EXIF orientation is
    applied. DPX codes are divided by their largest code (1023 for 10 bits); EXR values are kept as
    stored, unclamped. Raises :class:`ImageReadError` naming the file when it is missing or not a
    readable image.
    """
    if is_float_image(path):
        f = read_float_image(path)
        return LoadedImage(f.pixels, f.bit_depth, "EXR", None, None, "alpha channel dropped" in f.notes)
    d = decode_image(path)
    pixels = codes_to_pixels(d.codes, d.bit_depth)
    return LoadedImage(pixels, d.bit_depth, d.format, d.icc_profile, d.exif, d.dropped_alpha)


INTEGER_DEPTHS = (8, 10, 12, 16)  # the bit depths of integer codes; all but 8 are held in uint16


def codes_to_pixels(codes: np.ndarray, bit_depth: int) -> torch.Tensor:
    """``(H,W,3)`` uint8/uint16 codes of ``bit_depth`` bits -> ``(3,H,W)`` float32 in [0, 1]."""
    if bit_depth not in INTEGER_DEPTHS:
        raise ValueError(f"bit_depth must be one of {INTEGER_DEPTHS}, got {bit_depth!r}")
    import torch

    top = float((1 << bit_depth) - 1)
    h, w, _ = codes.shape
    pixels = torch.empty(3, h, w, dtype=torch.float32)
    pixels.copy_(torch.from_numpy(codes).permute(2, 0, 1))  # one float copy, converted while transposing
    return pixels.div_(top)


def _orient(codes: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1..8 to ``(H,W,C)``, as ``ImageOps.exif_transpose`` does (views, no copy)."""
    # 2: mirror; 3: rotate 180; 4: flip; 5: transpose; 6: rotate 270 (CW 90); 7: transverse; 8: rotate 90.
    if orientation in (5, 6, 7, 8):
        codes = codes.transpose(1, 0, 2)
    flips = {2: (1,), 3: (0, 1), 4: (0,), 6: (1,), 7: (0, 1), 8: (0,)}
    axes = flips.get(orientation)
    return np.flip(codes, axes) if axes else codes


def to_integer_array(pixels: torch.Tensor, bit_depth: int) -> np.ndarray:
    """``(3,H,W)`` float in [0, 1] -> ``(H,W,3)`` uint8 (8 bits) or uint16 codes of ``bit_depth`` bits,
    clamped and rounded to the nearest code."""
    if bit_depth not in INTEGER_DEPTHS:
        raise ValueError(f"bit_depth must be one of {INTEGER_DEPTHS}, got {bit_depth!r}")
    import torch

    top = (1 << bit_depth) - 1
    # float64: the product of a float32 sample and 65535 is exact there, so rounding is to the nearest code.
    codes = (pixels.detach().to(torch.float64).clamp(0, 1) * top).round()
    codes = codes.to(torch.uint8 if bit_depth == 8 else torch.int32)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.ascontiguousarray(codes.permute(1, 2, 0).cpu().numpy(), dtype=dtype)


def write_image(
    path: str | os.PathLike,
    pixels: torch.Tensor,
    *,
    bit_depth: int = 8,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    quality: int = 95,
) -> None:
    """Write ``pixels`` ``(3,H,W)`` float RGB in [0, 1] (clamped) to ``path``, format chosen by extension.

    ``.png`` 8/16-bit, ``.jpg``/``.jpeg`` 8-bit (``quality``, 4:4:4 chroma), ``.tif``/``.tiff`` 8/16-bit
    (16-bit uncompressed), ``.dpx`` 8/10/12/16-bit. Samples are rounded to the nearest integer code.
    ``icc_profile`` and ``exif`` are embedded when given (EXIF is not written to 16-bit TIFF, neither
    is written to DPX). Float stills (EXR): :func:`lutkern.exr_dpx.write_exr`.
    """
    import torch

    if not isinstance(pixels, torch.Tensor) or pixels.dim() != 3 or pixels.shape[0] != 3:
        raise ValueError(f"pixels must be a (3,H,W) tensor, got {getattr(pixels, 'shape', type(pixels))}")
    output_format(path, bit_depth)  # check before converting
    codes = to_integer_array(pixels, bit_depth)
    write_codes(path, codes, bit_depth=bit_depth, icc_profile=icc_profile, exif=exif, quality=quality)


def output_format(path: str | os.PathLike, bit_depth: int) -> str:
    """The format written for ``path``'s extension; ValueError if it cannot hold ``bit_depth``."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext in FLOAT_FORMATS:
        raise ValueError(f"{path}: {FLOAT_FORMATS[ext]} holds float pixels, not integer codes")
    if ext not in FORMATS:
        raise ValueError(f"{path}: unsupported extension {ext!r}; use one of {sorted(FORMATS)}")
    fmt, depths = FORMATS[ext]
    if bit_depth not in depths:
        raise ValueError(f"{path}: {fmt} holds bit depths {depths}, got {bit_depth}")
    return fmt


def write_codes(
    path: str | os.PathLike,
    codes: np.ndarray,
    *,
    bit_depth: int | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    quality: int = 95,
    dpx: exr_dpx.DpxHeader | None = None,
) -> None:
    """Write ``(H,W,3)`` uint8 or uint16 codes to ``path`` (format by extension, as :func:`write_image`).

    bit_depth: that of the codes (default 8 for uint8, 16 for uint16; 10 or 12 for DPX codes).
    dpx: the header of the DPX the codes come from: a DPX output keeps its byte order, transfer and
    colorimetric fields. The file is written under a temporary name and renamed, so a failed write leaves
    no partial image.
    """
    if codes.ndim != 3 or codes.shape[2] != 3 or codes.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"codes must be (H,W,3) uint8 or uint16, got {codes.shape} {codes.dtype}")
    path = Path(path)
    if bit_depth is None:
        bit_depth = 8 if codes.dtype == np.uint8 else 16
    if (bit_depth == 8) != (codes.dtype == np.uint8):
        raise ValueError(f"{bit_depth}-bit codes are held in {'uint8' if bit_depth == 8 else 'uint16'}, "
                         f"got {codes.dtype}")
    fmt = output_format(path, bit_depth)
    if fmt == "DPX":
        exr_dpx.write_dpx(path, codes, bit_depth, dpx)
        return
    options: dict = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0)  # 4:4:4: a colour grade must not blur chroma
    with atomic_open(path, "wb") as f:
        if bit_depth == 8:
            Image.fromarray(codes, "RGB").save(f, fmt, **options)
        elif fmt == "PNG":
            _write_png16(f, codes, icc_profile, exif)
        else:
            _write_tiff16(f, codes, icc_profile)


# Rows per block when encoding 16-bit files: the temporaries stay a few MiB whatever the image size.
_BLOCK_PIXELS = 1 << 18


def _row_blocks(codes: np.ndarray):
    h, w, _ = codes.shape
    step = max(1, _BLOCK_PIXELS // max(w, 1))
    return ((y, min(y + step, h)) for y in range(0, h, step))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _write_png16(f, codes: np.ndarray, icc: bytes | None, exif: bytes | None) -> None:
    """A 16-bit RGB PNG (filter type 0 on every row) from ``(H,W,3)`` uint16, one IDAT chunk per block."""
    h, w, _ = codes.shape
    f.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)))
    if icc:
        f.write(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:  # the eXIf chunk holds the TIFF structure without the JPEG "Exif\0\0" marker
        f.write(_png_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00")))
    deflate = zlib.compressobj(6)
    for y0, y1 in _row_blocks(codes):
        rows = np.zeros((y1 - y0, 1 + w * 6), dtype=np.uint8)  # column 0: filter type 0 (none)
        rows[:, 1:] = codes[y0:y1].astype(">u2").view(np.uint8).reshape(y1 - y0, w * 6)
        data = deflate.compress(rows.tobytes())
        if data:
            f.write(_png_chunk(b"IDAT", data))
    f.write(_png_chunk(b"IDAT", deflate.flush()) + _png_chunk(b"IEND", b""))


def _write_tiff16(f, codes: np.ndarray, icc: bytes | None) -> None:
    """An uncompressed little-endian 16-bit RGB TIFF (one strip) from ``(H,W,3)`` uint16."""
    h, w, _ = codes.shape
    n_bytes = h * w * 6
    if n_bytes >= 2**32:
        raise ValueError(f"a {w}x{h} 16-bit image is too large for a baseline TIFF (4 GiB of samples)")
    n_tags = 10 + (1 if icc else 0)
    ifd_start = 8
    after_ifd = ifd_start + 2 + 12 * n_tags + 4
    bits_at = after_ifd
    extra = struct.pack("<3H", 16, 16, 16)  # out-of-line tag values follow the IFD
    icc_at = after_ifd + len(extra)
    if icc:
        extra += icc + (b"\x00" if len(icc) % 2 else b"")
    data_at = after_ifd + len(extra)
    tags = [  # (tag, type, count, value); type 3 = SHORT, 4 = LONG, 7 = UNDEFINED
        (256, 4, 1, w),
        (257, 4, 1, h),
        (258, 3, 3, bits_at),
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, data_at),
        (277, 3, 1, 3),
        (278, 4, 1, h),
        (279, 4, 1, n_bytes),
        (284, 3, 1, 1),  # chunky (interleaved) samples
    ]
    if icc:
        tags.append((34675, 7, len(icc), icc_at))
    tags.sort()
    entries = b""
    for tag, typ, count, value in tags:
        if typ == 3 and count == 1:
            entries += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            entries += struct.pack("<HHII", tag, typ, count, value)
    ifd = struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0)
    f.write(b"II*\x00" + struct.pack("<I", ifd_start) + ifd + extra)
    for y0, y1 in _row_blocks(codes):
        f.write(codes[y0:y1].astype("<u2").tobytes())
