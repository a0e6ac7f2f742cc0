"""Hald CLUT images (the LUT format of G'MIC, darktable, RawTherapee, ImageMagick).

A Hald CLUT of level ``L`` (2..16) is a square image of ``L**3 x L**3`` pixels holding a LUT of size
``D = L**2``. Read row by row, pixel ``i`` is the output colour of lattice point ``r = i % D``,
``g = (i // D) % D``, ``b = i // D**2``: red fastest, then green, then blue, the same order as ``.cube`` rows
and as this project's ``lut[b, g, r, c]`` memory, so converting is a reshape.
"""

from __future__ import annotations

import math
import os

import torch

from .functional import check_lut, resample_lut
from .imageio import read_image, write_image

MIN_LEVEL, MAX_LEVEL = 2, 16


def lut_from_hald(pixels: torch.Tensor) -> torch.Tensor:
    """``(3, L**3, L**3)`` Hald image -> LUT ``(D,D,D,3)`` with ``D = L**2``."""
    _, h, w = pixels.shape
    level = round(h ** (1 / 3))
    if h != w or level**3 != h or not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(
            f"a Hald CLUT is a square image of side L**3 with L in [{MIN_LEVEL}, {MAX_LEVEL}] "
            f"(8x8, 27x27, 64x64, ... 4096x4096), got {w}x{h}"
        )
    d = level * level
    return pixels.permute(1, 2, 0).reshape(d, d, d, 3)


def hald_from_lut(lut: torch.Tensor) -> torch.Tensor:
    """LUT ``(D,D,D,3)`` with ``D = L**2`` -> Hald image ``(3, L**3, L**3)``."""
    check_lut(lut)
    d = lut.shape[0]
    level = math.isqrt(d)
    if lut.dim() != 4 or level * level != d or not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(
            f"a Hald CLUT holds a (D,D,D,3) LUT with D = L**2 (4, 9, ..., 256), got {tuple(lut.shape)}"
        )
    side = level**3
    return lut.reshape(side, side, 3).permute(2, 0, 1)


def read_hald(path: str | os.PathLike, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Read a Hald CLUT image (PNG 8/16-bit, or any format :func:`lutkern.imageio.read_image` reads) as a
    LUT ``(D,D,D,3)``. Raises ValueError naming the file when it is not a Hald CLUT."""
    pixels = read_image(path).pixels
    try:
        return lut_from_hald(pixels).to(dtype)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def write_hald(path: str | os.PathLike, lut: torch.Tensor, *, level: int | None = None, bit_depth: int = 8):
    """Write ``lut`` ``(D,D,D,3)`` as a Hald CLUT image (``.png`` 8/16-bit, or ``.tif``).

    level: the Hald level ``L`` (LUT size ``L**2``); default ``sqrt(D)`` when ``D`` is a square, else the
        smallest level holding at least ``D`` points per axis. A LUT of another size is resampled
        trilinearly (so a 33-point LUT becomes a level-6, 36-point Hald).
    Values are clamped to [0, 1] and rounded to the ``bit_depth`` grid.
    """
    check_lut(lut)
    if lut.dim() != 4:
        raise ValueError(f"write one LUT (D,D,D,3) per Hald image, got {tuple(lut.shape)}")
    d = lut.shape[0]
    if level is None:
        level = math.isqrt(d - 1) + 1 if d > 1 else MIN_LEVEL
    if not isinstance(level, int) or not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"Hald level must be an int in [{MIN_LEVEL}, {MAX_LEVEL}], got {level!r}")
    if level * level != d:
        lut = resample_lut(lut.to(torch.float64), level * level)
    write_image(path, hald_from_lut(lut), bit_depth=bit_depth)
