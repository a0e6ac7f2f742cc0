"""The one rule for every file a command writes: never one of its inputs, and never over an existing file
unless the user passed ``--overwrite``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths exist and are the same file (hard links and symlinks included)."""
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
                 overwrite: bool = False) -> Path:
    """``path`` if a command may write it; else ValueError naming it.

    Refused: one of ``inputs`` (files the command reads; None entries are skipped), even with
    ``overwrite``; a folder; an existing file unless ``overwrite``.
    """
    path = Path(path)
    if any(other is not None and same_file(path, other) for other in inputs):
        raise ValueError(f"refusing to overwrite an input: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file to write")
    if os.path.lexists(path) and not overwrite:
        raise ValueError(f"{path} exists (use --overwrite to replace it)")
    return path
