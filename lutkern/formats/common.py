"""What the LUT file readers and writers share: the error, bounded reading, line splitting, checked numbers.

Every reader takes the bytes of a file already bounded by :func:`read_bounded` (a regular file of at most
``MAX_CUBE_BYTES``), checks every size it announces against the project's limits before anything of that
size is allocated, and raises :class:`LUTFormatError` (``file:line: message``) for anything it does not
understand. Every writer refuses NaN and infinite values and writes atomically (:func:`write_text`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ..cube import _NUMBER_RE, CubeFormatError, _format_rows, _lines, _read_bounded, table_tensor
from ..files import atomic_open

__all__ = [
    "LUTFormatError",
    "read_bounded",
    "lines",
    "number",
    "integer",
    "rows_tensor",
    "format_rows",
    "write_text",
    "check_precision",
]

format_rows = _format_rows


class LUTFormatError(CubeFormatError):
    """A malformed LUT file of any format (``.3dl``, ``.spi1d``, ``.spi3d``, ``.csp``, ``.clf``): a
    ValueError whose message starts with ``file:line:`` (``file:`` for the whole file). A subclass of
    :class:`lutkern.CubeFormatError`, so one ``except`` catches a bad file of any format."""


def read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_CUBE_BYTES`` (:func:`lutkern.cube.read_cube`'s rule)."""
    try:
        return _read_bounded(path)
    except CubeFormatError as exc:
        raise LUTFormatError(exc.source, exc.line, exc.reason) from None


def lines(content: bytes, source: str):
    """``(line number, stripped text)`` of the non-blank lines, lazily; LF, CRLF or CR line ends, a UTF-8
    byte-order mark; text that is not UTF-8 is an error naming its line."""
    try:
        for lineno, raw in _lines(content, source):
            text = raw.strip()  # any Unicode blank, as str.split() sees them
            if text:
                yield lineno, text
    except LUTFormatError:
        raise
    except CubeFormatError as exc:
        raise LUTFormatError(exc.source, exc.line, exc.reason) from None


def number(source: str, lineno: int, token: str, what: str) -> float:
    """``token`` as a finite float (a plain decimal: no ``nan``, ``inf`` or hex), else an error."""
    if not _NUMBER_RE.fullmatch(token):
        raise LUTFormatError(source, lineno, f"{what}: {token[:40]!r} is not a number")
    value = float(token)
    if not math.isfinite(value):
        raise LUTFormatError(source, lineno, f"{what}: {token[:40]!r} is not finite")
    return value


def integer(source: str, lineno: int, token: str, what: str, lo: int, hi: int) -> int:
    """``token`` as an integer in [lo, hi] (ASCII digits, an optional minus), else an error."""
    digits = token.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise LUTFormatError(source, lineno, f"{what}: {token[:40]!r} is not an integer")
    value = int(token) if len(digits) <= 12 else hi + 1
    if not lo <= value <= hi:
        raise LUTFormatError(source, lineno, f"{what} {token[:40]} is out of range [{lo}, {hi}]")
    return value


def rows_tensor(source: str, values: list[float] | np.ndarray, row_lines, dtype: torch.dtype) -> torch.Tensor:
    """Rows of three values (flat ``values``, ``row_lines[i]`` the line of row i) as an ``(M,3)`` tensor,
    refusing a value that is not finite in ``dtype`` or too large to interpolate in it."""
    table = np.asarray(values, dtype=np.float64).reshape(-1, 3)
    return table_tensor(source, table, row_lines, dtype, LUTFormatError)


def check_precision(precision) -> None:
    if not isinstance(precision, int) or isinstance(precision, bool) or not 1 <= precision <= 17:
        raise ValueError(f"precision must be an int in [1, 17], got {precision!r}")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, then rename), UTF-8 with LF line ends."""
    with atomic_open(Path(path), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
