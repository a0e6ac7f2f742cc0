"""Grading image files with a LUT: what ``python -m lutkern.apply`` and ``python -m img2lut.predict`` share.

A LUT comes from a ``.cube`` file, a Hald CLUT image or a built-in look (:func:`load_lut`). An image is
decoded once to integer codes (:func:`lutkern.imageio.decode_image`) and graded in place, in horizontal
strips of about :data:`STRIP_PIXELS` pixels (:func:`grade_codes`), so the peak memory is about one integer
image plus two float strips, whatever the image size.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import ImageCms

from ._backend import resolve_backend
from .builtin_looks import LOOKS
from .cube import CubeLUT, read_cube
from .hald import read_hald
from .imageio import DecodedImage, codes_to_pixels, to_integer_array
from .ops.apply_lut_cpu import grade_codes_cpu, native_available

STRIP_PIXELS = 1 << 20  # 1 Mpx: 12 MiB per float32 RGB strip (the torch path makes ~20 temporaries)


def load_lut(spec: str, size: int = 33) -> CubeLUT:
    """A ``.cube`` file, a Hald CLUT image (``.png``/``.tif``/``.tiff``) or the name of a built-in look."""
    path = Path(spec)
    if path.is_file():
        ext = path.suffix.lower()
        if ext == ".cube":
            return read_cube(path)
        if ext in (".png", ".tif", ".tiff"):
            return CubeLUT(read_hald(path), title=path.stem)
        raise ValueError(f"{spec}: unknown LUT file type {ext!r} (expected .cube, or a Hald CLUT .png/.tif)")
    if spec in LOOKS:
        return CubeLUT(LOOKS[spec](size), title=spec)
    if path.exists():
        raise ValueError(f"{spec}: not a regular file")
    raise ValueError(f"{spec}: no such file, and not a built-in look (looks: {', '.join(sorted(LOOKS))})")


def grade_codes(
    codes: np.ndarray,
    lut: CubeLUT,
    *,
    interpolation: str = "trilinear",
    device: str | torch.device = "cpu",
    backend: str | None = None,
    strip_pixels: int = STRIP_PIXELS,
    on_strip=None,
) -> np.ndarray:
    """Grade ``codes`` ``(H,W,3)`` uint8/uint16 in place, strip by strip, and return it.

    Output codes are the LUT output clamped to [0, 1] and rounded to the nearest code. A plain float32 3D
    LUT on the CPU's torch backend grades the codes in one pass of the compiled loop (the same bits).
    """
    if _one_pass(codes, lut, device, backend):
        grade_codes_cpu(codes, lut.lut3d, interpolation)
        if on_strip is not None:
            on_strip(1.0)
        return codes
    depth = 8 if codes.dtype == np.uint8 else 16
    h, w, _ = codes.shape
    rows = max(1, strip_pixels // max(w, 1))
    for y in range(0, h, rows):
        x = codes_to_pixels(codes[y : y + rows], depth).to(device)
        out = lut.apply(x.unsqueeze(0), interpolation=interpolation, backend=backend)[0]
        codes[y : y + rows] = to_integer_array(out, depth)
        if on_strip is not None:
            on_strip(min(rows, h - y) / h)
    return codes


def _one_pass(codes: np.ndarray, lut: CubeLUT, device, backend: str | None) -> bool:
    """Whether :func:`lutkern.ops.apply_lut_cpu.grade_codes_cpu` gives :func:`grade_codes`'s result: a 3D
    table alone on [0, 1], float32, applied on the CPU by the torch backend's compiled loop."""
    unit = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return (lut.shaper is None and lut.lut3d is not None and lut.lut3d.dtype == torch.float32
            and tuple(map(tuple, lut.lut3d_domain)) == unit and torch.device(device).type == "cpu"
            and resolve_backend(backend, torch.device("cpu")) == "torch" and codes.flags.c_contiguous
            and native_available())


def profile_name(icc: bytes) -> str:
    """The description an ICC profile gives of itself (``unparsable`` when it cannot be read)."""
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() or "unnamed"
    except Exception:  # an unparsable profile is still carried over byte for byte
        return "unparsable"


def input_notes(img: DecodedImage) -> list[str]:
    """What of a decoded input is not in its output: alpha, and frames after the first."""
    notes = ["alpha channel dropped"] if img.dropped_alpha else []
    if img.frames > 1:
        notes.append(f"only the first of its {img.frames} frames is used")
    return notes
