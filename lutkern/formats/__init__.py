"""LUT files of every format, chosen by extension: ``.cube``, ``.3dl``, ``.spi1d``, ``.spi3d``, ``.csp``,
``.clf``.

:func:`read_lut` returns a :class:`lutkern.CubeLUT` where the file's content is a shaper and/or a 3D table
with domains (``.cube``, ``.3dl``, ``.spi1d``, ``.spi3d``, a ``.csp`` whose pre-LUT is a domain), or a
:class:`LUTChain` of steps (``.clf``, a ``.csp`` with a general pre-LUT); both apply themselves with
``.apply(image, interpolation=, backend=)``. :func:`write_lut` writes a ``(D,D,D,3)`` tensor, a CubeLUT or
a LUTChain in the format its extension names, or says in one line why that format cannot hold it.
:func:`bake` samples any of them on a lattice, for a format that cannot hold it as it is.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from ..cube import CubeLUT, cube_text, parse_cube
from .chain import Curves, LUTChain, Matrix, Range
from .clf import clf_text, parse_clf
from .common import LUTFormatError, read_bounded, write_text
from .csp import csp_text, parse_csp
from .spi import parse_spi1d, parse_spi3d, spi1d_text, spi3d_text
from .threedl import parse_3dl, threedl_text

__all__ = [
    "FORMATS",
    "LUTChain",
    "LUTFormatError",
    "Curves",
    "Matrix",
    "Range",
    "read_lut",
    "write_lut",
    "parse_lut",
    "lut_text",
    "lut_format",
    "bake",
]

# extension -> (parse(bytes, source, dtype=), text(lut, **options))
FORMATS = {
    ".cube": (parse_cube, cube_text),
    ".3dl": (parse_3dl, threedl_text),
    ".spi1d": (parse_spi1d, spi1d_text),
    ".spi3d": (parse_spi3d, spi3d_text),
    ".csp": (parse_csp, csp_text),
    ".clf": (parse_clf, clf_text),
}


def lut_format(path: str | os.PathLike | None, format: str | None = None) -> str:
    """The format (``".cube"``, ...) ``format`` names (with or without its dot), else ``path``'s extension;
    a ValueError naming the known ones otherwise."""
    name = format if format is not None else Path(path).suffix
    ext = name.lower() if name.startswith(".") else "." + name.lower()
    if ext not in FORMATS:
        what = f"format {format!r}" if format is not None else f"{path}: extension {Path(path).suffix!r}"
        raise ValueError(f"{what} is not a LUT format (known: {', '.join(FORMATS)})")
    return ext


def parse_lut(
    content: str | bytes,
    source: str = "<string>",
    format: str | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> CubeLUT | LUTChain:
    """Parse the text of a LUT file in ``format`` (default: ``source``'s extension)."""
    if isinstance(content, str):
        content = content.encode("utf-8", errors="surrogatepass")
    return FORMATS[lut_format(source, format)][0](content, source, dtype=dtype)


def read_lut(
    path: str | os.PathLike, *, format: str | None = None, dtype: torch.dtype = torch.float32
) -> CubeLUT | LUTChain:
    """Read a LUT file in the format its extension (or ``format``) names. Raises :class:`LUTFormatError`
    (or :class:`lutkern.CubeFormatError` for a ``.cube``), a ValueError naming file and line, for a
    missing, oversized or malformed file; a ValueError for an unknown extension."""
    fmt = lut_format(path, format)
    return parse_lut(read_bounded(Path(path)), str(path), fmt, dtype=dtype)


def lut_text(
    lut: torch.Tensor | CubeLUT | LUTChain, format: str, *, title: str | None = None, **options
) -> str:
    """The text of ``lut`` in ``format`` (``".3dl"``, ...); ``options`` are the format's writer's. ``title``
    (default: the LUT's own) goes where the format has a place for it: a ``.cube`` TITLE, a ``.clf``
    name, a ``.3dl`` comment, ``.csp`` metadata; ``.spi1d``/``.spi3d`` have none. A ValueError says why a
    format cannot hold ``lut`` (a LUTChain in a ``.cube``, a shaper in a ``.3dl``)."""
    fmt = lut_format(None, format)
    if isinstance(lut, LUTChain) and fmt != ".clf" and (cube := lut.as_cube()) is not None:
        lut = cube
    if title is not None:
        lut = (
            CubeLUT(lut, title=title)
            if isinstance(lut, torch.Tensor)
            else dataclasses.replace(lut, title=title)
        )
    if fmt == ".cube" and isinstance(lut, LUTChain):
        raise ValueError(
            "a .cube file holds a shaper and a 3D table, not this chain of steps (convert with "
            "--bake to sample the whole transform)"
        )
    return FORMATS[fmt][1](lut, **options)


def write_lut(
    path: str | os.PathLike, lut: torch.Tensor | CubeLUT | LUTChain, format: str | None = None, **options
) -> None:
    """Write ``lut`` to ``path`` atomically, in ``format`` (default: ``path``'s extension)."""
    write_text(path, lut_text(lut, lut_format(path, format), **options))


def bake(lut: CubeLUT | LUTChain, size: int) -> torch.Tensor:
    """The whole transform of ``lut`` sampled at a ``size``-point lattice over [0, 1]: ``(size,size,size,3)``
    float32 ``[b, g, r, c]`` (exact at the lattice points; between them, trilinear interpolation of the
    transform)."""
    from ..grading import sample_lut

    return sample_lut(lut, size).float()
