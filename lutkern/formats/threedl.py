"""``.3dl`` files (Autodesk Flame and Lustre, and the bare variant): a 3D table of integer codes.

Layout: ``#`` comments; an optional Lustre header ``3DMESH`` / ``Mesh I O`` (``O`` the output bit depth);
the mesh line, the input code of each lattice point (``0 64 128 ... 1023``: N values, uniform); N^3 rows
of three integer codes, **blue fastest**, then green, then red (row ``(r * N + g) * N + b``, the
transpose of ``.cube``'s order); an optional Lustre trailer ``LUT8`` / ``gamma 1.0``. Without a mesh line
(the bare variant) the size comes from the number of rows. A code ``v`` is ``v / (2^O - 1)``; without a
``Mesh`` line the output bit depth is inferred from the largest code as OpenColorIO does (8, 10, 12 or
16 bits, the largest code between half and twice the depth's maximum).

Refused: a mesh line that is not uniform (OpenColorIO reads one as a 1D shaper, Autodesk's tools as the
positions of the lattice points: the two disagree), several mesh lines, negative or non-integer codes,
a row count that is not N^3, a bit depth the codes do not fit.
"""

from __future__ import annotations

import math
import warnings
from array import array

import torch

from ..cube import CubeLUT
from ..functional import MAX_LUT_SIZE, MIN_LUT_SIZE, check_lut
from .common import LUTFormatError, integer, lines

MAX_CODE = 131071  # twice 16-bit, the largest overshoot OpenColorIO reads
VARIANTS = ("flame", "lustre")
OUTPUT_BITS = (8, 10, 12, 16)


def _likely_bits(largest: int) -> int:
    """OpenColorIO's guess of a table's bit depth from its largest code (``GetLikelyLutBitDepth``)."""
    for bits in (8, 10, 12, 14):
        if largest <= 2 ** (bits + 1) - 1:
            return 16 if bits == 14 else bits
    return 16


def parse_3dl(content: bytes, source: str = "<string>", *, dtype: torch.dtype = torch.float32) -> CubeLUT:
    """Parse the bytes of a ``.3dl`` file (``source`` names it in errors) as a :class:`CubeLUT` (a 3D table on
    [0, 1], ``[b, g, r, c]``). Raises :class:`LUTFormatError`."""
    comments: list[str] = []
    mesh: list[int] | None = None
    mesh_line = out_bits = None
    header_done = trailer = False
    codes = array("l")
    first_row = last = 1
    for lineno, line in lines(content, source):
        last = lineno
        if line[0] == "#":
            comments.append(line[1:].strip())
            continue
        tokens = line.split()
        word = tokens[0]
        if word == "3DMESH" or not (word[0].isdigit() or word[0] == "-"):
            if word == "3DMESH" and len(tokens) == 1 and not header_done and out_bits is None:
                continue
            if word == "Mesh" and not header_done and out_bits is None:
                if len(tokens) != 3:
                    raise LUTFormatError(
                        source, lineno, "Mesh needs two integers: input and output bit depth"
                    )
                integer(source, lineno, tokens[1], "Mesh input bit depth", 1, 16)
                out_bits = integer(source, lineno, tokens[2], "Mesh output bit depth", 8, 16)
                continue
            if (word == "LUT8" and len(tokens) == 1) or (word == "gamma" and len(tokens) == 2):
                trailer = True
                continue
            raise LUTFormatError(
                source,
                lineno,
                f"unexpected {word[:40]!r} (a .3dl holds a mesh line, rows of "
                "three integers, and the Lustre keywords 3DMESH, Mesh, LUT8, gamma)",
            )
        if trailer:
            raise LUTFormatError(source, lineno, "table data after the LUT8/gamma trailer")
        header_done = True
        if len(tokens) > 3:
            if mesh is not None or codes:
                where = f"line {mesh_line}" if mesh is not None else "the rows began"
                raise LUTFormatError(source, lineno, f"a second mesh line ({where} already)")
            if not MIN_LUT_SIZE <= len(tokens) <= MAX_LUT_SIZE:
                raise LUTFormatError(
                    source,
                    lineno,
                    f"a mesh line of {len(tokens)} points: the size must be "
                    f"in [{MIN_LUT_SIZE}, {MAX_LUT_SIZE}]",
                )
            mesh = [integer(source, lineno, t, "mesh value", 0, MAX_CODE) for t in tokens]
            mesh_line = lineno
            continue
        if len(tokens) != 3:
            raise LUTFormatError(source, lineno, f"a row needs 3 integers, got {len(tokens)}")
        if not codes:
            first_row = lineno
        if mesh is not None and len(codes) == 3 * len(mesh) ** 3:
            raise LUTFormatError(
                source, lineno, f"more than the {len(mesh) ** 3} rows the mesh line announces"
            )
        if len(codes) == 3 * MAX_LUT_SIZE**3:
            raise LUTFormatError(source, lineno, f"more rows than a {MAX_LUT_SIZE}^3 table holds")
        codes.extend(integer(source, lineno, t, "code", 0, MAX_CODE) for t in tokens)
    if not codes:
        raise LUTFormatError(source, last, "no table rows")
    rows = len(codes) // 3
    n = round(rows ** (1 / 3))
    if mesh is not None:
        n = len(mesh)
        if rows != n**3:
            raise LUTFormatError(source, last, f"expected {n**3} rows ({n} mesh points cubed), found {rows}")
        _check_mesh(source, mesh_line, mesh)
    elif n**3 != rows or n < MIN_LUT_SIZE:
        raise LUTFormatError(
            source, last, f"{rows} rows is not the cube of a size in [{MIN_LUT_SIZE}, {MAX_LUT_SIZE}]"
        )
    largest = max(codes)
    if out_bits is None:
        if largest < 128:  # as OpenColorIO: too small to be integer codes of any usual depth
            raise LUTFormatError(
                source,
                first_row,
                f"the largest code is {largest}: too small to tell the "
                "bit depth (give it with a Lustre 'Mesh 4 12' line)",
            )
        out_bits = _likely_bits(largest)
    elif largest > 2**out_bits - 1:
        raise LUTFormatError(
            source,
            first_row,
            f"code {largest} does not fit the {out_bits}-bit output the Mesh line announces",
        )
    table = torch.tensor(codes, dtype=torch.float64).reshape(n, n, n, 3) / (2**out_bits - 1)
    lut = table.permute(2, 1, 0, 3).contiguous().to(dtype)  # file [r, g, b] -> ours [b, g, r]
    return CubeLUT(lut, comments=comments)


def _check_mesh(source: str, lineno: int, mesh: list[int]) -> None:
    """A mesh line must be a uniform ramp from 0 (within 2 codes, OpenColorIO's tolerance for identity)."""
    if mesh[-1] < 128:
        raise LUTFormatError(
            source, lineno, f"the mesh line ends at {mesh[-1]}: too small to tell its bit depth"
        )
    top = 2 ** _likely_bits(mesh[-1]) - 1  # 1023 for a 10-bit mesh, 4095 for 12
    step = top / (len(mesh) - 1)
    bad = [i for i, v in enumerate(mesh) if abs(v - i * step) >= 2]
    if bad:
        i = bad[0]
        raise LUTFormatError(
            source,
            lineno,
            f"the mesh line is not a uniform ramp from 0 to {top} (point {i} "
            f"is {mesh[i]}, expected {i * step:.0f}): non-uniform meshes are not supported",
        )


def threedl_text(
    lut: torch.Tensor | CubeLUT, *, variant: str = "flame", output_bits: int = 12, input_bits: int = 10
) -> str:
    """The text of a ``.3dl`` file for a 3D table on [0, 1] (``(D,D,D,3)`` ``[b, g, r, c]``, or a CubeLUT
    holding only that).

    variant: ``"flame"`` (mesh line, for sizes above 3, and rows: what FFmpeg's lut3d reads, at size 17 and
        12 bits) or
        ``"lustre"`` (``3DMESH`` / ``Mesh I O`` header and ``LUT8`` / ``gamma 1.0`` trailer; D - 1 must be a
        power of two).
    output_bits: 8, 10, 12 or 16; values are clamped to [0, 1] (a warning says how many were outside) and
        rounded to the nearest code. input_bits: the mesh line's depth (10: ``0 64 ... 1023``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"a .3dl variant is one of {VARIANTS}, got {variant!r}")
    if output_bits not in OUTPUT_BITS or input_bits not in OUTPUT_BITS:
        raise ValueError(f"a .3dl bit depth is one of {OUTPUT_BITS}, got {output_bits!r}, {input_bits!r}")
    table = _plain_table(lut, ".3dl")
    d = table.shape[0]
    if variant == "lustre" and (d - 1) & (d - 2):
        raise ValueError(f"a Lustre .3dl needs a size 2^k + 1 (17, 33, 65), got {d}")
    values = table.detach().to(torch.float64).cpu()
    if not torch.isfinite(values).all():
        raise ValueError("cannot write a LUT with NaN or infinite values")
    outside = int(((values < 0) | (values > 1)).sum())
    if outside:
        warnings.warn(
            f".3dl holds codes in [0, 1] only: {outside} values outside it clamped "
            f"(range {values.min():.4g} to {values.max():.4g})",
            stacklevel=3,
        )
    top = 2**output_bits - 1
    codes = (values.clamp(0, 1) * top).round().to(torch.int64).permute(2, 1, 0, 3).reshape(-1, 3)
    head = []
    if variant == "lustre":
        head += ["3DMESH", f"Mesh {int(math.log2(d - 1))} {output_bits}"]
    comments = ([lut.title] if lut.title else []) + lut.comments if isinstance(lut, CubeLUT) else []
    head = [f"# {c}" for c in comments if "\n" not in c and "\r" not in c] + head
    if d > 3:  # a mesh line of 2 or 3 codes would read as a row (OpenColorIO reads 4 or more as the mesh)
        mesh_top = 2**input_bits - 1
        head.append(" ".join(str(round(i * mesh_top / (d - 1))) for i in range(d)))
    body = "\n".join(f"{r} {g} {b}" for r, g, b in codes.tolist())
    tail = "\nLUT8\ngamma 1.0\n" if variant == "lustre" else ""
    return "\n".join(head) + "\n" + body + "\n" + tail


def _plain_table(lut: torch.Tensor | CubeLUT, fmt: str) -> torch.Tensor:
    """The ``(D,D,D,3)`` table of ``lut`` if it is only that (3D, on [0, 1]), else a ValueError."""
    if isinstance(lut, CubeLUT):
        unit = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        if lut.shaper is not None or lut.lut3d is None or tuple(map(tuple, lut.lut3d_domain)) != unit:
            raise ValueError(
                f"a {fmt} file holds a 3D table on [0, 1] only, not a shaper or another domain "
                "(convert with --bake to sample the whole transform)"
            )
        lut = lut.lut3d
    check_lut(lut)
    if lut.dim() != 4:
        raise ValueError(f"write one LUT (D,D,D,3) per file, got shape {tuple(lut.shape)}")
    return lut
