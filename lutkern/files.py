"""Writing files safely, for every command: the output rule, atomic writes, and sets of outputs put in
place together.

The rule (:func:`check_output`): never write over one of the command's inputs, and never over an existing
file unless the user passed ``--overwrite``.

Atomic writes (:func:`atomic_open`, or :func:`atomic_path` for a writer that wants a path): readers see
the old file or the complete new one, never a partial write. The temporary file is
``.NAME.PID.HOST.XXXXXXXX.lutkern.tmp`` beside ``NAME``: the writing process's id and a short hash of this
machine's name, so that a process removes only temporaries no running process owns. A killed process
leaves its temporary behind; the first write of a later process into that folder removes it
(:func:`remove_stale_temporaries`), and never touches the temporary of a run still working, however long
it has been quiet.

A run's outputs (:class:`OutputSet`: a graded video, its per-shot ``.cube`` files and its edit list) are
written into a staging folder ``.staging.PID.HOST.XXXXXXXX.lutkern.tmp`` beside them and put in place
together once all are complete, so an earlier run's set stays whole until the new one is.

Two runs writing the same final name: with ``--overwrite`` (``replace=True``) the last to finish wins,
each file complete; without it, the run that finishes second fails with one line and leaves the file the
first one wrote (the output appeared while it worked).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path

TEMP_SUFFIX = ".lutkern.tmp"
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
# ``.<name>.<pid>.<host>.<8 random characters>.lutkern.tmp``: who wrote it, so that a run removes only
# temporaries whose process is gone.
_OWNED = re.compile(r"^\..*\.(?P<pid>\d+)\.(?P<host>[0-9a-f]{6})\.[a-z0-9_]{8}"
                    + re.escape(TEMP_SUFFIX) + "$")
_swept: set[Path] = set()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tag() -> str:
    """The part of a temporary's name that says which process on which machine made it."""
    return f"{os.getpid()}.{_HOST}."


def _running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, and is someone else's
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries of this module in ``folder`` (files and staging folders) made on this machine
    by a process that is no longer running (a killed run); other files, and the temporaries of running
    processes or of other machines, are never touched. Returns the paths removed."""
    removed = []
    for tmp in Path(folder).glob(".*" + TEMP_SUFFIX):
        owner = _OWNED.match(tmp.name)
        if owner is None or owner["host"] != _HOST or _running(int(owner["pid"])):
            continue
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if tmp.is_symlink():
                continue
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
            removed.append(tmp)
    return removed


def _sweep_once(folder: Path) -> None:
    folder = folder.resolve()
    if folder not in _swept:
        _swept.add(folder)
        remove_stale_temporaries(folder)


def _error(kind: type[OSError], number: int | None, message: str) -> OSError:
    """An OSError whose text is ``message`` alone (no ``[Errno N]`` before it), with its errno kept."""
    exc = kind(message)
    exc.errno = number
    return exc


def _cannot_write(path: Path, exc: OSError) -> OSError:
    """``exc`` as one line naming ``path`` (the file the command was writing), never its temporary."""
    return _error(OSError, exc.errno, f"cannot write {path}: {exc.strerror or exc}")


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
    _sweep_once(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_tag()}", suffix=TEMP_SUFFIX)
    except OSError as exc:  # a missing folder, no permission: name the file, not the temporary
        raise _cannot_write(path, exc) from None
    os.close(fd)
    try:
        yield Path(tmp)
        _sync(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, say: the message names the file the command was writing
        Path(tmp).unlink(missing_ok=True)
        if str(path) in str(exc) and tmp not in str(exc):
            raise
        raise _cannot_write(path, exc) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)  # fsync through any descriptor syncs the file's data
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Errors of os.link on a file system without hard links (FAT, some network shares).
_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK)


class OutputSet:
    """Files of one run that replace an earlier run's together: all written into a staging folder beside
    them, then put in place at :meth:`commit`; on any error before, none is.

    ``path(final)`` names where to write ``final`` (same name, in the staging folder, so writers see the
    right extension); ``commit(remove=...)`` renames the files in the order they were named (put the one
    that tells the set is complete, an edit list, last), then removes ``remove`` (an earlier set's members
    the new one does not replace). A failure while renaming puts back what it had replaced. Without
    ``replace`` a final name that appeared meanwhile (another run) is not written over: the whole set
    fails, one line. Used as a context manager, leaving the block without a commit discards the set.
    """

    def __init__(self, folder: str | Path, *, replace: bool):
        self.folder, self.replace = Path(folder), replace
        self._staging: Path | None = None
        self._members: dict[Path, Path] = {}

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        if exc is not None:
            self._name_finals(exc)
        self.discard()

    def _name_finals(self, exc: BaseException) -> None:
        """Make ``exc``'s message name the files the run was writing, not their staged copies (a full
        disk, say, while a writer wrote into the staging folder)."""
        if self._staging is None:
            return
        staging = str(self._staging)

        def final(text):
            return text.replace(staging, str(self.folder)) if isinstance(text, str) else text

        exc.args = tuple(final(arg) for arg in exc.args)
        if isinstance(exc, OSError) and exc.filename is not None:  # str() shows these, not args
            exc.filename = final(exc.filename)
            if exc.filename2 is not None:
                exc.filename2 = final(exc.filename2)

    def path(self, final: str | Path) -> Path:
        """Where to write ``final`` (a file directly in the set's folder)."""
        final = Path(final)
        if final.parent.resolve() != self.folder.resolve():
            raise ValueError(f"{final} is not in {self.folder}")
        if self._staging is None:
            _sweep_once(self.folder)
            try:
                self._staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".staging.{_tag()}",
                                                      suffix=TEMP_SUFFIX))
            except OSError as exc:
                raise _cannot_write(final, exc) from None
        staged = self._staging / final.name
        self._members[final] = staged
        return staged

    def discard(self) -> None:
        """Remove the staging folder and whatever it holds; the set's final names are not touched."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        self._members = {}

    def commit(self, remove: Iterable[Path] = ()) -> None:
        """Put every staged file in place, then remove ``remove``; see the class docstring."""
        members = list(self._members.items())
        finals = {final for final, _ in members}
        try:
            for final, staged in members:
                try:
                    _sync(staged)
                    os.chmod(staged, 0o666 & ~_umask())
                except OSError as exc:
                    raise _cannot_write(final, exc) from None
            done: list[tuple[Path, Path | None]] = []  # (final, the earlier file kept aside or None)
            try:
                for final, staged in members:
                    done.append((final, self._put(final, staged)))
            except BaseException:
                for final, kept in reversed(done):
                    with contextlib.suppress(OSError):
                        if kept is not None:
                            os.replace(kept, final)
                        else:
                            final.unlink()
                raise
        finally:
            self.discard()
        for path in remove:
            if Path(path) not in finals:
                with contextlib.suppress(FileNotFoundError):
                    Path(path).unlink()

    def _put(self, final: Path, staged: Path) -> Path | None:
        """Rename ``staged`` to ``final``; returns where the file it replaced was kept (in the staging
        folder, for an undo), or None."""
        kept = None
        if self.replace:
            if os.path.lexists(final):
                kept = staged.with_name(".replaced." + final.name)
                try:
                    os.link(final, kept, follow_symlinks=False)
                except OSError:
                    kept = None  # no hard links here: no undo for this member
            try:
                os.replace(staged, final)
            except OSError as exc:
                raise _cannot_write(final, exc) from None
            return kept
        try:
            os.link(staged, final)  # fails if the name exists: never over a file without --overwrite
        except FileExistsError:
            raise _error(FileExistsError, errno.EEXIST, f"{final} appeared while this run was writing it "
                         "(another run writing the same name?); left as it is (use --overwrite to replace "
                         "it)") from None
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise _cannot_write(final, exc) from None
            if os.path.lexists(final):
                raise _error(FileExistsError, errno.EEXIST, f"{final} appeared while this run was writing "
                             "it; left as it is (use --overwrite to replace it)") from None
            os.replace(staged, final)
        return None


def shared_names(claims: list[tuple[object, list[str], re.Pattern | None]]) -> list[str | None]:
    """The outputs of one run that would share a name, found before anything is written.

    ``claims``: ``(source, names, pattern)`` per input, in the order the run handles them: the file names
    it would write (all in one folder) and a compiled regex of names it may write (a video's
    ``NAME.shotNNN.cube``, whose count is known only later), or None. Returns, for each input, None or
    a message: an input whose names meet an earlier one's is left out (the earlier one is written).
    """
    taken: dict[str, object] = {}
    patterns: list[tuple[re.Pattern, object]] = []
    refused: list[str | None] = []
    for source, names, pattern in claims:
        clash = next(((name, taken[name]) for name in names if name in taken), None)
        clash = clash or next(((name, owner) for name in names for regex, owner in patterns
                               if regex.fullmatch(name)), None)
        clash = clash or next(((name, owner) for name, owner in taken.items()
                               if pattern is not None and pattern.fullmatch(name)), None)
        if clash is not None:
            name, owner = clash
            refused.append(f"{name} would be written twice (also for {owner}): rename one, or grade them "
                           "into different --out folders")
            continue
        refused.append(None)
        taken.update(dict.fromkeys(names, source))
        if pattern is not None:
            patterns.append((pattern, source))
    return refused


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
