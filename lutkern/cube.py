"""``.cube`` LUT files: the Adobe Cube LUT Specification 1.0 and the DaVinci Resolve variant.

A file holds a 1D table (``LUT_1D_SIZE`` rows), a 3D table (``LUT_3D_SIZE`` cubed rows, red index fastest,
which is the ``lut[b, g, r, c]`` memory order of this project), or, in the Resolve variant, a 1D shaper
followed by a 3D table. Input domains come from ``DOMAIN_MIN``/``DOMAIN_MAX`` (Adobe: three values, the
domain of the file's single table) or ``LUT_1D_INPUT_RANGE``/``LUT_3D_INPUT_RANGE`` (Resolve: two values
per table). :class:`CubeLUT` holds all of it and applies it (domain, shaper, then 3D table), so nothing in
a file is silently dropped; anything the parser does not understand raises :class:`CubeFormatError`.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re
import warnings
from array import array
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .conventions import MAX_LUT_SIZE, MIN_LUT_SIZE
from .files import atomic_open

if TYPE_CHECKING:  # torch is imported where a table becomes a tensor: parsing needs only numpy
    import torch

MAX_1D_SIZE = 65536
# The largest file read: a 256^3 table plus a 65536-row shaper at 48 bytes a row, plus 1 MiB of header.
MAX_CUBE_BYTES = 48 * (MAX_LUT_SIZE**3 + MAX_1D_SIZE) + (1 << 20)
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_ROW = re.compile(rf"({_NUMBER})[ \t]+({_NUMBER})[ \t]+({_NUMBER})", re.ASCII)  # ASCII digits only
_NUMBER_RE = re.compile(_NUMBER, re.ASCII)
# A line with its end (LF, CRLF or CR), or the last line without one.
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
# The characters of table rows alone (no comment, keyword, inf or nan): a table numpy may read at once.
_ROW_CHARS = re.compile(rb"[0-9eE.+\- \t\r\n]*")
_KEYWORDS = (
    "TITLE",
    "LUT_1D_SIZE",
    "LUT_3D_SIZE",
    "DOMAIN_MIN",
    "DOMAIN_MAX",
    "LUT_1D_INPUT_RANGE",
    "LUT_3D_INPUT_RANGE",
)
Triple = tuple[float, float, float]
# The largest value of each float type a table may be interpolated in (bfloat16: numpy has no such type).
_FLOAT_MAX = {name: float(np.finfo(name).max) for name in ("float16", "float32", "float64")}
_FLOAT_MAX["bfloat16"] = (2 - 2**-7) * 2.0**127


def domain_problem(lo: Triple, hi: Triple) -> str | None:
    """Why ``(lo, hi)`` cannot map inputs to [0, 1] per channel in float32 arithmetic, or None."""
    if not all(a < b for a, b in zip(lo, hi, strict=True)):
        return f"reversed or empty domain: min {lo} is not below max {hi}"
    with np.errstate(all="ignore"):
        lo32, hi32 = np.float32(lo), np.float32(hi)
        span = hi32 - lo32
        usable = np.isfinite(lo32) & np.isfinite(hi32) & np.isfinite(span) & (span > 0)
        usable &= np.isfinite(np.float32(1) / span)
    if not usable.all():
        return f"domain min {lo} max {hi} is unusable in float32 (beyond +-3.4e38, or too narrow a span)"
    return None


class CubeFormatError(ValueError):
    """A malformed ``.cube`` file. The message starts with ``file:line:`` (``file:`` for the whole file)."""

    def __init__(self, source: str, line: int | None, message: str):
        super().__init__(f"{source}:{line}: {message}" if line is not None else f"{source}: {message}")
        self.source, self.line, self.reason = source, line, message


@dataclasses.dataclass
class CubeLUT:
    """The content of a ``.cube`` file.

    lut3d: ``(D,D,D,3)`` indexed ``[b, g, r, c]``, or None.
    shaper: ``(N,3)`` 1D table (column c maps channel c), or None. With both, the shaper runs first.
    shaper_domain / lut3d_domain: ``(min_rgb, max_rgb)`` input range of each table; an input is clamped to
        its table's range and mapped to [0, 1] over it. With a shaper, the 3D table's input is the shaper's
        output.
    title: the ``TITLE`` string or None; comments: the ``#`` lines, without the ``#``.
    """

    lut3d: torch.Tensor | None = None
    shaper: torch.Tensor | None = None
    shaper_domain: tuple[Triple, Triple] = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    lut3d_domain: tuple[Triple, Triple] = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    title: str | None = None
    comments: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.lut3d is None and self.shaper is None:
            raise ValueError("a CubeLUT needs a 3D table, a 1D shaper, or both")
        if self.lut3d is not None:
            from .functional import check_lut

            check_lut(self.lut3d, "lut3d")
            if self.lut3d.dim() != 4:
                raise ValueError(f"lut3d must be (D,D,D,3), got {tuple(self.lut3d.shape)}")
        if self.shaper is not None and (
            self.shaper.dim() != 2
            or self.shaper.shape[1] != 3
            or not 2 <= self.shaper.shape[0] <= MAX_1D_SIZE
        ):
            raise ValueError(
                f"shaper must be (N,3) with 2 <= N <= {MAX_1D_SIZE}, got {tuple(self.shaper.shape)}"
            )
        for name in ("shaper_domain", "lut3d_domain"):
            problem = domain_problem(*getattr(self, name))
            if problem is not None:
                raise ValueError(f"{name}: {problem}")

    def apply(self, image: torch.Tensor, *, interpolation: str = "trilinear", backend: str | None = None):
        """Apply the file's transform to ``image`` ``(B,3,H,W)`` or ``(3,H,W)`` float.

        The shaper (if any) is interpolated linearly; ``interpolation`` and ``backend`` are passed to
        :func:`lutkern.apply_lut` for the 3D table. Inputs outside a table's domain are clamped to it.
        """
        from .functional import apply_lut

        x = image
        if self.shaper is not None:
            x = apply_shaper(_normalise(x, self.shaper_domain), self.shaper.to(x.device))
        if self.lut3d is not None:
            x = apply_lut(
                _normalise(x, self.lut3d_domain),
                self.lut3d.to(x.device, x.dtype),
                interpolation=interpolation,
                backend=backend,
            )
        return x


def _normalise(x: torch.Tensor, domain: tuple[Triple, Triple]) -> torch.Tensor:
    """Map ``domain`` to [0, 1] per channel (dim -3) and clamp."""
    import torch

    if domain == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)):
        return x.clamp(0, 1)
    lo = torch.tensor(domain[0], dtype=x.dtype, device=x.device).view(3, 1, 1)
    hi = torch.tensor(domain[1], dtype=x.dtype, device=x.device).view(3, 1, 1)
    return ((x - lo) / (hi - lo)).clamp(0, 1)


def apply_shaper(x: torch.Tensor, shaper: torch.Tensor) -> torch.Tensor:
    """Per-channel linear interpolation of ``shaper`` ``(N,3)`` at ``x`` ``(...,3,H,W)`` in [0, 1]."""
    import torch

    n = shaper.shape[0]
    t = x.clamp(0, 1) * (n - 1)
    i0 = t.detach().nan_to_num(0).floor().clamp(max=n - 2).long()  # a NaN sample: any index, NaN out
    f = t - i0
    table = shaper.to(x.dtype).t()  # (3,N)
    chans = []
    for c in range(3):
        lo, hi = table[c][i0[..., c, :, :]], table[c][i0[..., c, :, :] + 1]
        chans.append(lo + f[..., c, :, :] * (hi - lo))
    return torch.stack(chans, dim=-3)


# ----------------------------------------------------------------------------------------------- reading


@dataclasses.dataclass
class _Header:
    title: str | None = None
    size1d: int | None = None
    size3d: int | None = None
    domain_min: Triple | None = None
    domain_max: Triple | None = None
    range1d: tuple[float, float] | None = None
    range3d: tuple[float, float] | None = None
    lines: dict = dataclasses.field(default_factory=dict)  # keyword -> line number


def _numbers(source: str, lineno: int, keyword: str, args: list[str], count: int) -> tuple[float, ...]:
    if len(args) != count:
        raise CubeFormatError(source, lineno, f"{keyword} needs {count} numbers, got {len(args)}")
    values = []
    for a in args:
        if not _NUMBER_RE.fullmatch(a):
            raise CubeFormatError(source, lineno, f"{keyword}: {a!r} is not a number")
        v = float(a)
        if not math.isfinite(v):
            raise CubeFormatError(source, lineno, f"{keyword}: {a!r} is not finite")
        values.append(v)
    return tuple(values)


def _size(source: str, lineno: int, keyword: str, args: list[str], lo: int, hi: int) -> int:
    if len(args) != 1 or not args[0].isascii() or not args[0].isdigit():
        raise CubeFormatError(source, lineno, f"{keyword} needs one integer, got {' '.join(args)!r}")
    n = int(args[0]) if len(args[0]) <= 12 else hi + 1
    if not lo <= n <= hi:
        raise CubeFormatError(source, lineno, f"{keyword} {args[0]} is out of range [{lo}, {hi}]")
    return n


def _keyword(source: str, lineno: int, line: str, head: _Header) -> None:
    keyword, *tail = line.split(None, 1)
    rest = tail[0].strip() if tail else ""
    if keyword not in _KEYWORDS:
        raise CubeFormatError(source, lineno, f"unknown keyword {keyword[:40]!r}")
    if keyword in head.lines:
        raise CubeFormatError(source, lineno, f"duplicate {keyword} (first on line {head.lines[keyword]})")
    head.lines[keyword] = lineno
    args = rest.split()
    if keyword == "TITLE":
        if len(rest) < 2 or rest[0] != '"' or rest[-1] != '"' or '"' in rest[1:-1]:
            raise CubeFormatError(source, lineno, 'TITLE must be followed by a "quoted string"')
        head.title = rest[1:-1]
    elif keyword == "LUT_1D_SIZE":
        head.size1d = _size(source, lineno, keyword, args, 2, MAX_1D_SIZE)
    elif keyword == "LUT_3D_SIZE":
        head.size3d = _size(source, lineno, keyword, args, MIN_LUT_SIZE, MAX_LUT_SIZE)
    elif keyword == "DOMAIN_MIN":
        head.domain_min = _numbers(source, lineno, keyword, args, 3)
    elif keyword == "DOMAIN_MAX":
        head.domain_max = _numbers(source, lineno, keyword, args, 3)
    elif keyword == "LUT_1D_INPUT_RANGE":
        head.range1d = _numbers(source, lineno, keyword, args, 2)
    else:
        head.range3d = _numbers(source, lineno, keyword, args, 2)


def _domains(source: str, head: _Header) -> tuple[tuple[Triple, Triple], tuple[Triple, Triple]]:
    """Resolve the header's domain keywords into (shaper_domain, lut3d_domain), checking consistency."""
    unit = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    at = head.lines.get
    has_domain = head.domain_min is not None or head.domain_max is not None
    if has_domain and (head.range1d is not None or head.range3d is not None):
        raise CubeFormatError(
            source,
            at("DOMAIN_MIN") or at("DOMAIN_MAX"),
            "DOMAIN_MIN/MAX cannot be mixed with LUT_1D/3D_INPUT_RANGE",
        )
    if has_domain and head.size1d is not None and head.size3d is not None:
        raise CubeFormatError(
            source,
            at("DOMAIN_MIN") or at("DOMAIN_MAX"),
            "DOMAIN_MIN/MAX is ambiguous in a "
            "file with a 1D and a 3D table; use LUT_1D_INPUT_RANGE and LUT_3D_INPUT_RANGE",
        )
    if head.range1d is not None and head.size1d is None and head.range3d is None and head.size3d is not None:
        warnings.warn(f"{source}:{at('LUT_1D_INPUT_RANGE')}: LUT_1D_INPUT_RANGE in a file without a 1D table "
                      "is read as the 3D input range (as colour-science 0.3.x wrote it)", stacklevel=4)
        head.range1d, head.range3d = None, head.range1d
        head.lines["LUT_3D_INPUT_RANGE"] = head.lines["LUT_1D_INPUT_RANGE"]
    if head.range1d is not None and head.size1d is None:
        raise CubeFormatError(source, at("LUT_1D_INPUT_RANGE"), "LUT_1D_INPUT_RANGE without LUT_1D_SIZE")
    if head.range3d is not None and head.size3d is None:
        raise CubeFormatError(source, at("LUT_3D_INPUT_RANGE"), "LUT_3D_INPUT_RANGE without LUT_3D_SIZE")

    def checked(lo: Triple, hi: Triple, keyword: str) -> tuple[Triple, Triple]:
        problem = domain_problem(lo, hi)
        if problem is not None:
            raise CubeFormatError(source, at(keyword), problem)
        return lo, hi

    shaper, lut3d = unit, unit
    if has_domain:
        lo, hi = head.domain_min or unit[0], head.domain_max or unit[1]
        domain = checked(lo, hi, "DOMAIN_MAX" if head.domain_max is not None else "DOMAIN_MIN")
        shaper = lut3d = domain
    if head.range1d is not None:
        shaper = checked((head.range1d[0],) * 3, (head.range1d[1],) * 3, "LUT_1D_INPUT_RANGE")
    if head.range3d is not None:
        lut3d = checked((head.range3d[0],) * 3, (head.range3d[1],) * 3, "LUT_3D_INPUT_RANGE")
    return shaper, lut3d


def _row_error(source: str, lineno: int, line: str) -> CubeFormatError:
    tokens = line.split()
    if len(tokens) != 3:
        return CubeFormatError(source, lineno, f"a table row needs 3 numbers, got {len(tokens)} tokens")
    bad = next(t for t in tokens if not _NUMBER_RE.fullmatch(t))
    return CubeFormatError(source, lineno, f"{bad[:40]!r} is not a number")


def _lines(content: bytes, source: str):
    """Yield ``(line number, text)`` lazily (no list of all lines), each line decoded on its own so that a
    UTF-8 error names its line. Line ends: LF, CRLF or CR."""
    for lineno, _, text in _lines_at(content, source):
        yield lineno, text


def _lines_at(content: bytes, source: str):
    """:func:`_lines` with each line's offset in ``content``: ``(line number, offset, text)``."""
    for lineno, m in enumerate(_LINE.finditer(content), start=1):
        raw = m.group().rstrip(b"\r\n")
        if lineno == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # UTF-8 byte-order mark
        try:
            yield lineno, m.start(), raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CubeFormatError(source, lineno, "not UTF-8 text") from None


def _fits(table: np.ndarray, largest: float) -> np.ndarray:
    """``(N,)``: whether each row of ``table`` ``(N,3)`` is within +-``largest`` (False for inf and NaN).
    ``largest`` is a quarter of the largest float: the difference of two neighbours, which interpolation
    forms, stays finite (3e38 and -3e38 are float32 numbers, but their difference is inf and the blend
    NaN)."""
    return (np.abs(table) <= largest).all(axis=1)


def check_table(source: str, table: np.ndarray, row_lines, dtype: str,
                error: type[CubeFormatError] = CubeFormatError) -> np.ndarray:
    """``table`` ``(M,3)`` float64 itself, or ``error`` naming the line (``row_lines[i]`` is row i's) of the
    first value that is not finite in ``dtype`` (a name: ``"float32"``) or too large to interpolate in it
    (see :func:`_fits`)."""
    largest = _FLOAT_MAX[dtype] / 4
    fits = _fits(table, largest)
    if not fits.all():  # a decimal that overflows, like 1e999, or 3.5e38 in float32
        bad = int(np.argmin(fits))
        raise error(source, row_lines[bad], f"value {table[bad].tolist()} is not finite in {dtype} "
                    f"or too large to interpolate in it (beyond +-{largest:.2g})")
    return table


def table_tensor(source: str, table: np.ndarray, row_lines, dtype: torch.dtype,
                 error: type[CubeFormatError] = CubeFormatError) -> torch.Tensor:
    """:func:`check_table`, then the table as a ``dtype`` tensor."""
    import torch

    check_table(source, table, row_lines, str(dtype).removeprefix("torch."), error)
    return torch.from_numpy(table.copy()).to(dtype)


def _plain_rows(body: bytes, rows: int, largest: float) -> np.ndarray | None:
    """The table ``(rows,3)`` float64 when ``body`` is nothing but ``rows`` rows of three numbers (and
    blank lines) whose values fit ``largest``, else None, and the line-by-line loop reads it, naming the
    line of any problem. numpy's reader is strict (three numbers on every row, each a whole decimal
    number, LF or CRLF line ends) and rounds as ``float`` does, five times faster than a Python step per
    row."""
    if _ROW_CHARS.fullmatch(body) is None:
        return None
    try:
        table = np.loadtxt(io.BytesIO(body), dtype=np.float64, ndmin=2)
    except ValueError:
        return None
    if table.shape != (rows, 3) or not _fits(table, largest).all():
        return None
    return table


@dataclasses.dataclass
class CubeTables:
    """A parsed ``.cube`` file in numpy, before any torch: what :class:`CubeLUT` is made from, and what
    ``python -m lutkern.apply`` grades with when it can run without torch. Fields as :class:`CubeLUT`'s,
    the tables float64 arrays: ``lut3d`` ``(D,D,D,3)``, ``shaper`` ``(N,3)``."""

    lut3d: np.ndarray | None
    shaper: np.ndarray | None
    shaper_domain: tuple[Triple, Triple]
    lut3d_domain: tuple[Triple, Triple]
    title: str | None
    comments: list[str]

    def cube_lut(self, dtype: torch.dtype | None = None) -> CubeLUT:
        """The :class:`CubeLUT` of these tables in ``dtype`` (default float32)."""
        import torch

        dtype = dtype or torch.float32

        def tensor(table):
            return None if table is None else torch.from_numpy(table.copy()).to(dtype)

        return CubeLUT(tensor(self.lut3d), tensor(self.shaper), self.shaper_domain, self.lut3d_domain,
                       self.title, self.comments)


def parse_cube_tables(content: str | bytes, source: str = "<string>", *,
                      dtype: str = "float32") -> CubeTables:
    """Parse the text of a ``.cube`` file (``source`` names it in errors) into numpy tables whose values
    ``dtype`` (``"float16"``, ``"bfloat16"``, ``"float32"`` or ``"float64"``: the precision they will be
    interpolated in) can hold; errors as :func:`read_cube`'s."""
    if isinstance(content, str):
        content = content.encode("utf-8", errors="surrogatepass")
    head = _Header()
    comments: list[str] = []
    values = array("d")  # flat table, 8 bytes per number: no per-row Python objects are kept
    row_lines = array("l")
    expected: int | None = None
    last = 1  # the last non-blank line: where errors found at the end of the file point
    largest = _FLOAT_MAX[dtype] / 4
    plain = None  # the whole table, when it could be read in one pass
    for lineno, offset, raw in _lines_at(content, source):
        line = raw.strip(" \t")
        if not line:
            continue
        last = lineno
        if line[0] == "#":
            comments.append(line[1:].strip())
            continue
        if expected is None:
            if line[0].isalpha():
                _keyword(source, lineno, line, head)
                continue
            if head.size1d is None and head.size3d is None:
                raise CubeFormatError(source, lineno, "table data before LUT_1D_SIZE or LUT_3D_SIZE")
            expected = (head.size1d or 0) + (head.size3d or 0) ** 3
            plain = _plain_rows(content[offset:], expected, largest)
            if plain is not None:
                break
        if line[0].isalpha():
            raise CubeFormatError(
                source, lineno, f"keyword {line.split()[0][:40]!r} after the table data began"
            )
        row = _ROW.fullmatch(line)
        if row is None:
            raise _row_error(source, lineno, line)
        if len(row_lines) == expected:
            raise CubeFormatError(source, lineno, f"more than the {expected} table rows the sizes announce")
        values.extend((float(row[1]), float(row[2]), float(row[3])))
        row_lines.append(lineno)
    if head.size1d is None and head.size3d is None:
        raise CubeFormatError(source, last, "missing LUT_3D_SIZE (or LUT_1D_SIZE)")
    shaper_domain, lut3d_domain = _domains(source, head)
    expected = (head.size1d or 0) + (head.size3d or 0) ** 3
    if plain is not None:
        table = plain
    elif len(row_lines) != expected:
        raise CubeFormatError(source, last, f"expected {expected} table rows, found {len(row_lines)}")
    else:
        table = check_table(source, np.frombuffer(values, dtype=np.float64).reshape(-1, 3), row_lines, dtype)
    n1 = head.size1d or 0
    shaper = table[:n1].copy() if head.size1d is not None else None
    d = head.size3d
    lut3d = table[n1:].reshape(d, d, d, 3).copy() if d is not None else None
    return CubeTables(lut3d, shaper, shaper_domain, lut3d_domain, head.title, comments)


def parse_cube(content: str | bytes, source: str = "<string>", *,
               dtype: torch.dtype | None = None) -> CubeLUT:
    """Parse the text of a ``.cube`` file (``source`` names it in errors) into tables of ``dtype`` (default
    float32). See :func:`read_cube`."""
    import torch

    dtype = dtype or torch.float32
    return parse_cube_tables(content, source, dtype=str(dtype).removeprefix("torch.")).cube_lut(dtype)


def read_cube_tables(path: str | os.PathLike, *, dtype: str = "float32") -> CubeTables:
    """:func:`read_cube` without torch: the file's tables as numpy arrays (see :func:`parse_cube_tables`)."""
    path = Path(path)
    return parse_cube_tables(_read_bounded(path), str(path), dtype=dtype)


def read_cube(path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> CubeLUT:
    """Read a ``.cube`` file (Adobe 1.0 or Resolve) as a :class:`CubeLUT` of ``dtype`` (default float32).

    Raises :class:`CubeFormatError` (a ValueError naming file and line) for a missing file, one that is not a
    regular file or is larger than ``MAX_CUBE_BYTES``, and for a malformed file: missing or
    out-of-range size (checked before any table is allocated), wrong row count, non-numeric or non-finite
    values, unknown or duplicate keywords, keywords after the data, reversed or conflicting domains.
    """
    path = Path(path)
    return parse_cube(_read_bounded(path), str(path), dtype=dtype)


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_CUBE_BYTES``: never blocks on a FIFO, never reads a
    device or an endless stream."""
    if not path.is_file():  # is_file follows symlinks; a FIFO, device or folder is not a file
        what = "no such file" if not path.exists() else "not a regular file (a folder, FIFO or device)"
        raise CubeFormatError(str(path), None, what)
    with path.open("rb") as f:  # the size is checked first, and the read bounded for a file still growing
        small = os.fstat(f.fileno()).st_size <= MAX_CUBE_BYTES
        content = f.read(MAX_CUBE_BYTES + 1) if small else None
    if content is None or len(content) > MAX_CUBE_BYTES:
        raise CubeFormatError(str(path), None, f"larger than {MAX_CUBE_BYTES >> 20} MiB, more than any "
                              f"{MAX_LUT_SIZE}^3 LUT with a shaper needs")
    return content


# ----------------------------------------------------------------------------------------------- writing


def _format_rows(table: torch.Tensor, precision: int) -> str:
    import torch

    values = table.detach().to(torch.float64).cpu().numpy().reshape(-1, 3)
    if not np.isfinite(values).all():
        raise ValueError("cannot write a LUT with NaN or infinite values")
    fmt = f"%.{precision}f %.{precision}f %.{precision}f"
    return "\n".join(fmt % tuple(row) for row in values.tolist()) + "\n"


def _fmt(values, precision: int) -> str:
    return " ".join(f"{v:.{precision}f}" for v in values)


def cube_text(
    lut: torch.Tensor | CubeLUT,
    *,
    title: str | None = None,
    domain_min: Triple = (0.0, 0.0, 0.0),
    domain_max: Triple = (1.0, 1.0, 1.0),
    precision: int = 6,
) -> str:
    """The text of a ``.cube`` file for ``lut``.

    lut: a ``(D,D,D,3)`` tensor (``[b, g, r, c]``, red fastest, which is the file's row order), written as an
        Adobe 1.0 3D file with ``domain_min``/``domain_max`` (omitted when [0, 1]); or a :class:`CubeLUT`,
        whose shaper + 3D content is written in the Resolve variant (``LUT_1D/3D_INPUT_RANGE``).
    precision: digits after the decimal point (values are rounded to it).
    """
    if not isinstance(precision, int) or not 1 <= precision <= 17:
        raise ValueError(f"precision must be an int in [1, 17], got {precision!r}")
    import torch

    from .functional import check_lut

    if isinstance(lut, CubeLUT) and (tuple(domain_min), tuple(domain_max)) != ((0, 0, 0), (1, 1, 1)):
        raise ValueError("a CubeLUT carries its own domains; set them on the CubeLUT, not as arguments")
    if isinstance(lut, torch.Tensor):
        check_lut(lut)
        if lut.dim() != 4:
            raise ValueError(f"write one LUT (D,D,D,3) per file, got shape {tuple(lut.shape)}")
        lut = CubeLUT(lut, None, lut3d_domain=(tuple(map(float, domain_min)), tuple(map(float, domain_max))))
        lut.title = title
    elif title is not None:
        lut = dataclasses.replace(lut, title=title)
    if lut.title is not None and ('"' in lut.title or "\n" in lut.title or "\r" in lut.title):
        raise ValueError(f"a .cube TITLE cannot contain quotes or line breaks: {lut.title!r}")
    head = [f"# {c}" for c in lut.comments if "\n" not in c and "\r" not in c]
    if lut.title is not None:
        head.append(f'TITLE "{lut.title}"')
    unit = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    if lut.shaper is not None and lut.lut3d is not None:  # the Resolve variant: one range per table
        for name, (lo, hi) in (("1D", lut.shaper_domain), ("3D", lut.lut3d_domain)):
            if len(set(lo)) != 1 or len(set(hi)) != 1:
                raise ValueError(
                    f"a shaper + 3D file holds one {name} input range for all channels, got {(lo, hi)}"
                )
            if (lo, hi) != unit:
                head.append(f"LUT_{name}_INPUT_RANGE {_fmt((lo[0], hi[0]), precision)}")
        head += [f"LUT_1D_SIZE {lut.shaper.shape[0]}", f"LUT_3D_SIZE {lut.lut3d.shape[0]}"]
    else:
        table_is_3d = lut.lut3d is not None
        head.append(
            f"LUT_3D_SIZE {lut.lut3d.shape[0]}" if table_is_3d else f"LUT_1D_SIZE {lut.shaper.shape[0]}"
        )
        lo, hi = lut.lut3d_domain if table_is_3d else lut.shaper_domain
        if (lo, hi) != unit:
            head += [f"DOMAIN_MIN {_fmt(lo, precision)}", f"DOMAIN_MAX {_fmt(hi, precision)}"]
    body = "".join(_format_rows(t, precision) for t in (lut.shaper, lut.lut3d) if t is not None)
    return "\n".join(head) + "\n\n" + body


def write_cube(path: str | os.PathLike, lut: torch.Tensor | CubeLUT, **options) -> None:
    """Write ``lut`` to ``path`` as a ``.cube`` file, atomically (temporary file, then rename); ``options``
    (``title``, ``domain_min``, ``domain_max``, ``precision``) as for :func:`cube_text`."""
    text = cube_text(lut, **options)
    with atomic_open(Path(path), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
