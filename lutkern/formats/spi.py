"""Sony Pictures Imageworks LUT files: ``.spi1d`` (per-channel curves) and ``.spi3d`` (a 3D table).

``.spi1d``::

    Version 1
    From 0.0 1.0          the input range of the table (the same on every channel)
    Length 4096           rows
    Components 3          1 (one curve for all channels) or 3
    {
    0.0 0.0 0.0           one row per line, Components values
    ...
    }

read as a :class:`lutkern.CubeLUT` with a shaper alone (its ``shaper_domain`` the ``From`` range).

``.spi3d``::

    SPILUT 1.0
    3 3                   input and output channels
    33 33 33              the lattice size on each axis (equal)
    0 0 0 r g b           red index, green index, blue index, then the output
    ...

Each row names its lattice point, so any row order is read (each point exactly once); rows are written
**blue fastest** (``r g b`` indices with ``b`` varying first), as OpenColorIO writes them. Read as a
CubeLUT with a 3D table on [0, 1], ``[b, g, r, c]``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..cube import MAX_1D_SIZE, CubeLUT, domain_problem
from ..functional import MAX_LUT_SIZE, MIN_LUT_SIZE
from .common import LUTFormatError, check_precision, format_rows, integer, lines, number, rows_tensor
from .threedl import _plain_table

_SPI1D_KEYS = ("Version", "From", "Length", "Components")


def parse_spi1d(content: bytes, source: str = "<string>", *, dtype: torch.dtype = torch.float32) -> CubeLUT:
    """Parse the bytes of a ``.spi1d`` file as a CubeLUT holding a shaper. Raises :class:`LUTFormatError`."""
    head: dict[str, tuple[int, list[str]]] = {}
    values: list[float] = []
    row_lines: list[int] = []
    state = "header"  # header -> rows ('{' seen) -> done ('}' seen)
    last = 1
    for lineno, line in lines(content, source):
        last = lineno
        if line[0] == "#" and state == "header":
            continue
        if state == "done":
            raise LUTFormatError(source, lineno, "text after the closing '}'")
        if state == "header":
            if line == "{":
                state = "rows"
                length, components = _spi1d_sizes(source, lineno, head)
                continue
            key, *args = line.split()
            if key not in _SPI1D_KEYS:
                raise LUTFormatError(
                    source,
                    lineno,
                    f"unknown keyword {key[:40]!r} (expected {', '.join(_SPI1D_KEYS)} or '{{')",
                )
            if key in head:
                raise LUTFormatError(source, lineno, f"duplicate {key} (first on line {head[key][0]})")
            head[key] = (lineno, args)
            continue
        if line == "}":
            state = "done"
            continue
        tokens = line.split()
        if len(tokens) != components:
            raise LUTFormatError(
                source, lineno, f"a row needs {components} numbers (Components), got {len(tokens)}"
            )
        if len(row_lines) == length:
            raise LUTFormatError(source, lineno, f"more than the {length} rows Length announces")
        row = [number(source, lineno, t, "value") for t in tokens]
        values.extend(row * 3 if components == 1 else row)
        row_lines.append(lineno)
    if state != "done":
        raise LUTFormatError(source, last, "missing '{'" if state == "header" else "missing the closing '}'")
    if len(row_lines) != length:
        raise LUTFormatError(source, last, f"expected {length} rows (Length), found {len(row_lines)}")
    domain = _spi1d_domain(source, head)
    table = rows_tensor(source, values, row_lines, dtype)
    return CubeLUT(None, table, shaper_domain=domain)


def _spi1d_sizes(source: str, lineno: int, head: dict) -> tuple[int, int]:
    """(Length, Components) from the header, checked before any row is read."""
    for key in ("Version", "Length", "Components"):
        if key not in head:
            raise LUTFormatError(source, lineno, f"missing {key} before '{{'")
    at, args = head["Version"]
    if args != ["1"]:
        raise LUTFormatError(source, at, f"Version {' '.join(args)[:40]!r}: only Version 1 is known")
    at, args = head["Length"]
    if len(args) != 1:
        raise LUTFormatError(source, at, "Length needs one integer")
    length = integer(source, at, args[0], "Length", 2, MAX_1D_SIZE)
    at, args = head["Components"]
    if len(args) != 1 or args[0] not in ("1", "3"):
        raise LUTFormatError(source, at, f"Components must be 1 or 3, got {' '.join(args)[:40]!r}")
    return length, int(args[0])


def _spi1d_domain(source: str, head: dict):
    if "From" not in head:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    at, args = head["From"]
    if len(args) != 2:
        raise LUTFormatError(source, at, f"From needs 2 numbers, got {len(args)}")
    lo, hi = (number(source, at, a, "From") for a in args)
    domain = (lo,) * 3, (hi,) * 3
    problem = domain_problem(*domain)
    if problem is not None:
        raise LUTFormatError(source, at, problem)
    return domain


def spi1d_text(lut: CubeLUT, *, precision: int = 6) -> str:
    """The text of a ``.spi1d`` file for a CubeLUT holding a shaper alone, with the same input range on
    every channel (``Components 1`` when the three curves are equal)."""
    check_precision(precision)
    if not isinstance(lut, CubeLUT) or lut.shaper is None or lut.lut3d is not None:
        raise ValueError("a .spi1d file holds a 1D table only (a CubeLUT with a shaper and no 3D table)")
    lo, hi = lut.shaper_domain
    if len(set(lo)) != 1 or len(set(hi)) != 1:
        raise ValueError(f"a .spi1d file holds one input range for all channels, got {lut.shaper_domain}")
    table = lut.shaper.detach().to(torch.float64).cpu()
    same = bool((table == table[:, :1]).all())
    rows = format_rows(table, precision)
    if same:
        rows = "".join(r.split(" ", 1)[0] + "\n" for r in rows.splitlines())
    return (
        f"Version 1\nFrom {lo[0]:.{precision}f} {hi[0]:.{precision}f}\nLength {table.shape[0]}\n"
        f"Components {1 if same else 3}\n{{\n{rows}}}\n"
    )


def parse_spi3d(content: bytes, source: str = "<string>", *, dtype: torch.dtype = torch.float32) -> CubeLUT:
    """Parse the bytes of a ``.spi3d`` file as a CubeLUT holding a 3D table; :class:`LUTFormatError`."""
    stream = lines(content, source)
    n = None
    filled = values = row_lines = None
    count = 0
    last = 1
    for lineno, line in stream:
        last = lineno
        tokens = line.split()
        if n is None:
            n = _spi3d_header(source, lineno, line, stream)
            if len(content) < 12 * n**3:  # the shortest row, "0 0 0 0 0 0\n", before allocating
                raise LUTFormatError(
                    source, None, f"{len(content)} bytes cannot hold the {n**3} rows of a {n}^3 table"
                )
            filled = np.zeros((n, n, n), dtype=bool)  # [r, g, b] as the file indexes it
            values = np.empty((n, n, n, 3), dtype=np.float64)
            row_lines = np.empty((n, n, n), dtype=np.int32)
            continue
        if len(tokens) != 6:
            raise LUTFormatError(
                source, lineno, f"a row needs 3 indices and 3 values, got {len(tokens)} tokens"
            )
        r, g, b = (integer(source, lineno, t, "lattice index", 0, n - 1) for t in tokens[:3])
        if filled[r, g, b]:
            raise LUTFormatError(
                source, lineno, f"lattice point {r} {g} {b} given twice (first on line {row_lines[r, g, b]})"
            )
        values[r, g, b] = [number(source, lineno, t, "value") for t in tokens[3:]]
        filled[r, g, b] = True
        row_lines[r, g, b] = lineno
        count += 1
    if n is None:
        raise LUTFormatError(source, last, "empty file: expected 'SPILUT 1.0'")
    if count != n**3:
        missing = np.argwhere(~filled)[0].tolist()
        raise LUTFormatError(
            source,
            last,
            f"expected {n**3} rows, found {count} (lattice point {' '.join(map(str, missing))} is missing)",
        )
    ours = values.transpose(2, 1, 0, 3)  # [r, g, b] -> [b, g, r]
    table = rows_tensor(source, ours.reshape(-1, 3), row_lines.transpose(2, 1, 0).reshape(-1), dtype)
    return CubeLUT(table.reshape(n, n, n, 3))


def _spi3d_header(source: str, lineno: int, first: str, stream) -> int:
    """Read the three header lines (the first already read); the lattice size, checked before allocation."""
    if first.split() != ["SPILUT", "1.0"]:
        raise LUTFormatError(source, lineno, f"expected 'SPILUT 1.0', got {first[:40]!r}")
    for what in ("'3 3' (input and output channels)", "the lattice size 'N N N'"):
        line = next(stream, None)
        if line is None:
            raise LUTFormatError(source, lineno, f"missing {what}")
        lineno, text = line
        tokens = text.split()
        if what.startswith("'3 3'"):
            if tokens != ["3", "3"]:
                raise LUTFormatError(source, lineno, f"expected {what}, got {text[:40]!r}")
            continue
        if len(tokens) != 3:
            raise LUTFormatError(source, lineno, f"expected {what}, got {text[:40]!r}")
        sizes = [integer(source, lineno, t, "lattice size", MIN_LUT_SIZE, MAX_LUT_SIZE) for t in tokens]
        if len(set(sizes)) != 1:
            raise LUTFormatError(source, lineno, f"lattice sizes {sizes} differ: only cubes are supported")
    return sizes[0]


def spi3d_text(lut: torch.Tensor | CubeLUT, *, precision: int = 6) -> str:
    """The text of a ``.spi3d`` file for a 3D table on [0, 1] (``(D,D,D,3)`` ``[b, g, r, c]``, or a
    CubeLUT holding only that), rows blue fastest."""
    check_precision(precision)
    table = _plain_table(lut, ".spi3d").detach().to(torch.float64).cpu()
    d = table.shape[0]
    rows = format_rows(table.permute(2, 1, 0, 3), precision).splitlines()  # [r, g, b]: blue fastest
    index = ((r, g, b) for r in range(d) for g in range(d) for b in range(d))
    body = "".join(f"{r} {g} {b} {row}\n" for (r, g, b), row in zip(index, rows, strict=True))
    return f"SPILUT 1.0\n3 3\n{d} {d} {d}\n" + body
