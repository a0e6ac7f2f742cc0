"""Build a C source file of this package into a shared library with the system C compiler, once per user.

The library lands in ``$LUTKERN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/lutkern``, i.e.
``~/.cache/lutkern``) under a name hashed from the source, the compiler and its flags, so an edited
source or another compiler builds anew and concurrent builds cannot clash (each compiles to a private
file that is renamed into place). A cache directory or library that another user could write to is not
trusted: the library is then built in a fresh temporary directory instead. Triton and torch.compile rely
on the same system compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) for their CPU-side code.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

# Portable code (no -march=native: a cache directory may be shared by machines with different CPUs).
# ISO C keeps float contraction off, so every operation rounds as written.
CFLAGS = ("-O3", "-std=c11", "-fPIC", "-shared", "-fno-math-errno")
COMPILE_TIMEOUT_S = 120


class BuildError(RuntimeError):
    """The C compiler is missing or failed; the message says which and why."""


def find_compiler() -> str | None:
    """``$CC`` if set, else the first of cc, gcc, clang on PATH, else None."""
    if os.environ.get("CC"):
        return os.environ["CC"]
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_dir() -> Path:
    """Where built libraries are kept (not created here)."""
    if os.environ.get("LUTKERN_CACHE_DIR"):
        return Path(os.environ["LUTKERN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lutkern"


def _ours(path: Path) -> bool:
    """True if ``path`` belongs to this user and nobody else can write it."""
    try:
        st = path.stat()
    except OSError:
        return False
    owned = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return owned and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _private_dir(path: Path) -> bool:
    """Create ``path`` (mode 0700) if needed; True if it is ours and not writable by others."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return False
    return _ours(path)


def build(
    source: Path,
    includes: tuple[Path, ...] = (),
    *,
    compiler: str | None = None,
    directory: Path | None = None,
) -> Path:
    """Path of the shared library built from ``source`` (reused when already built); ``includes`` are the
    files it ``#include``s from its own directory (part of the cache key).

    Raises :class:`BuildError` naming the compiler and its message when there is no compiler or it fails.
    """
    cc = compiler or find_compiler()
    if cc is None:
        raise BuildError("no C compiler found (set CC, or install cc/gcc/clang)")
    parts = [f.read_bytes() for f in (source, *includes)]
    key = hashlib.sha256(
        b"\0".join([*parts, cc.encode(), " ".join(CFLAGS).encode(), platform.machine().encode()])
    )
    name = f"{source.stem}-{key.hexdigest()[:16]}.so"
    directory = directory or cache_dir()
    if not _private_dir(directory):
        directory = Path(tempfile.mkdtemp(prefix="lutkern-"))
    target = directory / name
    if target.exists():
        if _ours(target):
            return target
        directory = Path(tempfile.mkdtemp(prefix="lutkern-"))  # someone else could have written it
        target = directory / name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    os.close(fd)
    try:
        cmd = [cc, *CFLAGS, "-o", tmp, str(source.resolve()), "-lm"]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(f"C compiler {cc!r} could not run: {exc}") from exc
        if run.returncode != 0:
            detail = (run.stderr or run.stdout).strip().splitlines()[-5:]
            raise BuildError(
                f"C compiler {cc!r} failed on {source.name} ({run.returncode}): {' | '.join(detail)}"
            )
        os.chmod(tmp, 0o700)  # whatever the umask: a library others can write is not reused
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
