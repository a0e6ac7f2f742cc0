"""Writing files safely, for every command: the output rule and atomic writes.

The rule (:func:`check_output`): never write over one of the command's inputs, and never over an existing
file unless the user passed ``--overwrite``.

Atomic writes (:func:`atomic_open`, or :func:`atomic_path` for a writer that wants a path): readers see
the old file or the complete new one, never a partial write. The temporary file is
``.NAME.XXXXXXXX.lutkern.tmp`` beside ``NAME``. A killed process leaves it behind; the first atomic write
of a later process into that folder removes those left before it started.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

TEMP_SUFFIX = ".lutkern.tmp"
_STARTED = time.time()  # temporaries last modified before this were left by earlier processes
_swept: set[Path] = set()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries of this module in ``folder`` last modified before this process started
    (left by a killed run); other files are never touched. Returns the paths removed."""
    removed = []
    for tmp in Path(folder).glob(".*" + TEMP_SUFFIX):
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if tmp.is_file() and not tmp.is_symlink() and tmp.stat().st_mtime < _STARTED:
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs):
    """Open a temporary file beside ``path`` for writing; on success it is synced and renamed to ``path``.

    The file gets the permissions a plain ``open`` would give (0666 less the umask), not mkstemp's 0600.
    On any error the temporary file is removed and ``path`` is left untouched.
    """
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """:func:`atomic_open` for a writer that opens the file itself (an FFmpeg muxer): yields the path of
    an empty temporary file beside ``path``; once the block has written and closed it, it is synced and
    renamed to ``path``. The writer must name its format: the temporary's name ends in ``.lutkern.tmp``."""
    path = Path(path)
    folder = path.parent.resolve()
    if folder not in _swept:
        _swept.add(folder)
        remove_stale_temporaries(folder)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)  # fsync through any descriptor syncs the file's data
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, say: the message names the file the command was writing
        Path(tmp).unlink(missing_ok=True)
        if str(path) in str(exc):
            raise
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
