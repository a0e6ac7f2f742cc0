"""EXR and DPX stills, the files of grading and VFX pipelines, through FFmpeg's codecs (PyAV).

Needs PyAV (``pip install 'lutkern[video]'``: its wheels carry FFmpeg's libraries). This module imports
without it; its readers and writers then raise a ValueError saying so.

- **EXR** (:func:`read_exr`, :func:`write_exr`): scene-linear float RGB, ``(3,H,W)`` float32 kept as
  stored: values above 1, negative values, inf and NaN are not touched. Half or float samples, scanline or
  tiled, every compression FFmpeg decodes as OpenEXR does (none, RLE, ZIP, PIZ, PXR24, B44; not DWA,
  where FFmpeg's decoder departs from OpenEXR's, by 0.003 on a smooth ramp). The display window is
  the image (FFmpeg's reading: pixels of the data window outside it are dropped, and display pixels
  outside the data window are 0). Channels R, G, B (A dropped) or Y alone (repeated); other layers are
  refused. Written half or float, compressed none, RLE or ZIP (what FFmpeg's encoder writes): half
  samples are rounded to the nearest half here (FFmpeg's own conversion truncates), and values beyond
  65504 become inf, as OpenEXR converts them.
- **DPX** (:func:`decode_dpx`, :func:`write_dpx`): 8, 10, 12 and 16-bit RGB integer codes, either byte
  order (RGBA: alpha dropped; luma: repeated), read and written exactly at their bit depth. The output
  keeps the input's byte order and its transfer and colorimetric fields (FFmpeg's encoder alone would
  label every file linear).

The headers are read here, bounded, before FFmpeg decodes anything: sizes are checked against the pixel
limit Pillow puts on other images, and layouts FFmpeg cannot decode get one line naming the file.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ._lazy import optional_module
from .files import atomic_open

if TYPE_CHECKING:  # torch is imported by the functions that make or take tensors
    import torch

av = optional_module("av")  # the optional extra (None without it): other images are read without it

EXR_MAGIC = b"\x76\x2f\x31\x01"
DPX_MAGICS = {b"SDPX": ">", b"XPDS": "<"}  # big-endian, little-endian
# OpenEXR's compression numbers; what FFmpeg's encoder writes for each (the lossless ZIP for the others).
EXR_COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab")
_FFMPEG_EXR_COMPRESSION = {"none": "none", "rle": "rle", "zips": "zip1", "zip": "zip16"}
_EXR_STRUCTURE = frozenset({  # attributes that describe the file's layout: written by the encoder
    "channels", "compression", "dataWindow", "displayWindow", "lineOrder", "pixelAspectRatio",
    "screenWindowCenter", "screenWindowWidth", "tiles", "chunkCount", "name", "type", "version",
})
_EXR_REWRITTEN = frozenset({"gamma", "writer"})  # FFmpeg's encoder writes its own
_MAX_ATTRIBUTES = 4096
# Scanlines per chunk of each compression (OpenEXR's), to count a scanline file's chunks.
_EXR_LINES_PER_CHUNK = {"none": 1, "rle": 1, "zips": 1, "zip": 16, "pxr24": 16, "piz": 32, "b44": 32,
                        "b44a": 32, "dwaa": 32, "dwab": 256}
_DPX_HEADER = 1664  # generic + image + orientation headers: every field read here lies within them
# DPX descriptor -> what the decoded pixels hold: RGB, RGBA, ABGR, luma.
_DPX_DESCRIPTORS = {50: "RGB", 51: "RGBA", 52: "ABGR", 6: "luma"}
# Pixel formats FFmpeg's DPX decoder gives -> bit depth.
_DPX_DECODED = {
    "rgb24": 8, "rgba": 8, "gray": 8, "gbrp10le": 10, "gbrap10le": 10, "gray10le": 10,
    "gbrp12le": 12, "gbrap12le": 12, "gray12le": 12, "rgb48le": 16, "rgb48be": 16, "rgba64le": 16,
    "rgba64be": 16, "gray16le": 16, "gray16be": 16,
}


def _require_av(what: str) -> None:
    if av is None:
        raise ValueError(f"{what} images need PyAV (FFmpeg's codecs): pip install 'lutkern[video]'")


def max_pixels() -> int | None:
    """The largest image read: Pillow's decompression-bomb limit (twice ``Image.MAX_IMAGE_PIXELS``, the
    size at which Pillow refuses a PNG or TIFF), or None when that check is turned off."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * int(Image.MAX_IMAGE_PIXELS)


def _read_file(path: Path) -> bytes:
    """The bytes of a regular file no larger than an uncompressed float RGBA image at the pixel limit."""
    if not path.is_file():  # a FIFO would block, a device never end
        raise ValueError("not a regular file" if path.exists() else "no such file")
    limit = max_pixels()
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if limit is not None and size > 16 * limit + (64 << 20):
            raise ValueError(f"{size} bytes: larger than any image within the pixel limit ({limit})")
        return f.read()


def _check_size(width: int, height: int, what: str) -> None:
    limit = max_pixels()
    if width <= 0 or height <= 0:
        raise ValueError(f"{what} {width}x{height} holds no pixel")
    if limit is not None and width * height > limit:
        raise ValueError(f"{what} {width}x{height} is beyond the pixel limit ({limit}; "
                         "PIL.Image.MAX_IMAGE_PIXELS sets it)")


def _decode(codec: str, data: bytes):
    """The one frame FFmpeg's ``codec`` decodes from a file's bytes."""
    ctx = av.CodecContext.create(codec, "r")
    limit = max_pixels()
    if limit is not None:
        ctx.options = {"max_pixels": str(limit)}
    try:
        frames = ctx.decode(av.Packet(data)) + ctx.decode(None)
    except av.FFmpegError as exc:
        raise ValueError(f"FFmpeg cannot decode it ({exc})") from None
    if not frames:
        raise ValueError("FFmpeg decoded no picture from it")
    return frames[0]


def _encode(codec: str, frame, options: dict[str, str]) -> bytes:
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = frame.width, frame.height, frame.format.name
    ctx.time_base = Fraction(1, 1)
    ctx.options = options
    frame.pts = 0
    return b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])


def _plane(plane, dtype) -> np.ndarray:
    """A frame plane as a writable ``(H,W)`` view (its rows padded to ``line_size`` bytes in memory)."""
    dtype = np.dtype(dtype)
    rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
    return rows[:, : plane.width]


# --------------------------------------------------------------------------------------------------- EXR


@dataclasses.dataclass
class ExrHeader:
    """What is read of an EXR header (the first part's): channel name -> pixel type (0 uint, 1 half,
    2 float), compression name, data and display windows ``(xmin, ymin, xmax, ymax)``, the number of
    parts, and the names of the other attributes (not carried to an output)."""

    channels: dict[str, int]
    compression: str
    data_window: tuple[int, int, int, int]
    display_window: tuple[int, int, int, int]
    parts: int = 1
    other_attributes: tuple[str, ...] = ()


class _Reader:
    """Bounded reads from a header: every read past the end is a ValueError, never an IndexError."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated header")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def cstring(self, limit: int) -> str:
        end = self.data.find(b"\0", self.pos, self.pos + limit + 1)
        if end < 0:
            raise ValueError(f"a header name longer than {limit} bytes, or a truncated header")
        text = self.data[self.pos : end].decode("latin-1")
        self.pos = end + 1
        return text


def _exr_channels(value: bytes) -> dict[str, int]:
    r, channels = _Reader(value), {}
    while True:
        name = r.cstring(255)
        if not name:
            return channels
        pixel_type, _, _, x_sampling, y_sampling = struct.unpack("<iB3sii", r.take(16))
        if (x_sampling, y_sampling) != (1, 1):
            raise ValueError(f"channel {name!r} is subsampled ({x_sampling}x{y_sampling}); not supported")
        channels[name] = pixel_type


def _attributes(r: _Reader, names_limit: int) -> dict[str, bytes]:
    """One header's attributes, name -> value bytes, up to the empty name that ends it."""
    attributes: dict[str, bytes] = {}
    while name := r.cstring(names_limit):
        if len(attributes) == _MAX_ATTRIBUTES:
            raise ValueError(f"more than {_MAX_ATTRIBUTES} header attributes")
        r.cstring(names_limit)  # the attribute's type name
        (size,) = struct.unpack("<i", r.take(4))
        attributes[name] = r.take(size)
    return attributes


def parse_exr_header(data: bytes) -> ExrHeader:
    """The first part's header of an EXR file's bytes; ValueError for a malformed or unsupported one."""
    if data[:4] != EXR_MAGIC:
        raise ValueError("not an OpenEXR file")
    (version,) = struct.unpack("<i", _Reader(data, 4).take(4))
    if version & 0xFF != 2:
        raise ValueError(f"OpenEXR version {version & 0xFF}; only version 2 exists")
    if version & 0x800:
        raise ValueError("a deep EXR (samples per pixel vary) is not an image that can be graded")
    names_limit = 255 if version & 0x400 else 31
    r = _Reader(data, 8)
    attributes = _attributes(r, names_limit)
    parts = 1
    if version & 0x1000:  # multi-part: the other parts' headers follow, an empty one ends the list
        while r.data[r.pos : r.pos + 1] not in (b"\0", b""):
            _attributes(r, names_limit)
            parts += 1
        r.take(1)  # the empty header that ends the list
    for key in ("channels", "compression", "dataWindow", "displayWindow"):
        if key not in attributes:
            raise ValueError(f"the header has no {key!r} attribute")
    try:
        data_window = struct.unpack("<4i", attributes["dataWindow"])
        display_window = struct.unpack("<4i", attributes["displayWindow"])
        (compression,) = struct.unpack("<B", attributes["compression"])
    except struct.error:
        raise ValueError("malformed dataWindow, displayWindow or compression attribute") from None
    if compression >= len(EXR_COMPRESSIONS):
        raise ValueError(f"unknown compression {compression}")
    _check_size(*_window_size(display_window), "display window")
    _check_size(*_window_size(data_window), "data window")
    if EXR_COMPRESSIONS[compression] in ("dwaa", "dwab"):
        raise ValueError(f"{EXR_COMPRESSIONS[compression].upper()} compression is not supported (FFmpeg's "
                         "decoder departs from OpenEXR's); save it with ZIP or PIZ compression")
    _check_chunks(data, r.pos, attributes, EXR_COMPRESSIONS[compression], data_window, parts > 1)
    others = tuple(sorted(k for k in attributes if k not in _EXR_STRUCTURE | _EXR_REWRITTEN))
    return ExrHeader(_exr_channels(attributes["channels"]), EXR_COMPRESSIONS[compression], data_window,
                     display_window, parts, others)


def _check_chunks(data: bytes, table: int, attributes: dict[str, bytes], compression: str,
                  window: tuple[int, int, int, int], multipart: bool) -> None:
    """ValueError unless every chunk of the first part's full-resolution image lies within ``data``
    (FFmpeg decodes a truncated file without a word, leaving the missing rows 0). ``table``: where the
    offset table starts, after the headers."""
    width, height = _window_size(window)
    if "tiles" in attributes:  # tile size, then level mode: level 0's tiles come first in the table
        tile_w, tile_h = struct.unpack("<II", attributes["tiles"][:8].ljust(8, b"\0"))
        if tile_w < 1 or tile_h < 1:
            raise ValueError(f"tile size {tile_w}x{tile_h} holds no pixel")
        count, prefix = -(-width // tile_w) * -(-height // tile_h), 20
    else:
        count, prefix = -(-height // _EXR_LINES_PER_CHUNK[compression]), 8
    prefix += 4 if multipart else 0  # a part number before each chunk
    if table + 8 * count > len(data):
        raise ValueError(f"truncated: its offset table of {count} chunks does not fit in the file")
    offsets = np.frombuffer(data, dtype="<u8", count=count, offset=table)
    if count and (offsets.min() < table + 8 * count or offsets.max() > len(data) - prefix):
        raise ValueError("truncated, or a chunk offset points outside the file")
    sizes = [struct.unpack_from("<i", data, int(at) + prefix - 4)[0] for at in offsets]
    if any(size < 0 or int(at) + prefix + size > len(data) for at, size in zip(offsets, sizes, strict=True)):
        raise ValueError("truncated: a chunk of pixels ends beyond the end of the file")


@dataclasses.dataclass
class FloatImage:
    """A float still as read: ``pixels`` ``(3,H,W)`` float32 as stored (scene-linear: any value,
    inf and NaN included); ``precision`` ``"half"`` or ``"float"`` (the widest of R, G, B);
    ``compression`` the file's; ``notes`` what of the file the pixels do not hold."""

    pixels: torch.Tensor
    precision: str
    compression: str
    notes: list[str]

    @property
    def bit_depth(self) -> int:
        return 16 if self.precision == "half" else 32


def _window_size(window: tuple[int, int, int, int]) -> tuple[int, int]:
    return window[2] - window[0] + 1, window[3] - window[1] + 1


def read_exr(path: str | os.PathLike) -> FloatImage:
    """Read an EXR still (see the module docstring); ValueError for a file it cannot read."""
    _require_av("EXR")
    path = Path(path)
    data = _read_file(path)
    head = parse_exr_header(data)
    rgb = [head.channels.get(c) for c in "RGB"]
    if None in rgb and set(head.channels) - {"A"} != {"Y"}:
        raise ValueError(f"no R, G, B (or Y) channels: {', '.join(sorted(head.channels))[:200]} "
                         "(layers other than the unnamed one are not read)")
    types = [t for t in rgb if t is not None] or [head.channels["Y"]]
    frame = _decode("exr", data)
    fmt = frame.format.name
    if fmt not in ("gbrpf16le", "gbrpf32le", "gbrapf16le", "gbrapf32le", "grayf16le", "grayf32le"):
        raise ValueError(f"FFmpeg decoded it as {fmt}, not float RGB")
    dtype = np.float16 if "f16" in fmt else np.float32
    planes = [_plane(p, dtype) for p in frame.planes]
    import torch

    pixels = torch.empty(3, frame.height, frame.width, dtype=torch.float32)
    order = (0, 0, 0) if fmt.startswith("gray") else (2, 0, 1)  # gbr planes -> r, g, b
    for c, k in enumerate(order):
        pixels[c].copy_(torch.from_numpy(planes[k]))
    notes = []
    if "A" in head.channels:
        notes.append("alpha channel dropped")
    extra = sorted(set(head.channels) - set("RGBAY"))
    if extra:
        notes.append(f"channels not read: {', '.join(extra)[:200]}")
    if head.data_window != head.display_window:
        notes.append(f"data window {head.data_window} read within the display window "
                     f"{head.display_window} (overscan dropped, uncovered pixels 0)")
    if head.parts > 1:
        notes.append("a multi-part file: only its first part is read")
    if head.other_attributes:
        notes.append(f"header attributes not kept: {', '.join(head.other_attributes)[:200]}")
    precision = "half" if all(t == 1 for t in types) else "float"
    return FloatImage(pixels, precision, head.compression, notes)


def exr_output_compression(compression: str) -> str:
    """The compression an output written for an input compressed with ``compression`` gets: the same
    where FFmpeg's encoder writes it (none, RLE, ZIP), else ZIP (lossless)."""
    return compression if compression in _FFMPEG_EXR_COMPRESSION else "zip"


def write_exr(path: str | os.PathLike, pixels: torch.Tensor, *, precision: str = "half",
              compression: str = "zip") -> None:
    """Write ``pixels`` ``(3,H,W)`` float (any value; nothing clamped) as an RGB EXR, atomically.

    precision: ``"half"`` (rounded to nearest; beyond +-65504 becomes +-inf) or ``"float"``.
    compression: ``"none"``, ``"rle"``, ``"zips"`` (one scanline a block) or ``"zip"`` (16).
    """
    _require_av("EXR")
    import torch

    if not isinstance(pixels, torch.Tensor) or pixels.dim() != 3 or pixels.shape[0] != 3:
        raise ValueError(f"pixels must be a (3,H,W) tensor, got {getattr(pixels, 'shape', type(pixels))}")
    if precision not in ("half", "float"):
        raise ValueError(f"precision must be 'half' or 'float', got {precision!r}")
    if compression not in _FFMPEG_EXR_COMPRESSION:
        raise ValueError(f"compression must be one of {sorted(_FFMPEG_EXR_COMPRESSION)}, got {compression!r}")
    _, h, w = pixels.shape
    frame = av.VideoFrame(w, h, "gbrpf32le")
    values = pixels.detach().to("cpu", torch.float32).numpy()
    for plane, c in zip(frame.planes, (1, 2, 0), strict=True):  # planes G, B, R
        if precision == "half":
            with np.errstate(over="ignore"):  # beyond the half range: inf, as OpenEXR converts
                _plane(plane, np.float32)[:] = values[c].astype(np.float16)
        else:
            _plane(plane, np.float32)[:] = values[c]
    data = _encode("exr", frame, {"format": precision, "compression": _FFMPEG_EXR_COMPRESSION[compression]})
    with atomic_open(path, "wb") as f:
        f.write(data)


# --------------------------------------------------------------------------------------------------- DPX


@dataclasses.dataclass(frozen=True)
class DpxHeader:
    """What is read of a DPX header (its first image element) and carried to an output: byte order
    (``">"`` big-endian, ``"<"`` little), bit depth, descriptor, transfer and colorimetric codes (SMPTE
    268M: 1 printing density, 2 linear, 3 logarithmic, 6 BT.709, 13 ADX, ...), packing, size."""

    byte_order: str
    bit_depth: int
    descriptor: int
    transfer: int
    colorimetric: int
    packing: int
    width: int
    height: int


def parse_dpx_header(data: bytes) -> DpxHeader:
    """The header of a DPX file's bytes; ValueError for a malformed or unsupported one."""
    order = DPX_MAGICS.get(data[:4])
    if order is None:
        raise ValueError("not a DPX file")
    if len(data) < _DPX_HEADER:
        raise ValueError(f"truncated header ({len(data)} bytes, a DPX header has {_DPX_HEADER})")
    orientation, elements, width, height = struct.unpack(order + "HHII", data[768:780])
    descriptor, transfer, colorimetric, bits = data[800:804]
    packing, encoding = struct.unpack(order + "HH", data[804:808])
    if elements != 1:
        raise ValueError(f"{elements} image elements; only DPX files with one are supported")
    if orientation != 0:
        raise ValueError(f"orientation {orientation} (not left to right, top to bottom) is not supported")
    if descriptor not in _DPX_DESCRIPTORS:
        raise ValueError(f"descriptor {descriptor} is not supported (RGB 50, RGBA 51, ABGR 52, luma 6)")
    if bits not in (8, 10, 12, 16):
        raise ValueError(f"{bits}-bit samples are not supported (8, 10, 12 or 16 bits)")
    if encoding != 0:
        raise ValueError("run-length encoded samples are not supported")
    if bits == 10 and packing == 0:
        raise ValueError("10-bit samples packed without padding (packing 0) are not supported by "
                         "FFmpeg's decoder; save with filled samples (method A or B)")
    _check_size(width, height, "image")
    return DpxHeader(order, bits, descriptor, transfer, colorimetric, packing, width, height)


def decode_dpx(path: str | os.PathLike) -> tuple[np.ndarray, DpxHeader, bool]:
    """Read a DPX still: ``(codes, header, dropped_alpha)``, codes ``(H,W,3)`` uint8 (8-bit) or uint16
    holding the file's codes at its bit depth (0..1023 for 10 bits), C-contiguous."""
    _require_av("DPX")
    data = _read_file(Path(path))
    head = parse_dpx_header(data)
    frame = _decode("dpx", data)
    fmt = frame.format.name
    if _DPX_DECODED.get(fmt) != head.bit_depth:
        raise ValueError(f"FFmpeg decoded its {head.bit_depth}-bit samples as {fmt}")
    if (frame.width, frame.height) != (head.width, head.height):
        raise ValueError(f"FFmpeg decoded {frame.width}x{frame.height}, the header says "
                         f"{head.width}x{head.height}")
    if fmt.startswith("gray"):
        grey = frame.to_ndarray()
        codes = np.repeat(grey[..., None], 3, axis=-1)
    else:
        codes = frame.to_ndarray()[..., :3]
    dtype = np.uint8 if head.bit_depth == 8 else np.uint16
    return np.ascontiguousarray(codes, dtype=dtype), head, head.descriptor in (51, 52)


def write_dpx(path: str | os.PathLike, codes: np.ndarray, bit_depth: int,
              like: DpxHeader | None = None) -> None:
    """Write ``codes`` ``(H,W,3)`` (uint8 for 8 bits, uint16 holding ``bit_depth``-bit codes) as an RGB
    DPX, atomically; with ``like`` (the input's header), in its byte order with its transfer and
    colorimetric codes, else big-endian (the DPX default) labelled as FFmpeg labels it."""
    _require_av("DPX")
    formats = {8: "rgb24", 10: "gbrp10", 12: "gbrp12", 16: "rgb48"}
    if bit_depth not in formats:
        raise ValueError(f"DPX bit depth must be 8, 10, 12 or 16, got {bit_depth!r}")
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    if codes.ndim != 3 or codes.shape[2] != 3 or codes.dtype != dtype:
        raise ValueError(f"codes must be (H,W,3) {np.dtype(dtype)}, got {codes.shape} {codes.dtype}")
    if bit_depth in (10, 12) and codes.max(initial=0) >= 1 << bit_depth:
        raise ValueError(f"codes beyond {bit_depth} bits")
    order = like.byte_order if like is not None else ">"
    fmt = formats[bit_depth] + ("" if bit_depth == 8 else "be" if order == ">" else "le")
    h, w, _ = codes.shape
    if h == 0 or w == 0:
        raise ValueError(f"a {w}x{h} image holds no pixel")
    frame = av.VideoFrame(w, h, fmt)
    if fmt.startswith("gbrp"):
        for plane, c in zip(frame.planes, (1, 2, 0), strict=True):  # planes G, B, R
            _plane(plane, order + "u2")[:] = codes[..., c]
    else:  # packed RGB: one plane of w * 3 samples a row
        sample = np.dtype(np.uint8 if bit_depth == 8 else order + "u2")
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dtype=sample).reshape(h, plane.line_size // sample.itemsize)
        rows[:, : w * 3] = codes.reshape(h, w * 3)
    data = bytearray(_encode("dpx", frame, {}))
    if like is not None:  # bytes 801, 802 of the first image element: transfer, colorimetric
        data[801], data[802] = like.transfer, like.colorimetric
    # FFmpeg pads each row to 4 bytes but declares no end-of-line padding (a u32 at 812), so readers
    # that trust the field (OpenImageIO's) read every row after the first shifted: declare it.
    order = ">" if data[:4] == b"SDPX" else "<"
    (start,) = struct.unpack_from(order + "I", data, 4)
    unpadded = w * 4 if bit_depth == 10 else w * 3 * (1 if bit_depth == 8 else 2)  # 10 bits: 3 in 4 bytes
    struct.pack_into(order + "I", data, 812, (len(data) - start) // h - unpadded)
    with atomic_open(path, "wb") as f:
        f.write(bytes(data))
