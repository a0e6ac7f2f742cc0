"""Large CPU outputs in memory whose pages are already mapped, taken back from tensors that died.

A new 50 MB tensor costs 15-17 ms the first time it is written, about as much as grading it: glibc maps
an allocation that large afresh (``mmap``) and unmaps it when freed, so the kernel faults in and zeroes
each of its 12,800 pages again on every call. :func:`empty` hands out a buffer that an earlier output
already touched instead.

A buffer goes back to the pool only when nothing can reach its memory any more: it is an anonymous
``mmap`` wrapped once in a numpy array, the only object the tensor's storage keeps alive (every view,
``.numpy()`` array and autograd reference of the tensor holds that storage), and a ``weakref.finalize``
on that array returns the mapping when the array is collected. So the pool never hands out memory a
caller still holds. It keeps at most :data:`MAX_PER_SIZE` buffers of a size and :data:`MAX_BYTES` in all
(the oldest are unmapped first); buffers below :data:`MIN_BYTES` come from torch's allocator, which
reuses small blocks already.

The tensors are torch tensors like any other, except that their storage cannot be resized
(``resize_`` to a larger size raises, as for any tensor made with ``torch.from_numpy``).
"""

from __future__ import annotations

import collections
import math
import mmap
import os
import threading
import weakref

import numpy as np
import torch

MIN_BYTES = 1 << 22  # 4 MiB: below glibc's largest mmap threshold (32 MiB) malloc often reuses memory
MAX_BYTES = 1 << 30  # 1 GiB kept at most, in all
MAX_PER_SIZE = 2
_lock = threading.RLock()  # a collection inside the lock may run a finaliser, which takes it again
_free: collections.OrderedDict[int, list[mmap.mmap]] = collections.OrderedDict()  # bytes -> buffers


def enabled() -> bool:
    """False when ``LUTKERN_OUTPUT_POOL=0``: every output is then a plain ``torch.empty``."""
    return os.environ.get("LUTKERN_OUTPUT_POOL", "1").strip() != "0"


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor of ``shape`` and ``dtype``: from the pool when it is large
    enough (see the module docstring), else ``torch.empty``."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or not enabled():
        return torch.empty(shape, dtype=dtype)
    with _lock:
        buffers = _free.get(nbytes)
        buf = buffers.pop() if buffers else None
        if buffers == []:
            del _free[nbytes]
    if buf is None:
        buf = mmap.mmap(-1, nbytes)
    owner = np.frombuffer(buf, dtype=np.uint8)
    weakref.finalize(owner, _give_back, buf).atexit = False
    return torch.from_numpy(owner).view(dtype).view(shape)


def _give_back(buf: mmap.mmap) -> None:
    """Return ``buf`` (whose array was just collected) to the pool, dropping the oldest buffers beyond
    the limits (an unreferenced mapping is unmapped when collected)."""
    with _lock:
        _free.setdefault(len(buf), []).append(buf)
        _free.move_to_end(len(buf))
        if len(_free[len(buf)]) > MAX_PER_SIZE:
            _free[len(buf)].pop(0)
        while sum(size * len(bufs) for size, bufs in _free.items()) > MAX_BYTES:
            size, bufs = next(iter(_free.items()))
            bufs.pop(0)
            if not bufs:
                del _free[size]


def clear() -> None:
    """Drop every kept buffer (their memory goes back to the system)."""
    with _lock:
        _free.clear()
