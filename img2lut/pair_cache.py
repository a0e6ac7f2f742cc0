"""The pair cache: decoded training-size pairs kept on disk as codes, so that later runs of ``train``,
``fit`` and ``evaluate`` skip decoding.

Where: ``--cache-dir DIR``, else ``$IMG2LUT_CACHE_DIR``, else ``$XDG_CACHE_HOME/img2lut/pairs``
(``~/.cache/img2lut/pairs`` when XDG_CACHE_HOME is unset); ``--no-cache`` neither reads nor writes it.
Deleting the folder clears it (nothing else lives there); the next run decodes again.

One *pack* per (inputs folder, targets folder, image size, decode settings), three files named by a hash
of those: ``<key>.inputs.codes`` and ``<key>.targets.codes`` (a 64-byte header, then the codes of every
pair, ``(N,3,S,S)``, C order, of the dtype the index names) and ``<key>.json``, the index: the format
version, the settings, and for each pair its name, the identity of its two files (resolved path, size in
bytes, modification time in ns), its row, the value-1 code of each image (:class:`img2lut.codes.Codes`)
and the CRC-32 of each image's codes. A pair is taken from the pack only when both files' identities
are unchanged; a changed or added file is decoded again and the pack rewritten. Files are written under
temporary names and renamed (:mod:`lutkern.files`), the index last; a random build id in the data files'
headers ties them to their index. A pack that fails any check (a short file, a wrong header or build
id, a bad CRC, an index that does not parse) is never used: it is rebuilt, with a one-line warning.
Nothing is unpickled: the index is JSON, the data raw numpy arrays.

Beside a pack, ``<key>.*.result`` files keep what was computed from its codes (the inputs' statistics,
the thumbnails, the diagnosis, the first stage's LUT: :mod:`img2lut.pack_results`); each names the build
id of the pack it was computed from, and a rewritten pack removes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lutkern.files import atomic_open, atomic_path

from .codes import DTYPES, wider

FORMAT = 1
ENV = "IMG2LUT_CACHE_DIR"
_MAGIC = b"img2lut codes\x00\x00\x00"  # 16 bytes, then the 16-byte build id, then zeros to HEADER
HEADER = 64
_MAX_INDEX_BYTES = 1 << 28
SIDES = ("inputs", "targets")
# Results computed from a pack's codes (img2lut.pack_results) are kept beside it as <key>.<name>.result.
RESULT_SUFFIX = ".result"


class DamagedCache(ValueError):
    """A pack that fails a check; the message says which file and why."""


def default_dir() -> Path:
    """``$IMG2LUT_CACHE_DIR``, else ``$XDG_CACHE_HOME/img2lut/pairs`` (``~/.cache`` when unset)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "img2lut" / "pairs"


def resolve(cache_dir: str | os.PathLike | None, enabled: bool = True) -> Path | None:
    """The cache folder of a command's ``--cache-dir`` / ``--no-cache`` (None: no cache)."""
    if not enabled:
        return None
    return Path(cache_dir) if cache_dir is not None else default_dir()


def add_flags(parser) -> None:
    """``--cache-dir`` and ``--no-cache`` on a command's argparse parser."""
    parser.add_argument("--cache-dir", metavar="DIR", help=f"the pair cache: decoded pairs kept for later "
                        f"runs (default: ${ENV}, else $XDG_CACHE_HOME/img2lut/pairs; delete it to clear)")
    parser.add_argument("--no-cache", action="store_true", help="decode every pair, keep nothing")


def identity(path: Path) -> list | None:
    """``[resolved path, size, mtime_ns]`` of a file, or None when it cannot be stat'ed (its decoding
    then says why, naming it)."""
    try:
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]
    except OSError:
        return None


def pack_key(folders: tuple[Path, Path], settings: dict) -> str:
    text = json.dumps([FORMAT, [str(Path(f).resolve()) for f in folders], settings], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass
class Pack:
    """A verified pack: ``pairs`` (the index's entries, by name), ``arrays[side]`` ``(N,3,S,S)`` read-only
    memory maps (None for a pack of no pair), ``index_path`` its index, ``build`` its build id."""

    pairs: dict[str, dict]
    arrays: dict[str, np.ndarray]
    index_path: Path
    build: str = ""


@dataclass(frozen=True)
class Origin:
    """Which pack (``root``, ``key``, ``build``: the build id, new whenever the pack is written) and side
    an array of codes was read from: what results computed from the codes are kept under
    (:mod:`img2lut.pack_results`)."""

    root: Path
    key: str
    build: str
    side: str


def paths(root: Path, key: str) -> dict[str, Path]:
    return {"index": root / f"{key}.json", **{side: root / f"{key}.{side}.codes" for side in SIDES}}


def read_pack(root: Path, key: str, settings: dict) -> Pack | None:
    """The pack ``key`` in ``root``, every check passed; None when there is none (or it was made with
    other settings); :class:`DamagedCache` when it fails a check."""
    where = paths(root, key)
    if not where["index"].is_file():
        return None
    try:
        with where["index"].open("rb") as f:
            text = f.read(_MAX_INDEX_BYTES + 1)
        if len(text) > _MAX_INDEX_BYTES:
            raise ValueError("the index is too large")
        index = json.loads(text)
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise ValueError("not an index of this format")
        if index.get("settings") != settings:
            return None
        shape = tuple(index["shape"])
        pairs = {entry["name"]: entry for entry in index["pairs"]}
        if len(pairs) != len(index["pairs"]) or len(shape) != 3:
            raise ValueError("the index is inconsistent")
        arrays = {side: _open_side(where[side], index["sides"][side], index["build"], len(pairs), shape)
                  for side in SIDES}
        for entry in pairs.values():
            for side, crc in zip(SIDES, entry["crc"], strict=True):
                if zlib.crc32(arrays[side][entry["row"]]) != crc:
                    raise ValueError(f"the codes of {entry['name']} in {where[side].name} fail their "
                                     "checksum")
    except DamagedCache:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DamagedCache(f"{where['index']}: {exc}") from None
    return Pack(pairs, arrays, where["index"], index["build"])


def _open_side(path: Path, dtype: str, build: str, rows: int, shape: tuple) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype not in DTYPES:
        raise ValueError(f"codes of dtype {dtype} are not of this format")
    with path.open("rb") as f:
        head = f.read(HEADER)
        size = os.fstat(f.fileno()).st_size
    if head[:16] != _MAGIC or head[16:32].hex() != build:
        raise DamagedCache(f"{path}: not the codes its index names (wrong header)")
    expect = HEADER + rows * int(np.prod(shape)) * dtype.itemsize
    if size != expect:
        raise DamagedCache(f"{path}: {size} bytes, its index says {expect} (cut short?)")
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER, shape=(rows, *shape)) if rows else None


class Region:
    """``(N,3,S,S)`` codes filled row by row in any order, in memory or in a file (``path``): its dtype is
    the widest of the rows put so far, the rows already there widened in place when a wider one comes
    (integer codes keep their values: a uint8 code is the same number in uint16)."""

    def __init__(self, rows: int, shape: tuple[int, ...], path: Path | None = None, build: bytes = b""):
        self.rows, self.shape, self.path, self.build = rows, tuple(shape), path, build
        self.dtype: np.dtype | None = None
        self.array: np.ndarray | None = None

    def _allocate(self, dtype: np.dtype) -> None:
        if self.path is None:
            self.array = np.zeros((self.rows, *self.shape), dtype) if self.array is None \
                else self.array.astype(dtype)
        else:
            old = self.dtype
            if self.array is not None:
                self.array.flush()
                self.array = None
            with self.path.open("r+b") as f:
                f.write(_MAGIC + self.build + bytes(HEADER - 32))
                f.truncate(HEADER + self.rows * self._row_elems * dtype.itemsize)
                if old is not None:  # from the last row back: no row is written over before it is read
                    n_old, n_new = self._row_elems * old.itemsize, self._row_elems * dtype.itemsize
                    for i in reversed(range(self.rows)):
                        row = np.frombuffer(os.pread(f.fileno(), n_old, HEADER + i * n_old), old)
                        os.pwrite(f.fileno(), row.astype(dtype).tobytes(), HEADER + i * n_new)
            self.array = np.memmap(self.path, dtype=dtype, mode="r+", offset=HEADER,
                                   shape=(self.rows, *self.shape))
        self.dtype = dtype

    @property
    def _row_elems(self) -> int:
        return int(np.prod(self.shape))

    def put(self, row: int, codes: np.ndarray) -> None:
        dtype = codes.dtype if self.dtype is None else wider(self.dtype, codes.dtype)
        if dtype != self.dtype:
            self._allocate(dtype)
        self.array[row] = codes

    def finish(self) -> np.ndarray:
        """The filled array (a memory map is flushed); an empty region is uint8."""
        if self.array is None:
            self._allocate(np.dtype(np.uint8))
        if isinstance(self.array, np.memmap):
            self.array.flush()
        return self.array


class PackWriter:
    """Write a pack: ``regions[side]`` are filled by the caller, :meth:`commit` writes the index and puts
    the three files in place. Use as a context manager: on an error nothing is put in place."""

    def __init__(self, root: Path, key: str, rows: int, shape: tuple[int, ...]):
        self.root, self.key, self.rows, self.shape = root, key, rows, tuple(shape)
        self.build = secrets.token_bytes(16)
        self._contexts = []
        self.regions: dict[str, Region] = {}

    def __enter__(self) -> PackWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        where = paths(self.root, self.key)
        try:
            for side in SIDES:
                context = atomic_path(where[side])
                tmp = context.__enter__()
                self._contexts.append(context)
                self.regions[side] = Region(self.rows, self.shape, tmp, self.build)
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        for region in self.regions.values():
            region.array = None  # close the memory maps before the files are renamed or removed
        while self._contexts:
            self._contexts.pop().__exit__(kind, exc, traceback)

    def commit(self, settings: dict, entries: list[dict]) -> dict[str, np.ndarray]:
        """Put the pack in place: ``entries`` are the index's pairs (name, input, target, row, scales,
        full_size); their CRCs are computed here. Returns the arrays (read back as memory maps)."""
        arrays = {side: self.regions[side].finish() for side in SIDES}
        for entry in entries:
            entry["crc"] = [zlib.crc32(arrays[side][entry["row"]]) for side in SIDES]
        index = {"format": FORMAT, "settings": settings, "build": self.build.hex(), "shape": list(self.shape),
                 "sides": {side: str(arrays[side].dtype) for side in SIDES}, "pairs": entries}
        dtypes = {side: arrays[side].dtype for side in SIDES}
        self.__exit__(None, None, None)  # the data files in place
        with atomic_open(paths(self.root, self.key)["index"], "w") as f:
            json.dump(index, f)
        for stale in self.root.glob(f"{self.key}.*{RESULT_SUFFIX}"):  # results of the pack it replaced
            stale.unlink(missing_ok=True)
        where = paths(self.root, self.key)
        return {side: np.memmap(where[side], dtype=dtypes[side], mode="r", offset=HEADER,
                                shape=(self.rows, *self.shape)) for side in SIDES}
