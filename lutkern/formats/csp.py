"""``.csp`` files (Rising Sun Research Cinespace): a per-channel pre-LUT, then a 1D or a 3D table.

Layout::

    CSPLUTV100
    3D                       or 1D
    BEGIN METADATA           optional, kept as comments
    ...
    END METADATA
    2                        red pre-LUT: knot count,
    0.0 1.0                  the knots' inputs (strictly increasing),
    0.0 1.0                  their outputs; then green's three lines, then blue's
    ...
    33 33 33                 3D: the lattice size (equal on all axes); 1D: one row count
    r g b                    rows, red fastest (the .cube order)

The pre-LUT is a curve per channel through its knots (a line for two knots, Cinespace's piecewise cubic
for more: :class:`~lutkern.formats.chain.Curves`), its input clamped to the first and last knots; the
table then covers [0, 1] (its input clamped to it). A pre-LUT of two knots whose outputs are 0 and 1 is
a domain, and the file is read as a :class:`lutkern.CubeLUT` with that domain; a general pre-LUT is a
:class:`~lutkern.formats.chain.Curves` step before the table, in a :class:`LUTChain`.
"""

from __future__ import annotations

import torch

from ..cube import MAX_1D_SIZE, CubeLUT, domain_problem
from ..functional import MAX_LUT_SIZE, MIN_LUT_SIZE, check_lut
from .chain import Curves, LUTChain
from .common import LUTFormatError, check_precision, format_rows, integer, lines, number, rows_tensor

_UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def parse_csp(
    content: bytes, source: str = "<string>", *, dtype: torch.dtype = torch.float32
) -> CubeLUT | LUTChain:
    """Parse the bytes of a ``.csp`` file. Raises :class:`LUTFormatError`."""
    stream = lines(content, source)
    last = [1]

    def take(what: str) -> tuple[int, str]:
        item = next(stream, None)
        if item is None:
            raise LUTFormatError(source, last[0], f"missing {what}")
        last[0] = item[0]
        return item

    lineno, line = take("CSPLUTV100")
    if line != "CSPLUTV100":
        raise LUTFormatError(source, lineno, f"expected 'CSPLUTV100', got {line[:40]!r}")
    lineno, kind = take("the type, 1D or 3D")
    if kind not in ("1D", "3D"):
        raise LUTFormatError(source, lineno, f"expected the type '1D' or '3D', got {kind[:40]!r}")
    comments = []
    lineno, line = take("the pre-LUT")
    if line == "BEGIN METADATA":
        while True:
            lineno, line = take("END METADATA")
            if line == "END METADATA":
                break
            comments.append(line)
        lineno, line = take("the pre-LUT")
    knots_x, knots_y = [], []
    for channel in "RGB":
        if channel != "R":
            lineno, line = take(f"the {channel} pre-LUT")
        count = _one_int(source, lineno, line, f"{channel} pre-LUT knot count", 2, MAX_1D_SIZE)
        xs = _knots(source, *take(f"the {channel} pre-LUT inputs"), count, f"{channel} pre-LUT input")
        at, text = take(f"the {channel} pre-LUT outputs")
        ys = _knots(source, at, text, count, f"{channel} pre-LUT output")
        if any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
            raise LUTFormatError(source, at - 1, f"the {channel} pre-LUT inputs must be strictly increasing")
        knots_x.append(xs)
        knots_y.append(ys)
    lineno, line = take("the table size")
    tokens = line.split()
    if kind == "3D":
        if len(tokens) != 3:
            raise LUTFormatError(source, lineno, f"a 3D size needs 3 integers, got {len(tokens)}")
        sizes = [integer(source, lineno, t, "3D size", MIN_LUT_SIZE, MAX_LUT_SIZE) for t in tokens]
        if len(set(sizes)) != 1:
            raise LUTFormatError(source, lineno, f"3D sizes {sizes} differ: only cubes are supported")
        expected = sizes[0] ** 3
    else:
        expected = _one_int(source, lineno, line, "1D size", 2, MAX_1D_SIZE)
    values, row_lines = [], []
    for lineno, line in stream:
        last[0] = lineno
        tokens = line.split()
        if len(tokens) != 3:
            raise LUTFormatError(source, lineno, f"a table row needs 3 numbers, got {len(tokens)}")
        if len(row_lines) == expected:
            raise LUTFormatError(source, lineno, f"more than the {expected} rows the size announces")
        values.extend(number(source, lineno, t, "value") for t in tokens)
        row_lines.append(lineno)
    if len(row_lines) != expected:
        raise LUTFormatError(source, last[0], f"expected {expected} table rows, found {len(row_lines)}")
    table = rows_tensor(source, values, row_lines, dtype)
    if kind == "3D":
        d = sizes[0]
        table = CubeLUT(table.reshape(d, d, d, 3))
    else:
        table = CubeLUT(None, table)
    domain = _as_domain(knots_x, knots_y)
    if domain is not None:
        if kind == "3D":
            table.lut3d_domain = domain
        else:
            table.shaper_domain = domain
        table.comments = comments
        return table
    curves = Curves(
        [torch.tensor(x, dtype=torch.float64) for x in knots_x],
        [torch.tensor(y, dtype=torch.float64) for y in knots_y],
    )
    return LUTChain([curves, table], comments=comments)


def _one_int(source, lineno, line, what, lo, hi) -> int:
    tokens = line.split()
    if len(tokens) != 1:
        raise LUTFormatError(source, lineno, f"{what}: expected one integer, got {line[:40]!r}")
    return integer(source, lineno, tokens[0], what, lo, hi)


def _knots(source, lineno, line, count, what) -> list[float]:
    tokens = line.split()
    if len(tokens) != count:
        raise LUTFormatError(source, lineno, f"{what}: expected {count} numbers, got {len(tokens)}")
    return [number(source, lineno, t, what) for t in tokens]


def _as_domain(knots_x, knots_y):
    """The pre-LUT as a domain (min_rgb, max_rgb) when it is one (two knots mapped to 0 and 1), else None."""
    if any(len(x) != 2 or y != [0.0, 1.0] for x, y in zip(knots_x, knots_y, strict=True)):
        return None
    domain = tuple(x[0] for x in knots_x), tuple(x[1] for x in knots_x)
    return domain if domain_problem(*domain) is None else None


def csp_text(lut: torch.Tensor | CubeLUT | LUTChain, *, precision: int = 6) -> str:
    """The text of a ``.csp`` file for: a ``(D,D,D,3)`` table; a CubeLUT holding a 3D or a 1D table (its
    domain written as a two-knot pre-LUT); or a LUTChain of Curves then such a table on [0, 1] (what
    :func:`parse_csp` reads from a general pre-LUT)."""
    check_precision(precision)
    if isinstance(lut, torch.Tensor):
        check_lut(lut)
        if lut.dim() != 4:
            raise ValueError(f"write one LUT (D,D,D,3) per file, got shape {tuple(lut.shape)}")
        lut = CubeLUT(lut)
    comments: list[str] = []
    if isinstance(lut, LUTChain):
        if (
            len(lut.steps) != 2
            or not isinstance(lut.steps[0], Curves)
            or not isinstance(lut.steps[1], CubeLUT)
            or lut.steps[1].shaper is not None
            and lut.steps[1].lut3d is not None
        ):
            raise ValueError(
                "a .csp file holds a pre-LUT and one table: this chain does not fit (convert "
                "with --bake to sample the whole transform)"
            )
        curves, table = lut.steps
        unit_domain = table.lut3d_domain if table.lut3d is not None else table.shaper_domain
        if tuple(map(tuple, unit_domain)) != _UNIT:
            raise ValueError("a .csp table after a pre-LUT covers [0, 1] only")
        knots = [(x.double(), y.double()) for x, y in zip(curves.x, curves.y, strict=True)]
        comments = lut.comments
    else:
        if lut.shaper is not None and lut.lut3d is not None:
            raise ValueError(
                "a .csp pre-LUT is Cinespace's cubic curve, not a shaper's linear interpolation: "
                "a shaper + 3D table does not fit (convert with --bake to sample the whole transform)"
            )
        table, comments = lut, lut.comments
        lo, hi = lut.lut3d_domain if lut.lut3d is not None else lut.shaper_domain
        knots = [
            (torch.tensor([lo[c], hi[c]], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64))
            for c in range(3)
        ]
    head = ["CSPLUTV100", "3D" if table.lut3d is not None else "1D"]
    title = [lut.title] if getattr(lut, "title", None) else []
    kept = [
        c
        for c in title + comments
        if "\n" not in c and "\r" not in c and c.strip() not in ("", "END METADATA")
    ]
    head += ["BEGIN METADATA", *kept, "END METADATA"]  # always: colour-science's reader needs the block
    for x, y in knots:
        head += [str(len(x)), _numbers(x, precision), _numbers(y, precision)]
    if table.lut3d is not None:
        d = table.lut3d.shape[0]
        head.append(f"{d} {d} {d}")
        body = format_rows(table.lut3d, precision)
    else:
        head.append(str(table.shaper.shape[0]))
        body = format_rows(table.shaper, precision)
    return "\n".join(head) + "\n" + body


def _numbers(values: torch.Tensor, precision: int) -> str:
    if not torch.isfinite(values).all():
        raise ValueError("cannot write a LUT with NaN or infinite values")
    return " ".join(f"{v:.{precision}f}" for v in values.tolist())
