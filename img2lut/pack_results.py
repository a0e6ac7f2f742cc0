"""Results computed from a pack's codes, kept beside the pack (:mod:`img2lut.pair_cache`) so that later
runs read them instead of computing them again: what depends only on the pairs' codes and the settings.

Two kinds:

- :func:`per_image`: one array per image (the statistics the head reads, the thumbnails the CNN sees),
  kept for every row of the pack that any run asked for; a run computes only the rows still missing.
- :func:`whole_set`: one result of a whole set of pairs (the diagnosis, the first stage's fitted LUT),
  kept per (the set's rows, settings).

A result file ``<key>.<name>-<digest>.result`` (in the pack's folder) is a 16-byte magic, the length of
a JSON header, the header (the format, the name, the settings, each pack's build id and side and, for a
whole set, a hash of its rows; a JSON ``value``; and each array's dtype, shape and CRC-32), then the
arrays' bytes. It is used only when everything in its header is what the run asks for (the build id
changes whenever the pack is written again: a changed or added file, other decode settings) and every
check passes; a damaged file is computed again and rewritten, with a one-line warning. Written
atomically (:mod:`lutkern.files`), only by rank 0 under torchrun. Nothing is unpickled.

Codes that do not come from a pack (``--no-cache``, a set joined from two folders) are computed each time.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lutkern.files import atomic_open

from . import distributed
from .codes import Codes
from .pair_cache import RESULT_SUFFIX

FORMAT = 1
# Changes whenever what a kept result holds would come out otherwise for the same codes and settings
# (a change to the statistics, the thumbnails, the diagnosis or the fit): older results are not used.
VERSION = 1
_MAGIC = b"img2lut result\x00\x00"
_MAX_HEADER = 1 << 20
_DTYPES = {np.dtype(t).str: np.dtype(t) for t in (np.uint8, np.bool_, np.int64, np.float32, np.float64)}


def environment(backend: str | None = None) -> dict:
    """What a computed result also depends on besides codes and settings: the versions, the LUT kernels'
    backend as asked for (the argument, else ``$LUTKERN_BACKEND``)."""
    return {"version": VERSION, "torch": torch.__version__, "backend": backend,
            "env_backend": os.environ.get("LUTKERN_BACKEND")}


def _pack(codes: Codes, rows: bool) -> dict | None:
    origin = getattr(codes, "origin", None)
    if origin is None:
        return None
    out = {"pack": origin.key, "build": origin.build, "side": origin.side}
    if rows:
        out["rows"] = hashlib.sha256(np.ascontiguousarray(codes.index, dtype="<i8").tobytes()).hexdigest()
    return out


def _normal(header: dict) -> dict:
    """``header`` as it reads back from JSON (tuples become lists), so that the two compare equal."""
    return json.loads(json.dumps(header))


def _path(root: Path, key: str, name: str, header: dict) -> Path:
    digest = hashlib.sha256(json.dumps([header["name"], header["settings"], header["packs"]],
                                       sort_keys=True).encode()).hexdigest()[:20]
    return root / f"{key}.{name}-{digest}{RESULT_SUFFIX}"


def _read(path: Path, header: dict) -> tuple[object, dict[str, np.ndarray]] | None:
    """The value and arrays of the result file ``path`` when its header matches ``header``; None when
    there is none or it is another's; a warning and None when it is damaged."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_MAGIC) + 8)
            if len(head) < len(_MAGIC) + 8 or head[:len(_MAGIC)] != _MAGIC:
                raise ValueError("not a result file")
            (length,) = struct.unpack("<Q", head[len(_MAGIC):])
            if length > _MAX_HEADER:
                raise ValueError("its header is too large")
            stored = json.loads(f.read(length))
            if not isinstance(stored, dict):
                raise ValueError("its header is not an object")
            if {k: stored.get(k) for k in header} != header:
                return None
            arrays = {}
            for entry in stored["arrays"]:
                dtype = _DTYPES[entry["dtype"]]
                shape = tuple(int(n) for n in entry["shape"])
                size = int(np.prod(shape)) * dtype.itemsize
                data = f.read(size)
                if len(data) != size or zlib.crc32(data) != entry["crc"]:
                    raise ValueError(f"its array {entry['name']} is cut short or fails its checksum")
                arrays[entry["name"]] = np.frombuffer(data, dtype).reshape(shape)
            if f.read(1):
                raise ValueError("it is longer than its header says")
            return stored["value"], arrays
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        warnings.warn(f"the pair cache's result {path} is damaged ({exc}); computing it again",
                      stacklevel=3)
        return None


def _write(path: Path, header: dict, value, arrays: dict[str, np.ndarray]) -> None:
    if not distributed.current().is_main:
        return
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    entries = [{"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "crc": zlib.crc32(a)}
               for name, a in arrays.items()]
    text = json.dumps({**header, "value": value, "arrays": entries}).encode()
    try:
        with atomic_open(path, "wb") as f:
            f.write(_MAGIC + struct.pack("<Q", len(text)) + text)
            for a in arrays.values():
                f.write(a.tobytes())
    except OSError as exc:  # the results are a saving, never a reason to stop
        warnings.warn(f"cannot keep a result in the pair cache ({exc})", stacklevel=3)


def per_image(codes: Codes, name: str, settings: dict,
              compute: Callable[[Codes], torch.Tensor]) -> torch.Tensor:
    """``compute(codes)``: a float32 tensor ``(N, ...)``, one row per image of ``codes``, each row a
    function of its image alone; rows kept from earlier runs are read, only the missing ones computed
    (``compute`` of the subset of them)."""
    pack = _pack(codes, rows=False)
    if pack is None or len(codes) == 0:
        return compute(codes)
    origin = codes.origin
    header = _normal({"format": FORMAT, "name": name, "settings": settings, "packs": [pack]})
    path = _path(origin.root, origin.key, name, header)
    found = _read(path, header)
    rows = len(codes.array)
    values = filled = None
    if found is not None:
        _, arrays = found
        values, filled = arrays.get("values"), arrays.get("filled")
        if values is None or filled is None or len(values) != rows or filled.shape != (rows,):
            values = filled = None
    need = np.ones(len(codes), np.bool_) if filled is None else ~filled[codes.index]
    if need.any():
        where = np.flatnonzero(need)[np.unique(codes.index[need], return_index=True)[1]]  # once per row
        new = compute(codes.subset(where)).numpy()
        values = np.zeros((rows, *new.shape[1:]), new.dtype) if values is None else values.copy()
        filled = np.zeros(rows, np.bool_) if filled is None else filled.copy()
        values[codes.index[where]] = new
        filled[codes.index[where]] = True
        _write(path, header, None, {"values": values, "filled": filled})
    return torch.from_numpy(np.ascontiguousarray(values[codes.index]))


def whole_set(sets: list[Codes], name: str, settings: dict, compute: Callable[[], tuple[object, dict]]
              ) -> tuple[object, dict[str, np.ndarray]]:
    """``compute()``: a result of the whole ``sets`` of codes (in their order, their rows as they are),
    ``(value, arrays)``: a JSON value and named numpy arrays; kept when every set comes from a pack."""
    packs = [_pack(codes, rows=True) for codes in sets]
    if any(p is None for p in packs):
        return compute()
    origin = sets[0].origin
    header = _normal({"format": FORMAT, "name": name, "settings": settings, "packs": packs})
    path = _path(origin.root, origin.key, name, header)
    found = _read(path, header)
    if found is not None:
        return found
    value, arrays = compute()
    _write(path, header, value, arrays)
    return value, arrays
